//! `moesim simulate` end to end: JSON shape, determinism, trace files, bad input.

use crate::common;

use std::fs;

use common::{assert_fails_with, moesim, stdout};
use polars::prelude::{ParquetReader, SerReader};

#[test]
fn quickstart_json_has_every_strategy_with_a_consistent_breakdown() {
    let out = moesim(&["simulate", "scenarios/quickstart.toml", "--json"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let strategies = json["strategies"].as_array().unwrap();
    // 4 placements x 4 overlap strategies; 4096 tokens in steps of 8 GPUs x 256 tokens.
    assert_eq!(strategies.len(), 16);
    assert_eq!(json["steps"], 2);
    let names: Vec<&str> = strategies[..4]
        .iter()
        .map(|s| s["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["none", "dual-batch", "chunked", "fine-grained"]);
    for s in strategies {
        let layers = s["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 16);
        let sum: u64 = layers
            .iter()
            .map(|l| {
                [
                    "attention_ns",
                    "dispatch_ns",
                    "expert_ns",
                    "tp_reduce_ns",
                    "combine_ns",
                ]
                .iter()
                .map(|k| l[k].as_u64().unwrap())
                .sum::<u64>()
            })
            .sum();
        assert_eq!(sum, s["total_ns"].as_u64().unwrap());
        let steps: Vec<u64> = s["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| {
                assert_eq!(step["tokens"], 2048);
                step["step_ns"].as_u64().unwrap()
            })
            .collect();
        let (a, b) = (steps[0], steps[1]);
        assert_eq!(a + b, s["total_ns"].as_u64().unwrap());
        assert_eq!(s["step_ns"].as_u64().unwrap(), (a + b).div_ceil(2));
        // Nearest rank of two: the median is the shorter step, the 99th percentile the longer.
        assert_eq!(s["p50_step_ns"].as_u64().unwrap(), a.min(b));
        assert_eq!(s["p99_step_ns"].as_u64().unwrap(), a.max(b));
        assert_eq!(layers[0]["gpus"].as_array().unwrap().len(), 8);
        assert!(layers[0]["gpus"][0]["busy_ns"].as_u64().unwrap() > 0);
    }
}

#[test]
fn two_runs_write_byte_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let run = |tag: &str| {
        let trace = dir.path().join(format!("{tag}.json"));
        let tables = dir.path().join(tag);
        let out = moesim(&[
            "simulate",
            "scenarios/quickstart.toml",
            "--json",
            "--perfetto",
            trace.to_str().unwrap(),
            "--parquet-dir",
            tables.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        (
            out.stdout,
            fs::read(trace).unwrap(),
            fs::read(tables.join("sim_layers.parquet")).unwrap(),
        )
    };
    let (a, b) = (run("a"), run("b"));
    assert_eq!(a, b);
    // One sim_steps row per (placement, strategy, step), with the JSON's step times.
    let steps = ParquetReader::new(fs::File::open(dir.path().join("a/sim_steps.parquet")).unwrap())
        .finish()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&a.0).unwrap();
    let expected: Vec<u64> = json["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["steps"].as_array().unwrap().iter())
        .map(|step| step["step_ns"].as_u64().unwrap())
        .collect();
    assert_eq!(expected.len(), 16 * 2);
    let column: Vec<u64> = steps
        .column("step_ns")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(column, expected);
    let trace: serde_json::Value = serde_json::from_slice(&a.1).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let first_kernel = events.iter().find(|e| e["ph"] == "X").unwrap();
    assert_eq!(first_kernel["name"], "L0 attention");
    assert!(
        events
            .iter()
            .any(|e| e["args"]["name"] == "n0/gpu0->n0/nvswitch")
    );
}

#[test]
fn an_unknown_overlap_strategy_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = quickstart_text() + "\n[sim]\noverlap = [\"none\", \"pipelined\"]\n";
    let path = dir.path().join("bad.toml");
    fs::write(&path, text).unwrap();
    let out = moesim(&["simulate", path.to_str().unwrap()]);
    assert_fails_with(&out, &["bad.toml", "pipelined"]);
}

#[test]
fn a_batch_schedule_drives_prefill_and_decode_steps() {
    let dir = tempfile::tempdir().unwrap();
    let text = quickstart_text().replace(
        "placements = [\"contiguous\", \"round-robin\", \"eplb\", \"ilp-balance\"]",
        "placements = [\"contiguous\"]\nschedule = [{ phase = \"prefill\", tokens_per_gpu = 128 }, \
             { phase = \"decode\", tokens_per_gpu = 16, repeat = 4 }]",
    ) + "\n[sim]\noverlap = [\"none\"]\n";
    let path = dir.path().join("schedule.toml");
    fs::write(&path, text).unwrap();
    let out = moesim(&["simulate", path.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    // 8 GPUs: a cycle is 1024 prefill tokens then 4 x 128 decode tokens (1536 in all); the
    // 4096-token trace takes two cycles and one more prefill step of the last 1024 tokens.
    assert_eq!(json["steps"], 11);
    let steps = json["strategies"][0]["steps"].as_array().unwrap();
    let shape: Vec<(&str, u64)> = steps
        .iter()
        .map(|s| (s["phase"].as_str().unwrap(), s["tokens"].as_u64().unwrap()))
        .collect();
    let cycle = [
        ("prefill", 1024),
        ("decode", 128),
        ("decode", 128),
        ("decode", 128),
        ("decode", 128),
    ];
    let expected: Vec<(&str, u64)> = cycle
        .iter()
        .chain(&cycle)
        .chain(&[("prefill", 1024)])
        .copied()
        .collect();
    assert_eq!(shape, expected);
    // A decode step moves an eighth of a prefill step's tokens and takes less time.
    let time = |i: usize| steps[i]["step_ns"].as_u64().unwrap();
    assert!(time(1) < time(0), "{} vs {}", time(1), time(0));
}

/// The quickstart scenario's text, its trace path made absolute so that it runs from anywhere.
fn quickstart_text() -> String {
    fs::read_to_string("scenarios/quickstart.toml")
        .unwrap()
        .replace(
            "../traces",
            &format!("{}/traces", env!("CARGO_MANIFEST_DIR")),
        )
}
