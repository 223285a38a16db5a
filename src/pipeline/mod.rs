//! The conductor: scenario -> trace -> steps -> placements -> analytical estimate and
//! simulation -> results for the report.
//!
//! [`Setup`] resolves a scenario once (model, the expert-parallel group's cluster, the trace
//! lined up with the model and cut into [`steps`], compute cost, simulator plug-ins); the
//! analytical estimate ([`estimate`]), the simulation ([`simulate`]) and `place eval`
//! ([`evaluate`]) all price those same steps. This module and `cli` are the only ones that know
//! all the others; the libraries below never reach back up (`docs/ARCHITECTURE.md`).

pub mod elastic;
pub mod estimate;
pub mod evaluate;
pub mod failure_impact;
mod kv_transfer;
pub mod offload;
pub mod replacement;
mod request_routing;
pub mod serve;
mod setup;
pub mod simulate;
pub mod speculation;
pub mod steps;

use serde::Serialize;

pub use estimate::{LayerResult, StrategyResult};
pub use setup::{Setup, load_trace};
pub use simulate::{SimOptions, SimResult};

use crate::analysis::{self, TraceStats};
use crate::error::Result;
use crate::scenario::Scenario;

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
    /// Tokens each GPU contributes per step without a batch schedule.
    pub tokens_per_gpu: usize,
    /// Steps the trace was cut into (the analytical estimate and the simulation price the same
    /// ones).
    pub steps: usize,
    /// Where the routing came from.
    pub trace_source: String,
    /// Routing statistics of the trace.
    pub trace: TraceStats,
    /// The analytical estimate: one entry per placement strategy, in scenario order.
    pub strategies: Vec<StrategyResult>,
    /// The discrete-event simulation of the same placements (what `moesim simulate --json`
    /// prints).
    pub simulated: SimResult,
}

/// Runs `scenario`: places its experts with every strategy it names, estimates every step
/// analytically, then simulates the same steps with the same placements.
pub fn run(scenario: &Scenario) -> Result<RunResult> {
    let setup = Setup::from_scenario(scenario)?;
    let placements = setup.place_all()?;
    let loads = setup.trace.expert_loads();
    let strategies = placements
        .iter()
        .map(|(name, placement)| {
            let estimates = estimate::estimate_steps(&setup, placement)?;
            estimate::strategy_result(name, placement, &loads, &estimates)
        })
        .collect::<Result<Vec<_>>>()?;
    let options = SimOptions {
        perfetto: false,
        timeline_excerpt: true,
    };
    let simulated = simulate::simulate(&setup, &placements, options)?;
    Ok(RunResult {
        scenario: scenario.name.clone(),
        seed: scenario.seed,
        model: setup.model.name.clone(),
        cluster: scenario.cluster.clone(),
        gpus: setup.gpus(),
        nodes: setup.nodes,
        tokens_per_gpu: scenario.tokens_per_gpu,
        steps: setup.steps.len(),
        trace_source: setup.trace_source.clone(),
        trace: analysis::trace_stats(&setup.trace),
        strategies,
        simulated,
    })
}

/// Simulates every step of `scenario` under every placement it names (`moesim simulate`).
pub fn simulate_scenario(scenario: &Scenario, options: SimOptions) -> Result<SimResult> {
    let setup = Setup::from_scenario(scenario)?;
    simulate::simulate(&setup, &setup.place_all()?, options)
}

#[cfg(test)]
mod tests;
