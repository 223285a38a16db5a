//! Inter-layer affinity: how predictably a token's expert at layer l determines its experts at l+1.
//!
//! For a pair of consecutive layers, [`TransitionMatrix`] counts (expert at l, expert at l+1)
//! pairs over tokens; with top-k routing each token contributes all k x k' pairs. From the counts,
//! [`TransitionMatrix::concentration`] gives the share of an expert's pairs that land on its `n`
//! most frequent successors, averaged over experts weighted by their pair counts. High values mean
//! placement can keep tokens on one GPU across layers (ExFlow, MoETuner) and predictors can
//! pre-schedule the next layer.

use crate::analysis::pairs::PairCounts;
use crate::trace::{ExpertId, LayerRouting};

/// Pair counts from one layer to the next: `from` = expert at layer l, `to` = expert at layer
/// l+1, in a [`PairCounts`] store (dense for small expert counts, sparse past them).
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionMatrix {
    counts: PairCounts,
}

impl TransitionMatrix {
    /// Empty counts between two layers of `num_experts` experts.
    pub fn new(num_experts: usize) -> Self {
        TransitionMatrix {
            counts: PairCounts::new(num_experts),
        }
    }

    /// Counts the pairs of tokens `tokens` from layer `from` to the next layer `to`. Expert ids at
    /// or past `num_experts` are skipped.
    pub fn add(&mut self, from: &LayerRouting, to: &LayerRouting, tokens: std::ops::Range<usize>) {
        let n = self.num_experts();
        let valid = move |&&e: &&ExpertId| usize::from(e) < n;
        for token in tokens {
            for &a in from.experts_of(token).iter().filter(valid) {
                for &b in to.experts_of(token).iter().filter(valid) {
                    self.counts.add(a, b, 1);
                }
            }
        }
    }

    /// Adds the counts of `other` (pairs counted over other tokens between the same layers).
    ///
    /// # Panics
    /// If the two matrices are for different numbers of experts.
    pub fn merge(&mut self, other: &TransitionMatrix) {
        assert_eq!(
            self.num_experts(),
            other.num_experts(),
            "merging unequal matrices"
        );
        self.counts.merge(&other.counts);
    }

    /// Number of experts per layer.
    pub fn num_experts(&self) -> usize {
        self.counts.num_experts()
    }

    /// How often expert `from` was followed by each expert of the next layer.
    pub fn row(&self, from: ExpertId) -> Vec<u64> {
        self.counts.row(from)
    }

    /// Share of the pairs leaving each expert that go to that expert's `top_n` most frequent
    /// successors, averaged over experts weighted by their pair counts (so it equals `sum over
    /// experts of top-n counts / all pairs`). `None` when there are no pairs.
    pub fn concentration(&self, top_n: usize) -> Option<f64> {
        let pairs = self.counts.nonzero();
        let mut top_total = 0u64;
        let mut total = 0u64;
        let mut row = Vec::new();
        // `pairs` is ordered by source expert: one chunk per expert with successors.
        for chunk in pairs.chunk_by(|x, y| x.0 == y.0) {
            row.clear();
            row.extend(chunk.iter().map(|&(_, _, count)| count));
            row.sort_unstable_by(|a, b| b.cmp(a));
            total += row.iter().sum::<u64>();
            top_total += row.iter().take(top_n).sum::<u64>();
        }
        (total > 0).then(|| top_total as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::RoutingTrace;

    /// Counts the pairs between the two layers of a dense `[tokens][2][k]` trace of 4 experts.
    fn counted(ids: &[ExpertId], k: usize) -> TransitionMatrix {
        let trace = RoutingTrace::from_dense(4, 2, k, ids).unwrap();
        let mut counts = TransitionMatrix::new(4);
        counts.add(trace.layer(0), trace.layer(1), 0..trace.num_tokens());
        counts
    }

    #[test]
    fn top1_affinity_is_the_token_weighted_share_of_the_favourite_successor() {
        // Expert 0 has 3 tokens: two go to 1, one to 2 -> top-1 share 2/3.
        // Expert 3 has 1 token, to 3 -> top-1 share 1.
        // Token-weighted mean: (3 * 2/3 + 1 * 1) / 4 = 3/4.
        let counts = counted(&[0, 1, 0, 1, 0, 2, 3, 3], 1);
        assert_eq!(counts.row(0), &[0, 2, 1, 0]);
        assert_eq!(counts.concentration(1), Some(0.75));
        // Every expert has at most 2 successors, so the top-4 share is 1.
        assert_eq!(counts.concentration(4), Some(1.0));
    }

    #[test]
    fn top_k_tokens_count_every_pair() {
        // One top-2 token: {0, 1} -> {2, 3} gives four pairs 0->2, 0->3, 1->2, 1->3.
        // Each expert's favourite successor takes 1 of its 2 pairs: top-1 share 2/4 = 0.5.
        let counts = counted(&[0, 1, 2, 3], 2);
        assert_eq!(counts.row(0), &[0, 0, 1, 1]);
        assert_eq!(counts.row(1), &[0, 0, 1, 1]);
        assert_eq!(counts.concentration(1), Some(0.5));
    }

    #[test]
    fn merged_halves_equal_one_count() {
        let trace = RoutingTrace::from_dense(4, 2, 1, &[0, 1, 0, 1, 0, 2, 3, 3]).unwrap();
        let mut first = TransitionMatrix::new(4);
        first.add(trace.layer(0), trace.layer(1), 0..2);
        let mut second = TransitionMatrix::new(4);
        second.add(trace.layer(0), trace.layer(1), 2..4);
        first.merge(&second);
        assert_eq!(first, counted(&[0, 1, 0, 1, 0, 2, 3, 3], 1));
    }

    #[test]
    fn no_tokens_no_affinity() {
        assert_eq!(counted(&[], 1).concentration(1), None);
    }
}
