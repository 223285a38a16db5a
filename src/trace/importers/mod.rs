//! Importing routing data written by other systems, and exporting traces to their formats.
//!
//! | format   | content                                                              | result   |
//! |----------|----------------------------------------------------------------------|----------|
//! | `npy`    | ExFlow / HarMoEny `[tokens, layers]` or `[tokens, layers, k]` ints    | tokens   |
//! | `vllm`   | vLLM routed-experts capture `[tokens][layers][k]`, `.npy` or JSON     | tokens   |
//! | `sglang` | SGLang expert-distribution dump `{"logical_count": [steps][layers][experts]}` or `[layers][experts]` | loads |
//! | `csv`    | hand-made `layer,token,expert[,weight]` (or `layer,expert,load`)      | either   |
//!
//! Negative ids mean "no expert" everywhere. Without an explicit expert count, token formats
//! take the largest id plus one; with one, larger ids are errors naming their row and column.
//! Importers refuse what `trace validate` rejects (an expert repeated in a token's top-k,
//! negative or non-finite weights and loads), naming the file and the row or line.

mod csv;
mod export;
mod layer_map;
mod npy;
mod routing_builder;
mod sglang;
mod vllm;

use std::fmt;
use std::io::Read;
use std::path::Path;

pub use export::{ExportFormat, export};
pub use layer_map::DecoderLayers;
pub use npy::{F32Array, read_f32, write_f32};

use crate::error::{Error, Result};
use crate::trace::Trace;

/// Formats [`import`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// NumPy integer array `[tokens, layers]` (top-1, ExFlow / HarMoEny) or `[tokens, layers, k]`.
    Npy,
    /// vLLM routed-experts capture, `.npy` (int32 or int16) or JSON.
    Vllm,
    /// SGLang expert-distribution recorder dump (aggregate loads).
    Sglang,
    /// Hand-made CSV.
    Csv,
}

impl fmt::Display for ImportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImportFormat::Npy => "npy",
            ImportFormat::Vllm => "vllm",
            ImportFormat::Sglang => "sglang",
            ImportFormat::Csv => "csv",
        })
    }
}

/// Bytes read from the start of a file to sniff its format.
const SNIFF_BYTES: u64 = 64 * 1024;

/// Tells a file's format by its extension (`.npy`, `.csv`) or, failing that, its first bytes:
/// NumPy magic, a JSON array (vLLM), a JSON object naming `logical_count` (SGLang) or
/// `routed_experts` (vLLM), or a CSV header naming `layer` and `expert`.
pub fn detect_format(path: &Path) -> Result<ImportFormat> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("npy") => return Ok(ImportFormat::Npy),
        Some("csv") => return Ok(ImportFormat::Csv),
        Some("parquet") => {
            return Err(Error::bad_file(
                path,
                "is a Parquet file: moesim reads its own Parquet traces directly, no import needed",
            ));
        }
        _ => {}
    }
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(SNIFF_BYTES).read_to_end(&mut head))
        .map_err(|e| Error::io(path, e))?;
    if head.starts_with(npy::MAGIC) {
        return Ok(ImportFormat::Npy);
    }
    let text = String::from_utf8_lossy(&head);
    let text = text.trim_start();
    if text.starts_with('[') {
        return Ok(ImportFormat::Vllm);
    }
    if text.starts_with('{') {
        if text.contains("\"logical_count\"") {
            return Ok(ImportFormat::Sglang);
        }
        if text.contains("\"routed_experts\"") {
            return Ok(ImportFormat::Vllm);
        }
    }
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    if header.contains(&"layer") && header.contains(&"expert") {
        return Ok(ImportFormat::Csv);
    }
    Err(Error::bad_file(
        path,
        "cannot tell the routing format from the file name or content; give it explicitly \
         (npy, vllm, sglang or csv)",
    ))
}

/// What an import knows about the model besides the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportOptions {
    /// Routed experts per layer; defaults to the largest id plus one (token formats) or the
    /// dump's width (loads).
    pub num_experts: Option<usize>,
    /// The model's decoder layers, so a capture with one row per decoder layer (vLLM) keeps only
    /// the MoE ones; without it, zero-filled dense layers are detected.
    pub decoder: Option<DecoderLayers>,
    /// Keep the entries `trace validate` rejects (an expert repeated in a token's top-k, a
    /// negative or non-finite gate weight) instead of refusing the file, so that validation
    /// can list every one. Off for imports.
    pub keep_violations: bool,
}

impl ImportOptions {
    /// Options with only an expert count.
    pub fn experts(num_experts: Option<usize>) -> Self {
        ImportOptions {
            num_experts,
            ..ImportOptions::default()
        }
    }
}

/// Imports the file at `path` as a trace. `format` defaults to [`detect_format`]; `num_experts`
/// defaults to the largest id plus one (token formats) or the dump's width (loads).
pub fn import(
    path: &Path,
    format: Option<ImportFormat>,
    num_experts: Option<usize>,
) -> Result<Trace> {
    import_with(path, format, &ImportOptions::experts(num_experts))
}

/// [`import`] with everything known about the model.
pub fn import_with(
    path: &Path,
    format: Option<ImportFormat>,
    options: &ImportOptions,
) -> Result<Trace> {
    let format = match format {
        Some(format) => format,
        None => detect_format(path)?,
    };
    let num_experts = options.num_experts;
    match format {
        ImportFormat::Npy => npy::import(path, options).map(Trace::Tokens),
        ImportFormat::Vllm => vllm::import(path, options).map(Trace::Tokens),
        ImportFormat::Sglang => sglang::import(path, num_experts).map(Trace::Loads),
        ImportFormat::Csv => csv::import(path, options),
    }
}

/// The provenance line recorded for a trace imported from `path`, e.g.
/// "imported from switch-base-32.trace.npy (npy)".
pub fn provenance(path: &Path, format: ImportFormat) -> String {
    let name = path
        .file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    format!("imported from {name} ({format})")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::*;
    use crate::trace::parquet::{read_header, read_trace};

    /// The shared third-party data folder, or `None` (with the standard notice) when it is absent.
    pub(crate) fn shared_data() -> Option<PathBuf> {
        let dir = std::env::var_os("MOESIM_SHARED_DATA")
            .map(PathBuf::from)
            .filter(|d| d.is_dir());
        if dir.is_none() {
            eprintln!("skipping: MOESIM_SHARED_DATA not set");
        }
        dir
    }

    #[test]
    fn formats_are_told_by_name_then_content() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], ImportFormat); 6] = [
            ("a.npy", b"anything", ImportFormat::Npy),
            ("a.CSV", b"anything", ImportFormat::Csv),
            ("a.bin", b"\x93NUMPY\x01\x00", ImportFormat::Npy),
            ("a.json", b"  [[[1, 2]]]", ImportFormat::Vllm),
            (
                "b.json",
                b"{\"routed_experts\": [[[1]]]}",
                ImportFormat::Vllm,
            ),
            (
                "c.json",
                b"{\"logical_count\": [[1.0]]}",
                ImportFormat::Sglang,
            ),
        ];
        for (name, content, format) in cases {
            let path = dir.path().join(name);
            fs::write(&path, content).unwrap();
            assert_eq!(detect_format(&path).unwrap(), format, "{name}");
        }
        let path = dir.path().join("routes.txt");
        fs::write(&path, "token, layer, expert\n0,0,1\n").unwrap();
        assert_eq!(detect_format(&path).unwrap(), ImportFormat::Csv);
        fs::write(&path, "hello").unwrap();
        assert!(
            detect_format(&path)
                .unwrap_err()
                .to_string()
                .contains("cannot tell the routing format")
        );
        assert!(detect_format(&dir.path().join("t.parquet")).is_err());
    }

    #[test]
    fn format_names_match_the_command_line() {
        use clap::ValueEnum;
        for format in ImportFormat::value_variants() {
            let name = format.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(format.to_string(), name);
        }
        for format in ExportFormat::value_variants() {
            let name = format.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(format.to_string(), name);
        }
        assert_eq!(ImportFormat::Sglang.to_string(), "sglang");
    }

    #[test]
    fn vllm_npy_survives_parquet_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("replay.npy");
        // 3 tokens x 2 layers x top-2, trailing -1 where a token has fewer experts.
        let ids: [i16; 12] = [5, 1, 2, -1, 0, 7, -1, -1, 3, 4, 6, 2];
        npy::write_int16(&original, [3, 2, 2], &ids).unwrap();
        let trace = import(&original, None, Some(8)).unwrap();
        let parquet = dir.path().join("replay.parquet");
        export(
            &trace,
            &parquet,
            ExportFormat::Parquet,
            &provenance(&original, ImportFormat::Vllm),
        )
        .unwrap();
        assert_eq!(
            read_header(&parquet).unwrap().source,
            "imported from replay.npy (vllm)"
        );
        let back = dir.path().join("back.npy");
        export(&read_trace(&parquet).unwrap(), &back, ExportFormat::Npy, "").unwrap();
        assert_eq!(fs::read(&back).unwrap(), fs::read(&original).unwrap());
    }

    #[test]
    fn loads_export_to_npy_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loads.json");
        fs::write(&path, "{\"logical_count\": [[1.0, 2.0]]}").unwrap();
        let loads = import(&path, None, None).unwrap();
        let err = export(&loads, &dir.path().join("x.npy"), ExportFormat::Npy, "").unwrap_err();
        assert!(err.to_string().contains("needs token-level routing"));
    }

    #[test]
    fn real_switch_trace_converts_through_every_token_format() {
        let Some(data) = shared_data() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let source = data.join("switch-top1/switch-base-32.trace.npy");
        let trace = import(&source, None, None).unwrap();
        for format in [ExportFormat::Parquet, ExportFormat::Csv, ExportFormat::Npy] {
            let path = dir.path().join(format!("switch.{format}"));
            export(&trace, &path, format, "switch").unwrap();
            let back = match format {
                ExportFormat::Parquet => read_trace(&path).unwrap(),
                _ => import(&path, None, Some(32)).unwrap(),
            };
            assert_eq!(back, trace, "{format}");
        }
        let loads_path = dir.path().join("switch.json");
        export(&trace, &loads_path, ExportFormat::Sglang, "switch").unwrap();
        let loads = import(&loads_path, None, None).unwrap();
        assert_eq!(loads.expert_loads(), trace.expert_loads());
        // Layer 5's busiest expert, computed from the raw file: 11000 of 40800 tokens on expert 19.
        assert_eq!(loads.expert_loads().layer(5)[19], 11000.0);
    }
}
