//! Engine interop (issue 15): the SGLang expert-location file passes the checks SGLang's loader
//! runs, vLLM's routed-experts capture and SGLang's recorder dumps import correctly.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{assert_fails_with, moesim, moesim_in, shared_data, stderr, stdout};
use moesim::trace::importers::{self, ImportFormat};
use moesim::trace::parquet::read_trace;
use serde_json::Value;

/// A DeepSeek-V3-shaped HF config with `layers` decoder layers (the first `dense` dense),
/// `experts` routed experts in one group and top-`top_k`, written into `dir`.
fn small_deepseek(
    dir: &Path,
    layers: usize,
    dense: usize,
    experts: usize,
    top_k: usize,
) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = fs::read_to_string(root.join("tests/fixtures/hf/deepseek-v3.json")).unwrap();
    let small = config
        .replace(
            "\"first_k_dense_replace\": 3",
            &format!("\"first_k_dense_replace\": {dense}"),
        )
        .replace(
            "\"num_hidden_layers\": 61",
            &format!("\"num_hidden_layers\": {layers}"),
        )
        .replace(
            "\"n_routed_experts\": 256",
            &format!("\"n_routed_experts\": {experts}"),
        )
        .replace("\"n_group\": 8", "\"n_group\": 1")
        .replace("\"topk_group\": 4", "\"topk_group\": 1")
        .replace(
            "\"num_experts_per_tok\": 8",
            &format!("\"num_experts_per_tok\": {top_k}"),
        );
    let path = dir.join("config.json");
    fs::write(&path, small).unwrap();
    path
}

/// The checks SGLang runs on `--init-expert-location FILE` at start-up, in
/// python/sglang/srt/eplb/expert_location.py, for a model of `num_layers` decoder layers and
/// `num_logical` routed experts served with `--ep-size ep_size` and
/// `--ep-num-redundant-experts redundant`:
/// - `compute_initial_expert_location_metadata`: a FILE whose name does not end in `.json` (or
///   `.pt`) is parsed as a JSON literal itself; a dict holding `physical_to_logical_map` is passed
///   as `**data_dict` to
/// - `ExpertLocationMetadata.init_by_mapping(server_args, model_config, physical_to_logical_map)`,
///   so any other key is a `TypeError`; `torch.tensor` needs a rectangular integer matrix;
/// - `ExpertLocationMetadata._init_common`: physical experts = logical + redundant, a multiple of
///   the EP size; the rows are the model's layers (`ModelConfigForExpertLocation.num_layers`, the
///   decoder's `num_hidden_layers` for DeepSeek), indexed by absolute layer id;
/// - `_compute_logical_to_all_physical_map`: every value indexes a logical expert;
/// - `compute_logical_to_rank_dispatch_physical_map` (`_fair_choices` divides by the replica
///   count): every logical expert has a physical slot in every layer.
fn sglang_accepts(
    path: &Path,
    num_layers: usize,
    num_logical: usize,
    ep_size: usize,
    redundant: usize,
) -> Result<(), String> {
    if path.extension().is_none_or(|e| e != "json") {
        return Err("not read as a file: the name does not end in .json".into());
    }
    let data: Value = serde_json::from_str(&fs::read_to_string(path).unwrap())
        .map_err(|e| format!("json.loads: {e}"))?;
    let keys: Vec<&String> = data.as_object().ok_or("not a dict")?.keys().collect();
    if keys != ["physical_to_logical_map"] {
        return Err(format!(
            "init_by_mapping(**{keys:?}): unexpected keyword arguments"
        ));
    }
    let rows = data["physical_to_logical_map"]
        .as_array()
        .ok_or("torch.tensor: not a matrix")?;
    let num_physical = num_logical + redundant;
    if !num_physical.is_multiple_of(ep_size) {
        return Err(format!(
            "_init_common: {num_physical} % ep_size {ep_size} != 0"
        ));
    }
    if rows.len() != num_layers {
        return Err(format!(
            "{} rows for a model of {num_layers} layers",
            rows.len()
        ));
    }
    for (layer, row) in rows.iter().enumerate() {
        let row: Vec<i64> = row
            .as_array()
            .ok_or(format!("row {layer}: not a list"))?
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or(format!("row {layer}: {v} is not an integer"))
            })
            .collect::<Result<_, _>>()?;
        if row.len() != num_physical {
            return Err(format!(
                "row {layer}: {} physical experts, not {num_physical}",
                row.len()
            ));
        }
        let mut replicas = vec![0usize; num_logical];
        for &logical in &row {
            let slot = usize::try_from(logical)
                .ok()
                .filter(|&l| l < num_logical)
                .ok_or(format!(
                    "row {layer}: logical expert {logical} out of range"
                ))?;
            replicas[slot] += 1;
        }
        if let Some(missing) = replicas.iter().position(|&r| r == 0) {
            return Err(format!(
                "row {layer}: logical expert {missing} has no physical slot"
            ));
        }
    }
    Ok(())
}

/// Runs `moesim place` with EPLB and the SGLang layout; asserts it succeeds.
fn place_sglang(trace: &Path, model: &str, gpus: usize, slots: usize, out: &Path) {
    let (gpus, slots) = (gpus.to_string(), slots.to_string());
    let output = moesim(&[
        "place",
        "--trace",
        trace.to_str().unwrap(),
        "--strategy",
        "eplb",
        "--gpus",
        &gpus,
        "--slots",
        &slots,
        "--model",
        model,
        "--format",
        "sglang",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn sglang_file_of_a_small_model_passes_sglangs_checks() {
    let dir = tempfile::tempdir().unwrap();
    // 6 decoder layers (2 dense) x 8 experts; the dump has only the 4 MoE layers.
    let model = small_deepseek(dir.path(), 6, 2, 8, 2);
    let dump = dir.path().join("loads.json");
    let rows: Vec<Vec<u32>> = (0..4u32)
        .map(|l| (0..8u32).map(|e| (e * 7 + l * 3) % 11 + 1).collect())
        .collect();
    fs::write(
        &dump,
        serde_json::json!({ "logical_count": rows }).to_string(),
    )
    .unwrap();
    let out = dir.path().join("location.json");
    place_sglang(&dump, model.to_str().unwrap(), 4, 12, &out);
    assert_eq!(sglang_accepts(&out, 6, 8, 4, 4), Ok(()));
    let map: Value = serde_json::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
    // Dense layers get SGLang's trivial row: physical slot p holds logical expert p % 8.
    let trivial: Vec<i64> = (0..12).map(|p| p % 8).collect();
    assert_eq!(
        map["physical_to_logical_map"][0],
        serde_json::json!(trivial)
    );
    assert_eq!(
        map["physical_to_logical_map"][1],
        serde_json::json!(trivial)
    );
    assert_ne!(
        map["physical_to_logical_map"][2],
        serde_json::json!(trivial)
    );
}

#[test]
fn sglang_file_of_deepseek_v3_passes_sglangs_checks() {
    let Some(dump) = shared_data("deepseek-v3-expert-load/prefill_in1024.json") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // DeepSeek's prefill deployment: EP32, 288 slots (32 redundant experts).
    let out = dir.path().join("location.json");
    place_sglang(&dump, "deepseek-v3", 32, 288, &out);
    assert_eq!(sglang_accepts(&out, 61, 256, 32, 32), Ok(()));
    // The same file under a wrong launch (EP size 32 with 64 redundant experts) is refused.
    assert!(sglang_accepts(&out, 61, 256, 32, 64).is_err());
}

#[test]
fn the_loader_mirror_refuses_what_sglang_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        path
    };
    let good = write(
        "good.json",
        r#"{"physical_to_logical_map":[[0,1,1,0],[1,0,0,1]]}"#,
    );
    assert_eq!(sglang_accepts(&good, 2, 2, 2, 2), Ok(()));
    let cases = [
        // moesim's old output: extra keys.
        (
            write(
                "extra.json",
                r#"{"physical_to_logical_map":[[0,1],[1,0]],"logical_count":[[1,1],[1,1]]}"#,
            ),
            "unexpected keyword",
        ),
        // One row per MoE layer only: layers shift.
        (
            write("short.json", r#"{"physical_to_logical_map":[[0,1,1,0]]}"#),
            "1 rows",
        ),
        (
            write(
                "gap.json",
                r#"{"physical_to_logical_map":[[0,0,0,0],[1,0,0,1]]}"#,
            ),
            "no physical slot",
        ),
        (
            write(
                "range.json",
                r#"{"physical_to_logical_map":[[0,1,2,0],[1,0,0,1]]}"#,
            ),
            "out of range",
        ),
        (
            write(
                "name.txt",
                r#"{"physical_to_logical_map":[[0,1,1,0],[1,0,0,1]]}"#,
            ),
            ".json",
        ),
    ];
    for (path, needle) in cases {
        let error = sglang_accepts(&path, 2, 2, 2, 2).unwrap_err();
        assert!(error.contains(needle), "{}: {error}", path.display());
    }
}

#[test]
fn sglang_layout_without_a_model_is_refused_before_solving() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("loads.json");
    fs::write(&dump, r#"{"logical_count":[[3,1,2,2]]}"#).unwrap();
    let args = [
        "place",
        "--trace",
        "loads.json",
        "--strategy",
        "eplb",
        "--gpus",
        "2",
        "--format",
        "sglang",
        "-o",
        "m.json",
    ];
    assert_fails_with(
        &moesim_in(dir.path(), &args),
        &["--format sglang needs --model"],
    );
    assert!(!dir.path().join("m.json").exists());
}

#[test]
fn sglang_recorder_steps_import_summed() {
    let dir = tempfile::tempdir().unwrap();
    // [buffer_steps = 2][layers = 2][experts = 3], as the recorder's `logical_count`.
    let steps = dir.path().join("steps.json");
    fs::write(
        &steps,
        r#"{"rank":0,"logical_count":[[[1,0,2],[5,0,0]],[[3,1,0],[4,0,1]]]}"#,
    )
    .unwrap();
    let summed = dir.path().join("summed.json");
    fs::write(&summed, r#"{"logical_count":[[4,1,2],[9,0,1]]}"#).unwrap();
    let loads = importers::import(&steps, None, Some(3))
        .unwrap()
        .expert_loads();
    assert_eq!(loads.layer(0), &[4.0, 1.0, 2.0]);
    assert_eq!(loads.layer(1), &[9.0, 0.0, 1.0]);
    let stats = |path: &Path| {
        stdout(&moesim(&[
            "trace",
            "stats",
            "--json",
            path.to_str().unwrap(),
        ]))
    };
    assert_eq!(stats(&steps), stats(&summed));
    assert!(stats(&steps).contains("\"num_layers\":2"));
}

#[test]
fn the_recorder_dump_converter_passes_its_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Ok(output) = std::process::Command::new("python3")
        .arg("python/test_sglang_dump_to_json.py")
        .current_dir(root)
        .output()
    else {
        eprintln!("skipping: python3 not available");
        return;
    };
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(err.contains("Ran 4 tests"), "{err}");
}
/// A vLLM capture of 3 tokens over a 5-layer model whose layers 0 and 1 are dense: int32
/// `[tokens, num_hidden_layers, top_k=2]`, the dense layers' slots left at 0.
fn write_vllm_capture(path: &Path) {
    let mut ids = Vec::new();
    for token in 0..3i64 {
        ids.extend_from_slice(&[0, 0, 0, 0, 1 + token, 5, 2, 0, 3, 1]);
    }
    let body: Vec<u8> = ids.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect();
    fs::write(path, common::npy_bytes("<i4", "(3, 5, 2)", &body)).unwrap();
}

#[test]
fn vllm_capture_drops_its_zero_filled_dense_layers() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.npy");
    write_vllm_capture(&capture);
    for format in [None, Some(ImportFormat::Vllm)] {
        let moesim::trace::Trace::Tokens(trace) =
            importers::import(&capture, format, None).unwrap()
        else {
            panic!("a capture is token-level");
        };
        assert_eq!(trace.num_layers(), 3, "{format:?}");
        assert_eq!(trace.num_experts(), 6);
        assert_eq!(trace.layer(0).experts(), &[1, 5, 2, 5, 3, 5]);
        assert_eq!(trace.layer(1).experts_of(0), &[2, 0]);
        assert_eq!(trace.layer(2).experts_of(2), &[3, 1]);
    }
    // The JSON form: 2 tokens x 2 layers x top-2, layer 0 dense.
    let json = dir.path().join("capture.json");
    fs::write(&json, "[[[0, 0], [1, 2]], [[0, 0], [3, 1]]]").unwrap();
    let trace = importers::import(&json, None, None).unwrap();
    let routing = trace.tokens().unwrap();
    assert_eq!(
        (routing.num_layers(), routing.layer(0).experts()),
        (1, &[1, 2, 3, 1][..])
    );
    // Given the model, its MoE layers are kept by position (and its 8 experts bound the ids).
    let model = small_deepseek(dir.path(), 5, 2, 8, 2);
    let out = dir.path().join("capture.parquet");
    let import = |model: &str| {
        moesim(&[
            "trace",
            "import",
            capture.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--model",
            model,
        ])
    };
    let output = import(model.to_str().unwrap());
    assert!(output.status.success(), "{}", stderr(&output));
    let moesim::trace::Trace::Tokens(trace) = read_trace(&out).unwrap() else {
        panic!("a capture is token-level");
    };
    assert_eq!((trace.num_layers(), trace.num_experts()), (3, 8));
    assert_eq!(trace.layer(0).experts(), &[1, 5, 2, 5, 3, 5]);
    // A model of another depth is named in the error.
    fs::remove_file(&out).unwrap();
    let output = import("deepseek-v3");
    assert_fails_with(
        &output,
        &["capture.npy: has 5 layers but the model has 61 decoder layers (58 MoE)"],
    );
    assert!(!out.exists());
}
