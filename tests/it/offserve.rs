//! `[offload]` in `moesim simulate` and `moesim serve`: Qwen1.5-MoE-A2.7B on one H100 with its
//! experts in host memory behind PCIe Gen5 x16 (one 64 GB/s link of 400 ns), on a hand-made
//! trace whose one unfitted token misses one expert; hand-computed stalls, and bad input.

use crate::common;

use std::path::{Path, PathBuf};

use common::{assert_fails_with, moesim, stdout};
use moesim::trace::parquet::write_trace;
use moesim::trace::{LayerRouting, RoutingTrace, TokenMeta, Trace};

/// One Qwen1.5-MoE expert: 3 matrices of 2048 x 1408 in bf16.
const EXPERT_BYTES: u64 = 3 * 2048 * 1408 * 2;
/// Its copy alone on the link: 17,301,504 B / 64 B/ns + 400 ns.
const ONE_COPY_NS: u64 = 270_336 + 400;

/// A top-1 trace of Qwen1.5-MoE's 60 experts over its 24 MoE layers, two tokens: token 0
/// (fitted, warming the cache) picks expert 0 everywhere, token 1 too except expert 3 at
/// layer 5.
fn trace(dir: &Path) -> PathBuf {
    let layers = (0..24)
        .map(|l| LayerRouting::fixed_k(1, vec![0, if l == 5 { 3 } else { 0 }], None).unwrap())
        .collect();
    let routing = RoutingTrace::new(60, layers, TokenMeta::default()).unwrap();
    let path = dir.join("miss.parquet");
    write_trace(&path, &Trace::Tokens(routing), "hand-made").unwrap();
    path
}

/// The scenario on `cluster` with `extra` tables appended; steps of one token.
fn scenario(dir: &Path, name: &str, cluster: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "name = \"{name}\"\nmodel = \"qwen1.5-moe-a2.7b\"\ncluster = \"{cluster}\"\ngpus = 1\n\
         tokens_per_gpu = 1\nplacements = [\"contiguous\"]\n[trace]\nfile = \"miss.parquet\"\n\
         [sim]\noverlap = [\"none\"]\n{extra}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// One request of one prompt token and two output tokens.
const SERVE: &str = "[workload]\nseed = 1\nrequests = 1\n[workload.arrival]\nprocess = \"poisson\"\n\
    rate = 1.0\n[workload.input]\ndist = \"fixed\"\ntokens = 1\n[workload.output]\ndist = \"fixed\"\n\
    tokens = 2\n[serving]\n";

fn simulate(path: &Path) -> serde_json::Value {
    let out = moesim(&["simulate", path.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// Step `i`'s simulated time.
fn step_ns(result: &serde_json::Value, i: usize) -> u64 {
    result["strategies"][0]["steps"][i]["step_ns"]
        .as_u64()
        .unwrap()
}

fn serve(path: &Path, out: &Path) -> serde_json::Value {
    let run = moesim(&[
        "serve",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", common::stderr(&run));
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn simulate_adds_one_copy_per_miss_and_nothing_when_every_expert_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    trace(dir.path());
    let plain = simulate(&scenario(dir.path(), "plain", "h100-host", ""));
    let offload = |cache: &str| {
        let table = format!("[offload]\n{cache}\n");
        simulate(&scenario(dir.path(), "offload", "h100-host", &table))
    };
    // Every expert cached: token 1's step (the only one after the fitted token) as without
    // offloading, to the nanosecond.
    let all = offload("cache_experts = 60");
    assert_eq!(all["steps"].as_u64(), Some(1));
    assert_eq!(step_ns(&all, 0), step_ns(&plain, 1));
    let o = &all["offload"];
    assert_eq!(
        (
            o["hit_rate"].as_f64(),
            o["stall_ns"].as_u64(),
            o["pcie_bytes"].as_u64()
        ),
        (Some(1.0), Some(0), Some(0))
    );
    // One expert per layer: expert 3 at layer 5 is copied on demand, alone on the link.
    let one = offload("cache_experts = 1");
    assert_eq!(step_ns(&one, 0), step_ns(&plain, 1) + ONE_COPY_NS);
    let o = &one["offload"];
    assert_eq!(o["stall_ns"].as_u64(), Some(ONE_COPY_NS));
    assert_eq!(o["pcie_bytes"].as_u64(), Some(EXPERT_BYTES));
    assert_eq!(o["hit_rate"].as_f64(), Some(23.0 / 24.0));
    assert_eq!(o["copy_ns"].as_u64(), Some(ONE_COPY_NS));
    let share = ONE_COPY_NS as f64 / step_ns(&one, 0) as f64;
    assert!((o["stall_share"].as_f64().unwrap() - share).abs() < 1e-12);
    // The text output says so.
    let text = moesim(&[
        "simulate",
        dir.path().join("offload.toml").to_str().unwrap(),
    ]);
    assert!(
        stdout(&text).contains("offload on-demand (1 experts cached per layer"),
        "{}",
        stdout(&text)
    );
}

#[test]
fn serve_adds_the_stall_to_the_first_token_and_not_to_a_cached_decode() {
    let dir = tempfile::tempdir().unwrap();
    trace(dir.path());
    let plain = serve(
        &scenario(dir.path(), "plain", "h100-host", SERVE),
        &dir.path().join("plain"),
    );
    let with = |cache: &str, out: &str| {
        let tables = format!("{SERVE}[offload]\n{cache}\n");
        serve(
            &scenario(dir.path(), out, "h100-host", &tables),
            &dir.path().join(out),
        )
    };
    let latency = |s: &serde_json::Value, key: &str| s["summary"][key]["p50"].as_f64().unwrap();
    // Every expert cached: the same TTFT and TPOT.
    let all = with("cache_experts = 60", "all");
    for key in ["ttft", "tpot"] {
        assert_eq!(latency(&all, key), latency(&plain, key), "{key}");
    }
    assert_eq!(all["pools"][0]["offload"]["hit_rate"].as_f64(), Some(1.0));
    // One expert per layer: the prefill of token 1 waits for expert 3's copy at layer 5; the
    // decode step walks token 1 again and finds it cached.
    let one = with("cache_experts = 1", "one");
    let ttft = latency(&one, "ttft") - latency(&plain, "ttft");
    assert!((ttft - ONE_COPY_NS as f64 * 1e-9).abs() < 1e-12, "{ttft}");
    assert_eq!(latency(&one, "tpot"), latency(&plain, "tpot"));
    let o = &one["pools"][0]["offload"];
    assert_eq!(o["stall_ns"].as_u64(), Some(ONE_COPY_NS));
    assert_eq!(o["pcie_bytes"].as_u64(), Some(EXPERT_BYTES));
    assert_eq!(o["hit_rate"].as_f64(), Some(47.0 / 48.0));
    // The plain run's summary has no offload entry.
    assert!(plain["pools"][0].get("offload").is_none());
}

#[test]
fn bad_offload_tables_name_the_field_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    trace(dir.path());
    for (cluster, table, needles) in [
        (
            "h100-host",
            "cache_experts = 61",
            &["`offload.cache_experts` = 61", "60 experts"][..],
        ),
        (
            "h100-host",
            "cache_experts = 0",
            &["`offload.cache_experts` = 0"][..],
        ),
        (
            "h100-host",
            "memory_gib = 1",
            &["`offload.memory_gib`", "holds 0 experts"][..],
        ),
        (
            "h100-host",
            "cache_experts = 2\nevict = \"lru\"",
            &["unknown field `evict`"][..],
        ),
        (
            "h100-host",
            "cache_experts = 2\neviction = \"fifo\"",
            &["`offload.eviction`"][..],
        ),
        (
            "h100-host",
            "cache_experts = 2\nprefetch = \"yes\"",
            &["`offload.prefetch`"][..],
        ),
    ] {
        let tables = format!("{SERVE}[offload]\n{table}\n");
        let path = scenario(dir.path(), "bad", cluster, &tables);
        let out = dir.path().join("out");
        let file = path.to_str().unwrap();
        for args in [
            vec!["simulate", file],
            vec!["serve", file, "--out", out.to_str().unwrap()],
        ] {
            let run = moesim(&args);
            assert_fails_with(&run, needles);
            assert!(common::stderr(&run).contains("bad.toml"), "{table}");
            assert!(!out.exists(), "{table}: {args:?} wrote {}", out.display());
        }
    }
    // More GPUs than one.
    let tables = format!("{SERVE}[offload]\ncache_experts = 2\n");
    let path = scenario(dir.path(), "two", "dgx-h100", &tables);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("gpus = 1", "gpus = 2");
    std::fs::write(&path, text).unwrap();
    let run = moesim(&["simulate", path.to_str().unwrap()]);
    assert_fails_with(&run, &["`offload` models one GPU", "has 2 GPUs"]);
}
