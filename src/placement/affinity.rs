//! `ilp-affinity` (MoETuner / ExFlow style): place each layer's experts so that a token's
//! consecutive experts tend to share a GPU (and, failing that, a machine), while keeping the
//! GPUs' token loads in check.
//!
//! Objective: the sum over consecutive-layer token transitions (for top-k, every pair of the
//! token's experts at `l` and `l + 1`) of a hop cost between the two experts' GPUs: 0 on the
//! same GPU, 1 inside a machine, [`IlpAffinity::cross_node_weight`] across machines
//! (`topology-aware` takes the costs from the cluster's links instead). Each expert is placed
//! once. Balance: a hard cap, every GPU's token load under `(1 + balance_tolerance) * total /
//! P` (or a balanced greedy packing's largest load when that is higher, so the cap is always
//! feasible), and a soft term, [`AffinitySettings::load_weight`] times the sum over layers of
//! the peak GPU load, which the search minimises with the transitions.
//!
//! Search, all layers **jointly** (the graph's nodes are (layer, expert), its edges the
//! transitions): each restart starts from a partition with equal expert counts per GPU and
//! layer (restart 0 from the balanced packing, the others grown greedily from random nodes,
//! [`grow`], then swapped under the cap, [`swaps::repair_loads`]) and anneals it with
//! same-layer expert swaps ([`anneal`]); the best-scoring restart is then refined without
//! raising any layer's peak load: greedy swaps and whole-suffix GPU exchanges
//! ([`swaps::refine`]), then a **layer-by-layer HiGHS descent** — with the neighbours' GPUs
//! fixed a layer's cost is linear in its own assignment, a generalised assignment problem of
//! `E x P` binaries; every step keeps the layer's current assignment unless HiGHS finds a
//! cheaper one, so the cost never rises. A layer-by-layer descent alone stops in poor local
//! optima (26.9 % cross-GPU on switch-base-32); joint annealing is what beats ExFlow.
//!
//! Measured on the shared switch traces, 8 GPUs, default settings (cross-GPU share of
//! transitions, mean per-layer GPU max/mean load): switch-base-8 42.6 % (ExFlow 46.4 %, loads
//! equal with one expert per GPU); switch-base-32 15.47 % at 1.635 (ExFlow 15.67 % at 1.703),
//! both better, 0.5 s at opt-level 3; switch-base-128 15.5 % at 1.846 (ExFlow 12.9 % at 2.500),
//! 2.3 s: load better, transitions not. Before partner selection in the swaps, 5x more
//! annealing improved 128 experts only from 16.6 % to 15.6 %, and dropping the load terms
//! reached 13.6 %, still above ExFlow: the swap search does not find ExFlow's basin there; a
//! multilevel or recursive-bisection start is the next thing to try (annealing against coarse
//! 2- and 4-way splits first, tried, gained 0.3 points for 4x the time and was not kept).

mod anneal;
mod grow;
mod layer_model;
mod swaps;
mod transitions;

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use transitions::TransitionCounts;

use super::ilp_balance::greedy;
use super::{LayerPlacement, Placement, PlacementRequest, PlacementStrategy};
use crate::error::{Error, Result};
use crate::trace::ExpertId;

/// Solver settings shared by the affinity strategies.
#[derive(Debug, Clone, PartialEq)]
pub struct AffinitySettings {
    /// Wall-clock limit for the whole placement, seconds.
    pub time_limit_s: f64,
    /// HiGHS's relative gap for each layer's assignment problem.
    pub mip_rel_gap: f64,
    /// How far above a perfect split a GPU's token load may go (0.02 = 2 %): a hard cap.
    pub balance_tolerance: f64,
    /// Below the cap, how many transitions one token of a layer's peak GPU load is worth: the
    /// search minimises transitions plus this times the sum of the layers' peak loads.
    pub load_weight: f64,
    /// HiGHS sweeps over all layers, after the swap search.
    pub sweeps: usize,
    /// Partitions grown from random starts (see [`grow`]); the cheapest is kept.
    pub restarts: usize,
    /// Annealing swaps per (layer, expert) after growing each partition (see [`anneal`]).
    pub anneal_moves_per_node: usize,
    /// Annealing's first temperature, in units of a (layer, expert)'s mean token load.
    pub start_temperature: f64,
    /// Annealing's last temperature, in the same units.
    pub end_temperature: f64,
    /// Seed of the first restart's random stream (restart `r` uses `seed + r`).
    pub seed: u64,
}

impl Default for AffinitySettings {
    /// 60 s, 1 % gap per layer, caps at 100 % above a perfect split, a token of peak load worth
    /// 0.3 transitions, 2 restarts of 2000 annealing swaps per (layer, expert) from 2 to 0.005
    /// times a node's mean load, 3 HiGHS sweeps.
    fn default() -> Self {
        AffinitySettings {
            time_limit_s: 60.0,
            mip_rel_gap: 0.01,
            balance_tolerance: 1.0,
            load_weight: 0.3,
            sweeps: 3,
            restarts: 2,
            anneal_moves_per_node: 2000,
            start_temperature: 2.0,
            end_temperature: 0.005,
            seed: 0,
        }
    }
}

/// The `ilp-affinity` strategy: hop costs from the request's machine count.
#[derive(Debug, Clone, PartialEq)]
pub struct IlpAffinity {
    /// Solver settings.
    pub settings: AffinitySettings,
    /// Cost of a transition between GPUs on different machines (one inside a machine).
    pub cross_node_weight: f64,
}

impl Default for IlpAffinity {
    /// Default settings; a cross-machine hop costs 4 intra-machine hops.
    fn default() -> Self {
        IlpAffinity {
            settings: AffinitySettings::default(),
            cross_node_weight: 4.0,
        }
    }
}

impl PlacementStrategy for IlpAffinity {
    fn name(&self) -> &'static str {
        "ilp-affinity"
    }

    fn place(&self, request: &PlacementRequest) -> Result<Placement> {
        request.check()?;
        let per_node = request.num_gpus / request.num_nodes;
        let hop_costs: Vec<Vec<f64>> = (0..request.num_gpus)
            .map(|a| {
                (0..request.num_gpus)
                    .map(|b| match (a == b, a / per_node == b / per_node) {
                        (true, _) => 0.0,
                        (false, true) => 1.0,
                        (false, false) => self.cross_node_weight,
                    })
                    .collect()
            })
            .collect();
        place_by_affinity(self.name(), request, &hop_costs, &self.settings)
    }
}

/// Places `request`'s experts to minimise transitions weighted by `hop_costs[from_gpu][to_gpu]`
/// under the load bound (see the module docs). `strategy` names the caller in errors.
pub(super) fn place_by_affinity(
    strategy: &str,
    request: &PlacementRequest,
    hop_costs: &[Vec<f64>],
    settings: &AffinitySettings,
) -> Result<Placement> {
    request.check()?;
    let trace = request.transitions.ok_or_else(|| {
        Error::invalid(format!(
            "{strategy} needs token-level routing (a trace with per-token experts) for its \
             layer-to-layer transitions; the request has only loads"
        ))
    })?;
    let (layers, experts, gpus) = (
        request.loads.num_layers(),
        request.loads.num_experts(),
        request.num_gpus,
    );
    let transitions = TransitionCounts::from_trace(trace, layers, experts)?;
    let slots = request.slots_per_gpu;
    if experts > gpus * slots {
        return Err(Error::invalid(format!(
            "{strategy} places each of {experts} experts once but {gpus} GPUs x {slots} slots \
             give {} ({} short)",
            gpus * slots,
            experts - gpus * slots
        )));
    }
    if !(settings.balance_tolerance >= 0.0
        && settings.time_limit_s >= 0.0
        && settings.load_weight >= 0.0)
    {
        return Err(Error::invalid(format!(
            "{strategy}: balance tolerance ({}), time limit ({} s) and load weight ({}) must be \
             non-negative",
            settings.balance_tolerance, settings.time_limit_s, settings.load_weight
        )));
    }
    if !(settings.start_temperature > 0.0 && settings.end_temperature > 0.0) {
        return Err(Error::invalid(format!(
            "{strategy}: annealing temperatures (start {}, end {}) must be positive",
            settings.start_temperature, settings.end_temperature
        )));
    }
    let mut caps = Vec::with_capacity(layers);
    let mut balanced = Vec::with_capacity(layers);
    for layer in 0..layers {
        let loads = request.loads.layer(layer);
        let packing = greedy::pack(loads, &vec![1; experts], gpus, slots).ok_or_else(|| {
            Error::invalid(format!("{strategy}: no balanced packing of layer {layer}"))
        })?;
        let perfect = loads.iter().sum::<f64>() / gpus as f64;
        caps.push(
            packing
                .max_load
                .max(perfect * (1.0 + settings.balance_tolerance)),
        );
        balanced.push(expert_gpus(&packing.gpu_experts, experts));
    }
    let problem = Problem {
        loads: request.loads,
        transitions: &transitions,
        hop_costs,
        slots,
        caps: &caps,
    };
    let started = Instant::now();
    let mut start = problem.best_start(balanced, settings);
    // The final refinement may not raise any layer's peak load beyond the search's.
    let peaks = problem.peaks(&start);
    let problem = Problem {
        caps: &peaks,
        ..problem
    };
    swaps::refine(&problem, &mut start);
    let left_s = (settings.time_limit_s - started.elapsed().as_secs_f64()).max(0.0);
    let gpu_of = Descent {
        problem: &problem,
        settings,
    }
    .run(start, left_s);
    let placed = gpu_of
        .iter()
        .map(|assignment| {
            let mut gpu_experts = vec![Vec::new(); gpus];
            for (expert, &gpu) in assignment.iter().enumerate() {
                // Ids fit: `check` caps experts at 65536.
                gpu_experts[gpu].push(expert as ExpertId);
            }
            LayerPlacement { gpu_experts }
        })
        .collect();
    Placement::new(gpus, experts, slots, placed)
}

/// The placement problem: loads, transitions, hop costs, slots and per-layer load caps.
#[derive(Clone, Copy)]
struct Problem<'a> {
    loads: &'a crate::trace::ExpertLoads,
    transitions: &'a TransitionCounts,
    hop_costs: &'a [Vec<f64>],
    slots: usize,
    caps: &'a [f64],
}

impl Problem<'_> {
    /// `cost[e][g]` for placing expert `e` of `layer` on GPU `g`, given where both neighbouring
    /// layers' experts are.
    fn layer_costs(&self, gpu_of: &[Vec<usize>], layer: usize) -> Vec<Vec<f64>> {
        let experts = gpu_of[layer].len();
        let (transitions, hop_costs) = (self.transitions, self.hop_costs);
        let gpus = hop_costs.len();
        // Per expert, transitions from and to each GPU of the neighbouring layers.
        let mut from_gpu = vec![vec![0.0; gpus]; experts];
        let mut to_gpu = vec![vec![0.0; gpus]; experts];
        if layer > 0 {
            for (prev, &gpu) in gpu_of[layer - 1].iter().enumerate() {
                for (e, row) in from_gpu.iter_mut().enumerate() {
                    row[gpu] += transitions.count(layer - 1, prev, e);
                }
            }
        }
        if layer + 1 < gpu_of.len() {
            for (e, row) in to_gpu.iter_mut().enumerate() {
                for (next, &gpu) in gpu_of[layer + 1].iter().enumerate() {
                    row[gpu] += transitions.count(layer, e, next);
                }
            }
        }
        (0..experts)
            .map(|e| {
                (0..gpus)
                    .map(|g| {
                        (0..gpus)
                            .map(|h| {
                                from_gpu[e][h] * hop_costs[h][g] + to_gpu[e][h] * hop_costs[g][h]
                            })
                            .sum()
                    })
                    .collect()
            })
            .collect()
    }

    /// The objective: every transition weighted by the hop cost between its experts' GPUs.
    fn total_cost(&self, gpu_of: &[Vec<usize>]) -> f64 {
        gpu_of
            .windows(2)
            .enumerate()
            .map(|(pair, w)| {
                let mut cost = 0.0;
                for (from, &g) in w[0].iter().enumerate() {
                    for (to, &h) in w[1].iter().enumerate() {
                        cost += self.transitions.count(pair, from, to) * self.hop_costs[g][h];
                    }
                }
                cost
            })
            .sum()
    }

    /// Per GPU, the token load of `layer` under `assignment` (expert -> GPU).
    fn gpu_loads(&self, layer: usize, assignment: &[usize]) -> Vec<f64> {
        let mut gpu_loads = vec![0.0; self.hop_costs.len()];
        for (&g, &w) in assignment.iter().zip(self.loads.layer(layer)) {
            gpu_loads[g] += w;
        }
        gpu_loads
    }

    /// The peak GPU load of every layer under `gpu_of`.
    fn peaks(&self, gpu_of: &[Vec<usize>]) -> Vec<f64> {
        (0..gpu_of.len())
            .map(|l| {
                self.gpu_loads(l, &gpu_of[l])
                    .into_iter()
                    .fold(0.0, f64::max)
            })
            .collect()
    }

    /// What the search minimises: the transition cost plus `load_weight` times the sum over
    /// layers of the peak GPU load.
    fn score(&self, gpu_of: &[Vec<usize>], load_weight: f64) -> f64 {
        self.total_cost(gpu_of) + load_weight * self.peaks(gpu_of).iter().sum::<f64>()
    }

    /// The best-scoring of `restarts` annealed partitions: restart 0 starts from `balanced`
    /// (the balanced packing, always within the caps), the others from grown partitions
    /// repaired to the caps (dropped when that fails). Deterministic: restart `r` draws from a
    /// ChaCha8 stream seeded `settings.seed + r`.
    fn best_start(
        &self,
        balanced: Vec<Vec<usize>>,
        settings: &AffinitySettings,
    ) -> Vec<Vec<usize>> {
        let (layers, experts, gpus) = (
            balanced.len(),
            self.loads.num_experts(),
            self.hop_costs.len(),
        );
        let total: f64 = (0..layers).map(|l| self.loads.layer_total(l)).sum();
        let per_node = total / (layers * experts).max(1) as f64;
        let schedule = anneal::Schedule {
            moves: settings.anneal_moves_per_node * layers * experts,
            start_temperature: settings.start_temperature * per_node,
            end_temperature: settings.end_temperature * per_node,
            load_weight: settings.load_weight,
        };
        let mut best: Option<(Vec<Vec<usize>>, f64)> = None;
        for restart in 0..settings.restarts.max(1) {
            let mut rng = ChaCha8Rng::seed_from_u64(settings.seed.wrapping_add(restart as u64));
            let mut gpu_of = if restart == 0 {
                balanced.clone()
            } else {
                grow::grow(self.transitions, layers, experts, gpus, &mut rng)
            };
            if !swaps::repair_loads(self, &mut gpu_of) {
                continue;
            }
            anneal::anneal(self, &mut gpu_of, &schedule, &mut rng);
            let score = self.score(&gpu_of, settings.load_weight);
            if best.as_ref().is_none_or(|(_, s)| score < *s) {
                best = Some((gpu_of, score));
            }
        }
        best.map_or(balanced, |(gpu_of, _)| gpu_of)
    }
}

/// Everything one layer-by-layer descent needs.
struct Descent<'a> {
    problem: &'a Problem<'a>,
    settings: &'a AffinitySettings,
}

impl Descent<'_> {
    /// Starting from `gpu_of` (feasible), sweeps all layers, re-placing each against both
    /// neighbours (keeping it unless HiGHS finds cheaper), until a sweep changes nothing or the
    /// sweeps or `time_limit_s` are spent.
    fn run(&self, mut gpu_of: Vec<Vec<usize>>, time_limit_s: f64) -> Vec<Vec<usize>> {
        let layers = gpu_of.len();
        let started = Instant::now();
        let steps = layers * self.settings.sweeps;
        let mut step = 0;
        let problem = self.problem;
        let mut place = |gpu_of: &mut Vec<Vec<usize>>, layer: usize| {
            let left_s = time_limit_s - started.elapsed().as_secs_f64();
            let budget_s = (left_s / steps.saturating_sub(step).max(1) as f64).max(0.0);
            step += 1;
            let layer_problem = layer_model::LayerProblem {
                loads: problem.loads.layer(layer),
                cost: problem.layer_costs(gpu_of, layer),
                slots: problem.slots,
                load_cap: problem.caps[layer],
            };
            let current = gpu_of[layer].clone();
            let next =
                layer_model::improve(&layer_problem, current, budget_s, self.settings.mip_rel_gap);
            let changed = next != gpu_of[layer];
            gpu_of[layer] = next;
            changed
        };
        for _ in 0..self.settings.sweeps {
            let mut changed = false;
            for layer in 0..layers {
                changed |= place(&mut gpu_of, layer);
            }
            if !changed {
                break;
            }
        }
        gpu_of
    }
}

/// Per expert, the GPU holding it (each expert is held exactly once).
fn expert_gpus(gpu_experts: &[Vec<ExpertId>], experts: usize) -> Vec<usize> {
    let mut gpu_of = vec![0; experts];
    for (gpu, held) in gpu_experts.iter().enumerate() {
        for &e in held {
            gpu_of[e as usize] = gpu;
        }
    }
    gpu_of
}

#[cfg(test)]
mod tests;
