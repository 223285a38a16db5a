//! EPLB speed on DeepSeek-V3's shape: 58 MoE layers x 256 experts, 288 slots on 32 GPUs,
//! 4 nodes, 8 groups (hierarchical). Target: under 50 ms per placement.
//!
//! Uses the shared DeepSeek-V3 prefill loads when `MOESIM_SHARED_DATA` points at them, else a
//! synthetic skewed load matrix of the same shape. Run with `cargo bench --bench placement`.

use std::time::Instant;

use moesim::placement::{Eplb, PlacementRequest, PlacementStrategy};
use moesim::trace::ExpertLoads;

const LAYERS: usize = 58;
const EXPERTS: usize = 256;
const RUNS: usize = 20;

/// The shared DeepSeek-V3 prefill loads (MoE layers only), or `None` when unavailable.
fn shared_loads() -> Option<ExpertLoads> {
    let root = std::env::var_os("MOESIM_SHARED_DATA")?;
    let path = std::path::Path::new(&root).join("deepseek-v3-expert-load/prefill_in1024.json");
    let mut loads = moesim::trace::load(&path).ok()?.expert_loads();
    loads.drop_empty_layers();
    Some(loads)
}

/// Skewed synthetic loads: expert `e` of layer `l` gets `1e6 / (1 + (e * 7 + l * 13) % 256)`.
fn synthetic_loads() -> ExpertLoads {
    let rows = (0..LAYERS)
        .map(|l| {
            (0..EXPERTS)
                .map(|e| 1e6 / (1 + (e * 7 + l * 13) % EXPERTS) as f64)
                .collect()
        })
        .collect();
    ExpertLoads::new(EXPERTS, rows).expect("rows of 256")
}

fn main() {
    let (loads, source) = match shared_loads() {
        Some(loads) => (loads, "DeepSeek-V3 prefill_in1024"),
        None => (synthetic_loads(), "synthetic"),
    };
    let request = PlacementRequest {
        slots_per_gpu: 9,
        num_nodes: 4,
        num_groups: 8,
        ..PlacementRequest::new(&loads, 32)
    };
    let mut best_ms = f64::INFINITY;
    for _ in 0..RUNS {
        let start = Instant::now();
        let placement = Eplb.place(&request).expect("feasible request");
        best_ms = best_ms.min(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(placement.num_layers(), loads.num_layers());
    }
    println!(
        "eplb {source}: {} layers x {EXPERTS} experts, 288 slots on 32 GPUs: {best_ms:.2} ms \
         (best of {RUNS}; target < 50 ms)",
        loads.num_layers()
    );
}
