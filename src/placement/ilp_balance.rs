//! `ilp-balance`: per layer, choose each expert's replica count and the GPUs holding the replicas
//! so that the largest GPU load is as small as possible.
//!
//! Tokens of an expert split **evenly** across its replicas (the rule [`Placement::gpu_loads`],
//! EPLB and the evaluation use), so what the solver promises is what every consumer measures.
//! Constraints: slots per GPU (GPU memory is checked against the slots by
//! [`PlacementRequest::check`]) and at most one replica of an expert per GPU. Layers are independent and solved one by
//! one, each with an equal share of what is left of the time limit.
//!
//! Per layer: a greedy incumbent (see `greedy`, polished by `local_search`) and, when given, the warm-start placement's layer
//! are compared; the better one seeds the HiGHS model (see `mip`); HiGHS's answer is kept only if
//! it is better still. So the result is never worse than the warm start, and a solve stopped by
//! the time limit still returns its best placement with the gap it reached. When the incumbent
//! already meets the bound (within the MIP gap) the solver is skipped.
//!
//! The lower bound reported is valid for every placement of the request, with any replica
//! counts: the larger of a perfect split (`total / P`) and the smallest largest load per replica
//! that any replica counts reach (the spare slots handed out greedily to the expert with the
//! most load per replica, at most `P` replicas each). The gap is `max_load / lower_bound - 1`.
//!
//! Determinism: the greedy and local search are deterministic; a layer HiGHS stops at the time
//! limit may differ between runs (where it stopped depends on the machine's speed).
//!
//! Optional communication term ([`IlpBalance::comm_weight`], default 0: pure balance): the
//! objective becomes `max GPU load + comm_weight x expected cross-node tokens`, where the
//! expected cross-node tokens ([`cross_node_tokens`]) assume a layer's tokens start evenly on
//! the machines and use a replica on their own machine when there is one: expert `e` with load
//! `w_e` and replicas on `n_e` of the `N` machines sends `w_e (1 - n_e / N)` tokens across
//! machines. With a positive weight, incumbents are compared by this objective and the solver
//! always runs (the bound no longer proves optimality).
//!
//! Not modelled: per-replica token shares.

pub(super) mod greedy;
mod local_search;
mod mip;

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::apportion::apportion;
use super::{Eplb, LayerPlacement, Placement, PlacementRequest, PlacementStrategy};
use crate::error::{Error, Result};
use crate::registry::{Plugin, non_negative};
use crate::trace::ExpertId;

/// The `ilp-balance` strategy and its solver settings (its knobs in a scenario or flags).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IlpBalance {
    /// Wall-clock limit for the whole solve (all layers), seconds.
    pub time_limit_s: f64,
    /// HiGHS stops a layer once its solution is within this relative gap of its bound.
    pub mip_rel_gap: f64,
    /// Weight of the expected cross-node tokens in the objective (see the module docs); 0 for
    /// balance only.
    pub comm_weight: f64,
}

impl Default for IlpBalance {
    /// 60 s in all, a 0.5 % MIP gap, balance only; no memory limit.
    fn default() -> Self {
        IlpBalance {
            time_limit_s: 60.0,
            mip_rel_gap: 0.005,
            comm_weight: 0.0,
        }
    }
}

/// How a layer's placement was obtained.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "detail")]
pub enum SolveOutcome {
    /// HiGHS proved it optimal within the MIP gap.
    Optimal,
    /// HiGHS stopped at the time limit; the best placement found is kept.
    TimeLimit,
    /// The greedy incumbent already met the lower bound within the MIP gap; HiGHS not run.
    AtBound,
    /// HiGHS found nothing better than the incumbent (greedy or warm start) in its time.
    IncumbentKept,
    /// HiGHS failed (its message); the incumbent is kept.
    SolverFailed(String),
}

/// One layer's solve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSolve {
    /// The largest GPU load of the returned placement.
    pub max_load: f64,
    /// A lower bound on the largest GPU load of any placement (see the module docs).
    pub lower_bound: f64,
    /// `max_load / lower_bound - 1` (0 when the bound is 0).
    pub gap: f64,
    /// How the placement was obtained.
    pub outcome: SolveOutcome,
    /// Wall-clock time spent on the layer, milliseconds.
    pub solve_ms: u64,
}

/// Per layer, what the solve reached; for the CLI to print.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SolveReport {
    /// One entry per layer, in layer order.
    pub layers: Vec<LayerSolve>,
}

impl SolveReport {
    /// The mean gap over layers.
    pub fn mean_gap(&self) -> f64 {
        self.layers.iter().map(|l| l.gap).sum::<f64>() / self.layers.len().max(1) as f64
    }

    /// The largest gap over layers.
    pub fn max_gap(&self) -> f64 {
        self.layers.iter().map(|l| l.gap).fold(0.0, f64::max)
    }
}

impl PlacementStrategy for IlpBalance {
    /// Warm-started from EPLB's placement when EPLB accepts the request, so the result is
    /// never worse than EPLB's.
    fn place(&self, request: &PlacementRequest) -> Result<Placement> {
        let eplb = Eplb.place(request).ok();
        self.solve(request, eplb.as_ref())
            .map(|(placement, _)| placement)
    }
}

impl Plugin for IlpBalance {
    const NAME: &'static str = "ilp-balance";
    type Settings = IlpBalance;

    fn with_settings(settings: IlpBalance) -> Result<Self, String> {
        settings.check()?;
        Ok(settings)
    }
}

impl IlpBalance {
    /// The settings must be non-negative numbers; the message names the knob.
    fn check(&self) -> Result<(), String> {
        non_negative("time_limit_s", self.time_limit_s)?;
        non_negative("mip_rel_gap", self.mip_rel_gap)?;
        non_negative("comm_weight", self.comm_weight)
    }

    /// Places every layer of `request`, starting from `warm_start` when given (it must match
    /// the request's layers, experts and GPUs and fit its slots); returns the placement and the
    /// per-layer report. Infeasible requests fail before any solving, naming the constraint and
    /// the shortfall.
    pub fn solve(
        &self,
        request: &PlacementRequest,
        warm_start: Option<&Placement>,
    ) -> Result<(Placement, SolveReport)> {
        request.check()?;
        self.check()
            .map_err(|message| Error::invalid(format!("{}: {message}", Self::NAME)))?;
        let objective = Objective {
            comm_weight: self.comm_weight,
            gpus_per_node: request.num_gpus / request.num_nodes,
        };
        let slots = self.usable_slots(request)?;
        if let Some(warm) = warm_start {
            check_warm_start(warm, request, slots)?;
        }
        let started = Instant::now();
        let layers = request.loads.num_layers();
        let mut placed = Vec::with_capacity(layers);
        let mut report = Vec::with_capacity(layers);
        for layer in 0..layers {
            let left_s = self.time_limit_s - started.elapsed().as_secs_f64();
            let budget_s = (left_s / (layers - layer) as f64).max(0.0);
            let warm = warm_start.map(|w| w.layer(layer).gpu_experts.as_slice());
            let (gpu_experts, solve) = self.solve_layer(
                request.loads.layer(layer),
                request.num_gpus,
                slots,
                warm,
                budget_s,
                &objective,
            )?;
            placed.push(LayerPlacement { gpu_experts });
            report.push(solve);
        }
        let placement = Placement::new(
            request.num_gpus,
            request.loads.num_experts(),
            request.slots_per_gpu,
            placed,
        )?;
        Ok((placement, SolveReport { layers: report }))
    }

    /// Slots per GPU; fails when the experts do not fit even once. (GPU memory is checked by
    /// [`PlacementRequest::check`] against `request.memory`.)
    fn usable_slots(&self, request: &PlacementRequest) -> Result<usize> {
        let (experts, gpus) = (request.loads.num_experts(), request.num_gpus);
        let slots = request.slots_per_gpu;
        let capacity = slots * gpus;
        if capacity < experts {
            return Err(Error::invalid(format!(
                "{} slots: {experts} experts need {experts} slots but {gpus} GPUs x {slots} \
                 slots give {capacity} ({} short)",
                Self::NAME,
                experts - capacity
            )));
        }
        Ok(slots)
    }

    /// One layer: the better of the greedy incumbent and the warm start (by `objective`),
    /// improved by HiGHS within `budget_s` seconds unless it already meets the bound with no
    /// communication term.
    fn solve_layer(
        &self,
        loads: &[f64],
        gpus: usize,
        slots: usize,
        warm: Option<&[Vec<ExpertId>]>,
        budget_s: f64,
        objective: &Objective,
    ) -> Result<(Vec<Vec<ExpertId>>, LayerSolve)> {
        let started = Instant::now();
        let lower_bound = lower_bound(loads, gpus, slots);
        let greedy = greedy::best_packing(loads, gpus, slots).ok_or_else(|| {
            Error::invalid(format!(
                "{}: no greedy packing of {} experts on {gpus} GPUs x {slots} slots",
                Self::NAME,
                loads.len()
            ))
        })?;
        let score = |gpu_experts: &[Vec<ExpertId>]| objective.value(loads, gpu_experts);
        let mut best_score = score(&greedy.gpu_experts);
        let (mut best, mut best_max) = (greedy.gpu_experts, greedy.max_load);
        let mut from_warm = false;
        if let Some(warm) = warm {
            let warm_score = score(warm);
            if warm_score < best_score {
                best_max = greedy::max_gpu_load(loads, warm);
                (best, best_score, from_warm) = (warm.to_vec(), warm_score, true);
            }
        }
        let at_bound = best_max <= lower_bound * (1.0 + self.mip_rel_gap);
        let outcome = if at_bound && objective.comm_weight == 0.0 {
            SolveOutcome::AtBound
        } else {
            let model = mip::LayerModel {
                loads,
                gpus,
                slots,
                lower_bound,
                comm_weight: objective.comm_weight,
                gpus_per_node: objective.gpus_per_node,
            };
            match mip::solve(&model, &best, budget_s, self.mip_rel_gap) {
                Ok(result) => {
                    let result_score = score(&result.gpu_experts);
                    if result_score < best_score {
                        best_max = greedy::max_gpu_load(loads, &result.gpu_experts);
                        best = result.gpu_experts;
                        if result.proven {
                            SolveOutcome::Optimal
                        } else {
                            SolveOutcome::TimeLimit
                        }
                    } else {
                        SolveOutcome::IncumbentKept
                    }
                }
                Err(message) => SolveOutcome::SolverFailed(message),
            }
        };
        let outcome = match outcome {
            SolveOutcome::AtBound if from_warm => SolveOutcome::IncumbentKept,
            other => other,
        };
        let gap = if lower_bound > 0.0 {
            best_max / lower_bound - 1.0
        } else {
            0.0
        };
        let solve = LayerSolve {
            max_load: best_max,
            lower_bound,
            gap,
            outcome,
            solve_ms: started.elapsed().as_millis() as u64,
        };
        Ok((best, solve))
    }
}

/// What `ilp-balance` minimises per layer: the largest GPU load plus `comm_weight` times the
/// expected cross-node tokens.
struct Objective {
    comm_weight: f64,
    gpus_per_node: usize,
}

impl Objective {
    /// The objective of one layer's placement.
    fn value(&self, loads: &[f64], gpu_experts: &[Vec<ExpertId>]) -> f64 {
        let max_load = greedy::max_gpu_load(loads, gpu_experts);
        if self.comm_weight == 0.0 {
            return max_load;
        }
        max_load + self.comm_weight * cross_node_tokens(loads, gpu_experts, self.gpus_per_node)
    }
}

/// Expected tokens of one layer that cross machines when tokens start evenly on the machines
/// (`gpu_experts.len() / gpus_per_node` of them, consecutive GPUs) and use a replica on their
/// own machine when there is one: expert `e` on `n_e` of `N` machines sends
/// `loads[e] (1 - n_e / N)`.
pub fn cross_node_tokens(
    loads: &[f64],
    gpu_experts: &[Vec<ExpertId>],
    gpus_per_node: usize,
) -> f64 {
    let per_node = gpus_per_node.max(1);
    let nodes = gpu_experts.len().div_ceil(per_node).max(1);
    let mut held = vec![vec![false; nodes]; loads.len()];
    for (gpu, experts) in gpu_experts.iter().enumerate() {
        for &e in experts {
            if let Some(row) = held.get_mut(e as usize) {
                row[gpu / per_node] = true;
            }
        }
    }
    loads
        .iter()
        .zip(&held)
        .map(|(w, row)| {
            let on = row.iter().filter(|&&h| h).count();
            w * (1.0 - on as f64 / nodes as f64)
        })
        .sum()
}

/// A lower bound on any placement's largest GPU load: the perfect split `total / gpus`, and the
/// largest load per replica left when the spare slots go one by one to the expert with the most
/// load per replica (EPLB's [`apportion`], at most one replica per GPU). That greedy gives the smallest
/// possible largest `load / replicas` over all replica counts, and a GPU holding a replica
/// carries at least its share. With one slot per GPU it is the optimum itself.
fn lower_bound(loads: &[f64], gpus: usize, slots: usize) -> f64 {
    let total: f64 = loads.iter().sum();
    let (_, replicas) = apportion(loads, gpus.saturating_mul(slots), gpus);
    let per_replica = loads
        .iter()
        .zip(&replicas)
        .map(|(&load, &count)| load / count as f64)
        .fold(0.0, f64::max);
    (total / gpus as f64).max(per_replica)
}

/// Checks a warm start has the request's shape and fits `slots` per GPU.
fn check_warm_start(warm: &Placement, request: &PlacementRequest, slots: usize) -> Result<()> {
    let want = (
        request.loads.num_layers(),
        request.loads.num_experts(),
        request.num_gpus,
    );
    let got = (warm.num_layers(), warm.num_experts(), warm.num_gpus());
    if want != got {
        return Err(Error::invalid(format!(
            "{} warm start: {} layers x {} experts on {} GPUs, but the request has {} x {} on {}",
            IlpBalance::NAME,
            got.0,
            got.1,
            got.2,
            want.0,
            want.1,
            want.2
        )));
    }
    let fullest = warm
        .layers()
        .iter()
        .flat_map(|l| l.gpu_experts.iter().map(Vec::len))
        .max()
        .unwrap_or(0);
    if fullest > slots {
        return Err(Error::invalid(format!(
            "{} warm start: a GPU holds {fullest} experts but only {slots} slots are usable ({} \
             too many)",
            IlpBalance::NAME,
            fullest - slots
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
