//! Runs a scenario end to end: load the model, cluster and trace, place experts with every
//! strategy the scenario names, estimate each MoE layer's step time under each placement, and
//! simulate the steps with the discrete-event simulator.
//!
//! The result is plain data ([`RunResult`]) that `report` renders; nothing here writes files.

use serde::Serialize;

use crate::analysis::imbalance::max_mean;
use crate::analysis::{self, TraceStats};
use crate::cost::analytical::{AnalyticalCost, CostOptions, LayerEstimate, LayerInput};
use crate::cost::compute::RooflineCompute;
use crate::error::{Error, Result};
use crate::model::MoeModel;
use crate::placement::{self, LayerPlacement, Placement, PlacementRequest};
use crate::scenario::{Scenario, TraceSource};
use crate::sim::{self, SimOptions, SimResult};
use crate::topology::Cluster;
use crate::trace::{self, ExpertLoads, Trace, synth};

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
    /// The discrete-event simulation of the same placements (what `moesim simulate --json`
    /// prints).
    pub simulated: SimResult,
}

/// A scenario resolved and placed: what the analytical estimate and the simulator share.
pub struct Prepared {
    /// The model.
    pub model: MoeModel,
    /// The cluster the expert-parallel group occupies ([`ep_cluster`]).
    pub cluster: Cluster,
    /// GPUs holding experts.
    pub gpus: usize,
    /// Tensor-parallel degree inside experts.
    pub tp: usize,
    /// Nodes those GPUs span.
    pub nodes: usize,
    /// The routing trace.
    pub trace: Trace,
    /// Where the routing came from.
    pub trace_source: String,
    /// Every placement strategy the scenario names, with its placement over the GPUs (with
    /// `tp` > 1, each rank's experts on every GPU of the rank: [`tp_expand`]), in scenario order.
    pub placements: Vec<(String, Placement)>,
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
    /// Dispatch + combine bytes that stay inside a node, per step (mean).
    pub intra_node_bytes: u64,
    /// Dispatch + combine bytes that cross nodes, per step (mean).
    pub inter_node_bytes: u64,
}

/// Runs `scenario`: the analytical estimate, then the simulation with the same placements.
pub fn run(scenario: &Scenario) -> Result<RunResult> {
    let prepared = prepare(scenario)?;
    let Prepared {
        model,
        cluster,
        gpus,
        nodes,
        tp: _,
        trace,
        trace_source,
        placements,
    } = &prepared;
    let stats = analysis::trace_stats(trace);
    let loads = trace.expert_loads();
    let compute = RooflineCompute::default();
    let options = CostOptions {
        dispatch_bytes_per_elem: f64::from(scenario.comm.dispatch_bytes_per_elem),
        combine_bytes_per_elem: f64::from(scenario.comm.combine_bytes_per_elem),
    };
    let cost = AnalyticalCost::new(model, cluster, &compute, options);
    let steps = Steps::new(trace, gpus * scenario.tokens_per_gpu, model.top_k);
    let strategies = placements
        .iter()
        .map(|(name, placement)| {
            let estimates = steps.estimate(&cost, placement)?;
            strategy_result(name, placement, &loads, &estimates)
        })
        .collect::<Result<Vec<_>>>()?;
    let options = SimOptions {
        perfetto: false,
        timeline_excerpt: true,
    };
    let simulated = sim::simulate_prepared(scenario, &prepared, options)?;
    Ok(RunResult {
        scenario: scenario.name.clone(),
        seed: scenario.seed,
        model: model.name.clone(),
        cluster: scenario.cluster.clone(),
        gpus: *gpus,
        nodes: *nodes,
        tokens_per_gpu: scenario.tokens_per_gpu,
        steps: steps.count(),
        trace_source: trace_source.clone(),
        trace: stats,
        strategies,
        simulated,
    })
}

/// Resolves `scenario`'s model, cluster and trace and places its experts with every strategy
/// it names.
pub fn prepare(scenario: &Scenario) -> Result<Prepared> {
    let model = MoeModel::resolve(&scenario.model)?;
    let whole = Cluster::resolve(&scenario.cluster)?;
    let gpus = scenario.gpus.unwrap_or(whole.num_gpus());
    let cluster = ep_cluster(&whole, gpus)?;
    let (trace, trace_source) = load_trace(scenario)?;
    let trace = drop_dense_layers(trace, &model);
    check_trace_fits_model(&trace, &model, &trace_source)?;
    let loads = trace.expert_loads();
    let nodes = gpus.div_ceil(cluster.gpus_per_node());
    let tp = scenario.tp;
    if !gpus.min(cluster.gpus_per_node()).is_multiple_of(tp) {
        return Err(Error::invalid(format!(
            "`tp` = {tp} must divide the {gpus} expert-parallel GPUs and the {} GPUs of a machine",
            cluster.gpus_per_node()
        )));
    }
    let placements = scenario
        .placements
        .iter()
        .map(|name| {
            let request = PlacementRequest {
                num_nodes: nodes,
                num_groups: model.num_expert_groups,
                transitions: trace.tokens(),
                cluster: (tp == 1).then_some(&cluster),
                ..PlacementRequest::new(&loads, gpus / tp)
            };
            let ranks = placement::strategy(name)?.place(&request)?;
            Ok((name.clone(), tp_expand(&ranks, tp)?))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Prepared {
        model,
        cluster,
        gpus,
        tp,
        nodes,
        trace,
        trace_source,
        placements,
    })
}

/// The GPU-level placement of `ranks` (a placement over tensor-parallel ranks of `tp`
/// consecutive GPUs): every GPU of a rank lists the rank's experts, as replicas do. The
/// analytical tier reads it as such (tokens split over the rank's GPUs); the simulator splits
/// each expert's FFN over them instead.
pub fn tp_expand(ranks: &Placement, tp: usize) -> Result<Placement> {
    if tp == 1 {
        return Ok(ranks.clone());
    }
    let layers = ranks
        .layers()
        .iter()
        .map(|layer| LayerPlacement {
            gpu_experts: layer
                .gpu_experts
                .iter()
                .flat_map(|experts| std::iter::repeat_n(experts.clone(), tp))
                .collect(),
        })
        .collect();
    Placement::new(
        ranks.num_gpus() * tp,
        ranks.num_experts(),
        ranks.slots_per_gpu(),
        layers,
    )
}

/// The cluster of the first `gpus` GPUs of `cluster` in cluster order (machine-major): the
/// machines they fill, as a cluster of their own (same GPUs, NVLink and PCIe; the scale-out
/// network those machines would have alone). `gpus` must fit in one machine or fill whole
/// machines; the error names `gpus` otherwise.
pub fn ep_cluster(cluster: &Cluster, gpus: usize) -> Result<Cluster> {
    let per_node = cluster.gpus_per_node();
    if gpus == cluster.num_gpus() {
        return Ok(cluster.clone());
    }
    let mut spec = cluster.spec().clone();
    if gpus > cluster.num_gpus() || (gpus > per_node && !gpus.is_multiple_of(per_node)) {
        return Err(Error::invalid(format!(
            "`gpus` = {gpus}: cluster `{}` has {} GPUs, {per_node} per machine; the \
             expert-parallel group must fit in one machine or fill whole machines",
            cluster.name(),
            cluster.num_gpus()
        )));
    }
    if gpus < per_node {
        spec.nodes = 1;
        spec.gpus_per_node = gpus;
        spec.pcie.gpus_per_switch = spec.pcie.gpus_per_switch.min(gpus);
    } else {
        spec.nodes = gpus / per_node;
    }
    spec.name = format!("{} (first {gpus} GPUs)", spec.name);
    Cluster::from_spec(spec)
}

/// Reads or generates the scenario's trace, and says where it came from.
pub(crate) fn load_trace(scenario: &Scenario) -> Result<(Trace, String)> {
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

/// SGLang's expert-load dumps list every decoder layer, DeepSeek's first dense ones as rows of
/// zeros (61 rows for DeepSeek-V3's 58 MoE layers); when a load trace has more layers than the
/// model has MoE layers, its empty rows are dropped so the others line up with the MoE layers.
fn drop_dense_layers(trace: Trace, model: &MoeModel) -> Trace {
    match trace {
        Trace::Loads(mut loads) if loads.num_layers() > model.num_moe_layers() => {
            loads.drop_empty_layers();
            Trace::Loads(loads)
        }
        other => other,
    }
}

/// The trace must come from (a model shaped like) the scenario's model.
pub(crate) fn check_trace_fits_model(trace: &Trace, model: &MoeModel, source: &str) -> Result<()> {
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

/// The trace cut into steps of `gpus x tokens_per_gpu` tokens: each step is one forward pass
/// through the MoE layers, estimated layer by layer. Shared with placement evaluation.
pub(crate) enum Steps<'a> {
    /// Token-level routing, cut into consecutive steps (the last may be partial).
    Tokens(Vec<trace::RoutingTrace>),
    /// Aggregate loads, rescaled to the (token, expert) pairs of one step.
    Loads(&'a ExpertLoads, f64),
}

impl<'a> Steps<'a> {
    /// Cuts `trace` into steps of `step_tokens` tokens (`top_k` entries each for loads).
    pub(crate) fn new(trace: &'a Trace, step_tokens: usize, top_k: usize) -> Steps<'a> {
        match trace {
            Trace::Tokens(routing) => {
                let tokens = routing.num_tokens();
                let starts = (0..tokens.max(1)).step_by(step_tokens);
                Steps::Tokens(
                    starts
                        .map(|start| routing.slice_tokens(start..(start + step_tokens).min(tokens)))
                        .collect(),
                )
            }
            Trace::Loads(loads) => Steps::Loads(loads, (step_tokens * top_k) as f64),
        }
    }

    /// Number of steps (1 for aggregate loads).
    pub(crate) fn count(&self) -> usize {
        match self {
            Steps::Tokens(steps) => steps.len(),
            Steps::Loads(..) => 1,
        }
    }

    /// Per layer, the estimates of every step.
    pub(crate) fn estimate(
        &self,
        cost: &AnalyticalCost,
        placement: &Placement,
    ) -> Result<Vec<Vec<LayerEstimate>>> {
        (0..placement.num_layers())
            .map(|layer| match self {
                Steps::Tokens(steps) => steps
                    .iter()
                    .map(|step| {
                        cost.estimate_layer(placement, layer, LayerInput::Tokens(step.layer(layer)))
                    })
                    .collect(),
                Steps::Loads(loads, step_entries) => {
                    let total = loads.layer_total(layer);
                    let scale = if total > 0.0 {
                        step_entries / total
                    } else {
                        0.0
                    };
                    let scaled: Vec<f64> = loads.layer(layer).iter().map(|l| l * scale).collect();
                    Ok(vec![cost.estimate_layer(
                        placement,
                        layer,
                        LayerInput::Loads(&scaled),
                    )?])
                }
            })
            .collect()
    }
}

/// Summarises one strategy: GPU loads over the whole trace and step-averaged estimates.
fn strategy_result(
    name: &str,
    placement: &Placement,
    loads: &ExpertLoads,
    estimates: &[Vec<LayerEstimate>],
) -> Result<StrategyResult> {
    let gpu_loads = placement.gpu_loads(loads)?;
    let layers: Vec<LayerResult> = gpu_loads
        .into_iter()
        .zip(estimates)
        .enumerate()
        .map(|(layer, (gpu_loads, steps))| {
            let mean = |f: &dyn Fn(&LayerEstimate) -> u64| {
                let total: u64 = steps.iter().map(f).sum();
                total.div_ceil(steps.len().max(1) as u64)
            };
            LayerResult {
                layer,
                max_mean: max_mean(&gpu_loads),
                gpu_loads,
                compute_ns: mean(&|e| e.compute_ns.iter().copied().max().unwrap_or(0)),
                dispatch_ns: mean(&|e| e.dispatch_ns),
                combine_ns: mean(&|e| e.combine_ns),
                step_ns: mean(&|e| e.step_ns),
                intra_node_bytes: mean(&|e| e.intra_node_bytes),
                inter_node_bytes: mean(&|e| e.inter_node_bytes),
            }
        })
        .collect();
    let mean_gpu_max_mean =
        layers.iter().map(|l| l.max_mean).sum::<f64>() / layers.len().max(1) as f64;
    Ok(StrategyResult {
        name: name.to_string(),
        step_ns: layers.iter().map(|l| l.step_ns).sum(),
        mean_gpu_max_mean,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ep_group_is_the_first_gpus_as_a_cluster_of_their_own() {
        let dgx = Cluster::preset("dgx-h100").unwrap();
        let four = ep_cluster(&dgx, 4).unwrap();
        assert_eq!((four.num_gpus(), four.num_nodes()), (4, 1));
        // Same NVSwitch ports: GPU to GPU is two 450 GB/s links of 500 ns, as in the whole node.
        let route = four.route(0, 3);
        assert_eq!(route.latency_ns, dgx.route(0, 3).latency_ns);
        assert_eq!(route.latency_ns, 1000);
        assert_eq!(route.bottleneck_gbps, 450.0);
        let h800x4 = Cluster::preset("hgx-h800x4").unwrap();
        let two_nodes = ep_cluster(&h800x4, 16).unwrap();
        assert_eq!((two_nodes.num_gpus(), two_nodes.num_nodes()), (16, 2));
        assert_eq!(
            two_nodes.route(0, 8).latency_ns,
            h800x4.route(0, 8).latency_ns
        );
        for bad in [12, 40] {
            let err = ep_cluster(&h800x4, bad).unwrap_err().to_string();
            assert!(err.contains(&format!("`gpus` = {bad}")), "{err}");
        }
    }

    #[test]
    fn load_traces_lose_their_empty_dense_layers_only_when_the_model_has_fewer() {
        let model = MoeModel::preset("mixtral-8x7b").unwrap();
        let layers = model.num_moe_layers();
        let busy = vec![1.0; model.num_experts];
        let idle = vec![0.0; model.num_experts];
        let loads = |rows: Vec<Vec<f64>>| {
            Trace::Loads(trace::ExpertLoads::new(model.num_experts, rows).unwrap())
        };
        // One dense layer in front, as SGLang writes it: dropped, the rest fits.
        let with_dense = loads([vec![idle.clone()], vec![busy.clone(); layers]].concat());
        let fitted = drop_dense_layers(with_dense, &model);
        assert_eq!(fitted.num_layers(), layers);
        assert!(check_trace_fits_model(&fitted, &model, "t").is_ok());
        // As many layers as the model: an idle layer is kept (it is a MoE layer no token chose).
        let exact = loads([vec![idle.clone()], vec![busy.clone(); layers - 1]].concat());
        assert_eq!(drop_dense_layers(exact, &model).num_layers(), layers);
        // More busy layers than the model has: still an error naming both counts.
        let too_many = drop_dense_layers(loads(vec![busy; layers + 1]), &model);
        let err = check_trace_fits_model(&too_many, &model, "t").unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("{} MoE layers but model", layers + 1)),
            "{err}"
        );
    }

    #[test]
    fn tp_must_divide_the_gpus_and_a_machine() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let text = crate::scenario::QUICKSTART_TOML.replace("seed = 7", "seed = 7\ntp = 3");
        let scenario = Scenario::parse(&text, &root).unwrap();
        let err = prepare(&scenario).err().unwrap().to_string();
        assert!(err.contains("`tp` = 3 must divide the 8"), "{err}");
    }

    #[test]
    fn tp_expand_lists_each_rank_on_its_gpus() {
        let ranks = Placement::new(
            2,
            4,
            2,
            vec![LayerPlacement {
                gpu_experts: vec![vec![0, 1], vec![2, 3]],
            }],
        )
        .unwrap();
        let gpus = tp_expand(&ranks, 2).unwrap();
        assert_eq!(gpus.num_gpus(), 4);
        assert_eq!(gpus.experts_on(0, 1), &[0, 1]);
        assert_eq!(gpus.experts_on(0, 2), &[2, 3]);
    }
}
