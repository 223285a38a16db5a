//! Writing a trace in another format, for `moesim trace convert`.

use std::fmt;
use std::path::Path;

use super::{csv, npy, sglang};
use crate::error::{Error, Result};
use crate::trace::{RoutingTrace, Trace, parquet};

/// Formats a trace can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The canonical moesim Parquet format (keeps everything).
    Parquet,
    /// `layer,token,expert[,weight]` rows, or `layer,expert,load` for loads (no metadata).
    Csv,
    /// vLLM's int16 `[tokens, layers, k]` layout, k the widest token, -1 in unused slots
    /// (token-level traces only; weights and metadata are dropped).
    Npy,
    /// SGLang's `{"logical_count": [layers][experts]}` (token-level traces are reduced to loads).
    Sglang,
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Parquet => "parquet",
            ExportFormat::Csv => "csv",
            ExportFormat::Npy => "npy",
            ExportFormat::Sglang => "sglang",
        })
    }
}

impl ExportFormat {
    /// The format a file name's extension implies: `.parquet`, `.csv`, `.npy`, or `.json`
    /// (SGLang's dump); `None` for anything else.
    pub fn from_extension(path: &Path) -> Option<ExportFormat> {
        match path.extension()?.to_str()? {
            "parquet" => Some(ExportFormat::Parquet),
            "csv" => Some(ExportFormat::Csv),
            "npy" => Some(ExportFormat::Npy),
            "json" => Some(ExportFormat::Sglang),
            _ => None,
        }
    }
}

/// Writes `trace` to `path` in `format`, atomically. `source` is the provenance recorded by
/// formats that carry one (Parquet).
pub fn export(trace: &Trace, path: &Path, format: ExportFormat, source: &str) -> Result<()> {
    match format {
        ExportFormat::Parquet => parquet::write_trace(path, trace, source),
        ExportFormat::Csv => csv::write(path, trace),
        ExportFormat::Npy => match trace {
            Trace::Tokens(routing) => write_npy(path, routing),
            Trace::Loads(_) => Err(Error::invalid(
                "npy export needs token-level routing; this trace holds aggregate loads only",
            )),
        },
        ExportFormat::Sglang => sglang::write(path, &trace.expert_loads()),
    }
}

/// Writes `routing` in vLLM's `[tokens, layers, k]` int16 layout.
fn write_npy(path: &Path, routing: &RoutingTrace) -> Result<()> {
    let (tokens, layers) = (routing.num_tokens(), routing.num_layers());
    if layers == 0 {
        return Err(Error::invalid("npy export needs at least one MoE layer"));
    }
    let k = routing.max_k().max(1);
    let mut ids = vec![-1i16; tokens * layers * k];
    for (layer, routes) in routing.layers().iter().enumerate() {
        for token in 0..tokens {
            let start = (token * layers + layer) * k;
            for (slot, &expert) in ids[start..].iter_mut().zip(routes.experts_of(token)) {
                *slot = i16::try_from(expert).map_err(|_| {
                    Error::invalid(format!(
                        "token {token}, layer {layer}: expert id {expert} does not fit vLLM's \
                         int16 layout"
                    ))
                })?;
            }
        }
    }
    npy::write_int16(path, [tokens, layers, k], &ids)
}
