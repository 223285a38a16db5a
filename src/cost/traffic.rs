//! One MoE layer's dispatch as data: the tokens sent between every pair of GPUs and the
//! (token, expert) pairs each expert slot computes, and the all-to-all bytes they make.
//!
//! The plan is built from a placement and the layer's routing (`crate::placement::dispatch`
//! decides which replica each token goes to); the analytical estimate and the simulator read it.
//! Like DeepEP, a token crosses to each destination GPU once however many of its experts live
//! there; the combine sends each result back the same way, so combine flows are the transpose
//! of dispatch flows.

use serde::Serialize;

use super::comm::TrafficMatrix;

/// What a dispatch policy did to a layer's (token, expert) pairs: how many the router chose,
/// how many a capacity limit dropped (the quality proxy) and how many least-loaded EP moved to a
/// GPU that borrowed the expert's weights. Tallies add up over layers and steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DispatchTally {
    /// (token, expert) pairs the router chose.
    pub routed_pairs: f64,
    /// Pairs over their expert's capacity: neither sent nor computed.
    pub dropped_pairs: f64,
    /// Pairs computed on a GPU that borrowed their expert's weights (least-loaded EP).
    pub moved_pairs: f64,
    /// Expert weight bytes sent to the borrowing GPUs.
    pub weight_bytes: f64,
}

impl DispatchTally {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &DispatchTally) {
        self.routed_pairs += other.routed_pairs;
        self.dropped_pairs += other.dropped_pairs;
        self.moved_pairs += other.moved_pairs;
        self.weight_bytes += other.weight_bytes;
    }

    /// Share of the routed pairs dropped (0 without any).
    pub fn dropped_share(&self) -> f64 {
        if self.routed_pairs > 0.0 {
            self.dropped_pairs / self.routed_pairs
        } else {
            0.0
        }
    }
}

/// Token movement and expert work of one MoE layer under a placement.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchPlan {
    num_gpus: usize,
    /// Tokens sent `src -> dst`, row-major; the diagonal holds tokens that stay on their GPU.
    flows: Vec<f64>,
    /// Per GPU, per expert slot, the (token, expert) pairs it computes.
    pub expert_tokens: Vec<Vec<f64>>,
    /// Per GPU, the tokens that start there (the work of its shared experts).
    pub source_tokens: Vec<f64>,
    /// GPUs per machine, once the plan counts tokens per destination machine (0 before).
    gpus_per_node: usize,
    /// Per sending GPU, per machine, the distinct tokens it sends there (a token bound for
    /// several GPUs of one machine counted once), row-major; empty until counted.
    node_tokens: Vec<f64>,
    /// Expert weights sent for least-loaded EP: (holder GPU, borrowing GPU, bytes), one per
    /// borrowed expert; the borrowed expert's pairs sit in an extra slot at the end of the
    /// borrower's `expert_tokens`.
    pub weights: Vec<(usize, usize, u64)>,
    /// Pairs routed, dropped and moved.
    pub tally: DispatchTally,
}

impl DispatchPlan {
    /// A plan with no tokens over GPUs holding `slots[gpu]` expert slots each.
    pub fn empty(slots: impl IntoIterator<Item = usize>) -> DispatchPlan {
        let expert_tokens: Vec<Vec<f64>> = slots.into_iter().map(|n| vec![0.0; n]).collect();
        let gpus = expert_tokens.len();
        DispatchPlan {
            num_gpus: gpus,
            flows: vec![0.0; gpus * gpus],
            expert_tokens,
            source_tokens: vec![0.0; gpus],
            gpus_per_node: 0,
            node_tokens: Vec::new(),
            weights: Vec::new(),
            tally: DispatchTally::default(),
        }
    }

    /// Starts counting the distinct tokens each GPU sends each machine of `gpus_per_node` GPUs.
    pub fn count_per_node(&mut self, gpus_per_node: usize) {
        self.gpus_per_node = gpus_per_node.max(1);
        self.node_tokens = vec![0.0; self.num_gpus * self.nodes()];
    }

    /// Machines the plan's GPUs span (0 before [`DispatchPlan::count_per_node`]).
    pub fn nodes(&self) -> usize {
        match self.gpus_per_node {
            0 => 0,
            per_node => self.num_gpus.div_ceil(per_node),
        }
    }

    /// The machine of `gpu` (once counting per machine).
    pub fn node_of(&self, gpu: usize) -> usize {
        gpu / self.gpus_per_node.max(1)
    }

    /// The GPUs of machine `node`.
    pub fn machine_gpus(&self, node: usize) -> std::ops::Range<usize> {
        let per_node = self.gpus_per_node.max(1);
        node * per_node..((node + 1) * per_node).min(self.num_gpus)
    }

    /// Counts `tokens` more distinct tokens sent from `src` to machine `node`.
    pub fn add_node_tokens(&mut self, src: usize, node: usize, tokens: f64) {
        let nodes = self.nodes();
        self.node_tokens[src * nodes + node] += tokens;
    }

    /// The share of `src -> dst`'s tokens that cross between the machines when each token
    /// crosses to a machine once and fans out to its GPUs there (DeepEP's normal kernels): the
    /// distinct tokens `src` sends `dst`'s machine over the tokens it sends that machine's GPUs.
    /// 1 within a machine, or when the plan does not count per machine.
    pub fn node_share(&self, src: usize, dst: usize) -> f64 {
        let node = self.node_of(dst);
        if self.node_tokens.is_empty() || node == self.node_of(src) {
            return 1.0;
        }
        let sent: f64 = self.machine_gpus(node).map(|gpu| self.flow(src, gpu)).sum();
        match sent {
            0.0 => 1.0,
            sent => (self.node_tokens[src * self.nodes() + node] / sent).min(1.0),
        }
    }

    /// Number of GPUs.
    pub fn num_gpus(&self) -> usize {
        self.num_gpus
    }

    /// Sends `tokens` more from `src` to `dst` (kept local when equal).
    pub fn add_flow(&mut self, src: usize, dst: usize, tokens: f64) {
        self.flows[src * self.num_gpus + dst] += tokens;
    }

    /// Tokens sent from `src` to `dst` (kept local when equal).
    pub fn flow(&self, src: usize, dst: usize) -> f64 {
        self.flows[src * self.num_gpus + dst]
    }

    /// (token, expert) pairs each GPU computes.
    pub fn gpu_tokens(&self) -> Vec<f64> {
        self.expert_tokens.iter().map(|s| s.iter().sum()).collect()
    }

    /// Dispatch bytes: each flow times `bytes_per_token`, rounded up per pair.
    pub fn dispatch_traffic(&self, bytes_per_token: f64) -> TrafficMatrix {
        self.traffic(bytes_per_token, |src, dst| self.flow(src, dst))
    }

    /// Combine bytes: results return along the transposed flows.
    pub fn combine_traffic(&self, bytes_per_token: f64) -> TrafficMatrix {
        self.traffic(bytes_per_token, |src, dst| self.flow(dst, src))
    }

    /// The expert weight bytes each GPU pair carries for least-loaded EP.
    pub fn weight_traffic(&self) -> TrafficMatrix {
        let mut matrix = TrafficMatrix::zeros(self.num_gpus);
        for &(from, to, bytes) in &self.weights {
            matrix.add(from, to, bytes);
        }
        matrix
    }

    /// A traffic matrix of `tokens(src, dst) * bytes_per_token` bytes per pair.
    fn traffic(&self, bytes_per_token: f64, tokens: impl Fn(usize, usize) -> f64) -> TrafficMatrix {
        let mut matrix = TrafficMatrix::zeros(self.num_gpus);
        for src in 0..self.num_gpus {
            for dst in 0..self.num_gpus {
                matrix.add(src, dst, (tokens(src, dst) * bytes_per_token).ceil() as u64);
            }
        }
        matrix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_become_dispatch_bytes_and_transposed_combine_bytes() {
        // GPU 0 sends 2 tokens to GPU 1 and keeps 1; GPU 1 sends 0.5 (an expectation) to GPU 0.
        let mut plan = DispatchPlan::empty([2, 1]);
        plan.add_flow(0, 1, 2.0);
        plan.add_flow(0, 0, 1.0);
        plan.add_flow(1, 0, 0.5);
        plan.expert_tokens[0][1] = 1.5;
        plan.expert_tokens[1][0] = 2.0;
        assert_eq!((plan.flow(0, 1), plan.flow(1, 0)), (2.0, 0.5));
        assert_eq!(plan.gpu_tokens(), vec![1.5, 2.0]);
        // 7168-byte dispatch, 0.5 token rounded up per pair: 3584 B; combine returns 1 -> 0's
        // 2 tokens the other way at 2 B/elem.
        let dispatch = plan.dispatch_traffic(7168.0);
        assert_eq!((dispatch.get(0, 1), dispatch.get(1, 0)), (14_336, 3584));
        // A token kept on its GPU stays on the diagonal, which no all-to-all moves.
        assert_eq!(dispatch.get(0, 0), 7168);
        let combine = plan.combine_traffic(2.0 * 7168.0);
        assert_eq!((combine.get(1, 0), combine.get(0, 1)), (28_672, 7168));
    }

    #[test]
    fn a_token_crosses_to_a_machine_once_however_many_of_its_gpus_it_visits() {
        // Two machines of 2 GPUs. GPU 0 sends one token to GPUs 2 and 3 (machine 1) and another
        // token to GPU 2 only: 3 GPU-bound sends, 2 distinct tokens into machine 1.
        let mut plan = DispatchPlan::empty([1, 1, 1, 1]);
        plan.count_per_node(2);
        plan.add_flow(0, 2, 2.0);
        plan.add_flow(0, 3, 1.0);
        plan.add_flow(0, 1, 1.0);
        plan.add_node_tokens(0, 1, 2.0);
        assert_eq!(plan.nodes(), 2);
        assert_eq!(plan.node_share(0, 2), 2.0 / 3.0);
        assert_eq!(plan.node_share(0, 3), 2.0 / 3.0);
        // Within a machine, or without per-machine counts, every send crosses.
        assert_eq!(plan.node_share(0, 1), 1.0);
        assert_eq!(DispatchPlan::empty([1, 1]).node_share(0, 1), 1.0);
    }
}
