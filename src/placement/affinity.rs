//! `ilp-affinity` (MoETuner / ExFlow style): place each layer's experts so that a token's
//! consecutive experts tend to share a GPU (and, failing that, a machine), while keeping the
//! GPUs' token loads in check.
//!
//! Objective: the sum over consecutive-layer token transitions (for top-k, every pair of the
//! token's experts at `l` and `l + 1`) of a hop cost between the two experts' GPUs: 0 on the
//! same GPU, 1 inside a machine, [`IlpAffinity::cross_node_weight`] across machines
//! (`topology-aware` takes the costs from the cluster's links instead). Each expert is placed
//! once, with equal expert counts per GPU and layer. Balance: a hard cap, every GPU's token load
//! at most [`AffinitySettings::max_load_ratio`] times a perfect split (or a balanced greedy
//! packing's largest load when that is higher, so the cap is always feasible; `inf` for no
//! cap), and a soft term, [`AffinitySettings::load_weight`] times the sum over layers of the
//! peak GPU load, which the search minimises with the transitions.
//!
//! Decomposition: **recursive bisection of the whole (layer, expert) transition graph**, then
//! joint refinement. Each restart splits the graph in two halves with equal expert counts in
//! every layer, minimising the transitions between them by Kernighan-Lin passes (best of
//! [`AffinitySettings::bisection_tries`] random splits), recursively down to one GPU per part
//! ([`bisect`]); swaps repair the loads to the caps ([`swaps::repair_loads`]), and simulated
//! annealing of same-layer swaps refines all layers together ([`anneal`]). The best-scoring
//! restart is then refined without raising any layer's peak load: greedy swaps and whole-suffix
//! GPU exchanges ([`swaps::refine`]), then a **layer-by-layer HiGHS descent** — with the
//! neighbours' GPUs fixed a layer's cost is linear in its own assignment, a generalised
//! assignment problem of `E x P` binaries; every step keeps the layer's current assignment
//! unless HiGHS finds a cheaper one, so the cost never rises.
//!
//! Why bisection: the chain structure that matters spans all layers (a token's path), which
//! neither a layer-by-layer descent (26.9 % cross-GPU on switch-base-32, stuck in poor local
//! optima) nor annealing from greedily grown partitions (15.5 % on switch-base-128, ExFlow 12.9
//! %) finds; a 2-way cut of the whole graph is where Kernighan-Lin's pair exchanges are
//! strongest, and each level only has to decide one side per node. Restarts differ in their
//! seeds and land in different basins, so several cheap ones beat one long anneal. Measured
//! figures are in the README ("Placement strategies").

mod anneal;
mod bisect;
mod layer_model;
mod swaps;
mod transitions;

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

pub use transitions::TransitionCounts;

use super::ilp_balance::greedy;
use super::{LayerPlacement, Placement, PlacementRequest, PlacementStrategy};
use crate::error::{Error, Result};
use crate::registry::{Plugin, non_negative};
use crate::trace::ExpertId;

/// Solver settings shared by the affinity strategies (their knobs in a scenario or flags).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AffinitySettings {
    /// Wall-clock limit for the whole placement, seconds.
    pub time_limit_s: f64,
    /// HiGHS's relative gap for each layer's assignment problem.
    pub mip_rel_gap: f64,
    /// A hard cap on every GPU's token load, as a multiple of a perfect split (raised to a
    /// balanced packing's peak where that is higher); at least 1, `f64::INFINITY` for none.
    pub max_load_ratio: f64,
    /// Below the cap, how many transitions one token of a layer's peak GPU load is worth: the
    /// search minimises transitions plus this times the sum of the layers' peak loads.
    pub load_weight: f64,
    /// HiGHS sweeps over all layers, after the swap search.
    pub sweeps: usize,
    /// Partitions built by recursive bisection from different seeds (see [`bisect`]); the
    /// cheapest after annealing is kept.
    pub restarts: usize,
    /// Random splits refined per bisection; the smallest cut is kept.
    pub bisection_tries: usize,
    /// Annealing swaps per (layer, expert) after each bisection (see [`anneal`]).
    pub anneal_moves_per_node: usize,
    /// Annealing's first temperature from the balanced packing, in units of a (layer, expert)'s
    /// mean token load: hot, since that start knows nothing of the transitions.
    pub start_temperature: f64,
    /// Annealing's first temperature from every other bisection (the others start at
    /// `start_temperature`), in the same units: cooler, so that the annealing polishes the
    /// bisection's structure rather than melting it. Hot restarts win when repairing tight load
    /// caps broke much of that structure, cool ones when the caps are loose.
    pub bisection_temperature: f64,
    /// Annealing's last temperature, in the same units.
    pub end_temperature: f64,
    /// Seed of the first restart's random stream (restart `r` uses `seed + r`).
    pub seed: u64,
}

impl Default for AffinitySettings {
    /// 60 s, 1 % gap per layer, caps at twice a perfect split, a token of peak load worth
    /// 0.3 transitions, the balanced packing and 8 bisections (16 tries each) each annealed
    /// with 1000 swaps per (layer, expert), from 2 (the packing, odd bisections) or 0.4 (even
    /// bisections) to 0.005 times a node's mean load, 3 HiGHS sweeps.
    fn default() -> Self {
        AffinitySettings {
            time_limit_s: 60.0,
            mip_rel_gap: 0.01,
            max_load_ratio: 2.0,
            load_weight: 0.3,
            sweeps: 3,
            restarts: 8,
            bisection_tries: 16,
            anneal_moves_per_node: 1000,
            start_temperature: 2.0,
            bisection_temperature: 0.4,
            end_temperature: 0.005,
            seed: 0,
        }
    }
}

impl AffinitySettings {
    /// Time limit and load weight non-negative, load ratio at least 1, temperatures positive;
    /// the message names the knob.
    pub(super) fn check(&self) -> Result<(), String> {
        non_negative("time_limit_s", self.time_limit_s)?;
        non_negative("load_weight", self.load_weight)?;
        let ratio = self.max_load_ratio;
        if ratio.is_nan() || ratio < 1.0 {
            return Err(format!(
                "`max_load_ratio` = {ratio} must be at least 1 (a perfect split); use inf for no cap"
            ));
        }
        for (knob, value) in [
            ("start_temperature", self.start_temperature),
            ("bisection_temperature", self.bisection_temperature),
            ("end_temperature", self.end_temperature),
        ] {
            if value.is_nan() || value <= 0.0 {
                return Err(format!("`{knob}` = {value} must be positive"));
            }
        }
        Ok(())
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

/// One settings table: `cross_node_weight` beside the [`AffinitySettings`] keys. (serde's
/// `flatten` would let unknown keys through.)
impl<'de> Deserialize<'de> for IlpAffinity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut table = toml::Table::deserialize(deserializer)?;
        let default = IlpAffinity::default();
        let cross_node_weight = match table.remove("cross_node_weight") {
            Some(value) => value.try_into().map_err(D::Error::custom)?,
            None => default.cross_node_weight,
        };
        let settings = toml::Value::Table(table)
            .try_into()
            .map_err(D::Error::custom)?;
        Ok(IlpAffinity {
            settings,
            cross_node_weight,
        })
    }
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

impl Plugin for IlpAffinity {
    const NAME: &'static str = "ilp-affinity";
    type Settings = IlpAffinity;

    fn with_settings(settings: IlpAffinity) -> Result<Self, String> {
        settings.settings.check()?;
        non_negative("cross_node_weight", settings.cross_node_weight)?;
        Ok(settings)
    }
}

impl PlacementStrategy for IlpAffinity {
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
        place_by_affinity(Self::NAME, request, &hop_costs, &self.settings)
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
    settings
        .check()
        .map_err(|message| Error::invalid(format!("{strategy}: {message}")))?;
    let max_load_ratio = settings.max_load_ratio;
    let mut caps = Vec::with_capacity(layers);
    let mut balanced = Vec::with_capacity(layers);
    for layer in 0..layers {
        let loads = request.loads.layer(layer);
        let packing = greedy::pack(loads, &vec![1; experts], gpus, slots).ok_or_else(|| {
            Error::invalid(format!("{strategy}: no balanced packing of layer {layer}"))
        })?;
        let perfect = loads.iter().sum::<f64>() / gpus as f64;
        caps.push(packing.max_load.max(perfect * max_load_ratio));
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

    /// The best-scoring annealed partition: `balanced` (the balanced packing, always within the
    /// caps) annealed hot, and `settings.restarts` recursive bisections repaired to the caps
    /// (dropped when that fails), annealed alternately cool and hot; no bisection starts once
    /// half of `settings.time_limit_s` is spent (the rest is the descent's). Deterministic when
    /// the time limit does not bite: the packing anneals with a ChaCha8 stream seeded
    /// `settings.seed`, bisection `r` with `settings.seed + 1 + r`.
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
        let schedule = |start_temperature: f64| anneal::Schedule {
            moves: settings.anneal_moves_per_node * layers * experts,
            start_temperature: start_temperature * per_node,
            end_temperature: settings.end_temperature * per_node,
            load_weight: settings.load_weight,
        };
        let anneal = |mut gpu_of: Vec<Vec<usize>>, temperature: f64, rng: &mut ChaCha8Rng| {
            anneal::anneal(self, &mut gpu_of, &schedule(temperature), rng);
            let score = self.score(&gpu_of, settings.load_weight);
            (gpu_of, score)
        };
        let started = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
        let mut best = anneal(balanced, settings.start_temperature, &mut rng);
        for restart in 0..settings.restarts {
            if started.elapsed().as_secs_f64() > settings.time_limit_s / 2.0 {
                break;
            }
            let seed = settings.seed.wrapping_add(1 + restart as u64);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut gpu_of = bisect::partition_layers(
                self.transitions,
                layers,
                experts,
                gpus,
                settings.bisection_tries,
                &mut rng,
            );
            if !swaps::repair_loads(self, &mut gpu_of) {
                continue;
            }
            let temperature = if restart % 2 == 0 {
                settings.bisection_temperature
            } else {
                settings.start_temperature
            };
            let annealed = anneal(gpu_of, temperature, &mut rng);
            if annealed.1 < best.1 {
                best = annealed;
            }
        }
        best.0
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
