//! A placement's step through the event simulator (`crate::sim`), next to the analytical step
//! time `place eval` reports: the first `step_tokens` tokens of the trace (or its loads rescaled
//! to that many tokens) through every MoE layer, once per overlap strategy, the same way
//! `moesim simulate` runs a scenario's placement.

use serde::Serialize;

use super::Placement;
use crate::cost::analytical::CostOptions;
use crate::error::{Error, Result};
use crate::model::MoeModel;
use crate::sim::kernels::KernelCosts;
use crate::sim::step::{LayerWork, StepSpec};
use crate::sim::{SimConfig, simulate_step, step_plans};
use crate::topology::Cluster;
use crate::trace::Trace;

/// One overlap strategy's simulated step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimulatedStep {
    /// Overlap strategy.
    pub overlap: String,
    /// Simulated time of the step through all MoE layers, ns.
    pub step_ns: u64,
    /// Communication on the critical path, ns.
    pub exposed_comm_ns: u64,
}

/// What one simulation of a placement needs besides the placement and the trace.
#[derive(Clone, Copy)]
pub struct SimulationInput<'a> {
    /// The model: hidden size (bytes per token), kernel costs, top-k.
    pub model: &'a MoeModel,
    /// The cluster; it must have the placement's GPU count.
    pub cluster: &'a Cluster,
    /// Tokens in the simulated step.
    pub step_tokens: usize,
    /// Activation precision of the all-to-alls.
    pub cost: CostOptions,
    /// Overlap strategies, chunks, all-to-all algorithm.
    pub config: &'a SimConfig,
}

/// Simulates one step of `trace` under `placement`, once per overlap strategy of
/// `input.config`, in its order. Fails when the cluster's GPU count is not the placement's, or
/// the SM split leaves no SM for GEMMs.
pub fn simulate_placement(
    placement: &Placement,
    trace: &Trace,
    input: SimulationInput,
) -> Result<Vec<SimulatedStep>> {
    let (model, cluster) = (input.model, input.cluster);
    if cluster.num_gpus() != placement.num_gpus() {
        return Err(Error::invalid(format!(
            "simulated step: the cluster has {} GPUs but the placement {}",
            cluster.num_gpus(),
            placement.num_gpus()
        )));
    }
    let costs = KernelCosts::new(model, cluster.gpu_spec(0));
    if input.config.comm_sms >= costs.sm_count() {
        return Err(Error::invalid(format!(
            "simulated step: communication takes {} SMs, leaving none of the {} for GEMMs",
            input.config.comm_sms,
            costs.sm_count()
        )));
    }
    let plans = step_plans(cluster, placement, trace, input.step_tokens, model.top_k)?;
    let hidden = model.hidden_size as f64;
    let work = LayerWork::from_plans(
        &plans,
        hidden * input.cost.dispatch_bytes_per_elem,
        hidden * input.cost.combine_bytes_per_elem,
        1,
    );
    let spec = StepSpec {
        cluster,
        costs: &costs,
        layers: &work,
        config: input.config,
    };
    Ok(input
        .config
        .overlap
        .iter()
        .map(|&overlap| {
            let sim = simulate_step(&spec, overlap, "");
            SimulatedStep {
                overlap: sim.strategy,
                step_ns: sim.step_ns,
                exposed_comm_ns: sim.exposed_comm_ns,
            }
        })
        .collect())
}
