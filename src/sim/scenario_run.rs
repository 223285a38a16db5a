//! Simulates one step of a scenario: the first `gpus x tokens_per_gpu` tokens of its trace (or
//! its loads rescaled to that many tokens) through every MoE layer, for every placement strategy
//! and overlap strategy it names.

use serde::Serialize;

use super::config::Overlap;
use super::engine::{self, TaskGraph, Timeline};
use super::kernels::KernelCosts;
use super::metrics::{self, LayerTimes, LinkUse};
use super::perfetto;
use super::step::{self, Label, LayerWork, StepSpec};
use crate::cost::DispatchPlan;
use crate::error::{Error, Result};
use crate::model::MoeModel;
use crate::placement::{self, Placement, PlacementRequest};
use crate::runner::{check_trace_fits_model, load_trace};
use crate::scenario::Scenario;
use crate::topology::Cluster;
use crate::trace::Trace;

/// The simulated step of a scenario, per placement and overlap strategy.
#[derive(Debug, Clone, Serialize)]
pub struct SimResult {
    /// Scenario name.
    pub scenario: String,
    /// Model name.
    pub model: String,
    /// Cluster name.
    pub cluster: String,
    /// GPUs (expert-parallel degree; attention is data-parallel over the same GPUs).
    pub gpus: usize,
    /// Tokens each GPU brings to the step.
    pub tokens_per_gpu: usize,
    /// All-to-all algorithm.
    pub all_to_all: String,
    /// SMs communication takes while it overlaps GEMMs.
    pub comm_sms: u32,
    /// One entry per (placement, overlap) pair, placements outermost, in scenario order.
    pub strategies: Vec<StrategySim>,
    /// The Chrome / Perfetto trace of every strategy's step, when asked for.
    #[serde(skip)]
    pub perfetto: Option<serde_json::Value>,
}

/// What to keep besides the summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimOptions {
    /// Build the Chrome / Perfetto trace ([`SimResult::perfetto`]).
    pub perfetto: bool,
}

/// One overlap strategy under one placement.
#[derive(Debug, Clone, Serialize)]
pub struct StrategySim {
    /// Overlap strategy name.
    pub strategy: String,
    /// Placement strategy name.
    pub placement: String,
    /// Simulated time of the step through all MoE layers.
    pub step_ns: u64,
    /// Communication on the critical path, all layers.
    pub exposed_comm_ns: u64,
    /// `exposed_comm_ns / step_ns`.
    pub exposed_comm_share: f64,
    /// All-to-all bytes between GPUs of one machine (dispatch + combine, all layers).
    pub intra_node_bytes: u64,
    /// All-to-all bytes between machines.
    pub inter_node_bytes: u64,
    /// Engine events processed.
    pub events: u64,
    /// Per MoE layer.
    pub layers: Vec<LayerTimes>,
    /// Links that carried bytes.
    pub links: Vec<LinkUse>,
}

/// Simulates one step of `scenario` (see the module docs).
pub fn simulate_scenario(scenario: &Scenario, options: SimOptions) -> Result<SimResult> {
    let model = MoeModel::resolve(&scenario.model)?;
    let cluster = Cluster::resolve(&scenario.cluster)?;
    let gpus = scenario.gpus.unwrap_or(cluster.num_gpus());
    if gpus != cluster.num_gpus() {
        return Err(Error::invalid(format!(
            "simulate: scenario asks for {gpus} GPUs but cluster `{}` has {}; the simulator runs on the whole cluster",
            scenario.cluster,
            cluster.num_gpus()
        )));
    }
    let config = &scenario.sim;
    let costs = match &config.calibration {
        Some(path) => KernelCosts::calibrated(&model, cluster.gpu_spec(0), path)?,
        None => KernelCosts::new(&model, cluster.gpu_spec(0)),
    };
    if config.comm_sms >= costs.sm_count() {
        return Err(Error::invalid(format!(
            "`sim.comm_sms` = {} leaves no SM of the {} for GEMMs",
            config.comm_sms,
            costs.sm_count()
        )));
    }
    let (trace, source) = load_trace(scenario)?;
    check_trace_fits_model(&trace, &model, &source)?;
    let step_tokens = gpus * scenario.tokens_per_gpu;
    let mut strategies = Vec::new();
    let mut events = Vec::new();
    let loads = trace.expert_loads();
    for name in &scenario.placements {
        let mut request = PlacementRequest::new(&loads, gpus);
        request.num_nodes = cluster.num_nodes();
        let placement = placement::strategy(name)?.place(&request)?;
        let plans = step_plans(&cluster, &placement, &trace, step_tokens, model.top_k)?;
        let hidden = model.hidden_size as f64;
        let work: Vec<LayerWork> = plans
            .iter()
            .map(|plan| {
                LayerWork::from_plan(
                    plan,
                    hidden * f64::from(scenario.comm.dispatch_bytes_per_elem),
                    hidden * f64::from(scenario.comm.combine_bytes_per_elem),
                )
            })
            .collect();
        let spec = StepSpec {
            cluster: &cluster,
            costs: &costs,
            layers: &work,
            config,
        };
        for &overlap in &config.overlap {
            let (sim, graph, timeline) = run_step(&spec, overlap, name);
            if options.perfetto {
                let process = format!("{} / {}", sim.placement, sim.strategy);
                let pid = strategies.len();
                perfetto::append_events(&mut events, pid, &process, &graph, &timeline, &cluster);
            }
            strategies.push(sim);
        }
    }
    Ok(SimResult {
        scenario: scenario.name.clone(),
        model: model.name.clone(),
        cluster: scenario.cluster.clone(),
        gpus,
        tokens_per_gpu: scenario.tokens_per_gpu,
        all_to_all: config.all_to_all.name().to_string(),
        comm_sms: config.comm_sms,
        strategies,
        perfetto: options.perfetto.then(|| perfetto::document(events)),
    })
}

/// Simulates the step `spec` describes under `overlap`, labelling it with `placement`.
pub fn simulate_step(spec: &StepSpec, overlap: Overlap, placement: &str) -> StrategySim {
    run_step(spec, overlap, placement).0
}

/// [`simulate_step`], also returning the task graph and its timeline.
fn run_step(
    spec: &StepSpec,
    overlap: Overlap,
    placement: &str,
) -> (StrategySim, TaskGraph<Label>, Timeline) {
    let graph = step::build(spec, overlap);
    let timeline = engine::run(&graph, spec.cluster, spec.config);
    let step_ns = timeline.makespan_ns();
    let layers = metrics::layer_times(
        &graph,
        &timeline,
        spec.layers.len(),
        spec.cluster.num_gpus(),
    );
    let exposed_comm_ns = layers.iter().map(|l| l.exposed_comm_ns).sum();
    let (mut intra_node_bytes, mut inter_node_bytes) = (0, 0);
    for work in spec.layers {
        for matrix in [&work.dispatch, &work.combine] {
            for (src, dst, bytes) in matrix.pairs() {
                if spec.cluster.node_of(src) == spec.cluster.node_of(dst) {
                    intra_node_bytes += bytes;
                } else {
                    inter_node_bytes += bytes;
                }
            }
        }
    }
    let sim = StrategySim {
        strategy: overlap.name().to_string(),
        placement: placement.to_string(),
        step_ns,
        exposed_comm_ns,
        exposed_comm_share: exposed_comm_ns as f64 / step_ns.max(1) as f64,
        intra_node_bytes,
        inter_node_bytes,
        events: timeline.events,
        links: metrics::link_use(spec.cluster, &timeline, step_ns),
        layers,
    };
    (sim, graph, timeline)
}

/// Per MoE layer, the dispatch plan of the step's tokens: the first `step_tokens` of a token
/// trace, or aggregate loads rescaled to `step_tokens x top_k` (token, expert) pairs.
pub fn step_plans(
    cluster: &Cluster,
    placement: &Placement,
    trace: &Trace,
    step_tokens: usize,
    top_k: usize,
) -> Result<Vec<DispatchPlan>> {
    match trace {
        Trace::Tokens(routing) => {
            let step = routing.slice_tokens(0..step_tokens.min(routing.num_tokens()));
            (0..step.num_layers())
                .map(|layer| {
                    DispatchPlan::from_tokens(cluster, placement, layer, step.layer(layer))
                })
                .collect()
        }
        Trace::Loads(loads) => (0..loads.num_layers())
            .map(|layer| {
                let total = loads.layer_total(layer);
                let scale = if total > 0.0 {
                    (step_tokens * top_k) as f64 / total
                } else {
                    0.0
                };
                let scaled: Vec<f64> = loads.layer(layer).iter().map(|l| l * scale).collect();
                DispatchPlan::from_loads(cluster, placement, layer, &scaled, top_k)
            })
            .collect(),
    }
}
