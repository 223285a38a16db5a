//! Which tokens go where in one MoE layer's dispatch under a placement and a dispatch policy:
//! the [`DispatchPlan`] of a step's routing.
//!
//! Tokens are data-parallel: token `t` of a step of `T` tokens starts on GPU `t * P / T`
//! (contiguous, even split; GPU `t / b` when each of the `P` GPUs holds `b` tokens). The policy
//! ([`DispatchPolicy`], the scenario's `[dispatch]` table) then decides, pair by pair in token
//! order:
//! - capacity: with a capacity factor `f`, each expert takes at most `ceil(f * T * k / E)` of the
//!   layer's `T * k` (token, expert) pairs (GShard / Switch, and capacity-aware inference's
//!   token drop); later pairs over it are dropped (neither sent nor computed; the token keeps
//!   its other experts);
//! - replica: each kept pair goes to one replica of its expert, as the [`ReplicaChoice`] plug-in
//!   says (default `same-node`: the token's own GPU, else its machine, else any, by token);
//! - least-loaded EP ([`Llep`]): the last pairs of the hottest experts of overloaded GPUs move
//!   to GPUs that borrow those experts' weights.
//!
//! Like DeepEP, a token crosses to each destination GPU once however many of its experts live
//! there.
//!
//! From aggregate loads alone (no token identities), each expert's kept load is assumed to come
//! evenly from all GPUs and to split over the replicas as the choice's `split` says; every
//! (token, expert) pair then counts as one send, an upper bound on DeepEP's deduplicated
//! traffic. Pairs LLEP moves off a GPU are taken from its senders in proportion to what each sends
//! it.

mod llep;
mod replica;

pub use llep::{Llep, Move, Rebalance};
pub use replica::{DEFAULT_REPLICA, Even, LeastLoaded, REPLICAS, ReplicaChoice, SameNode};

use serde::Deserialize;

use super::Placement;
use crate::cost::DispatchPlan;
use crate::error::{Error, Result};
use crate::registry::{Named, Settings, non_negative, positive};
use crate::topology::Cluster;
use crate::trace::LayerRouting;

/// How a layer's pairs are dispatched: the replica choice, the capacity limit and least-loaded
/// EP.
#[derive(Debug)]
pub struct DispatchPolicy {
    /// Which replica of a replicated expert a pair goes to.
    pub replica: Named<dyn ReplicaChoice>,
    /// Each expert's capacity as a multiple of the mean pairs per expert; `None`: unlimited.
    pub capacity_factor: Option<f64>,
    /// Least-loaded EP, when on.
    pub llep: Option<Llep>,
}

impl Default for DispatchPolicy {
    /// `same-node` replicas, no capacity limit, no LLEP (moesim's behaviour before policies).
    fn default() -> Self {
        DispatchConfig::default()
            .resolve(0)
            .expect("the default policy builds")
    }
}

impl DispatchPolicy {
    /// Pairs each expert may take in a layer of `pairs` pairs over `experts` experts:
    /// `ceil(capacity_factor * pairs / experts)`, unlimited without a capacity factor.
    pub fn capacity(&self, pairs: f64, experts: usize) -> f64 {
        self.capacity_factor.map_or(f64::INFINITY, |f| {
            (f * pairs / experts.max(1) as f64).ceil()
        })
    }
}

/// The `[dispatch]` table of a scenario (all optional):
///
/// ```toml
/// [dispatch]
/// replica = "least-loaded"   # same-node (default) | even | least-loaded
/// capacity_factor = 1.25     # absent: no dropping
/// [dispatch.llep]            # absent: off
/// threshold = 1.3
/// memory_budget_gb = 4
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchConfig {
    /// Replica choice, by name ([`REPLICAS`]).
    pub replica: String,
    /// Expert capacity factor (positive).
    pub capacity_factor: Option<f64>,
    /// Least-loaded EP.
    pub llep: Option<LlepConfig>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            replica: DEFAULT_REPLICA.into(),
            capacity_factor: None,
            llep: None,
        }
    }
}

/// The `[dispatch.llep]` table.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlepConfig {
    /// Busiest GPU's pairs over the mean above which a layer is rebalanced. Default 1.3 (the
    /// LLEP repository's example).
    #[serde(default = "LlepConfig::default_threshold")]
    pub threshold: f64,
    /// Borrowed expert weights each GPU may hold, GB (10^9 bytes).
    pub memory_budget_gb: f64,
}

impl LlepConfig {
    fn default_threshold() -> f64 {
        1.3
    }
}

impl DispatchConfig {
    /// The policy, with experts of `expert_bytes` bytes; the error names the key at fault.
    pub fn resolve(&self, expert_bytes: u64) -> std::result::Result<DispatchPolicy, String> {
        let replica = REPLICAS
            .build(&self.replica, &Settings::new())
            .map_err(|message| format!("`dispatch.replica`: {message}"))?;
        if let Some(factor) = self.capacity_factor {
            positive("dispatch.capacity_factor", factor)?;
        }
        let llep = match self.llep {
            Some(config) => {
                if !(config.threshold >= 1.0 && config.threshold.is_finite()) {
                    return Err(format!(
                        "`dispatch.llep.threshold` = {} must be a number of at least 1",
                        config.threshold
                    ));
                }
                let budget = config.memory_budget_gb;
                non_negative("dispatch.llep.memory_budget_gb", budget)?;
                Some(Llep {
                    threshold: config.threshold,
                    memory_budget_bytes: budget * 1e9,
                    expert_bytes,
                })
            }
            None => None,
        };
        Ok(DispatchPolicy {
            replica,
            capacity_factor: self.capacity_factor,
            llep,
        })
    }
}

/// The plan for the tokens of `routing`, at placement layer `layer`, under the default policy.
pub fn plan_tokens(
    cluster: &Cluster,
    placement: &Placement,
    layer: usize,
    routing: &LayerRouting,
) -> Result<DispatchPlan> {
    plan_tokens_with(
        cluster,
        placement,
        layer,
        routing,
        &DispatchPolicy::default(),
    )
}

/// The plan for the tokens of `routing`, at placement layer `layer`, under `policy`.
pub fn plan_tokens_with(
    cluster: &Cluster,
    placement: &Placement,
    layer: usize,
    routing: &LayerRouting,
    policy: &DispatchPolicy,
) -> Result<DispatchPlan> {
    let pairs = routing.num_entries() as f64;
    let (mut plan, routes) = assign(cluster, placement, layer, routing, policy, pairs)?;
    plan.count_per_node(cluster.gpus_per_node());
    let mut machines = Vec::new();
    for token in 0..routes.num_tokens() {
        let src = routes.source(token);
        plan.source_tokens[src] += 1.0;
        machines.clear();
        for &dst in routes.destinations(token) {
            plan.add_flow(src, dst, 1.0);
            let machine = plan.node_of(dst);
            if !machines.contains(&machine) {
                machines.push(machine);
                plan.add_node_tokens(src, machine, 1.0);
            }
        }
    }
    Ok(plan)
}

/// Each token's distinct destination GPUs in the dispatch of `routing` at placement layer
/// `layer` under `policy`, exactly as [`plan_tokens_with`] sends them (replica choice, capacity,
/// LLEP's moves). `pairs` is the layer's routed pair count the capacity is a share of: the
/// routing's own, or the real routing's when `routing` is a prediction of it (speculative
/// pre-scheduling asks where a token's predicted experts would send it).
pub fn route_tokens(
    cluster: &Cluster,
    placement: &Placement,
    layer: usize,
    routing: &LayerRouting,
    policy: &DispatchPolicy,
    pairs: f64,
) -> Result<TokenRoutes> {
    Ok(assign(cluster, placement, layer, routing, policy, pairs)?.1)
}

/// Where each token of one layer's step goes: its source GPU and its distinct destination GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRoutes {
    /// GPUs of the placement (a token's source GPU depends on it).
    gpus: usize,
    /// Destination GPUs, token after token.
    destinations: Vec<usize>,
    /// `ends[t]`: the end of token `t`'s destinations.
    ends: Vec<usize>,
}

impl TokenRoutes {
    /// Tokens in the step.
    pub fn num_tokens(&self) -> usize {
        self.ends.len()
    }

    /// The GPU token `token` starts on.
    pub fn source(&self, token: usize) -> usize {
        token * self.gpus / self.ends.len()
    }

    /// The distinct GPUs token `token` is sent to (none when all its pairs were dropped).
    pub fn destinations(&self, token: usize) -> &[usize] {
        let start = token.checked_sub(1).map_or(0, |t| self.ends[t]);
        &self.destinations[start..self.ends[token]]
    }
}

/// A layer's pairs under `policy`, each expert's capacity a share of `routed` pairs: the plan's
/// expert slots, tallies and borrowed weights (no flows yet) and each token's destinations.
fn assign(
    cluster: &Cluster,
    placement: &Placement,
    layer: usize,
    routing: &LayerRouting,
    policy: &DispatchPolicy,
    routed: f64,
) -> Result<(DispatchPlan, TokenRoutes)> {
    let checker = Checker::new(cluster, placement, layer)?;
    let mut plan = empty_plan(placement, layer);
    let gpus = placement.num_gpus();
    let tokens = routing.num_tokens();
    let capacity = policy.capacity(routed, placement.num_experts());
    let mut kept = vec![0.0; placement.num_experts()];
    let mut gpu_pairs = vec![0.0; gpus];
    // Each kept pair's (GPU, slot), token by token; `ends[t]`: the end of token t's pairs.
    let mut pairs: Vec<(usize, usize)> = Vec::with_capacity(routing.num_entries());
    let mut ends = Vec::with_capacity(tokens);
    for token in 0..tokens {
        let src = token * gpus / tokens;
        for &expert in routing.experts_of(token) {
            let expert = checker.check_expert(expert as usize, token)?;
            plan.tally.routed_pairs += 1.0;
            if kept[expert] >= capacity {
                plan.tally.dropped_pairs += 1.0;
                continue;
            }
            kept[expert] += 1.0;
            let replicas = placement.replicas_of(layer, expert);
            let gpu = policy
                .replica
                .pick(cluster, token, src, replicas, &gpu_pairs);
            gpu_pairs[gpu] += 1.0;
            let slot = slot_of(placement, layer, gpu, expert);
            plan.expert_tokens[gpu][slot] += 1.0;
            pairs.push((gpu, slot));
        }
        ends.push(pairs.len());
    }
    if let Some(llep) = &policy.llep {
        let rebalance = llep.rebalance(placement, layer, &plan.expert_tokens, true);
        reassign_pairs(&plan.expert_tokens, &rebalance, &mut pairs);
        borrow(&mut plan, &rebalance, llep.expert_bytes);
    }
    let mut routes = TokenRoutes {
        gpus,
        destinations: Vec::with_capacity(pairs.len()),
        ends: Vec::with_capacity(tokens),
    };
    let mut start = 0;
    for &end in &ends {
        let first = routes.destinations.len();
        for &(gpu, _) in &pairs[start..end] {
            if !routes.destinations[first..].contains(&gpu) {
                routes.destinations.push(gpu);
            }
        }
        routes.ends.push(routes.destinations.len());
        start = end;
    }
    Ok((plan, routes))
}

/// Sends each moved pair of `rebalance` to its new GPU and slot: of the pairs on an expert slot
/// (`expert_tokens`, before the moves), the first in token order stay, the last move, in the
/// order of the moves.
fn reassign_pairs(expert_tokens: &[Vec<f64>], rebalance: &Rebalance, pairs: &mut [(usize, usize)]) {
    // Per slot moved from: the pairs that stay, then the moves still to fill.
    let mut queues: Vec<Queue> = Vec::new();
    for m in &rebalance.moves {
        let index = match queues.iter().position(|q| q.slot == m.from) {
            Some(index) => index,
            None => {
                let (gpu, slot) = m.from;
                queues.push(Queue {
                    slot: m.from,
                    stay: expert_tokens[gpu][slot],
                    moves: Vec::new(),
                });
                queues.len() - 1
            }
        };
        queues[index].stay -= m.pairs;
        queues[index].moves.push((m.to, m.pairs));
    }
    for pair in pairs.iter_mut() {
        let Some(queue) = queues.iter_mut().find(|q| q.slot == *pair) else {
            continue;
        };
        if queue.stay >= 1.0 {
            queue.stay -= 1.0;
        } else if let Some((to, left)) = queue.moves.iter_mut().find(|(_, left)| *left >= 1.0) {
            *left -= 1.0;
            *pair = *to;
        }
    }
}

/// The pairs of one expert slot that LLEP moves off.
struct Queue {
    /// (GPU, slot).
    slot: (usize, usize),
    /// Pairs still to keep there.
    stay: f64,
    /// Where the rest go: (GPU, slot) and pairs still to send.
    moves: Vec<((usize, usize), f64)>,
}

/// Applies `rebalance`'s moves to `plan`'s expert slots: borrowed slots added, weights sent from
/// the holder, counts tallied.
fn borrow(plan: &mut DispatchPlan, rebalance: &Rebalance, expert_bytes: u64) {
    for &(from, to) in &rebalance.borrowed {
        plan.expert_tokens[to].push(0.0);
        plan.weights.push((from, to, expert_bytes));
        plan.tally.weight_bytes += expert_bytes as f64;
    }
    for m in &rebalance.moves {
        plan.expert_tokens[m.from.0][m.from.1] -= m.pairs;
        plan.expert_tokens[m.to.0][m.to.1] += m.pairs;
        plan.tally.moved_pairs += m.pairs;
    }
}

/// The expected plan for per-expert loads `loads` ((token, expert) pairs) of a model routing
/// each token to `top_k` experts, at placement layer `layer`, under the default policy.
pub fn plan_loads(
    cluster: &Cluster,
    placement: &Placement,
    layer: usize,
    loads: &[f64],
    top_k: usize,
) -> Result<DispatchPlan> {
    plan_loads_with(
        cluster,
        placement,
        layer,
        loads,
        top_k,
        &DispatchPolicy::default(),
    )
}

/// The expected plan for per-expert loads `loads` under `policy` ([`plan_loads`]).
pub fn plan_loads_with(
    cluster: &Cluster,
    placement: &Placement,
    layer: usize,
    loads: &[f64],
    top_k: usize,
    policy: &DispatchPolicy,
) -> Result<DispatchPlan> {
    Checker::new(cluster, placement, layer)?;
    if loads.len() != placement.num_experts() {
        return Err(Error::invalid(format!(
            "layer {layer}: {} expert loads for a placement of {} experts",
            loads.len(),
            placement.num_experts()
        )));
    }
    if let Some((expert, load)) = loads
        .iter()
        .enumerate()
        .find(|(_, l)| !(l.is_finite() && **l >= 0.0))
    {
        return Err(Error::invalid(format!(
            "layer {layer}: expert {expert} has load {load}; loads must be finite and non-negative"
        )));
    }
    let mut plan = empty_plan(placement, layer);
    let gpus = placement.num_gpus();
    let total: f64 = loads.iter().sum();
    let tokens_per_gpu = total / top_k.max(1) as f64 / gpus as f64;
    plan.source_tokens.fill(tokens_per_gpu);
    plan.tally.routed_pairs = total;
    let capacity = policy.capacity(total, placement.num_experts());
    let mut gpu_pairs = vec![0.0; gpus];
    let mut shares = Vec::new();
    for (expert, &load) in loads.iter().enumerate().filter(|(_, l)| **l > 0.0) {
        let kept = load.min(capacity);
        plan.tally.dropped_pairs += load - kept;
        let replicas = placement.replicas_of(layer, expert);
        for src in 0..gpus {
            shares.clear();
            let pairs = kept / gpus as f64;
            let choice = &policy.replica;
            choice.split(cluster, src, replicas, pairs, &gpu_pairs, &mut shares);
            for &(gpu, share) in &shares {
                plan.expert_tokens[gpu][slot_of(placement, layer, gpu, expert)] += share;
                plan.add_flow(src, gpu, share);
                gpu_pairs[gpu] += share;
            }
        }
    }
    if let Some(llep) = &policy.llep {
        let rebalance = llep.rebalance(placement, layer, &plan.expert_tokens, false);
        for m in &rebalance.moves {
            let (from, to) = (m.from.0, m.to.0);
            let incoming: f64 = (0..gpus).map(|src| plan.flow(src, from)).sum();
            for src in 0..gpus {
                let moved = m.pairs * plan.flow(src, from) / incoming;
                plan.add_flow(src, from, -moved);
                plan.add_flow(src, to, moved);
            }
        }
        borrow(&mut plan, &rebalance, llep.expert_bytes);
    }
    count_machines(&mut plan, cluster.gpus_per_node(), tokens_per_gpu, top_k);
    Ok(plan)
}

/// The expected distinct tokens each GPU of a loads plan sends each machine: a token whose
/// `top_k` choices land on a machine's GPUs with probability `p` each (the share of the GPU's
/// (token, expert) pairs sent there) reaches that machine with probability `1 - (1 - p)^top_k`.
fn count_machines(plan: &mut DispatchPlan, gpus_per_node: usize, tokens: f64, top_k: usize) {
    plan.count_per_node(gpus_per_node);
    let gpus = plan.num_gpus();
    if tokens <= 0.0 {
        return;
    }
    for src in 0..gpus {
        for machine in 0..plan.nodes() {
            let pairs: f64 = plan
                .machine_gpus(machine)
                .map(|dst| plan.flow(src, dst))
                .sum();
            let p = (pairs / (tokens * top_k.max(1) as f64)).min(1.0);
            let reached = tokens * (1.0 - (1.0 - p).powi(top_k.max(1) as i32));
            plan.add_node_tokens(src, machine, reached);
        }
    }
}

/// A plan with no tokens, shaped like `placement`'s layer `layer`.
fn empty_plan(placement: &Placement, layer: usize) -> DispatchPlan {
    DispatchPlan::empty((0..placement.num_gpus()).map(|gpu| placement.experts_on(layer, gpu).len()))
}

/// The slot of `expert` on `gpu` (which the chooser guarantees holds it).
fn slot_of(placement: &Placement, layer: usize, gpu: usize, expert: usize) -> usize {
    placement
        .experts_on(layer, gpu)
        .iter()
        .position(|&e| e as usize == expert)
        .expect("replica GPUs hold the expert")
}

/// Checks a placement layer against the cluster and the routing's experts.
struct Checker<'a> {
    placement: &'a Placement,
    layer: usize,
}

impl<'a> Checker<'a> {
    /// Checks `placement` fits `cluster` and has layer `layer`.
    fn new(cluster: &Cluster, placement: &'a Placement, layer: usize) -> Result<Self> {
        if placement.num_gpus() != cluster.num_gpus() {
            return Err(Error::invalid(format!(
                "placement for {} GPUs on cluster `{}` of {} GPUs",
                placement.num_gpus(),
                cluster.name(),
                cluster.num_gpus()
            )));
        }
        if layer >= placement.num_layers() {
            return Err(Error::invalid(format!(
                "layer {layer} is past the placement's {} layers",
                placement.num_layers()
            )));
        }
        Ok(Checker { placement, layer })
    }

    /// `expert` if it is in range, else an error naming the token.
    fn check_expert(&self, expert: usize, token: usize) -> Result<usize> {
        if expert < self.placement.num_experts() {
            Ok(expert)
        } else {
            Err(Error::invalid(format!(
                "layer {} token {token}: expert {expert} is out of range ({} experts)",
                self.layer,
                self.placement.num_experts()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::LayerPlacement;
    use crate::topology::{ClusterSpec, GpuSpec, NetworkSpec, NvLinkSpec, PcieSpec};

    /// One machine of two H100s on an NVSwitch.
    fn two_gpus() -> Cluster {
        Cluster::from_spec(ClusterSpec {
            name: "two".into(),
            nodes: 1,
            gpus_per_node: 2,
            gpu: GpuSpec::named("h100").unwrap(),
            nvlink: Some(NvLinkSpec {
                gbps: 450.0,
                latency_ns: 500,
            }),
            pcie: PcieSpec {
                gbps: 64.0,
                gpus_per_switch: 1,
                latency_ns: 400,
            },
            network: NetworkSpec::default(),
        })
        .unwrap()
    }

    #[test]
    fn a_token_crosses_once_to_each_destination_gpu() {
        let cluster = two_gpus();
        // Contiguous: GPU 0 holds experts 0-3, GPU 1 experts 4-7.
        let placement = Placement::new(
            2,
            8,
            4,
            vec![LayerPlacement {
                gpu_experts: vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]],
            }],
        )
        .unwrap();
        // 4 tokens, top-2: tokens 0-1 start on GPU 0, tokens 2-3 on GPU 1.
        let routing = LayerRouting::fixed_k(2, vec![4, 5, 0, 6, 1, 2, 7, 4], None).unwrap();
        let plan = plan_tokens(&cluster, &placement, 0, &routing).unwrap();
        // Token 0 (experts 4, 5) sends once to GPU 1; token 1 (0, 6) keeps one, sends one;
        // token 2 (1, 2) sends once to GPU 0; token 3 (7, 4) stays on GPU 1.
        assert_eq!(
            [
                plan.flow(0, 0),
                plan.flow(0, 1),
                plan.flow(1, 0),
                plan.flow(1, 1)
            ],
            [1.0, 2.0, 1.0, 1.0]
        );
        assert_eq!(
            plan.expert_tokens,
            vec![vec![1.0, 1.0, 1.0, 0.0], vec![2.0, 1.0, 1.0, 1.0]]
        );
        assert_eq!(plan.gpu_tokens(), vec![3.0, 5.0]);
        assert_eq!(plan.source_tokens, vec![2.0, 2.0]);
        // 7168-byte tokens: dispatch 0 -> 1 carries 2, combine 0 -> 1 returns 1.
        assert_eq!(plan.dispatch_traffic(7168.0).get(0, 1), 14_336);
        assert_eq!(plan.combine_traffic(7168.0).get(0, 1), 7168);
    }

    #[test]
    fn a_token_reaches_each_destination_machine_once() {
        // Two machines of 8; GPU g holds experts 2g and 2g + 1.
        let cluster = Cluster::preset("hgx-h800x2").unwrap();
        let gpu_experts: Vec<Vec<u16>> = (0..16).map(|g| vec![2 * g, 2 * g + 1]).collect();
        let placement = Placement::new(16, 32, 2, vec![LayerPlacement { gpu_experts }]).unwrap();
        // 16 tokens, one per GPU, top-3: experts 16, 18, 19 (GPUs 8, 9, 9: machine 1).
        let experts: Vec<u16> = (0..16).flat_map(|_| [16, 18, 19]).collect();
        let routing = LayerRouting::fixed_k(3, experts, None).unwrap();
        let plan = plan_tokens(&cluster, &placement, 0, &routing).unwrap();
        // GPU 0's token crosses to GPUs 8 and 9 (2 GPU-bound sends) but machine 1 once: 1/2.
        assert_eq!((plan.flow(0, 8), plan.flow(0, 9)), (1.0, 1.0));
        assert_eq!((plan.node_share(0, 8), plan.node_share(0, 9)), (0.5, 0.5));
        // GPU 8's token stays in its machine: nothing to deduplicate.
        assert_eq!(plan.node_share(8, 9), 1.0);
        // From loads (uniform, top-8, 16 GPUs over 2 machines): each GPU sends 4 of a token's
        // 8 pairs to the other machine (p = 1/2), which a token then reaches with probability
        // 1 - (1/2)^8 = 255/256: a share of 255/256 / 4 per pair.
        let loads = vec![8.0 * 16.0 / 32.0; 32];
        let expected = plan_loads(&cluster, &placement, 0, &loads, 8).unwrap();
        assert!((expected.node_share(0, 8) - 255.0 / 256.0 / 4.0).abs() < 1e-12);
        assert_eq!(expected.node_share(0, 1), 1.0);
    }

    #[test]
    fn replicas_are_chosen_local_then_same_machine_then_by_token() {
        let cluster = Cluster::preset("hgx-h800x2").unwrap();
        // GPU g holds expert g; expert 0 is replicated on GPU 3 (machine 0) and GPU 9 (machine 1).
        let mut gpu_experts: Vec<Vec<u16>> = (0..16).map(|g| vec![g]).collect();
        gpu_experts[3].push(0);
        gpu_experts[9].push(0);
        let placement = Placement::new(16, 16, 2, vec![LayerPlacement { gpu_experts }]).unwrap();
        assert_eq!(placement.replicas_of(0, 0), &[0, 3, 9]);
        // One token per GPU, all to expert 0.
        let routing = LayerRouting::fixed_k(1, vec![0; 16], None).unwrap();
        let plan = plan_tokens(&cluster, &placement, 0, &routing).unwrap();
        // Tokens 0, 3, 9 stay home. Machine 0's others alternate by token parity between GPU 0
        // (tokens 2, 4, 6) and GPU 3 (1, 5, 7); machine 1's all go to GPU 9.
        assert_eq!(plan.expert_tokens[0], vec![4.0]);
        assert_eq!(plan.expert_tokens[3], vec![0.0, 4.0]);
        assert_eq!(plan.expert_tokens[9], vec![0.0, 8.0]);
        assert_eq!(
            (plan.flow(1, 3), plan.flow(2, 0), plan.flow(8, 9)),
            (1.0, 1.0, 1.0)
        );
        // Expected plan from loads: the same totals, with halves where tokens alternated.
        let mut loads = vec![0.0; 16];
        loads[0] = 16.0;
        let expected = plan_loads(&cluster, &placement, 0, &loads, 1).unwrap();
        assert_eq!(expected.gpu_tokens(), plan.gpu_tokens());
        assert_eq!((expected.flow(1, 3), expected.flow(1, 0)), (0.5, 0.5));
        assert_eq!(expected.source_tokens, vec![1.0; 16]);
    }

    /// Two GPUs of one machine holding `gpu_experts`.
    fn two_gpu_placement(experts: usize, gpu_experts: Vec<Vec<u16>>) -> Placement {
        Placement::new(2, experts, 2, vec![LayerPlacement { gpu_experts }]).unwrap()
    }

    /// A policy from a `[dispatch]` table, experts of `expert_bytes`.
    fn policy(table: &str, expert_bytes: u64) -> DispatchPolicy {
        toml::from_str::<DispatchConfig>(table)
            .unwrap()
            .resolve(expert_bytes)
            .unwrap()
    }

    #[test]
    fn capacity_factor_1_drops_the_pairs_over_the_mean_in_token_order() {
        let cluster = two_gpus();
        let placement = two_gpu_placement(4, vec![vec![0, 1], vec![2, 3]]);
        // 8 tokens, top-1, loads [5, 1, 1, 1]: capacity ceil(1.0 x 8 / 4) = 2, so expert 0's
        // tokens 2, 3, 4 are dropped: 3 of 8 pairs.
        let routing = LayerRouting::fixed_k(1, vec![0, 0, 0, 0, 0, 1, 2, 3], None).unwrap();
        let plan = plan_tokens_with(
            &cluster,
            &placement,
            0,
            &routing,
            &policy("capacity_factor = 1.0", 0),
        )
        .unwrap();
        assert_eq!(
            (plan.tally.routed_pairs, plan.tally.dropped_pairs),
            (8.0, 3.0)
        );
        assert_eq!(plan.tally.dropped_share(), 0.375);
        assert_eq!(plan.expert_tokens, vec![vec![2.0, 1.0], vec![1.0, 1.0]]);
        // GPU 0 (tokens 0-3) keeps tokens 0 and 1; GPU 1 (tokens 4-7) drops token 4, sends
        // token 5 to expert 1 on GPU 0, keeps 6 and 7. Every token still starts a step.
        assert_eq!(
            [
                plan.flow(0, 0),
                plan.flow(0, 1),
                plan.flow(1, 0),
                plan.flow(1, 1)
            ],
            [2.0, 0.0, 1.0, 2.0]
        );
        assert_eq!(plan.source_tokens, vec![4.0, 4.0]);
        // Factor 1.25: capacity ceil(2.5) = 3, 2 dropped; no factor: none.
        let loose = policy("capacity_factor = 1.25", 0);
        let plan = plan_tokens_with(&cluster, &placement, 0, &routing, &loose).unwrap();
        assert_eq!(plan.tally.dropped_pairs, 2.0);
        let plan = plan_tokens(&cluster, &placement, 0, &routing).unwrap();
        assert_eq!(plan.tally.dropped_pairs, 0.0);
        // From the same loads: the same capacity and drops.
        let strict = policy("capacity_factor = 1.0", 0);
        let loads = [5.0, 1.0, 1.0, 1.0];
        let expected = plan_loads_with(&cluster, &placement, 0, &loads, 1, &strict).unwrap();
        assert_eq!(expected.tally.dropped_pairs, 3.0);
        assert_eq!(expected.gpu_tokens(), vec![3.0, 2.0]);
    }

    #[test]
    fn replica_choices_split_a_replicated_expert_as_each_rule_says() {
        let cluster = two_gpus();
        // Expert 0 on both GPUs, expert 1 on GPU 0 only.
        let placement = two_gpu_placement(2, vec![vec![0, 1], vec![0]]);
        let slots = |table: &str, experts: Vec<u16>| {
            let routing = LayerRouting::fixed_k(1, experts, None).unwrap();
            let plan = plan_tokens_with(&cluster, &placement, 0, &routing, &policy(table, 0));
            plan.unwrap().expert_tokens
        };
        // 6 tokens (0-2 on GPU 0, 3-5 on GPU 1). Tokens 0, 1 to expert 1, then 2-5 to expert 0.
        let a = vec![1, 1, 0, 0, 0, 0];
        // same-node: each expert-0 token stays home (token 2 on GPU 0, 3-5 on GPU 1).
        assert_eq!(slots("", a.clone()), [vec![1.0, 2.0], vec![3.0]]);
        // even: tokens alternate by parity, 2 and 4 to GPU 0, 3 and 5 to GPU 1.
        let even = "replica = \"even\"";
        assert_eq!(slots(even, a.clone()), [vec![2.0, 2.0], vec![2.0]]);
        // least-loaded: GPU 0 has 2 pairs, so tokens 2 and 3 go to GPU 1 (2-1, 2-2), token 4
        // to GPU 0 on the tie (lowest index), token 5 to GPU 1.
        let least = "replica = \"least-loaded\"";
        assert_eq!(slots(least, a), [vec![1.0, 2.0], vec![3.0]]);
        // Tokens 0-3 to expert 0, then 4, 5 to expert 1: same-node keeps 0-2 on GPU 0 and 3 on
        // GPU 1; least-loaded alternates 0-3 between GPUs (ties to GPU 0).
        let b = vec![0, 0, 0, 0, 1, 1];
        assert_eq!(slots("", b.clone()), [vec![3.0, 2.0], vec![1.0]]);
        assert_eq!(slots(least, b), [vec![2.0, 2.0], vec![2.0]]);
        // From loads with expert 1 replicated instead (GPU 0: 0, 1; GPU 1: 1), loads [2, 4]:
        // expert 0 puts 2 pairs on GPU 0; expert 1's 2 pairs from GPU 0 fill GPU 1 up to 2, its
        // 2 from GPU 1 then split 1 and 1.
        let placement = two_gpu_placement(2, vec![vec![0, 1], vec![1]]);
        let policy = policy(least, 0);
        let plan = plan_loads_with(&cluster, &placement, 0, &[2.0, 4.0], 1, &policy).unwrap();
        assert_eq!(plan.expert_tokens, vec![vec![2.0, 1.0], vec![3.0]]);
        assert_eq!(
            [
                plan.flow(0, 0),
                plan.flow(0, 1),
                plan.flow(1, 0),
                plan.flow(1, 1)
            ],
            [1.0, 2.0, 2.0, 1.0]
        );
    }

    #[test]
    fn llep_moves_the_hottest_experts_excess_with_its_weights_within_the_budget() {
        let cluster = two_gpus();
        let placement = two_gpu_placement(4, vec![vec![0, 1], vec![2, 3]]);
        // 8 tokens, top-1: expert 0 x6, 1, 2: GPU 0 computes 7 pairs, GPU 1 one; mean 4, ratio
        // 1.75 > 1.3. GPU 0 sheds 3 pairs of expert 0 (its last: tokens 3, 4, 5) to GPU 1, which
        // borrows expert 0's 1000 bytes (a budget of exactly one expert).
        let routing = LayerRouting::fixed_k(1, vec![0, 0, 0, 0, 0, 0, 1, 2], None).unwrap();
        let table = "[llep]\nmemory_budget_gb = 1e-6";
        let plan = plan_tokens_with(&cluster, &placement, 0, &routing, &policy(table, 1000));
        let plan = plan.unwrap();
        assert_eq!(
            plan.expert_tokens,
            vec![vec![3.0, 1.0], vec![1.0, 0.0, 3.0]]
        );
        assert_eq!(plan.weights, vec![(0, 1, 1000)]);
        assert_eq!(
            (plan.tally.moved_pairs, plan.tally.weight_bytes),
            (3.0, 1000.0)
        );
        // Token 3 now crosses to GPU 1, tokens 4 and 5 stay on it; token 6 still goes to GPU 0.
        assert_eq!(
            [
                plan.flow(0, 0),
                plan.flow(0, 1),
                plan.flow(1, 0),
                plan.flow(1, 1)
            ],
            [3.0, 1.0, 1.0, 3.0]
        );
        assert_eq!(plan.weight_traffic().get(0, 1), 1000);
        // A budget below one expert, or a threshold above 1.75: nothing moves.
        for table in [
            "[llep]\nmemory_budget_gb = 0.999e-6",
            "[llep]\nthreshold = 1.8\nmemory_budget_gb = 1",
        ] {
            let plan = plan_tokens_with(&cluster, &placement, 0, &routing, &policy(table, 1000));
            assert_eq!(plan.unwrap().tally.moved_pairs, 0.0, "{table}");
        }
        // From loads [6, 1, 1, 0]: every expert's pairs come half from each GPU, so GPU 0
        // receives 3.5 from each; moving 3 takes 1.5 of each sender's to GPU 1.
        let policy = policy(table, 1000);
        let loads = [6.0, 1.0, 1.0, 0.0];
        let plan = plan_loads_with(&cluster, &placement, 0, &loads, 1, &policy).unwrap();
        assert_eq!(plan.gpu_tokens(), vec![4.0, 4.0]);
        assert_eq!(
            [
                plan.flow(0, 0),
                plan.flow(0, 1),
                plan.flow(1, 0),
                plan.flow(1, 1)
            ],
            [2.0, 2.0, 2.0, 2.0]
        );
    }

    #[test]
    fn dispatch_tables_name_the_bad_key() {
        let error = |table: &str| {
            toml::from_str::<DispatchConfig>(table)
                .map_err(|e| e.to_string())
                .and_then(|config| config.resolve(1).map(drop))
                .unwrap_err()
        };
        for bad in ["capacity_factor = 0", "capacity_factor = -1.5"] {
            assert!(
                error(bad).contains("`dispatch.capacity_factor`"),
                "{}",
                error(bad)
            );
        }
        assert!(error("replica = \"closest\"").contains("known: same-node, even, least-loaded"));
        assert!(error("[llep]\nthreshold = 0.9\nmemory_budget_gb = 1").contains("threshold"));
        assert!(error("[llep]\nmemory_budget_gb = -1").contains("memory_budget_gb"));
        assert!(error("[llep]\nthreshold = 2").contains("memory_budget_gb"));
        assert!(error("capacity = 1").contains("unknown field"));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let cluster = two_gpus();
        let placement = Placement::new(
            2,
            2,
            1,
            vec![LayerPlacement {
                gpu_experts: vec![vec![0], vec![1]],
            }],
        )
        .unwrap();
        let routing = LayerRouting::fixed_k(1, vec![0, 5], None).unwrap();
        let err = plan_tokens(&cluster, &placement, 0, &routing).unwrap_err();
        assert!(
            err.to_string()
                .contains("token 1: expert 5 is out of range"),
            "{err}"
        );
        let err = plan_loads(&cluster, &placement, 1, &[1.0, 1.0], 1).unwrap_err();
        assert!(
            err.to_string().contains("past the placement's 1 layers"),
            "{err}"
        );
        let err = plan_loads(&cluster, &placement, 0, &[1.0, f64::NAN], 1).unwrap_err();
        assert!(err.to_string().contains("expert 1 has load NaN"), "{err}");
        let big = Cluster::preset("dgx-h100").unwrap();
        let err = plan_loads(&big, &placement, 0, &[1.0, 1.0], 1).unwrap_err();
        assert!(err.to_string().contains("placement for 2 GPUs"), "{err}");
    }
}
