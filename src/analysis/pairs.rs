//! Counts of ordered expert pairs `(a, b)`, the storage behind transition and co-activation
//! statistics.
//!
//! Up to [`DENSE_MAX_EXPERTS`] experts the counts are a dense `experts x experts` matrix (fast
//! increments, at most 8 MiB), allocated on the first pair. Past it a dense matrix would not fit
//! (65,536 experts: 32 GiB), so the counts go to a hash map holding only the pairs seen, whose
//! size is bounded by the routed entries rather than by experts squared.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use crate::trace::ExpertId;

/// The largest expert count whose pairs are kept in a dense matrix.
pub const DENSE_MAX_EXPERTS: usize = 1024;

/// Pair counts over `num_experts` experts.
#[derive(Debug, Clone, PartialEq)]
pub struct PairCounts {
    num_experts: usize,
    store: Store,
}

#[derive(Debug, Clone, PartialEq)]
enum Store {
    /// Row-major `a * num_experts + b`; empty until the first pair.
    Dense(Vec<u64>),
    /// Key `a << 16 | b`; only pairs counted at least once.
    Sparse(HashMap<u32, u64, FxBuildHasher>),
}

impl PairCounts {
    /// No pairs yet among `num_experts` experts.
    pub fn new(num_experts: usize) -> Self {
        let store = if num_experts <= DENSE_MAX_EXPERTS {
            Store::Dense(Vec::new())
        } else {
            Store::Sparse(HashMap::default())
        };
        PairCounts { num_experts, store }
    }

    /// Number of experts.
    pub fn num_experts(&self) -> usize {
        self.num_experts
    }

    /// Adds `count` to pair `(a, b)`; both must be below the number of experts.
    #[inline]
    pub fn add(&mut self, a: ExpertId, b: ExpertId, count: u64) {
        let n = self.num_experts;
        debug_assert!(usize::from(a) < n && usize::from(b) < n);
        match &mut self.store {
            Store::Dense(cells) => {
                if cells.is_empty() {
                    cells.resize(n * n, 0);
                }
                cells[usize::from(a) * n + usize::from(b)] += count;
            }
            Store::Sparse(map) => *map.entry(key(a, b)).or_default() += count,
        }
    }

    /// Adds every count of `other`, which must be over the same number of experts.
    pub fn merge(&mut self, other: &PairCounts) {
        for (a, b, count) in other.nonzero() {
            self.add(a, b, count);
        }
    }

    /// The pairs counted at least once, as `(a, b, count)` ordered by `a`, then `b`.
    pub fn nonzero(&self) -> Vec<(ExpertId, ExpertId, u64)> {
        match &self.store {
            Store::Dense(cells) => cells
                .iter()
                .enumerate()
                .filter(|&(_, &count)| count > 0)
                .map(|(cell, &count)| {
                    let (a, b) = (cell / self.num_experts, cell % self.num_experts);
                    (a as ExpertId, b as ExpertId, count)
                })
                .collect(),
            Store::Sparse(map) => {
                let mut pairs: Vec<_> = map
                    .iter()
                    .map(|(&key, &count)| ((key >> 16) as ExpertId, key as ExpertId, count))
                    .collect();
                pairs.sort_unstable_by_key(|&(a, b, _)| (a, b));
                pairs
            }
        }
    }

    /// Row `a`: the count of every pair `(a, b)`, `b` from 0.
    pub fn row(&self, a: ExpertId) -> Vec<u64> {
        let n = self.num_experts;
        match &self.store {
            Store::Dense(cells) if cells.is_empty() => vec![0; n],
            Store::Dense(cells) => cells[usize::from(a) * n..(usize::from(a) + 1) * n].to_vec(),
            Store::Sparse(map) => (0..n)
                .map(|b| map.get(&key(a, b as ExpertId)).copied().unwrap_or(0))
                .collect(),
        }
    }
}

/// The sparse map's key of pair `(a, b)`.
fn key(a: ExpertId, b: ExpertId) -> u32 {
    u32::from(a) << 16 | u32::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same pairs counted in a dense and in a sparse store.
    fn both(pairs: &[(ExpertId, ExpertId)]) -> [PairCounts; 2] {
        [8, DENSE_MAX_EXPERTS + 1].map(|n| {
            let mut counts = PairCounts::new(n);
            for &(a, b) in pairs {
                counts.add(a, b, 1);
            }
            counts
        })
    }

    #[test]
    fn dense_and_sparse_stores_agree() {
        let [dense, sparse] = both(&[(3, 1), (0, 7), (3, 1), (7, 0)]);
        assert!(matches!(dense.store, Store::Dense(_)));
        assert!(matches!(sparse.store, Store::Sparse(_)));
        for counts in [&dense, &sparse] {
            assert_eq!(counts.nonzero(), vec![(0, 7, 1), (3, 1, 2), (7, 0, 1)]);
            assert_eq!(&counts.row(3)[..4], &[0, 2, 0, 0]);
        }
        assert_eq!(sparse.row(3).len(), DENSE_MAX_EXPERTS + 1);
    }

    #[test]
    fn merge_adds_counts_and_empty_dense_store_allocates_nothing() {
        let [mut dense, mut sparse] = both(&[(1, 2)]);
        let [extra_dense, extra_sparse] = both(&[(1, 2), (2, 1)]);
        dense.merge(&extra_dense);
        sparse.merge(&extra_sparse);
        assert_eq!(dense.nonzero(), vec![(1, 2, 2), (2, 1, 1)]);
        assert_eq!(sparse.nonzero(), dense.nonzero());
        let empty = PairCounts::new(DENSE_MAX_EXPERTS);
        assert_eq!(empty.store, Store::Dense(Vec::new()));
        assert_eq!(empty.row(5), vec![0; DENSE_MAX_EXPERTS]);
    }
}
