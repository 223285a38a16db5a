//! Serving-engine speed: simulated requests per wall second, and what memory does as the
//! number of requests grows. Prints its figures.
//!
//! 1. `scenarios/qwen3-30b-a3b-serve.toml` with 20,000 requests: Qwen3-30B-A3B, DP2 + EP2 on 2
//!    H100s, low-latency all-to-all, Poisson 10 requests/s, 512 input / 512 output tokens
//!    (target >= 3,000 simulated requests per wall second; BLIS, with routing as a formula, does
//!    about 1,500 here). Run at 2,000 and 20,000 requests, printing the process's peak resident
//!    set after each: per-request tables are streamed to Parquet, so what grows is the latency
//!    columns kept for percentiles (24 bytes a request).
//! 2. One hour of Mixtral-8x7B traffic at 5 requests/s (lognormal prompts and answers) on one
//!    8xH100 node, EP8 + DP8 (target < 60 s).
//! 3. DeepSeek-V3 with prefill/decode disaggregation on 12 H100 nodes (4 prefill, 8 decode), ten
//!    minutes of traffic at 20 requests/s of 2,000 + 500 tokens, on the shared SGLang decode
//!    loads when `MOESIM_SHARED_DATA` is set, else a synthetic 256-expert trace (target < 5 min).
//!
//! Run: `cargo bench --bench serving`.

use std::path::Path;
use std::time::Instant;

use moesim::pipeline::serve::serve;
use moesim::scenario::Scenario;

/// Peak resident set of this process so far, MiB (Linux; 0 elsewhere).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Serves `scenario`, printing requests per wall second; returns the wall time, s.
fn run(label: &str, scenario: &Scenario) -> f64 {
    let start = Instant::now();
    let result =
        serve(scenario, None, &mut |_| Ok(()), &mut |_| {}).expect("bench scenario serves");
    let wall = start.elapsed().as_secs_f64();
    let s = &result.summary;
    println!(
        "{label}: {} requests, {:.0} s simulated, {} steps, in {wall:.2} s wall = {:.0} requests/s \
         ({:.0}x real time); p99 TTFT {:.0} ms, p99 TPOT {:.1} ms; peak RSS {:.0} MiB",
        s.finished,
        s.duration_s,
        s.steps,
        s.finished as f64 / wall,
        s.duration_s / wall,
        s.ttft.p99 * 1e3,
        s.tpot.p99 * 1e3,
        peak_rss_mib()
    );
    wall
}

fn scenario(text: &str) -> Scenario {
    Scenario::parse(
        text,
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"),
    )
    .expect("bench scenario")
}

fn main() {
    let qwen = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/qwen3-30b-a3b-serve.toml"),
    )
    .expect("qwen scenario");
    for requests in [2_000, 20_000] {
        let text = qwen.replace("requests = 2000", &format!("requests = {requests}"));
        let wall = run(
            &format!("qwen3-30b-a3b DP2+EP2, {requests} requests"),
            &scenario(&text),
        );
        if requests == 20_000 {
            println!("  target >= 3000 requests/s: {:.0}", requests as f64 / wall);
        }
    }

    let mixtral = "name = \"mixtral-hour\"\nseed = 1\nmodel = \"mixtral-8x7b\"\ncluster = \"dgx-h100\"\n\
        tokens_per_gpu = 256\nplacements = [\"contiguous\"]\n\
        [trace.synth]\nnum_experts = 8\nnum_layers = 32\ntop_k = 2\nnum_tokens = 16384\n\
        [sim]\noverlap = [\"none\"]\nall_to_all = \"direct\"\n\
        [workload]\nseed = 1\nduration_s = 3600.0\n[workload.arrival]\nprocess = \"poisson\"\nrate = 5.0\n\
        [workload.input]\ndist = \"lognormal\"\nmean = 1000.0\nsigma = 1.0\nmax = 16000\n\
        [workload.output]\ndist = \"lognormal\"\nmean = 250.0\nsigma = 0.8\nmax = 4000\n\
        [serving]\n";
    let wall = run(
        "mixtral-8x7b, one hour at 5 requests/s on 8 H100s",
        &scenario(mixtral),
    );
    println!("  target < 60 s: {wall:.1} s");

    let trace = match std::env::var_os("MOESIM_SHARED_DATA") {
        Some(root) => format!(
            "[trace]\nfile = {:?}\n",
            Path::new(&root).join("deepseek-v3-expert-load/decode_in2000out100.json")
        ),
        None => {
            "[trace.synth]\nnum_experts = 256\nnum_layers = 58\ntop_k = 8\nnum_tokens = 65536\n"
                .to_string()
        }
    };
    let deepseek = format!(
        "name = \"deepseek-pd\"\nseed = 1\nmodel = \"deepseek-v3\"\ncluster = \"dgx-h100x12\"\n\
         tokens_per_gpu = 128\nplacements = [\"eplb\"]\n{trace}\
         [comm]\ndispatch_bytes_per_elem = 1\n[sim]\noverlap = [\"dual-batch\"]\nall_to_all = \"low-latency\"\n\
         [workload]\nseed = 1\nduration_s = 600.0\n[workload.arrival]\nprocess = \"poisson\"\nrate = 20.0\n\
         [workload.input]\ndist = \"fixed\"\ntokens = 2000\n[workload.output]\ndist = \"fixed\"\ntokens = 500\n\
         [serving]\n[serving.disaggregation]\nprefill_gpus = 32\ndecode_gpus = 64\n\
         [serving.disaggregation.prefill]\nall_to_all = \"hierarchical\"\n"
    );
    let wall = run(
        "deepseek-v3 PD, 12 H100 nodes, ten minutes",
        &scenario(&deepseek),
    );
    println!("  target < 300 s: {wall:.1} s");
}
