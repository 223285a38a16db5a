//! Top-k co-activation: which expert pairs the same token uses together in one layer.
//!
//! Co-activated experts placed on one GPU save a copy of the token (Occult, speculative expert
//! grouping). Counts are kept per layer in a [`PairCounts`] store (pairs `a < b` only), which
//! allocates nothing until some token of the layer has two or more experts.

use serde::Serialize;

use crate::analysis::pairs::PairCounts;
use crate::trace::{ExpertId, LayerRouting};

/// How often one pair of experts was chosen by the same token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairCount {
    /// The two experts, lower id first.
    pub pair: [ExpertId; 2],
    /// Tokens that chose both.
    pub count: u64,
    /// `count` divided by the layer's number of tokens.
    pub share: f64,
}

/// Co-activation counts of every unordered expert pair `(a, b)`, `a < b`, in one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct CoactivationCounts {
    counts: PairCounts,
}

impl CoactivationCounts {
    /// Empty counts for a layer of `num_experts` experts.
    pub fn new(num_experts: usize) -> Self {
        CoactivationCounts {
            counts: PairCounts::new(num_experts),
        }
    }

    /// Counts the expert pairs of tokens `tokens`. Ids at or past `num_experts` and a token's
    /// repeated ids are skipped.
    pub fn add(&mut self, routing: &LayerRouting, tokens: std::ops::Range<usize>) {
        let n = self.counts.num_experts();
        for token in tokens {
            let experts = routing.experts_of(token);
            if experts.len() < 2 {
                continue;
            }
            for (i, &x) in experts.iter().enumerate() {
                for &y in &experts[i + 1..] {
                    let (a, b) = (x.min(y), x.max(y));
                    if a != b && usize::from(b) < n {
                        self.counts.add(a, b, 1);
                    }
                }
            }
        }
    }

    /// The `top_n` most co-activated pairs, most frequent first (ties: lower ids first), with
    /// their share of `tokens`. Empty when no token had two experts.
    pub fn top_pairs(&self, top_n: usize, tokens: usize) -> Vec<PairCount> {
        let mut pairs = self.counts.nonzero();
        // `nonzero` is ordered by pair, so a stable sort by count keeps lower pairs first.
        pairs.sort_by_key(|pair| std::cmp::Reverse(pair.2));
        pairs
            .into_iter()
            .take(top_n)
            .map(|(a, b, count)| PairCount {
                pair: [a, b],
                count,
                share: count as f64 / tokens.max(1) as f64,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_frequent_pairs_come_first_with_their_token_share() {
        // Four top-3 tokens over 5 experts:
        //   {0,1,2} {1,0,3} {4,1,0} {2,3,4}
        // pairs: (0,1) x3; (0,2) (1,2) (0,3) (1,3) (1,4) (0,4) (2,3) (3,4) x1; (2,4) x1.
        let routing =
            LayerRouting::fixed_k(3, vec![0, 1, 2, 1, 0, 3, 4, 1, 0, 2, 3, 4], None).unwrap();
        let mut counts = CoactivationCounts::new(5);
        counts.add(&routing, 0..4);
        let top = counts.top_pairs(3, 4);
        assert_eq!(top.len(), 3);
        assert_eq!(top[0].pair, [0, 1]);
        assert_eq!(top[0].count, 3);
        assert_eq!(top[0].share, 0.75);
        // Ties at count 1 are broken by the lower pair first: (0,2), then (0,3).
        assert_eq!(top[1].pair, [0, 2]);
        assert_eq!(top[2].pair, [0, 3]);
        assert_eq!(top[2].count, 1);
    }

    #[test]
    fn top1_layers_have_no_pairs() {
        let routing = LayerRouting::fixed_k(1, vec![0, 1, 1], None).unwrap();
        let mut counts = CoactivationCounts::new(4);
        counts.add(&routing, 0..3);
        assert!(counts.top_pairs(10, 3).is_empty());
    }
}
