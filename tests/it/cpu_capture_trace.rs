//! The committed CPU capture (issue 22): `traces/cpu-olmoe-small.parquet`, a small OLMoE-style
//! model trained and captured on CPU by `scripts/cpu_capture.sh train`. Its provenance says what
//! it is, its statistics are the ones reported in traces/README.md, and it runs through placement
//! and simulation as a scenario's routing source.

use crate::common;

use std::path::{Path, PathBuf};

use common::{moesim, stderr, stdout};
use moesim::trace::parquet::{TraceKind, read_header};
use serde_json::Value;

fn committed(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("traces")
        .join(file)
}

fn json(file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(committed(file)).unwrap()).unwrap()
}

fn close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() < 5e-4,
        "{what}: {actual} != {expected}"
    );
}

#[test]
fn the_trace_header_names_its_cpu_capture() {
    let header = read_header(&committed("cpu-olmoe-small.parquet")).unwrap();
    assert_eq!(header.kind, TraceKind::Tokens);
    assert_eq!(
        (header.num_experts, header.num_layers, header.num_tokens),
        (16, 4, 4096)
    );
    assert!(
        header
            .source
            .starts_with("moesim capture (cpu twin): softmax top-4 of 16, not renormalized"),
        "{}",
        header.source
    );
}

#[test]
fn the_provenance_records_a_visibly_trained_model_captured_on_cpu() {
    let provenance = std::fs::read_to_string(committed("cpu-olmoe-small.provenance.md")).unwrap();
    let lower = provenance.to_lowercase();
    assert!(
        lower.contains("trained and captured on cpu with the gating kernel's cpu twin"),
        "{provenance}"
    );
    for needle in [
        "4 MoE layers, 16 experts, top-4",
        "torch 2.15.0",
        "transformers 5.25.0",
        "2026-12-06",
        "| unigram baseline (training byte frequencies) | 3.0536 |",
        "| trained, routed by moesim's kernel (CPU twin) | 2.2649 |",
    ] {
        assert!(provenance.contains(needle), "{needle:?} in {provenance}");
    }

    let summary = json("cpu-olmoe-small.train_summary.json");
    assert_eq!(summary["device"], "cpu");
    assert_eq!(summary["capture_engine"], "gating kernel's CPU twin");
    assert_eq!(summary["captured_tokens"], 4096);
    assert_eq!(summary["config"]["num_experts"], 16);
    assert_eq!(summary["config"]["num_experts_per_tok"], 4);
    assert_eq!(summary["config"]["num_hidden_layers"], 4);
    assert!(summary["train_seconds"].as_f64().unwrap() >= 600.0);
    let unigram = summary["unigram_held_out_loss"].as_f64().unwrap();
    let held_out = summary["held_out_loss_moesim_routing"].as_f64().unwrap();
    // Visibly trained: 0.79 nats per byte (26 %) under the unigram baseline.
    assert!(held_out < unigram - 0.5, "{held_out} vs unigram {unigram}");
    // Routing through moesim's kernel (CPU twin) changes nothing the loss can see.
    assert_eq!(
        summary["held_out_loss_hf_routing"],
        summary["held_out_loss_moesim_routing"]
    );
}

#[test]
fn the_trace_validates_and_its_stats_are_the_reported_ones() {
    let trace = committed("cpu-olmoe-small.parquet");
    let validate = moesim(&[
        "trace",
        "validate",
        trace.to_str().unwrap(),
        "--model",
        committed("cpu-olmoe-small.config.json").to_str().unwrap(),
    ]);
    assert!(validate.status.success(), "{}", stderr(&validate));

    let stats = moesim::analysis::file_stats(&trace).unwrap();
    assert_eq!((stats.num_tokens, stats.top_k), (Some(4096), Some(4)));
    assert_eq!(stats.out_of_range_entries, 0);
    // Per layer: expert max/mean load, dead experts, favourite-successor share (inter-layer
    // affinity), LRU hits of a 4-expert cache (temporal locality): traces/README.md's table.
    let max_mean = [2.3164, 2.5244, 3.3203, 2.2188];
    let dead = [0, 0, 2, 0];
    let affinity = [Some(0.1962), Some(0.2136), Some(0.1566), None];
    let lru4_hits = [8152, 8418, 10715, 8043];
    for (l, layer) in stats.layers.iter().enumerate() {
        assert_eq!(layer.entries, 16384.0);
        close(layer.max_mean, max_mean[l], &format!("layer {l} max/mean"));
        assert_eq!(layer.dead_experts, dead[l], "layer {l} dead experts");
        match (layer.affinity_top1, affinity[l]) {
            (Some(a), Some(b)) => close(a, b, &format!("layer {l} affinity")),
            (a, b) => assert_eq!(a.is_some(), b.is_some(), "layer {l} affinity"),
        }
        let lru4 = &layer.lru_hit_rates[0];
        assert_eq!((lru4.capacity, lru4.hits), (4, lru4_hits[l]), "layer {l}");
        // Real routing, not chance: a uniform router of this shape gets about 1/16 affinity
        // and 4/16 LRU hits (traces/README.md: 0.069 and 0.25).
        assert!(lru4.hit_rate > 0.45, "layer {l} LRU@4 {}", lru4.hit_rate);
        if let Some(a) = layer.affinity_top1 {
            assert!(a > 0.15, "layer {l} affinity {a}");
        }
    }

    // `moesim capture` counted the same per-expert loads it wrote.
    let capture = json("cpu-olmoe-small.capture.json");
    assert_eq!(capture["engine"], "cpu twin");
    assert_eq!(capture["lost_records"], 0);
    for (l, counts) in capture["expert_counts"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let counts: Vec<f64> = counts
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_f64().unwrap())
            .collect();
        let total: f64 = counts.iter().sum();
        let max = counts.iter().cloned().fold(0.0, f64::max);
        assert_eq!(total, 16384.0);
        close(
            max / (total / 16.0),
            stats.layers[l].max_mean,
            "capture.json",
        );
    }
}

#[test]
fn the_trace_is_a_routing_source_for_placement_and_simulation() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/cpu-olmoe-small.toml");
    let out = moesim(&["simulate", scenario.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(result["gpus"], 4);
    assert_eq!(result["steps"], 4);
    let runs = result["strategies"].as_array().unwrap();
    assert_eq!(runs.len(), 3 * 4, "3 placements x 4 overlap strategies");
    assert!(runs.iter().all(|r| r["step_ns"].as_u64().unwrap() > 0));

    // Placement sees the trace's skew: EPLB balances the GPUs that contiguous leaves uneven.
    let dir = tempfile::tempdir().unwrap();
    let trace = committed("cpu-olmoe-small.parquet");
    let mut imbalance = Vec::new();
    for strategy in ["contiguous", "eplb"] {
        let placement = dir.path().join(format!("{strategy}.json"));
        let place = moesim(&[
            "place",
            "--trace",
            trace.to_str().unwrap(),
            "--strategy",
            strategy,
            "--gpus",
            "4",
            "-o",
            placement.to_str().unwrap(),
        ]);
        assert!(place.status.success(), "{}", stderr(&place));
        let eval = moesim(&[
            "place",
            "eval",
            "--placement",
            placement.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            "--json",
        ]);
        assert!(eval.status.success(), "{}", stderr(&eval));
        imbalance.push(stdout(&eval));
    }
    let mean_max_mean = |text: &str| -> f64 {
        let value: Value = serde_json::from_str(text).unwrap();
        value["mean_max_mean"]
            .as_f64()
            .unwrap_or_else(|| panic!("{text}"))
    };
    let (contiguous, eplb) = (mean_max_mean(&imbalance[0]), mean_max_mean(&imbalance[1]));
    assert!(eplb < contiguous, "eplb {eplb} vs contiguous {contiguous}");
}
