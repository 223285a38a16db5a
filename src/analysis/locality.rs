//! Temporal locality: how well an LRU cache of expert weights would serve tokens in order.
//!
//! Tokens are replayed in trace order. A token's expert is a hit when it is already cached before
//! the token is served (all of a token's experts are looked up against the same cache state);
//! afterwards the token's experts become the most recent, in rank order, and misses evict the least
//! recently used experts. For every capacity at least the token's number of experts this is the
//! classic LRU stack model (Mattson et al.): the cache of capacity C always holds the C most recent
//! experts, so one recency list and a histogram of reuse depths give the hit count of every
//! capacity at once, in memory O(experts) per layer.

use serde::Serialize;

use crate::trace::LayerRouting;

/// Hits of an LRU cache of one capacity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheHit {
    /// Number of experts the cache holds.
    pub capacity: usize,
    /// Lookups that found the expert cached.
    pub hits: u64,
    /// `hits` divided by all lookups (one per routed entry).
    pub hit_rate: f64,
}

/// The recency list of one layer and the depths at which experts were found in it.
#[derive(Debug, Clone, PartialEq)]
pub struct LruStack {
    /// Experts seen so far, most recently used first.
    recency: Vec<u16>,
    /// `depth_hits[d]`: lookups that found their expert at depth d (0 = most recent).
    depth_hits: Vec<u64>,
    /// Every lookup, including first touches that are misses at any capacity.
    lookups: u64,
}

impl LruStack {
    /// An empty cache history over `num_experts` experts.
    pub fn new(num_experts: usize) -> Self {
        LruStack {
            recency: Vec::with_capacity(num_experts),
            depth_hits: vec![0; num_experts],
            lookups: 0,
        }
    }

    /// Replays tokens `tokens` of `routing` in order. Ids at or past the number of experts are
    /// skipped.
    pub fn add(&mut self, routing: &LayerRouting, tokens: std::ops::Range<usize>) {
        let num_experts = self.depth_hits.len();
        for token in tokens {
            let experts = routing.experts_of(token);
            let valid = || experts.iter().filter(|&&e| (e as usize) < num_experts);
            for &expert in valid() {
                self.lookups += 1;
                if let Some(depth) = self.recency.iter().position(|&e| e == expert) {
                    self.depth_hits[depth] += 1;
                }
            }
            // Move the token's experts to the front, last rank first, so rank 0 ends on top.
            for &expert in valid().rev() {
                match self.recency.iter().position(|&e| e == expert) {
                    Some(depth) => self.recency[..=depth].rotate_right(1),
                    None => self.recency.insert(0, expert),
                }
            }
        }
    }

    /// Hits of an LRU cache of each capacity in `capacities`.
    pub fn hits(&self, capacities: impl IntoIterator<Item = usize>) -> Vec<CacheHit> {
        capacities
            .into_iter()
            .map(|capacity| {
                let hits: u64 = self.depth_hits.iter().take(capacity).sum();
                CacheHit {
                    capacity,
                    hits,
                    hit_rate: if self.lookups == 0 {
                        0.0
                    } else {
                        hits as f64 / self.lookups as f64
                    },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain LRU of one capacity, simulated directly, for cross-checking the stack model.
    fn direct_lru_hits(routing: &LayerRouting, capacity: usize) -> u64 {
        let mut cache: Vec<u16> = Vec::new(); // most recent first
        let mut hits = 0;
        for token in 0..routing.num_tokens() {
            let experts = routing.experts_of(token);
            hits += experts.iter().filter(|e| cache.contains(e)).count() as u64;
            cache.retain(|e| !experts.contains(e));
            cache.splice(0..0, experts.iter().copied());
            cache.truncate(capacity);
        }
        hits
    }

    #[test]
    fn top1_sequence_hits_by_hand() {
        // Sequence 0 1 0 2 1 0 with capacity 1: no two neighbours repeat -> 0 hits.
        // Capacity 2: 0m 1m 0h [0,1] 2m [2,0] 1m [1,2] 0m -> 1 hit.
        // Capacity 3: 0m 1m 0h 2m [2,0,1] 1h [1,2,0] 0h -> 3 hits.
        let routing = LayerRouting::fixed_k(1, vec![0, 1, 0, 2, 1, 0], None).unwrap();
        let mut stack = LruStack::new(4);
        stack.add(&routing, 0..6);
        let hits = stack.hits(1..=3);
        assert_eq!(
            hits.iter().map(|h| h.hits).collect::<Vec<_>>(),
            vec![0, 1, 3]
        );
        assert_eq!(hits[2].hit_rate, 0.5);
        assert_eq!(hits[1].capacity, 2);
    }

    #[test]
    fn a_token_looks_all_its_experts_up_before_updating_the_cache() {
        // Top-2 tokens {1,0} {2,0} {1,2}. Recency lists are most recent first.
        // Capacity 2: {1,0}: 2 misses -> [1,0]. {2,0}: 2 misses, 0 hits (found at depth 1)
        //   -> [2,0]. {1,2}: 1 misses, 2 hits -> 2 hits in all.
        //   (Serving 2 before looking 0 up would have evicted 0 and counted a miss.)
        // Capacity 3: ... {2,0} -> [2,0,1]; {1,2}: both hit -> 3 hits in all.
        let routing = LayerRouting::fixed_k(2, vec![1, 0, 2, 0, 1, 2], None).unwrap();
        let mut stack = LruStack::new(3);
        stack.add(&routing, 0..3);
        let hits: Vec<u64> = stack.hits(2..=3).iter().map(|h| h.hits).collect();
        assert_eq!(hits, vec![2, 3]);
        assert_eq!(direct_lru_hits(&routing, 2), 2);
        assert_eq!(direct_lru_hits(&routing, 3), 3);
    }

    #[test]
    fn stack_model_agrees_with_direct_simulation_in_chunks() {
        let ids: Vec<u16> = (0..300u32).map(|i| ((i * 7 + i / 5) % 11) as u16).collect();
        let routing = LayerRouting::fixed_k(3, ids, None).unwrap();
        let mut stack = LruStack::new(11);
        // Feeding in two chunks must equal one pass.
        stack.add(&routing, 0..37);
        stack.add(&routing, 37..100);
        for hit in stack.hits(3..=11) {
            assert_eq!(hit.hits, direct_lru_hits(&routing, hit.capacity), "{hit:?}");
        }
    }
}
