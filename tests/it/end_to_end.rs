//! The binary end to end, as a user runs it: import real traces, summarise them, synthesise,
//! run the quickstart scenario and check its report.

use crate::common;

use common::{moesim, moesim_in, shared_data, stderr, stdout};
use serde_json::Value;

/// Per-layer expert max/mean load of switch-base-32 on bookcorpus (40,800 tokens), computed
/// independently with numpy: `c = bincount(a[:, l], minlength=32); c.max() / c.mean()`.
const SWITCH32_MAX_MEAN: [f64; 6] = [3.829020, 4.595294, 4.312941, 3.519216, 4.905882, 8.627451];

#[test]
fn real_switch_trace_imports_and_its_stats_match_numpy() {
    let Some(npy) = shared_data("switch-top1/switch-base-32.trace.npy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("switch32.parquet");
    let import = moesim(&[
        "trace",
        "import",
        npy.to_str().unwrap(),
        "-o",
        parquet.to_str().unwrap(),
        "--num-experts",
        "32",
    ]);
    assert!(import.status.success(), "{}", stderr(&import));

    let stats = moesim(&["trace", "stats", parquet.to_str().unwrap(), "--json"]);
    assert!(stats.status.success(), "{}", stderr(&stats));
    let json: Value = serde_json::from_str(&stdout(&stats)).unwrap();
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 6);
    for (layer, expected) in layers.iter().zip(SWITCH32_MAX_MEAN) {
        assert_eq!(layer["tokens"], 40800);
        let max_mean = layer["max_mean"].as_f64().unwrap();
        assert!(
            (max_mean - expected).abs() < 1e-5,
            "{max_mean} vs {expected}"
        );
        for field in ["layer", "cv", "gini", "entropy"] {
            assert!(layer.get(field).is_some(), "missing {field}");
        }
    }
}

#[test]
fn sglang_loads_import_as_aggregate_trace() {
    let Some(json) = shared_data("deepseek-v3-expert-load/prefill_in1024.json") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("loads.parquet");
    let import = moesim(&[
        "trace",
        "import",
        json.to_str().unwrap(),
        "-o",
        parquet.to_str().unwrap(),
    ]);
    assert!(import.status.success(), "{}", stderr(&import));
    let stats = moesim(&["trace", "stats", parquet.to_str().unwrap(), "--json"]);
    let json: Value = serde_json::from_str(&stdout(&stats)).unwrap();
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 61);
    // DeepSeek-V3's first three layers are dense: no routed load.
    assert_eq!(layers[0]["entries"].as_f64().unwrap(), 0.0);
    let max_mean = layers[3]["max_mean"].as_f64().unwrap();
    assert!(max_mean > 2.0 && max_mean < 14.0, "{max_mean}");
}

#[test]
fn synth_is_deterministic_per_seed() {
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str, seed: &str| {
        let out = dir.path().join(name);
        let run = moesim(&[
            "trace",
            "synth",
            "--experts",
            "16",
            "--layers",
            "3",
            "--top-k",
            "2",
            "--tokens",
            "2000",
            "--zipf",
            "1.0",
            "--seed",
            seed,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{}", stderr(&run));
        std::fs::read(out).unwrap()
    };
    assert_eq!(make("a.parquet", "5"), make("b.parquet", "5"));
    assert_ne!(make("c.parquet", "5"), make("d.parquet", "6"));
}

#[test]
fn quickstart_writes_a_complete_deterministic_report() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let run = |out: &str| {
        let out = dir.path().join(out);
        let output = moesim_in(
            std::path::Path::new(root),
            &[
                "run",
                "scenarios/quickstart.toml",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(output.status.success(), "{}", stderr(&output));
        out
    };
    let first = run("a");
    for file in [
        "summary.json",
        "report.md",
        "index.html",
        "imbalance.png",
        "imbalance.svg",
        "gpu_load_heatmap.png",
        "gpu_load_heatmap.svg",
        "sim_step_breakdown.png",
        "sim_step_breakdown.svg",
        "sim_link_heatmap.png",
        "sim_link_heatmap.svg",
        "sim_timeline.png",
        "sim_timeline.svg",
    ] {
        assert!(first.join(file).is_file(), "missing {file}");
    }
    let second = run("b");
    let summary = std::fs::read(first.join("summary.json")).unwrap();
    assert_eq!(summary, std::fs::read(second.join("summary.json")).unwrap());
    let json: Value = serde_json::from_slice(&summary).unwrap();
    let strategies = json["strategies"].as_array().unwrap();
    let names: Vec<&str> = strategies
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["contiguous", "round-robin", "eplb", "ilp-balance"]);
    for s in strategies {
        assert_eq!(s["layers"].as_array().unwrap().len(), 16);
        assert!(s["step_ns"].as_u64().unwrap() > 0);
    }
    // The simulated part is exactly what `moesim simulate --json` prints for the scenario.
    let simulate = moesim_in(
        std::path::Path::new(root),
        &["simulate", "scenarios/quickstart.toml", "--json"],
    );
    assert!(simulate.status.success(), "{}", stderr(&simulate));
    let printed: Value = serde_json::from_slice(&simulate.stdout).unwrap();
    assert_eq!(json["simulated"], printed);
    // 4096 tokens in 2 steps of 2048; one DGX node: every byte stays inside it.
    let sim = &json["simulated"];
    assert_eq!(sim["steps"], 2);
    for s in sim["strategies"].as_array().unwrap() {
        assert_eq!(s["inter_node_bytes"], 0);
        let steps = s["steps"].as_array().unwrap();
        let times: Vec<u64> = steps
            .iter()
            .map(|t| t["step_ns"].as_u64().unwrap())
            .collect();
        assert_eq!(s["total_ns"].as_u64().unwrap(), times[0] + times[1]);
        // 8 GPUs, each link to and from the NVSwitch: 16 links carried bytes.
        assert_eq!(s["links"].as_array().unwrap().len(), 16);
    }
    let report = std::fs::read_to_string(first.join("report.md")).unwrap();
    // The verdict comes first: the fastest (placement, overlap) pair of the simulation.
    let fastest = sim["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .min_by_key(|s| s["step_ns"].as_u64().unwrap())
        .unwrap();
    let verdict = format!(
        "**Shortest simulated step: placement {}, overlap `{}`, {:.3} ms (mean of 2 step(s));",
        fastest["placement"].as_str().unwrap(),
        fastest["strategy"].as_str().unwrap(),
        fastest["step_ns"].as_u64().unwrap() as f64 / 1e6
    );
    let first_sentence = report.lines().nth(2).unwrap_or_default();
    assert!(first_sentence.starts_with(&verdict), "{report}");
    assert!(report.contains("## Simulated steps"), "{report}");
    assert!(report.contains("| eplb | dual-batch |"), "{report}");
}

#[test]
fn quickstart_trace_is_what_its_provenance_command_makes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("quickstart.parquet");
    let run = moesim(&[
        "trace",
        "synth",
        "--experts",
        "64",
        "--layers",
        "16",
        "--top-k",
        "8",
        "--tokens",
        "4096",
        "--zipf",
        "0.5",
        "--affinity",
        "0.5",
        "--seed",
        "7",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let committed = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/traces/quickstart.parquet"
    ))
    .unwrap();
    assert_eq!(std::fs::read(out).unwrap(), committed);
}
