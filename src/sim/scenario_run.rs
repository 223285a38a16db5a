//! Simulates a scenario: every step of its trace (cut by [`step_batches`]) through every MoE
//! layer, for every placement strategy and overlap strategy it names, with per-step times and
//! their mean, median and 99th percentile.

use serde::Serialize;

use super::batches::{StepBatch, step_batches};
use super::config::Overlap;
use super::engine::{self, LinkBusy, TaskGraph, Timeline};
use super::kernels::KernelCosts;
use super::metrics;
use super::perfetto;
use super::step::{self, Label, LayerWork, StepSpec};
use super::totals::{StrategySim, Totals, excerpt_layer};
use crate::cost::DispatchPlan;
use crate::error::{Error, Result};
use crate::placement::Placement;
use crate::runner::{self, Prepared};
use crate::scenario::Scenario;
use crate::topology::Cluster;
use crate::trace::Trace;

/// The simulated steps of a scenario, per placement and overlap strategy.
#[derive(Debug, Clone, Serialize)]
pub struct SimResult {
    /// Scenario name.
    pub scenario: String,
    /// Model name.
    pub model: String,
    /// Cluster name.
    pub cluster: String,
    /// GPUs (expert-parallel degree; attention is data-parallel over the same GPUs): the
    /// cluster's first GPUs in cluster order.
    pub gpus: usize,
    /// Tokens each GPU brings to a step without a batch schedule.
    pub tokens_per_gpu: usize,
    /// Steps simulated per strategy.
    pub steps: usize,
    /// All-to-all algorithm.
    pub all_to_all: String,
    /// SMs communication takes while it overlaps GEMMs.
    pub comm_sms: u32,
    /// One entry per (placement, overlap) pair, placements outermost, in scenario order.
    pub strategies: Vec<StrategySim>,
    /// The Chrome / Perfetto trace of every strategy's first step, when asked for.
    #[serde(skip)]
    pub perfetto: Option<serde_json::Value>,
}

/// What to keep besides the summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimOptions {
    /// Build the Chrome / Perfetto trace ([`SimResult::perfetto`]).
    pub perfetto: bool,
    /// Keep every strategy's [`StrategySim::timeline_excerpt`].
    pub timeline_excerpt: bool,
}

/// Simulates every step of `scenario` (see the module docs), resolving and placing it first.
pub fn simulate_scenario(scenario: &Scenario, options: SimOptions) -> Result<SimResult> {
    simulate_prepared(scenario, &runner::prepare(scenario)?, options)
}

/// Simulates every step of `scenario` with its model, cluster, trace and placements already
/// resolved (`moesim run` shares them with the analytical estimate).
pub fn simulate_prepared(
    scenario: &Scenario,
    prepared: &Prepared,
    options: SimOptions,
) -> Result<SimResult> {
    let Prepared {
        model,
        cluster,
        gpus,
        tp,
        trace,
        placements,
        ..
    } = prepared;
    let config = &scenario.sim;
    let costs = match &config.calibration {
        Some(path) => KernelCosts::calibrated(model, cluster.gpu_spec(0), path)?,
        None => KernelCosts::new(model, cluster.gpu_spec(0)),
    }
    .with_expert_tp(*tp as u64);
    if config.comm_sms >= costs.sm_count() {
        return Err(Error::invalid(format!(
            "`sim.comm_sms` = {} leaves no SM of the {} for GEMMs",
            config.comm_sms,
            costs.sm_count()
        )));
    }
    let batches = step_batches(trace, &scenario.schedule, *gpus, scenario.tokens_per_gpu);
    let hidden = model.hidden_size as f64;
    let mut strategies = Vec::new();
    let mut events = Vec::new();
    for (name, placement) in placements {
        let mut totals: Vec<Totals> = config
            .overlap
            .iter()
            .map(|&overlap| Totals::new(overlap, name, cluster))
            .collect();
        for (index, batch) in batches.iter().enumerate() {
            let plans = batch_plans(cluster, placement, trace, batch, model.top_k)?;
            let work = LayerWork::from_plans(
                &plans,
                hidden * f64::from(scenario.comm.dispatch_bytes_per_elem),
                hidden * f64::from(scenario.comm.combine_bytes_per_elem),
                *tp,
            );
            let spec = StepSpec {
                cluster,
                costs: &costs,
                layers: &work,
                config,
            };
            for (k, total) in totals.iter_mut().enumerate() {
                let trace = index == 0 && options.perfetto;
                let link_busy = if trace {
                    LinkBusy::Record
                } else {
                    LinkBusy::Skip
                };
                let (graph, timeline) = run_graph(&spec, total.overlap, link_busy);
                if trace {
                    let process = format!("{name} / {}", total.overlap.name());
                    let pid = strategies.len() + k;
                    perfetto::append_events(&mut events, pid, &process, &graph, &timeline, cluster);
                }
                if index == 0 && options.timeline_excerpt {
                    let layer = excerpt_layer(work.len());
                    total.excerpt = metrics::timeline_excerpt(&graph, &timeline, layer);
                }
                total.add(&spec, batch.phase, &graph, &timeline);
            }
        }
        strategies.extend(totals.into_iter().map(|t| t.finish(cluster)));
    }
    Ok(SimResult {
        scenario: scenario.name.clone(),
        model: model.name.clone(),
        cluster: scenario.cluster.clone(),
        gpus: *gpus,
        tokens_per_gpu: scenario.tokens_per_gpu,
        steps: batches.len(),
        all_to_all: config.all_to_all.name().to_string(),
        comm_sms: config.comm_sms,
        strategies,
        perfetto: options.perfetto.then(|| perfetto::document(events)),
    })
}
/// Simulates the one step `spec` describes under `overlap`, labelling it with `placement`.
pub fn simulate_step(spec: &StepSpec, overlap: Overlap, placement: &str) -> StrategySim {
    let (graph, timeline) = run_graph(spec, overlap, LinkBusy::Skip);
    let mut total = Totals::new(overlap, placement, spec.cluster);
    total.add(spec, None, &graph, &timeline);
    total.finish(spec.cluster)
}

/// The task graph of the step `spec` describes under `overlap`, and its timeline (with link
/// occupancy as `link_busy` says).
pub(super) fn run_graph<'a>(
    spec: &StepSpec<'a>,
    overlap: Overlap,
    link_busy: LinkBusy,
) -> (TaskGraph<'a, Label>, Timeline) {
    let graph = step::build(spec, overlap);
    let timeline = engine::run(&graph, spec.cluster, spec.config, link_busy);
    (graph, timeline)
}

/// Per MoE layer, the dispatch plan of the first `step_tokens` tokens of `trace` (or its loads
/// rescaled to that many tokens): [`batch_plans`] of the first step.
pub fn step_plans(
    cluster: &Cluster,
    placement: &Placement,
    trace: &Trace,
    step_tokens: usize,
    top_k: usize,
) -> Result<Vec<DispatchPlan>> {
    let batch = StepBatch {
        phase: None,
        first_token: 0,
        tokens: step_tokens,
    };
    batch_plans(cluster, placement, trace, &batch, top_k)
}

/// Per MoE layer, the dispatch plan of `batch`: its tokens of a token trace, or aggregate loads
/// rescaled to `batch.tokens x top_k` (token, expert) pairs.
pub fn batch_plans(
    cluster: &Cluster,
    placement: &Placement,
    trace: &Trace,
    batch: &StepBatch,
    top_k: usize,
) -> Result<Vec<DispatchPlan>> {
    match trace {
        Trace::Tokens(routing) => {
            let end = (batch.first_token + batch.tokens).min(routing.num_tokens());
            let step = routing.slice_tokens(batch.first_token.min(end)..end);
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
                    (batch.tokens * top_k) as f64 / total
                } else {
                    0.0
                };
                let scaled: Vec<f64> = loads.layer(layer).iter().map(|l| l * scale).collect();
                DispatchPlan::from_loads(cluster, placement, layer, &scaled, top_k)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MoeModel;
    use crate::sim::SimConfig;

    #[test]
    fn tp2_halves_the_expert_gemm_and_adds_a_reduce_scatter_over_nvswitch() {
        use crate::placement::LayerPlacement;
        use crate::trace::LayerRouting;
        // DeepSeek-V3 on one DGX H100: 4 ranks of 2 GPUs, 64 experts per rank. Token t (of
        // 1024, 128 on each GPU) picks experts 8(t mod 32) .. 8(t mod 32) + 7, all on rank
        // (t mod 32) / 8: each rank gets 256 tokens, each expert 32.
        let cluster = Cluster::preset("dgx-h100").unwrap();
        let model = MoeModel::preset("deepseek-v3").unwrap();
        let ranks = Placement::new(
            4,
            256,
            64,
            vec![LayerPlacement {
                gpu_experts: (0..4u16)
                    .map(|rank| (rank * 64..rank * 64 + 64).collect())
                    .collect(),
            }],
        )
        .unwrap();
        let placement = crate::runner::tp_expand(&ranks, 2).unwrap();
        let experts: Vec<u16> = (0..1024u16)
            .flat_map(|t| (0..8).map(move |j| 8 * (t % 32) + j))
            .collect();
        let routing = LayerRouting::fixed_k(8, experts, None).unwrap();
        let plan = DispatchPlan::from_tokens(&cluster, &placement, 0, &routing).unwrap();
        let hidden = 7168.0;
        let work = [LayerWork::from_plan_tp(&plan, hidden, 2.0 * hidden, 2)];
        assert_eq!(work[0].expert_tokens[5], vec![32.0; 64]);
        let base = KernelCosts::new(&model, cluster.gpu_spec(0));
        let costs = base.clone().with_expert_tp(2);
        let config = SimConfig::default();
        let spec = StepSpec {
            cluster: &cluster,
            costs: &costs,
            layers: &work,
            config: &config,
        };
        let layer = simulate_step(&spec, Overlap::None, "p").layers.remove(0);
        // Each GPU reads half of each expert's weights: 64 x 7,304 ns (memory-bound) + launch,
        // exactly half of the whole experts' 64 x 14,608 ns.
        let launch = crate::sim::kernels::KERNEL_LAUNCH_NS;
        let routed_ns = costs.routed_ns(vec![32.0; 64]);
        assert_eq!(routed_ns, 64 * 7_304 + launch);
        assert_eq!(
            2 * (routed_ns - launch),
            base.routed_ns(vec![32.0; 64]) - launch
        );
        // GPU 5 runs attention, the (unsplit) shared expert and its half of the routed experts.
        let busy = costs.attention_ns(128.0) + costs.shared_ns(128.0) + routed_ns;
        assert_eq!(layer.gpus[5].busy_ns, busy);
        // Reduce-scatter: each GPU sends its peer half of its 256 partial BF16 outputs,
        // 256 x 7168 x 2 / 2 = 1,835,008 B over its own 450 GB/s ports: 4,077.8 -> 4,078 ns,
        // plus the 1,000 ns GPU-to-GPU latency.
        assert_eq!(work[0].tp_reduce.get(4, 5), 1_835_008);
        assert_eq!(work[0].tp_reduce.get(4, 6), 0);
        assert_eq!(layer.tp_reduce_ns, 4_078 + 1_000);
        // Combine: each GPU returns its half of the outputs of the 32 tokens a GPU sent it.
        assert_eq!(work[0].combine.get(5, 0), 32 * 7168);
        assert_eq!(
            layer.exposed_comm_ns,
            layer.dispatch_ns + layer.tp_reduce_ns + layer.combine_ns
        );
    }
}
