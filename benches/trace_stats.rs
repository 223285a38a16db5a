//! `trace stats` on a 100-million-entry trace: wall time and peak memory.
//!
//! Writes a 102.4 M-entry Parquet trace (1.6 M tokens x 8 layers x top-8 of 64 experts, ids from a
//! cheap LCG), then summarises it in a fresh child process (so the writer's memory does not count)
//! with the same streaming path `moesim trace stats` uses, and prints the wall time and the child's
//! peak resident memory. Targets: under 10 s and under 2 GiB. Run with
//! `cargo bench --bench trace_stats`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use moesim::analysis::file_stats;
use moesim::trace::parquet::write_trace;
use moesim::trace::{LayerRouting, RoutingTrace, TokenMeta, Trace};

const TOKENS: usize = 1_600_000;
const LAYERS: usize = 8;
const TOP_K: usize = 8;
const EXPERTS: usize = 64;
/// Set in the child process to the trace it must summarise.
const CHILD_ENV: &str = "MOESIM_BENCH_STATS_CHILD";

/// Distinct top-k ids per token from an LCG: a random offset plus k consecutive experts.
fn synthetic_trace() -> RoutingTrace {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let layers = (0..LAYERS)
        .map(|_| {
            let mut experts = Vec::with_capacity(TOKENS * TOP_K);
            for _ in 0..TOKENS {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let first = (state >> 33) as usize % EXPERTS;
                experts.extend((0..TOP_K).map(|i| ((first + i * 7) % EXPERTS) as u16));
            }
            LayerRouting::fixed_k(TOP_K, experts, None).expect("whole tokens")
        })
        .collect();
    RoutingTrace::new(EXPERTS, layers, TokenMeta::default()).expect("consistent layers")
}

/// Peak resident set size of this process in KiB, from /proc (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn summarise_in_child(path: &Path) {
    let stats = file_stats(path).expect("summarise");
    assert_eq!(stats.layers.len(), LAYERS);
    println!("child peak RSS: {} MiB", peak_rss_kib().unwrap_or(0) / 1024);
}

fn main() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        summarise_in_child(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("stats-bench.parquet");
    write_trace(&path, &Trace::Tokens(synthetic_trace()), "benchmark").expect("write");
    let entries = TOKENS * LAYERS * TOP_K;
    let start = Instant::now();
    let child = Command::new(std::env::current_exe().expect("own path"))
        .env(CHILD_ENV, &path)
        .output()
        .expect("child runs");
    let seconds = start.elapsed().as_secs_f64();
    assert!(
        child.status.success(),
        "{}",
        String::from_utf8_lossy(&child.stderr)
    );
    print!("{}", String::from_utf8_lossy(&child.stdout));
    println!(
        "trace stats: {entries} entries in {seconds:.2} s ({:.1} M entries/s)",
        entries as f64 / seconds / 1e6
    );
}
