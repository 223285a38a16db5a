//! Runs a scenario end to end: load the model, cluster and trace, place experts with every
//! strategy the scenario names, and estimate each MoE layer's step time under each placement.
//!
//! The result is plain data ([`RunResult`]) that `report` renders; nothing here writes files.

use serde::Serialize;

use crate::analysis::{self, TraceStats};
use crate::cost::analytical::{self, CostOptions, LayerEstimate};
use crate::error::{Error, Result};
use crate::model::MoeModel;
use crate::placement::{self, Placement, PlacementRequest};
use crate::scenario::{Scenario, TraceSource};
use crate::topology::Cluster;
use crate::trace::{self, RoutingTrace, Trace, synth};

/// Everything a scenario run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Scenario name.
    pub scenario: String,
    /// Seed used for every random choice.
    pub seed: u64,
    /// Model name.
    pub model: String,
    /// Cluster name.
    pub cluster: String,
    /// GPUs holding experts (expert-parallel degree).
    pub gpus: usize,
    /// Nodes those GPUs span.
    pub nodes: usize,
    /// Tokens each GPU contributes per step.
    pub tokens_per_gpu: usize,
    /// Steps the trace was cut into (the last may be partial).
    pub steps: usize,
    /// Where the routing came from.
    pub trace_source: String,
    /// Routing statistics of the trace.
    pub trace: TraceStats,
    /// One entry per placement strategy, in scenario order.
    pub strategies: Vec<StrategyResult>,
}

/// How one placement strategy fared.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyResult {
    /// Strategy name.
    pub name: String,
    /// Estimated time of one step through all MoE layers (mean over steps), in ns.
    pub step_ns: u64,
    /// Mean over layers of the GPU max/mean token load.
    pub mean_gpu_max_mean: f64,
    /// Per MoE layer.
    pub layers: Vec<LayerResult>,
}

/// One MoE layer under one placement.
#[derive(Debug, Clone, Serialize)]
pub struct LayerResult {
    /// MoE layer index.
    pub layer: usize,
    /// Expert-token entries per GPU over the whole trace, in GPU order.
    pub gpu_loads: Vec<f64>,
    /// Max over GPUs of load / mean load.
    pub max_mean: f64,
    /// Slowest GPU's expert compute per step (mean over steps), ns.
    pub compute_ns: u64,
    /// Dispatch all-to-all per step (mean over steps), ns.
    pub dispatch_ns: u64,
    /// Combine all-to-all per step (mean over steps), ns.
    pub combine_ns: u64,
    /// Dispatch + slowest compute + combine per step (mean over steps), ns.
    pub step_ns: u64,
    /// Dispatch bytes that stay inside a node, per step (mean).
    pub intra_node_bytes: u64,
    /// Dispatch bytes that cross nodes, per step (mean).
    pub inter_node_bytes: u64,
}

/// Runs `scenario`.
pub fn run(scenario: &Scenario) -> Result<RunResult> {
    let model = MoeModel::resolve(&scenario.model)?;
    let cluster = Cluster::resolve(&scenario.cluster)?;
    let gpus = scenario.gpus.unwrap_or(cluster.num_gpus());
    if gpus > cluster.num_gpus() {
        return Err(Error::invalid(format!(
            "scenario asks for {gpus} GPUs but cluster `{}` has {}",
            scenario.cluster,
            cluster.num_gpus()
        )));
    }
    let (trace, trace_source) = load_trace(scenario)?;
    check_trace_fits_model(&trace, &model, &trace_source)?;
    let stats = analysis::trace_stats(&trace);
    let loads = trace.expert_loads();
    let options = CostOptions {
        dispatch_bytes_per_elem: scenario.comm.dispatch_bytes_per_elem,
        combine_bytes_per_elem: scenario.comm.combine_bytes_per_elem,
        ..CostOptions::default()
    };
    let step_tokens = gpus * scenario.tokens_per_gpu;
    let steps = match &trace {
        Trace::Tokens(t) => t.num_tokens().div_ceil(step_tokens).max(1),
        Trace::Loads(_) => 1,
    };
    let strategies = scenario
        .placements
        .iter()
        .map(|name| {
            let request = PlacementRequest::new(&loads, gpus, cluster.num_nodes_of(gpus));
            let placement = placement::strategy(name)?.place(&request)?;
            let estimates = estimate_layers(&trace, &model, &cluster, &placement, scenario, &options)?;
            Ok(strategy_result(name, &placement, &loads, estimates))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RunResult {
        scenario: scenario.name.clone(),
        seed: scenario.seed,
        model: model.name.clone(),
        cluster: scenario.cluster.clone(),
        gpus,
        nodes: cluster.num_nodes_of(gpus),
        tokens_per_gpu: scenario.tokens_per_gpu,
        steps,
        trace_source,
        trace: stats,
        strategies,
    })
}

/// Reads or generates the scenario's trace, and says where it came from.
fn load_trace(scenario: &Scenario) -> Result<(Trace, String)> {
    match &scenario.trace {
        TraceSource::File(path) => Ok((trace::load(path)?, path.display().to_string())),
        TraceSource::Synth(params) => {
            let mut params = params.clone();
            params.seed = scenario.seed;
            let routing = synth::synthesize(&params)?;
            Ok((
                Trace::Tokens(routing),
                format!("synthetic (seed {})", scenario.seed),
            ))
        }
    }
}

/// The trace must come from (a model shaped like) the scenario's model.
fn check_trace_fits_model(trace: &Trace, model: &MoeModel, source: &str) -> Result<()> {
    if trace.num_experts() != model.num_experts {
        return Err(Error::invalid(format!(
            "{source}: trace has {} experts per layer but model `{}` has {}",
            trace.num_experts(),
            model.name,
            model.num_experts
        )));
    }
    if trace.num_layers() > model.num_moe_layers() {
        return Err(Error::invalid(format!(
            "{source}: trace has {} MoE layers but model `{}` has {}",
            trace.num_layers(),
            model.name,
            model.num_moe_layers()
        )));
    }
    Ok(())
}
