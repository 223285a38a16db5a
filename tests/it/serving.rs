//! `moesim serve` end to end: the files it writes and what they hold, byte-identical reruns,
//! the request list it can write for another simulator, the cached tier against full
//! simulation, disaggregated pools, `moesim run` with a `[serving]` table, and bad input.

use crate::common;

use std::path::{Path, PathBuf};

use common::{assert_fails_with, moesim, stdout};

/// OLMoE on 2 H100s (DP2 + EP2) on a small synthetic trace, serving `workload` with `serving`
/// (TOML tables' bodies appended after their headers).
fn scenario(dir: &Path, workload: &str, serving: &str) -> PathBuf {
    let path = dir.join("serve.toml");
    let text = format!(
        "name = \"serve-test\"\nseed = 4\nmodel = \"olmoe-1b-7b\"\ncluster = \"dgx-h100\"\ngpus = 2\n\
         tokens_per_gpu = 64\nplacements = [\"contiguous\"]\n\
         [trace.synth]\nnum_experts = 64\nnum_layers = 16\ntop_k = 8\nnum_tokens = 4096\n\
         [sim]\noverlap = [\"none\"]\nall_to_all = \"low-latency\"\n\
         [workload]\n{workload}\n[serving]\n{serving}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

const POISSON: &str = "seed = 2\nrequests = 300\n[workload.arrival]\nprocess = \"poisson\"\nrate = 30.0\n\
    [workload.input]\ndist = \"uniform\"\nlow = 64\nhigh = 512\n[workload.output]\ndist = \"uniform\"\nlow = 8\nhigh = 128";

const SERVING: &str = "price_per_gpu_hour = 3.0\n[serving.slo]\nttft_ms = 200\ntpot_ms = 30";

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

fn serve(scenario: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let out_arg = out.to_str().unwrap();
    let args = [
        &["serve", scenario.to_str().unwrap(), "--out", out_arg][..],
        extra,
    ]
    .concat();
    let output = moesim(&args);
    assert!(output.status.success(), "{}", common::stderr(&output));
    summary(out)
}

#[test]
fn serve_writes_every_table_and_chart_and_reruns_byte_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), POISSON, SERVING);
    let first = serve(&path, &dir.path().join("a"), &[]);
    let s = &first["summary"];
    assert_eq!(
        (s["requests"].as_u64(), s["finished"].as_u64()),
        (Some(300), Some(300))
    );
    // Every latency percentile is ordered, and TPOT sits below TTFT's p99 here (short steps).
    for latency in ["ttft", "tpot", "e2e"] {
        let l = &s[latency];
        let (p50, p90, p99) = (
            l["p50"].as_f64().unwrap(),
            l["p90"].as_f64().unwrap(),
            l["p99"].as_f64().unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p90 && p90 <= p99, "{latency}: {l}");
    }
    // Cost: GPU-hours x price per million output tokens.
    let output_tokens =
        s["output_tokens_per_s"].as_f64().unwrap() * s["duration_s"].as_f64().unwrap();
    let expected = s["gpu_hours"].as_f64().unwrap() * 3.0 * 1e6 / output_tokens;
    assert!(
        (s["cost_per_million_output_tokens"].as_f64().unwrap() - expected).abs() < 1e-9 * expected
    );
    for file in [
        "requests.parquet",
        "seconds.parquet",
        "report.md",
        "latency_ttft.png",
        "latency_tpot.png",
        "latency_e2e.png",
        "throughput.png",
        "queue.png",
        "slo_attainment.png",
    ] {
        assert!(dir.path().join("a").join(file).is_file(), "{file}");
    }
    let report = std::fs::read_to_string(dir.path().join("a/report.md")).unwrap();
    assert!(
        report
            .lines()
            .nth(2)
            .unwrap()
            .starts_with("**Verdict:** 2 GPUs served 300 of 300 requests"),
        "{report}"
    );
    serve(&path, &dir.path().join("b"), &[]);
    for file in [
        "summary.json",
        "requests.parquet",
        "seconds.parquet",
        "report.md",
    ] {
        let a = std::fs::read(dir.path().join("a").join(file)).unwrap();
        let b = std::fs::read(dir.path().join("b").join(file)).unwrap();
        assert!(
            a == b,
            "{file} differs between two runs of the same scenario"
        );
    }
}

#[test]
fn the_requests_table_has_one_row_per_request_with_consistent_latencies() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), POISSON, SERVING);
    serve(&path, &dir.path().join("out"), &[]);
    let file = std::fs::File::open(dir.path().join("out/requests.parquet")).unwrap();
    let frame = ParquetReader::new(file).finish().unwrap();
    assert_eq!(frame.height(), 300);
    let col = |name: &str| -> Vec<f64> {
        frame
            .column(name)
            .unwrap()
            .cast(&DataType::Float64)
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    };
    let (queue, ttft, tpot, e2e, output) = (
        col("queue_s"),
        col("ttft_s"),
        col("tpot_s"),
        col("e2e_s"),
        col("output_tokens"),
    );
    let mut ids = col("id");
    ids.sort_by(f64::total_cmp);
    assert_eq!(ids, (0..300).map(f64::from).collect::<Vec<_>>());
    for i in 0..300 {
        // E2E = TTFT + (output - 1) x TPOT, and the queue comes before the first token.
        let rebuilt = ttft[i] + (output[i] - 1.0) * tpot[i];
        assert!(
            (e2e[i] - rebuilt).abs() < 1e-6,
            "row {i}: {} vs {rebuilt}",
            e2e[i]
        );
        assert!(queue[i] < ttft[i]);
    }
}

#[test]
fn requests_out_replays_the_same_requests_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), POISSON, SERVING);
    let csv = dir.path().join("requests.csv");
    let first = serve(
        &path,
        &dir.path().join("a"),
        &["--requests-out", csv.to_str().unwrap()],
    );
    let replayed = scenario(
        dir.path(),
        "[workload.replay]\nfile = \"requests.csv\"",
        SERVING,
    );
    let second = serve(&replayed, &dir.path().join("b"), &[]);
    // Arrivals written in full precision: the same requests give the same latencies.
    assert_eq!(first["summary"]["e2e"], second["summary"]["e2e"]);
    assert_eq!(first["summary"]["ttft"], second["summary"]["ttft"]);
}

#[test]
fn the_cached_tier_states_its_error_against_full_simulation() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        dir.path(),
        POISSON,
        &format!("error_samples = 8\n{SERVING}"),
    );
    let cached = serve(&path, &dir.path().join("cached"), &[]);
    let error = &cached["cached_error"];
    assert_eq!(error["samples"].as_u64(), Some(8), "{error}");
    assert!(error["mean_abs"].as_f64().unwrap() < 0.05, "{error}");
    let full_path = scenario(
        dir.path(),
        POISSON,
        &format!("fidelity = \"full\"\n{SERVING}"),
    );
    let full = serve(&full_path, &dir.path().join("full"), &[]);
    assert!(full["cached_error"].is_null());
    let steps = full["summary"]["steps"].as_u64().unwrap();
    assert_eq!(full["pools"][0]["steps_simulated"].as_u64(), Some(steps));
    // The two tiers agree on the mean TPOT within the cached tier's error budget.
    let tpot = |v: &serde_json::Value| v["summary"]["tpot"]["mean"].as_f64().unwrap();
    assert!(
        (tpot(&cached) / tpot(&full) - 1.0).abs() < 0.05,
        "{} vs {}",
        tpot(&cached),
        tpot(&full)
    );
}

#[test]
fn routing_by_request_runs_every_step_on_the_requests_own_rows() {
    let dir = tempfile::tempdir().unwrap();
    let workload = POISSON.replace("requests = 300", "requests = 80");
    let by_request = |name: &str| {
        let path = scenario(
            dir.path(),
            &workload,
            &format!("fidelity = \"full\"\nrouting = \"by-request\"\n{SERVING}"),
        );
        let out = dir.path().join(name);
        let summary = serve(&path, &out, &[]);
        (
            summary,
            std::fs::read(out.join("requests.parquet")).unwrap(),
        )
    };
    let (first, first_requests) = by_request("a");
    let (again, again_requests) = by_request("b");
    assert_eq!(first, again);
    assert_eq!(first_requests, again_requests);
    assert_eq!(first["summary"]["finished"].as_u64(), Some(80));
    // The steps route other tokens than the trace in order, so they cost otherwise.
    let in_order = serve(
        &scenario(
            dir.path(),
            POISSON,
            &format!("fidelity = \"full\"\n{SERVING}"),
        ),
        &dir.path().join("c"),
        &[],
    );
    let busy = |v: &serde_json::Value| v["pools"][0]["totals"]["busy_s"].as_f64().unwrap();
    assert_ne!(busy(&first), busy(&in_order));
}

#[test]
fn an_engine_at_half_efficiency_takes_twice_as_long_a_step() {
    let dir = tempfile::tempdir().unwrap();
    // Every request at once (a closed batch), so both runs schedule the same steps.
    let burst = POISSON
        .replace("requests = 300", "requests = 40")
        .replace("rate = 30.0", "rate = 1e9");
    let busy = |efficiency: &str, name: &str| {
        let path = scenario(
            dir.path(),
            &burst,
            &format!("fidelity = \"full\"\nengine_efficiency = {efficiency}\n{SERVING}"),
        );
        let result = serve(&path, &dir.path().join(name), &[]);
        let totals = &result["pools"][0]["totals"];
        (
            totals["busy_s"].as_f64().unwrap(),
            result["summary"]["steps"].as_u64().unwrap(),
        )
    };
    let (whole, steps) = busy("1.0", "whole");
    let (half, half_steps) = busy("0.5", "half");
    assert_eq!(steps, half_steps);
    // Each step's time doubles (rounded up to the nanosecond).
    assert!((half / whole - 2.0).abs() < 1e-6, "{half} vs {whole}");
}

#[test]
fn disaggregated_pools_report_each_and_send_the_kv_across() {
    let dir = tempfile::tempdir().unwrap();
    let split = format!(
        "{SERVING}\n[serving.disaggregation]\nprefill_gpus = 2\ndecode_gpus = 4\n[serving.disaggregation.decode]\nall_to_all = \"direct\""
    );
    let path = scenario(dir.path(), POISSON, &split);
    let result = serve(&path, &dir.path().join("out"), &[]);
    let pools = result["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 2);
    assert_eq!(
        (pools[0]["role"].as_str(), pools[1]["role"].as_str()),
        (Some("prefill"), Some("decode"))
    );
    assert_eq!(pools[1]["all_to_all"].as_str(), Some("direct"));
    // Prefill computes every prompt token and decodes none; decode the reverse.
    assert_eq!(pools[0]["totals"]["decode_tokens"].as_u64(), Some(0));
    assert_eq!(pools[1]["totals"]["prefill_tokens"].as_u64(), Some(0));
    assert_eq!(result["summary"]["gpus"].as_u64(), Some(6));
    assert_eq!(result["summary"]["finished"].as_u64(), Some(300));
}

#[test]
fn moesim_run_serves_when_the_scenario_has_a_serving_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), POISSON, SERVING);
    let out = dir.path().join("report");
    let output = moesim(&[
        "run",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert!(stdout(&output).contains("serving report:"));
    assert!(out.join("summary.json").is_file());
    assert_eq!(
        summary(&out.join("serving"))["summary"]["finished"].as_u64(),
        Some(300)
    );
}

#[test]
fn a_request_longer_than_the_kv_cache_is_counted_as_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.csv"),
        "arrival_s,input_tokens,output_tokens\n0.0,128,16\n0.5,9000000,16\n1.0,128,16\n",
    )
    .unwrap();
    let path = scenario(dir.path(), "[workload.replay]\nfile = \"r.csv\"", SERVING);
    let result = serve(&path, &dir.path().join("out"), &[]);
    let s = &result["summary"];
    assert_eq!(
        (
            s["requests"].as_u64(),
            s["finished"].as_u64(),
            s["rejected"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
}

/// `moesim serve` on a scenario in `dir` fails with `needles` on one `error:` line and leaves no
/// report folder.
fn serve_fails(dir: &Path, path: &Path, needles: &[&str]) {
    let out = dir.join("out");
    let output = moesim(&[
        "serve",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_fails_with(&output, needles);
    assert!(!out.exists(), "a failed run left {}", out.display());
}

#[test]
fn a_bad_request_file_is_named_with_its_row_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.csv"),
        "arrival_s,input_tokens,output_tokens\n0.5,10,10\n-1,10,10\n",
    )
    .unwrap();
    let path = scenario(dir.path(), "[workload.replay]\nfile = \"r.csv\"", SERVING);
    serve_fails(
        dir.path(),
        &path,
        &["r.csv", "line 3, `arrival_s`: negative time -1"],
    );
    std::fs::write(
        dir.path().join("r.csv"),
        "arrival_s,input_tokens,output_tokens\n1,10,10\n0.5,10,10\n",
    )
    .unwrap();
    serve_fails(
        dir.path(),
        &path,
        &["r.csv", "line 3", "before the previous row"],
    );
    std::fs::write(
        dir.path().join("r.csv"),
        "arrival_s,input_tokens,output_tokens\n1,0,10\n",
    )
    .unwrap();
    serve_fails(dir.path(), &path, &["r.csv", "line 2", "input_tokens"]);
}

#[test]
fn bad_serving_tables_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (serving, needle) in [
        ("max_runing = 4", "unknown field `max_runing`"),
        (
            "max_running = 0",
            "`serving.max_running` = 0 must be in 1..=",
        ),
        (
            "policy = \"fastest\"",
            "`serving.policy`: unknown batch policy `fastest`; known: decode-first, prefill-first",
        ),
        (
            "gpu_memory_utilization = 1.5",
            "`serving.gpu_memory_utilization` = 1.5 must be in (0, 1]",
        ),
        (
            "[serving.slo]\nttft_ms = -1",
            "`serving.slo.ttft_ms` = -1 must be a positive number",
        ),
        ("dp = 3", "`serving.dp` = 3 must divide the pool's 2 GPUs"),
        (
            "[serving.disaggregation]\nprefill_gpus = 8\ndecode_gpus = 8",
            "8 prefill + 8 decode GPUs exceed the 8 GPUs",
        ),
        ("routing = \"sideways\"", "unknown variant `sideways`"),
        (
            "engine_efficiency = 0",
            "`serving.engine_efficiency` = 0 must be in (0, 1]",
        ),
        (
            "prefix_caching = true\nblock_size = 48",
            "`serving.block_size` = 48 must divide the prefix cache's 512-token blocks",
        ),
    ] {
        let path = scenario(dir.path(), POISSON, serving);
        serve_fails(dir.path(), &path, &["serve.toml", needle]);
    }
    // A model whose weights fill the GPUs leaves no KV cache: the error says so.
    let path = scenario(dir.path(), POISSON, "gpu_memory_utilization = 0.01");
    serve_fails(
        dir.path(),
        &path,
        &["serve.toml", "leave no memory for the KV cache"],
    );
}
