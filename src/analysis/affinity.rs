//! Inter-layer affinity: how predictably a token's expert at layer l determines its experts at l+1.
//!
//! For every pair of consecutive layers, [`TransitionCounts`] counts (expert at l, expert at l+1)
//! pairs over tokens; with top-k routing each token contributes all k x k' pairs. From the counts,
//! [`TransitionCounts::concentration`] gives the share of an expert's pairs that land on its `n`
//! most frequent successors, averaged over experts weighted by their pair counts. High values mean
//! placement can keep tokens on one GPU across layers (ExFlow, MoETuner) and predictors can
//! pre-schedule the next layer.

use crate::trace::{ExpertId, LayerRouting};

/// Pair counts between consecutive layers: `num_layers - 1` dense `num_experts x num_experts`
/// matrices, row = expert at l, column = expert at l+1.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionCounts {
    num_experts: usize,
    /// Pair-major: `counts[pair][from * num_experts + to]`; `pair` is the index of layer l.
    counts: Vec<Vec<u64>>,
}

impl TransitionCounts {
    /// Empty counts for `num_layers` layers of `num_experts` experts.
    pub fn new(num_layers: usize, num_experts: usize) -> Self {
        TransitionCounts {
            num_experts,
            counts: (0..num_layers.saturating_sub(1))
                .map(|_| vec![0; num_experts * num_experts])
                .collect(),
        }
    }

    /// Number of layer pairs (layers - 1).
    pub fn num_pairs(&self) -> usize {
        self.counts.len()
    }

    /// Counts the pairs of tokens `tokens` between layer `pair` (`from`) and layer `pair + 1`
    /// (`to`). Expert ids at or past `num_experts` are skipped.
    pub fn add(
        &mut self,
        pair: usize,
        from: &LayerRouting,
        to: &LayerRouting,
        tokens: std::ops::Range<usize>,
    ) {
        let n = self.num_experts;
        let counts = &mut self.counts[pair];
        for token in tokens {
            for &a in from.experts_of(token).iter().filter(|&&a| (a as usize) < n) {
                let row = &mut counts[a as usize * n..(a as usize + 1) * n];
                for &b in to.experts_of(token) {
                    if let Some(cell) = row.get_mut(b as usize) {
                        *cell += 1;
                    }
                }
            }
        }
    }

    /// How often expert `from` at layer `pair` was followed by each expert at layer `pair + 1`.
    pub fn row(&self, pair: usize, from: ExpertId) -> &[u64] {
        let start = from as usize * self.num_experts;
        &self.counts[pair][start..start + self.num_experts]
    }

    /// Share of the pairs leaving each expert at layer `pair` that go to that expert's `top_n`
    /// most frequent successors, averaged over experts weighted by their pair counts (so it equals
    /// `sum over experts of top-n counts / all pairs`). `None` when the layer pair has no pairs.
    pub fn concentration(&self, pair: usize, top_n: usize) -> Option<f64> {
        let mut top_total = 0u64;
        let mut total = 0u64;
        let mut sorted = Vec::with_capacity(self.num_experts);
        for from in 0..self.num_experts {
            let row = self.row(pair, from as ExpertId);
            total += row.iter().sum::<u64>();
            sorted.clear();
            sorted.extend_from_slice(row);
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            top_total += sorted.iter().take(top_n).sum::<u64>();
        }
        (total > 0).then(|| top_total as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::RoutingTrace;

    /// Three top-1 tokens over two layers of 4 experts: 0->1, 0->1, 0->2 and one 3->3.
    fn counted(ids: &[ExpertId], layers: usize, k: usize) -> TransitionCounts {
        let trace = RoutingTrace::from_dense(4, layers, k, ids).unwrap();
        let mut counts = TransitionCounts::new(layers, 4);
        for pair in 0..layers - 1 {
            counts.add(
                pair,
                trace.layer(pair),
                trace.layer(pair + 1),
                0..trace.num_tokens(),
            );
        }
        counts
    }

    #[test]
    fn top1_affinity_is_the_token_weighted_share_of_the_favourite_successor() {
        // Expert 0 has 3 tokens: two go to 1, one to 2 -> top-1 share 2/3.
        // Expert 3 has 1 token, to 3 -> top-1 share 1.
        // Token-weighted mean: (3 * 2/3 + 1 * 1) / 4 = 3/4.
        let counts = counted(&[0, 1, 0, 1, 0, 2, 3, 3], 2, 1);
        assert_eq!(counts.row(0, 0), &[0, 2, 1, 0]);
        assert_eq!(counts.concentration(0, 1), Some(0.75));
        // Every expert has at most 2 successors, so the top-4 share is 1.
        assert_eq!(counts.concentration(0, 4), Some(1.0));
    }

    #[test]
    fn top_k_tokens_count_every_pair() {
        // One top-2 token: {0, 1} -> {2, 3} gives four pairs 0->2, 0->3, 1->2, 1->3.
        // Each expert's favourite successor takes 1 of its 2 pairs: top-1 share 2/4 = 0.5.
        let counts = counted(&[0, 1, 2, 3], 2, 2);
        assert_eq!(counts.row(0, 0), &[0, 0, 1, 1]);
        assert_eq!(counts.row(0, 1), &[0, 0, 1, 1]);
        assert_eq!(counts.concentration(0, 1), Some(0.5));
    }

    #[test]
    fn a_single_layer_has_no_pairs() {
        let counts = TransitionCounts::new(1, 4);
        assert_eq!(counts.num_pairs(), 0);
        let empty = counted(&[], 2, 1);
        assert_eq!(empty.concentration(0, 1), None);
    }
}
