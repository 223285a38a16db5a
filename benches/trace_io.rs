//! Trace I/O throughput: canonical Parquet read (whole and streamed) and `.npy` import.
//!
//! Builds a synthetic 96-million-entry trace in memory (2M tokens x 6 layers x top-8, ids from a
//! cheap LCG), writes it as Parquet and as vLLM-layout int16 `.npy`, then times the readers.
//! Targets: Parquet read >= 50 M entries/s, npy import >= 100 M entries/s.
//! Run with `cargo bench --bench trace_io`.

use std::time::Instant;

use moesim::trace::importers::{ExportFormat, ImportFormat, export, import};
use moesim::trace::parquet::{read_chunks, read_trace, write_trace};
use moesim::trace::{LayerRouting, RoutingTrace, TokenMeta, Trace};

const TOKENS: usize = 2_000_000;
const LAYERS: usize = 6;
const TOP_K: usize = 8;
const EXPERTS: usize = 64;

/// The synthetic trace: every token draws `TOP_K` ids per layer from an LCG.
fn synthetic_trace() -> RoutingTrace {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let layers = (0..LAYERS)
        .map(|_| {
            let experts = (0..TOKENS * TOP_K)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 33) % EXPERTS as u64) as u16
                })
                .collect();
            LayerRouting::fixed_k(TOP_K, experts, None).expect("whole tokens")
        })
        .collect();
    RoutingTrace::new(EXPERTS, layers, TokenMeta::default()).expect("consistent layers")
}

/// Prints one throughput line and returns the value of `run`.
fn timed<T>(label: &str, entries: usize, run: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = run();
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{label}: {:.1} M entries/s ({entries} entries in {seconds:.2} s)",
        entries as f64 / seconds / 1e6
    );
    value
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trace = Trace::Tokens(synthetic_trace());
    let entries = TOKENS * LAYERS * TOP_K;

    let parquet = dir.path().join("bench.parquet");
    timed("parquet write", entries, || {
        write_trace(&parquet, &trace, "benchmark").expect("write parquet")
    });
    let size = std::fs::metadata(&parquet).map(|m| m.len()).unwrap_or(0);
    println!("parquet file: {:.1} MB", size as f64 / 1e6);

    let read = timed("parquet read", entries, || {
        read_trace(&parquet).expect("read parquet")
    });
    assert_eq!(read, trace, "Parquet round trip");

    let streamed = timed("parquet streamed read (250k-token chunks)", entries, || {
        read_chunks(&parquet, 250_000)
            .expect("open parquet")
            .map(|chunk| chunk.expect("chunk").trace.num_entries())
            .sum::<usize>()
    });
    assert_eq!(streamed, entries, "streamed entries");

    let npy = dir.path().join("bench.npy");
    export(&trace, &npy, ExportFormat::Npy, "").expect("write npy");
    let imported = timed("npy import (int16)", entries, || {
        import(&npy, Some(ImportFormat::Npy), Some(EXPERTS)).expect("import npy")
    });
    assert_eq!(imported, trace, "npy round trip");
}
