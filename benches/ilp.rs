//! ILP placement speed and quality on the shared real data (skips without MOESIM_SHARED_DATA).
//!
//! - `ilp-balance` on every DeepSeek-V3 workload (58 MoE layers x 256 experts, 32 GPUs x 9 slots
//!   = 288 slots): total time and mean / max gap to the lower bound. Target: within 1 % in under
//!   60 s per workload on 2 cores.
//!
//! Run with `cargo bench --bench ilp [-- NAME]` (NAME filters the workloads and cases).

use std::path::{Path, PathBuf};
use std::time::Instant;

use moesim::placement::{IlpBalance, PlacementRequest, SolveOutcome};
use moesim::trace::importers::import;

const DEEPSEEK_WORKLOADS: &[&str] = &[
    "prefill_in1024",
    "prefill_in4096",
    "prefill_in2000out100",
    "prefill_in500out1500",
    "decode_in1000out1000",
    "decode_in2000out100",
];

fn main() {
    let Some(root) = std::env::var_os("MOESIM_SHARED_DATA").map(PathBuf::from) else {
        println!("skipping: MOESIM_SHARED_DATA not set");
        return;
    };
    // An optional argument picks the workloads whose name contains it.
    let only = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    for workload in DEEPSEEK_WORKLOADS {
        if only.as_deref().is_none_or(|o| workload.contains(o)) {
            ilp_balance_deepseek(&root, workload);
        }
    }
}

/// Solves one DeepSeek workload and prints time, gaps and how each layer was settled.
fn ilp_balance_deepseek(root: &Path, workload: &str) {
    let path = root.join(format!("deepseek-v3-expert-load/{workload}.json"));
    let mut loads = import(&path, None, None)
        .expect("shared DeepSeek loads import")
        .expert_loads();
    loads.drop_empty_layers();
    let request = PlacementRequest {
        slots_per_gpu: 9,
        num_nodes: 4,
        num_groups: 8,
        ..PlacementRequest::new(&loads, 32)
    };
    let start = Instant::now();
    let (_, report) = IlpBalance::default()
        .solve(&request, None)
        .expect("feasible request");
    let elapsed_s = start.elapsed().as_secs_f64();
    let count =
        |f: fn(&SolveOutcome) -> bool| report.layers.iter().filter(|l| f(&l.outcome)).count();
    println!(
        "ilp-balance deepseek {workload}: {} layers in {elapsed_s:.2} s; gap to bound mean {:.3} % \
         max {:.3} %; at bound by greedy {}, optimal {}, time limit {}, incumbent kept {}",
        report.layers.len(),
        100.0 * report.mean_gap(),
        100.0 * report.max_gap(),
        count(|o| matches!(o, SolveOutcome::AtBound)),
        count(|o| matches!(o, SolveOutcome::Optimal)),
        count(|o| matches!(o, SolveOutcome::TimeLimit)),
        count(|o| matches!(
            o,
            SolveOutcome::IncumbentKept | SolveOutcome::SolverFailed(_)
        )),
    );
}
