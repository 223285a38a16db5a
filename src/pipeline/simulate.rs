//! The simulation of a scenario: every step of the setup through every MoE layer, for every
//! placement and overlap strategy, with per-step times and their mean, median and 99th
//! percentile.

use rayon::prelude::*;
use serde::Serialize;

use super::Setup;
use super::offload::{OffloadSummary, StepStalls};
use crate::cost::DispatchTally;
use crate::error::Result;
use crate::placement::Placement;
use crate::sim::kernels::{KernelCosts, KernelTime};
use crate::sim::perfetto;
use crate::sim::{PerfettoProcess, Recording, StrategySim, StrategyTotals};

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
    /// The dispatch policy (`[dispatch]`) and what it did under each placement.
    pub dispatch: DispatchSummary,
    /// The kernels of the first MoE layer of the first step under the first placement, on its
    /// GPU with the slowest routed experts (launch costs left out).
    pub kernels: Vec<KernelTime>,
    /// What the expert copies from host memory did (`[offload]`); each step's stall is in its
    /// `step_ns` (the stall share is over the first strategy's time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offload: Option<OffloadSummary>,
    /// The Chrome / Perfetto trace of every strategy's first step, when asked for.
    #[serde(skip)]
    pub perfetto: Option<serde_json::Value>,
}

/// The dispatch policy of a run and its pairs per placement.
#[derive(Debug, Clone, Serialize)]
pub struct DispatchSummary {
    /// Replica choice.
    pub replica: String,
    /// Expert capacity factor (`None`: no dropping).
    pub capacity_factor: Option<f64>,
    /// Whether least-loaded EP was on.
    pub llep: bool,
    /// Per placement, in scenario order: pairs routed, dropped and moved over every step and
    /// layer.
    pub placements: Vec<PlacementDispatch>,
}

/// What the dispatch policy did to every step's pairs under one placement.
#[derive(Debug, Clone, Serialize)]
pub struct PlacementDispatch {
    /// Placement strategy.
    pub placement: String,
    /// Share of the routed pairs dropped over capacity (the quality proxy).
    pub dropped_share: f64,
    /// The counts.
    #[serde(flatten)]
    pub tally: DispatchTally,
}

impl DispatchSummary {
    /// The summary of `setup`'s policy with one tally per placement.
    pub fn new(setup: &Setup, placements: Vec<(String, DispatchTally)>) -> DispatchSummary {
        DispatchSummary {
            replica: setup.dispatch.replica.name.to_string(),
            capacity_factor: setup.dispatch.capacity_factor,
            llep: setup.dispatch.llep.is_some(),
            placements: placements
                .into_iter()
                .map(|(placement, tally)| PlacementDispatch {
                    placement,
                    dropped_share: tally.dropped_share(),
                    tally,
                })
                .collect(),
        }
    }
}

/// What to keep besides the summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimOptions {
    /// Build the Chrome / Perfetto trace ([`SimResult::perfetto`]).
    pub perfetto: bool,
    /// Keep every strategy's [`StrategySim::timeline_excerpt`].
    pub timeline_excerpt: bool,
}

/// Simulates every step of `setup` under each of `placements`, once per overlap strategy.
pub fn simulate(
    setup: &Setup,
    placements: &[(String, Placement)],
    options: SimOptions,
) -> Result<SimResult> {
    let costs = setup.kernel_costs();
    let overlaps = setup.sim.overlaps.len();
    // The copies do not depend on the placement or the overlap (one GPU): walked once.
    let offload = match &setup.offload {
        Some(plan) => Some((plan, StepStalls::walk(setup, plan)?)),
        None => None,
    };
    // Placements are simulated in parallel; each keeps its own totals and Perfetto events, joined
    // in placement order, so the result does not depend on the thread count.
    let per_placement = placements
        .par_iter()
        .enumerate()
        .map(|(p, (name, placement))| {
            let mut totals: Vec<StrategyTotals> = setup
                .sim
                .overlaps
                .iter()
                .map(|overlap| StrategyTotals::new(overlap.name, name, &setup.cluster))
                .collect();
            let mut events = Vec::new();
            let mut tally = DispatchTally::default();
            for (index, step) in setup.steps.iter().enumerate() {
                let work = setup.layer_work(placement, step)?;
                work.iter().for_each(|layer| tally.add(&layer.tally));
                let spec = setup.step_spec(&costs, step, &work);
                for (k, (total, overlap)) in totals.iter_mut().zip(&setup.sim.overlaps).enumerate()
                {
                    let first = index == 0;
                    let recording = Recording {
                        perfetto: (first && options.perfetto).then(|| PerfettoProcess {
                            events: &mut events,
                            pid: p * overlaps + k,
                            name: format!("{name} / {}", overlap.name),
                        }),
                        excerpt: first && options.timeline_excerpt,
                    };
                    total.simulate(&spec, &**overlap, step.phase, recording);
                    if let Some((_, walked)) = &offload {
                        total.add_wait(walked.stalls[index]);
                    }
                }
            }
            let sims: Vec<_> = totals
                .into_iter()
                .map(|t| t.finish(&setup.cluster))
                .collect();
            Ok((sims, events, (name.clone(), tally)))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut strategies = Vec::new();
    let mut events = Vec::new();
    let mut tallies = Vec::new();
    for (sims, placement_events, tally) in per_placement {
        strategies.extend(sims);
        events.extend(placement_events);
        tallies.push(tally);
    }
    let offload = offload.map(|(plan, walked)| {
        let time_ns = strategies.first().map_or(0, |s| s.total_ns);
        walked.summary(setup, plan, time_ns)
    });
    let scenario = &setup.scenario;
    let kernels = match (placements.first(), setup.steps.first()) {
        (Some((_, placement)), Some(step)) => layer_kernels(setup, &costs, placement, step)?,
        _ => Vec::new(),
    };
    Ok(SimResult {
        scenario: scenario.name.clone(),
        model: setup.model.name.clone(),
        cluster: scenario.cluster.clone(),
        gpus: setup.gpus(),
        tokens_per_gpu: scenario.tokens_per_gpu,
        steps: setup.steps.len(),
        all_to_all: setup.sim.all_to_all.name.to_string(),
        comm_sms: setup.sim.all_to_all.sms_taken(),
        strategies,
        dispatch: DispatchSummary::new(setup, tallies),
        offload,
        kernels,
        perfetto: options.perfetto.then(|| perfetto::document(events)),
    })
}

/// [`SimResult::kernels`] of `step` under `placement`.
fn layer_kernels(
    setup: &Setup,
    costs: &KernelCosts,
    placement: &Placement,
    step: &super::steps::Step,
) -> Result<Vec<KernelTime>> {
    let work = setup.layer_work(placement, step)?;
    let Some(layer) = work.first() else {
        return Ok(Vec::new());
    };
    let slowest = (0..layer.expert_tokens.len())
        .max_by_key(|&gpu| costs.routed_ns(layer.expert_tokens[gpu].iter().copied()))
        .unwrap_or(0);
    Ok(costs.breakdown(
        layer.source_tokens[slowest],
        &setup.attention_span(step),
        &layer.expert_tokens[slowest],
    ))
}
