//! ILP placement speed and quality on the shared real data (skips without MOESIM_SHARED_DATA).
//!
//! - `ilp-balance` on every DeepSeek-V3 workload (58 MoE layers x 256 experts, 32 GPUs x 9 slots
//!   = 288 slots): total time and mean / max gap to the lower bound. Target: within 1 % in under
//!   60 s per workload on 2 cores.
//! - `ilp-affinity` on switch-base-8/32/128 (40800 tokens x 6 layers, top-1), 8 GPUs: time,
//!   cross-GPU transition fraction and mean per-layer GPU max/mean load, next to ExFlow's
//!   placement of the same trace, with the default settings and without a hard load cap (load
//!   weight 0.1). Target: under 60 s for 128 experts.
//! - `ilp-affinity` at DeepSeek-V3 size (58 MoE layers x 256 experts, top-8 routed within 4 of 8
//!   groups, 32 GPUs x 8 slots on 4 machines) on a synthetic token trace (`trace synth`
//!   parameters below; no token-level DeepSeek trace is public): time, cross-GPU and
//!   cross-machine transition fractions and load, next to `eplb` and `contiguous`.
//!
//! Run with `cargo bench --bench ilp [-- NAME]` (NAME filters the workloads and cases).

use std::path::{Path, PathBuf};
use std::time::Instant;

use moesim::placement::evaluate::{EvalContext, evaluate};
use moesim::placement::{
    AffinitySettings, Contiguous, Eplb, IlpAffinity, IlpBalance, LayerPlacement, Placement,
    PlacementRequest, PlacementStrategy, SolveOutcome,
};
use moesim::registry::Plugin;
use moesim::topology::Cluster;
use moesim::trace::Trace;
use moesim::trace::importers::{ImportFormat, import};
use moesim::trace::synth::{GroupLimit, SynthParams, synthesize};

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
    for experts in [8, 32, 128] {
        let name = format!("switch-base-{experts}");
        if only.as_deref().is_none_or(|o| name.contains(o)) {
            ilp_affinity_switch(&root, experts);
        }
    }
    if only
        .as_deref()
        .is_none_or(|o| "deepseek-affinity".contains(o))
    {
        ilp_affinity_deepseek_size();
    }
}

/// `ilp-affinity` at DeepSeek-V3 size on a synthetic trace, next to EPLB and contiguous.
fn ilp_affinity_deepseek_size() {
    let params = SynthParams {
        num_experts: 256,
        num_layers: 58,
        top_k: 8,
        num_tokens: 4096,
        seed: 1,
        groups: Some(GroupLimit {
            n_groups: 8,
            topk_groups: 4,
        }),
        ..SynthParams::default()
    };
    let trace = synthesize(&params).expect("valid synth parameters");
    let loads = trace.expert_loads();
    let cluster = Cluster::resolve("hgx-h800x4").expect("preset cluster");
    let request = PlacementRequest {
        transitions: Some(&trace),
        slots_per_gpu: 8,
        num_nodes: 4,
        num_groups: 8,
        ..PlacementRequest::new(&loads, 32)
    };
    // Fewer restarts and bisection tries than the defaults: the graph has 14848 nodes.
    let affinity = IlpAffinity {
        settings: AffinitySettings {
            restarts: 2,
            bisection_tries: 2,
            ..AffinitySettings::default()
        },
        ..IlpAffinity::default()
    };
    let trace = Trace::Tokens(trace.clone());
    let strategies: [(&str, &dyn PlacementStrategy); 3] = [
        (IlpAffinity::NAME, &affinity),
        (Eplb::NAME, &Eplb),
        (Contiguous::NAME, &Contiguous),
    ];
    for (name, strategy) in strategies {
        let start = Instant::now();
        let placement = strategy.place(&request).expect("feasible request");
        let elapsed_s = start.elapsed().as_secs_f64();
        let context = EvalContext {
            cluster: Some(&cluster),
            ..EvalContext::bare()
        };
        let judged = evaluate(&placement, &trace, context).expect("shapes match");
        let cross_node = judged
            .layers
            .iter()
            .filter_map(|l| l.cross_node_fraction)
            .sum::<f64>()
            / (judged.layers.len() - 1) as f64;
        println!(
            "deepseek-size synthetic (58 x 256, top-8, 4096 tokens) {} on 32 GPUs / 4 nodes: \
             cross-GPU {:.4}, cross-node {:.4} (mean over layer pairs), mean max/mean load {:.3}, \
             {elapsed_s:.2} s",
            name,
            judged.summary.cross_gpu_fraction.unwrap_or(0.0),
            cross_node,
            judged.summary.mean_max_mean
        );
    }
}

/// Places switch-base-`experts` with `ilp-affinity` on 8 GPUs and prints it next to ExFlow.
fn ilp_affinity_switch(root: &Path, experts: usize) {
    let trace_path = root.join(format!("switch-top1/switch-base-{experts}.trace.npy"));
    let Trace::Tokens(trace) = import(&trace_path, Some(ImportFormat::Npy), Some(experts))
        .expect("shared switch trace imports")
    else {
        panic!("an npy trace has tokens");
    };
    let loads = trace.expert_loads();
    let request = PlacementRequest {
        transitions: Some(&trace),
        slots_per_gpu: experts / 8,
        ..PlacementRequest::new(&loads, 8)
    };
    let uncapped = AffinitySettings {
        max_load_ratio: f64::INFINITY,
        load_weight: 0.1,
        ..AffinitySettings::default()
    };
    let mut placements = Vec::new();
    for (name, settings) in [
        ("ilp-affinity", AffinitySettings::default()),
        ("ilp-affinity no cap, load weight 0.1", uncapped),
    ] {
        let start = Instant::now();
        let strategy = IlpAffinity {
            settings,
            ..IlpAffinity::default()
        };
        let placement = strategy.place(&request).expect("feasible request");
        let elapsed_s = start.elapsed().as_secs_f64();
        println!("{name} switch-base-{experts} on 8 GPUs: {elapsed_s:.2} s");
        placements.push((name, placement));
    }
    let exflow_path = root.join(format!("exflow-placements/switch-exp{experts}-gpu8.json"));
    let text = std::fs::read_to_string(exflow_path).expect("ExFlow placement reads");
    let layers: Vec<Vec<Vec<u16>>> = serde_json::from_str(&text).expect("ExFlow JSON parses");
    let layers = layers
        .into_iter()
        .map(|gpu_experts| LayerPlacement { gpu_experts })
        .collect();
    let exflow = Placement::new(8, experts, experts / 8, layers).expect("ExFlow placement valid");
    placements.push(("exflow", exflow));
    let trace = Trace::Tokens(trace);
    for (name, placement) in &placements {
        let judged = evaluate(placement, &trace, EvalContext::bare()).expect("shapes match");
        println!(
            "switch-base-{experts} {name}: cross-GPU {:.4}, mean max/mean load {:.3}",
            judged.summary.cross_gpu_fraction.unwrap_or(0.0),
            judged.summary.mean_max_mean
        );
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
