//! Temporal locality: how well an LRU cache of expert weights would serve tokens in order.
//!
//! Tokens are replayed in trace order. A token's expert is a hit when it is already cached before
//! the token is served (all of a token's experts are looked up against the same cache state);
//! afterwards the token's experts become the most recent, in rank order, and misses evict the least
//! recently used experts. For every capacity at least the token's number of experts this is the
//! classic LRU stack model (Mattson et al.): the cache of capacity C always holds the C most recent
//! experts, so one recency order and a histogram of reuse depths give the hit count of every
//! capacity at once, in memory O(experts) per layer and time O(log experts) per lookup.

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

/// The recency order of one layer's experts and the depths at which experts were found in it.
///
/// The order is kept as each expert's time of last use: an expert's depth is the number of
/// experts used since, counted in a Fenwick tree over times, so a lookup costs O(log experts)
/// however many experts there are (a recency list scan costs O(experts), too slow at 65,536).
#[derive(Debug, Clone, PartialEq)]
pub struct LruStack {
    /// Per expert, the time of its last use; 0 before its first.
    last_use: Vec<u32>,
    /// One mark at each used expert's `last_use`.
    marks: Fenwick,
    /// The time the next use gets.
    clock: u32,
    /// Experts used at least once (the marks in the tree).
    used: u32,
    /// `depth_hits[d]`: lookups that found their expert at depth d (0 = most recent).
    depth_hits: Vec<u64>,
    /// Every lookup, including first touches that are misses at any capacity.
    lookups: u64,
}

impl LruStack {
    /// An empty cache history over `num_experts` experts.
    pub fn new(num_experts: usize) -> Self {
        LruStack {
            last_use: vec![0; num_experts],
            marks: Fenwick::new(2 * num_experts + 1),
            clock: 1,
            used: 0,
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
                let last = self.last_use[usize::from(expert)];
                if last > 0 {
                    let depth = self.used - self.marks.prefix(last);
                    self.depth_hits[depth as usize] += 1;
                }
            }
            // Make the token's experts the most recent, last rank first, so rank 0 ends on top.
            for &expert in valid().rev() {
                self.touch(usize::from(expert));
            }
        }
    }

    /// Makes `expert` the most recently used.
    fn touch(&mut self, expert: usize) {
        if self.clock as usize >= self.marks.len() {
            self.renumber();
        }
        match std::mem::replace(&mut self.last_use[expert], self.clock) {
            0 => self.used += 1,
            last => self.marks.add(last, -1),
        }
        self.marks.add(self.clock, 1);
        self.clock += 1;
    }

    /// Renumbers the used experts' times 1, 2, ... in recency order (oldest first) once the
    /// clock reaches the tree's end; at most every `experts + 1` uses, so O(log) amortised.
    fn renumber(&mut self) {
        let mut order: Vec<(u32, usize)> = self
            .last_use
            .iter()
            .enumerate()
            .filter(|&(_, &time)| time > 0)
            .map(|(expert, &time)| (time, expert))
            .collect();
        order.sort_unstable();
        self.marks = Fenwick::new(self.marks.len());
        for (time, &(_, expert)) in (1..).zip(&order) {
            self.last_use[expert] = time;
            self.marks.add(time, 1);
        }
        self.clock = order.len() as u32 + 1;
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

/// A Fenwick (binary indexed) tree of counts over positions 1..len.
#[derive(Debug, Clone, PartialEq)]
struct Fenwick {
    tree: Vec<i32>,
}

impl Fenwick {
    /// Zero counts at positions 1..len.
    fn new(len: usize) -> Self {
        Fenwick {
            tree: vec![0; len.max(1)],
        }
    }

    /// One past the last position.
    fn len(&self) -> usize {
        self.tree.len()
    }

    /// Adds `delta` at `position` (1-based).
    fn add(&mut self, position: u32, delta: i32) {
        let mut i = position as usize;
        while i < self.tree.len() {
            self.tree[i] += delta;
            i += i & i.wrapping_neg();
        }
    }

    /// The sum of counts at positions 1..=position.
    fn prefix(&self, position: u32) -> u32 {
        let mut i = position as usize;
        let mut sum = 0;
        while i > 0 {
            sum += self.tree[i];
            i -= i & i.wrapping_neg();
        }
        sum as u32
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
    fn renumbering_keeps_the_order() {
        // 3 experts: the tree has room for 7 times, so 40 lookups renumber several times.
        let ids: Vec<u16> = (0..40u32).map(|i| ((i * i + i / 3) % 3) as u16).collect();
        let routing = LayerRouting::fixed_k(1, ids, None).unwrap();
        let mut stack = LruStack::new(3);
        stack.add(&routing, 0..40);
        for hit in stack.hits(1..=3) {
            assert_eq!(hit.hits, direct_lru_hits(&routing, hit.capacity), "{hit:?}");
        }
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
