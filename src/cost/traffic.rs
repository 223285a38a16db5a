//! One MoE layer's dispatch as data: the tokens sent between every pair of GPUs and the
//! (token, expert) pairs each expert slot computes, and the all-to-all bytes they make.
//!
//! The plan is built from a placement and the layer's routing (`crate::placement::dispatch`
//! decides which replica each token goes to); the analytical estimate and the simulator read it.
//! Like DeepEP, a token crosses to each destination GPU once however many of its experts live
//! there; the combine sends each result back the same way, so combine flows are the transpose
//! of dispatch flows.

use super::comm::TrafficMatrix;

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
}
