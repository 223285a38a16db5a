//! Token transitions between consecutive layers, counted per (expert at `l`, expert at `l + 1`).

use crate::error::{Error, Result};
use crate::trace::RoutingTrace;

/// For each pair of consecutive layers, how many times a token routed to expert `a` at layer `l`
/// is routed to expert `b` at `l + 1` (for top-k, every pair of the token's experts counts).
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionCounts {
    num_experts: usize,
    /// Per layer pair `l -> l + 1`, a dense row-major `num_experts x num_experts` matrix.
    pairs: Vec<Vec<f64>>,
}

impl TransitionCounts {
    /// Counts the transitions of `trace`, which must cover `num_layers` layers of `num_experts`
    /// experts (the shape of the loads being placed); the error names the mismatch.
    pub fn from_trace(trace: &RoutingTrace, num_layers: usize, num_experts: usize) -> Result<Self> {
        if trace.num_layers() != num_layers || trace.num_experts() != num_experts {
            return Err(Error::invalid(format!(
                "placement transitions: the trace has {} layers x {} experts but the loads {} x {}",
                trace.num_layers(),
                trace.num_experts(),
                num_layers,
                num_experts
            )));
        }
        let pairs = trace
            .layers()
            .windows(2)
            .map(|pair| {
                let mut counts = vec![0.0; num_experts * num_experts];
                for token in 0..trace.num_tokens() {
                    for &from in pair[0].experts_of(token) {
                        for &to in pair[1].experts_of(token) {
                            counts[from as usize * num_experts + to as usize] += 1.0;
                        }
                    }
                }
                counts
            })
            .collect();
        Ok(TransitionCounts { num_experts, pairs })
    }

    /// Number of layer pairs (layers minus one).
    pub fn num_pairs(&self) -> usize {
        self.pairs.len()
    }

    /// Transitions from expert `from` at layer `pair` to expert `to` at `pair + 1`.
    pub fn count(&self, pair: usize, from: usize, to: usize) -> f64 {
        self.pairs[pair][from * self.num_experts + to]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{LayerRouting, TokenMeta};

    #[test]
    fn top_k_counts_every_pair_of_a_tokens_experts() {
        // Two tokens, 3 layers, 3 experts. Token 0: [0] -> [1, 2] -> [2]; token 1: [1] -> [1]
        // -> [0, 2].
        let layer = |offsets: Vec<u32>, experts: Vec<u16>| {
            LayerRouting::new(offsets, experts, None).unwrap()
        };
        let trace = RoutingTrace::new(
            3,
            vec![
                layer(vec![0, 1, 2], vec![0, 1]),
                layer(vec![0, 2, 3], vec![1, 2, 1]),
                layer(vec![0, 1, 3], vec![2, 0, 2]),
            ],
            TokenMeta::default(),
        )
        .unwrap();
        let counts = TransitionCounts::from_trace(&trace, 3, 3).unwrap();
        assert_eq!(counts.num_pairs(), 2);
        assert_eq!(counts.count(0, 0, 1), 1.0);
        assert_eq!(counts.count(0, 0, 2), 1.0);
        assert_eq!(counts.count(0, 1, 1), 1.0);
        // 1 -> 2 (token 0) and 1 -> 2 (token 1), 2 -> 2 (token 0), 1 -> 0 (token 1).
        assert_eq!(counts.count(1, 1, 2), 2.0);
        assert_eq!(counts.count(1, 2, 2), 1.0);
        assert_eq!(counts.count(1, 1, 0), 1.0);
        let err = TransitionCounts::from_trace(&trace, 2, 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the trace has 3 layers x 3 experts but the loads 2 x 3"),
            "{err}"
        );
    }
}
