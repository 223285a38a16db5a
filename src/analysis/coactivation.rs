//! Top-k co-activation: which expert pairs the same token uses together in one layer.
//!
//! Co-activated experts placed on one GPU save a copy of the token (Occult, speculative expert
//! grouping). Counts are kept in an upper-triangular matrix per layer, allocated only once some
//! token of the layer has two or more experts.

use serde::Serialize;

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

/// Co-activation counts of every unordered expert pair in one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct CoactivationCounts {
    num_experts: usize,
    /// `None` until a token with 2+ experts is seen; then the upper triangle (a < b) in
    /// row-major order.
    counts: Option<Vec<u64>>,
}

impl CoactivationCounts {
    /// Empty counts for a layer of `num_experts` experts.
    pub fn new(num_experts: usize) -> Self {
        CoactivationCounts {
            num_experts,
            counts: None,
        }
    }

    /// Index of the unordered pair (a, b), a < b, in the upper triangle.
    fn index(&self, a: usize, b: usize) -> usize {
        a * (2 * self.num_experts - a - 1) / 2 + (b - a - 1)
    }

    /// The pair (a, b), a < b, stored at `index` (the inverse of [`Self::index`]).
    fn pair_at(&self, index: usize) -> [ExpertId; 2] {
        let n = self.num_experts;
        let mut a = 0;
        let mut row_start = 0;
        while row_start + (n - a - 1) <= index {
            row_start += n - a - 1;
            a += 1;
        }
        [a as ExpertId, (a + 1 + index - row_start) as ExpertId]
    }

    /// Counts the expert pairs of tokens `tokens`. Ids at or past `num_experts` and a token's
    /// repeated ids are skipped.
    pub fn add(&mut self, routing: &LayerRouting, tokens: std::ops::Range<usize>) {
        let n = self.num_experts;
        for token in tokens {
            let experts = routing.experts_of(token);
            if experts.len() < 2 {
                continue;
            }
            for (i, &x) in experts.iter().enumerate() {
                for &y in &experts[i + 1..] {
                    let (a, b) = (x.min(y) as usize, x.max(y) as usize);
                    if a == b || b >= n {
                        continue;
                    }
                    let index = self.index(a, b);
                    let counts = self.counts.get_or_insert_with(|| vec![0; n * (n - 1) / 2]);
                    counts[index] += 1;
                }
            }
        }
    }

    /// The `top_n` most co-activated pairs, most frequent first (ties: lower ids first), with
    /// their share of `tokens`. Empty when no token had two experts.
    pub fn top_pairs(&self, top_n: usize, tokens: usize) -> Vec<PairCount> {
        let Some(counts) = &self.counts else {
            return Vec::new();
        };
        let mut nonzero: Vec<(usize, u64)> = counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c > 0)
            .map(|(i, &c)| (i, c))
            .collect();
        nonzero.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        nonzero
            .into_iter()
            .take(top_n)
            .map(|(index, count)| PairCount {
                pair: self.pair_at(index),
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
    fn pair_index_round_trips_over_the_whole_triangle() {
        let counts = CoactivationCounts::new(5);
        let mut expected = 0;
        for a in 0..5 {
            for b in a + 1..5 {
                assert_eq!(counts.index(a, b), expected);
                assert_eq!(counts.pair_at(expected), [a as u16, b as u16]);
                expected += 1;
            }
        }
        assert_eq!(expected, 10);
    }

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
