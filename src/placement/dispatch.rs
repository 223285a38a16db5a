//! Which tokens go where in one MoE layer's dispatch under a placement: the
//! [`DispatchPlan`] of a step's routing.
//!
//! Tokens are data-parallel: token `t` of a step of `T` tokens starts on GPU `t * P / T`
//! (contiguous, even split; GPU `t / b` when each of the `P` GPUs holds `b` tokens). For each
//! routed expert the token goes to one replica: the one on its own GPU if any, else one on its own
//! machine, else any; among several candidates, by token (`t mod count`). Like DeepEP, a token
//! crosses to each destination GPU once however many of its experts live there.
//!
//! From aggregate loads alone (no token identities), each expert's load is assumed to come
//! evenly from all GPUs and to split evenly over the candidate replicas; every (token, expert)
//! pair then counts as one send, an upper bound on DeepEP's deduplicated traffic.

use super::Placement;
use crate::cost::DispatchPlan;
use crate::error::{Error, Result};
use crate::topology::Cluster;
use crate::trace::{ExpertId, LayerRouting};

/// The plan for the tokens of `routing`, at placement layer `layer`.
pub fn plan_tokens(
    cluster: &Cluster,
    placement: &Placement,
    layer: usize,
    routing: &LayerRouting,
) -> Result<DispatchPlan> {
    let chooser = ReplicaChooser::new(cluster, placement, layer)?;
    let mut plan = empty_plan(placement, layer);
    plan.count_per_node(cluster.gpus_per_node());
    let gpus = placement.num_gpus();
    let tokens = routing.num_tokens();
    let (mut candidates, mut destinations, mut machines) = (Vec::new(), Vec::new(), Vec::new());
    for token in 0..tokens {
        let src = token * gpus / tokens;
        plan.source_tokens[src] += 1.0;
        destinations.clear();
        for &expert in routing.experts_of(token) {
            let expert = chooser.check_expert(expert as usize, token)?;
            let gpu = chooser.choose(expert, token, src, &mut candidates);
            plan.expert_tokens[gpu][slot_of(placement, layer, gpu, expert)] += 1.0;
            if !destinations.contains(&gpu) {
                destinations.push(gpu);
            }
        }
        machines.clear();
        for &dst in &destinations {
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

/// The destination GPUs of single tokens of a step, each chosen as [`plan_tokens`] chooses
/// them: speculative pre-scheduling asks where a token's predicted experts would send it.
pub struct TokenRouter<'a> {
    chooser: ReplicaChooser<'a>,
    /// Tokens in the step (a token's source GPU depends on it).
    tokens: usize,
    candidates: Vec<usize>,
}

impl<'a> TokenRouter<'a> {
    /// The router of a step of `tokens` tokens at placement layer `layer`.
    pub fn new(
        cluster: &'a Cluster,
        placement: &'a Placement,
        layer: usize,
        tokens: usize,
    ) -> Result<Self> {
        Ok(TokenRouter {
            chooser: ReplicaChooser::new(cluster, placement, layer)?,
            tokens,
            candidates: Vec::new(),
        })
    }

    /// The GPU token `token` starts on.
    pub fn source(&self, token: usize) -> usize {
        token * self.chooser.placement.num_gpus() / self.tokens
    }

    /// Fills `out` with the distinct GPUs token `token` is sent to for `experts`.
    pub fn destinations(
        &mut self,
        token: usize,
        experts: &[ExpertId],
        out: &mut Vec<usize>,
    ) -> Result<()> {
        out.clear();
        let src = self.source(token);
        for &expert in experts {
            let expert = self.chooser.check_expert(expert as usize, token)?;
            let gpu = self
                .chooser
                .choose(expert, token, src, &mut self.candidates);
            if !out.contains(&gpu) {
                out.push(gpu);
            }
        }
        Ok(())
    }
}

/// The expected plan for per-expert loads `loads` ((token, expert) pairs) of a model routing
/// each token to `top_k` experts, at placement layer `layer`.
pub fn plan_loads(
    cluster: &Cluster,
    placement: &Placement,
    layer: usize,
    loads: &[f64],
    top_k: usize,
) -> Result<DispatchPlan> {
    let chooser = ReplicaChooser::new(cluster, placement, layer)?;
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
    let tokens_per_gpu = loads.iter().sum::<f64>() / top_k.max(1) as f64 / gpus as f64;
    plan.source_tokens.fill(tokens_per_gpu);
    let mut candidates = Vec::new();
    for (expert, &load) in loads.iter().enumerate().filter(|(_, l)| **l > 0.0) {
        for src in 0..gpus {
            chooser.candidates(expert, src, &mut candidates);
            let share = load / gpus as f64 / candidates.len() as f64;
            for &gpu in &candidates {
                plan.expert_tokens[gpu][slot_of(placement, layer, gpu, expert)] += share;
                plan.add_flow(src, gpu, share);
            }
        }
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

/// Picks the replicas a token on a given GPU may be sent to.
struct ReplicaChooser<'a> {
    cluster: &'a Cluster,
    placement: &'a Placement,
    layer: usize,
}

impl<'a> ReplicaChooser<'a> {
    /// Checks `placement` fits `cluster` and has layer `layer`.
    fn new(cluster: &'a Cluster, placement: &'a Placement, layer: usize) -> Result<Self> {
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
        Ok(ReplicaChooser {
            cluster,
            placement,
            layer,
        })
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

    /// The replica of `expert` token `token` on `src` goes to: among the preferred candidates
    /// ([`ReplicaChooser::candidates`], left in `candidates`), by token.
    fn choose(
        &self,
        expert: usize,
        token: usize,
        src: usize,
        candidates: &mut Vec<usize>,
    ) -> usize {
        self.candidates(expert, src, candidates);
        candidates[token % candidates.len()]
    }

    /// Fills `out` with the preferred replicas of `expert` for a token on `src`: `src` itself if
    /// it holds one, else those on `src`'s machine, else all of them (never empty: every expert
    /// has a replica).
    fn candidates(&self, expert: usize, src: usize, out: &mut Vec<usize>) {
        let replicas = self.placement.replicas_of(self.layer, expert);
        out.clear();
        if replicas.contains(&src) {
            out.push(src);
            return;
        }
        let machine = self.cluster.node_of(src);
        out.extend(
            replicas
                .iter()
                .copied()
                .filter(|&gpu| self.cluster.node_of(gpu) == machine),
        );
        if out.is_empty() {
            out.extend_from_slice(replicas);
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
