//! Streaming accumulation of routing statistics, chunk by chunk in token order.

use rayon::prelude::*;

use crate::analysis::affinity::TransitionMatrix;
use crate::analysis::coactivation::CoactivationCounts;
use crate::analysis::locality::LruStack;
use crate::analysis::{LayerStats, TraceStats};
use crate::trace::{LayerRouting, RoutingTrace};

/// How many favourite successors `affinity_top4` counts.
const AFFINITY_WIDE_TOP: usize = 4;
/// How many co-activated pairs each layer reports.
const COACTIVATION_TOP: usize = 10;
/// LRU capacities run from k to this many times k.
const LRU_MAX_FACTOR: usize = 4;

/// Accumulates the counts behind [`TraceStats`] from successive chunks of one trace.
///
/// Memory is O(layers x experts^2) for the transition and co-activation counts up to
/// [`crate::analysis::pairs::DENSE_MAX_EXPERTS`] experts, and O(distinct pairs) past it, plus
/// O(layers x experts) for loads and cache state, whatever the number of tokens. Chunks must come in token
/// order (the LRU replay depends on it) and carry every layer of their tokens. Layers are
/// accumulated in parallel; the result does not depend on the number of threads.
#[derive(Debug, Clone)]
pub struct StatsBuilder {
    num_experts: usize,
    num_tokens: usize,
    max_k: usize,
    layers: Vec<LayerAccumulator>,
}

/// The counts of one layer (and of its transitions to the next layer).
#[derive(Debug, Clone)]
struct LayerAccumulator {
    /// Entries per expert.
    loads: Vec<u64>,
    out_of_range_entries: u64,
    coactivation: CoactivationCounts,
    lru: LruStack,
    /// Pairs to the next layer; `None` for the last layer.
    to_next: Option<TransitionMatrix>,
}

impl LayerAccumulator {
    fn add(&mut self, routing: &LayerRouting, next: Option<&LayerRouting>) {
        let tokens = 0..routing.num_tokens();
        for &expert in routing.experts() {
            match self.loads.get_mut(expert as usize) {
                Some(load) => *load += 1,
                None => self.out_of_range_entries += 1,
            }
        }
        self.coactivation.add(routing, tokens.clone());
        self.lru.add(routing, tokens.clone());
        if let (Some(matrix), Some(next)) = (&mut self.to_next, next) {
            matrix.add(routing, next, tokens);
        }
    }
}

impl StatsBuilder {
    /// A builder for traces of `num_layers` layers of `num_experts` experts.
    pub fn new(num_layers: usize, num_experts: usize) -> Self {
        StatsBuilder {
            num_experts,
            num_tokens: 0,
            max_k: 0,
            layers: (0..num_layers)
                .map(|layer| LayerAccumulator {
                    loads: vec![0; num_experts],
                    out_of_range_entries: 0,
                    coactivation: CoactivationCounts::new(num_experts),
                    lru: LruStack::new(num_experts),
                    to_next: (layer + 1 < num_layers).then(|| TransitionMatrix::new(num_experts)),
                })
                .collect(),
        }
    }

    /// Adds the next chunk of tokens. Entries with an expert id at or past the builder's number
    /// of experts are counted in `out_of_range_entries` and otherwise ignored.
    ///
    /// # Panics
    /// If the chunk's number of layers differs from the builder's: chunks of one trace always
    /// agree, so this is a caller bug, not bad input.
    pub fn add(&mut self, chunk: &RoutingTrace) {
        assert_eq!(
            chunk.num_layers(),
            self.layers.len(),
            "chunk layers must match the StatsBuilder's"
        );
        self.num_tokens += chunk.num_tokens();
        self.max_k = self.max_k.max(chunk.max_k());
        self.layers
            .par_iter_mut()
            .enumerate()
            .for_each(|(layer, accumulator)| {
                accumulator.add(chunk.layer(layer), chunk.layers().get(layer + 1));
            });
    }

    /// The statistics of every token added so far.
    pub fn finish(self) -> TraceStats {
        let k = self.max_k;
        let capacities = k..=(LRU_MAX_FACTOR * k).min(self.num_experts);
        let layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(layer, accumulator)| {
                let loads: Vec<f64> = accumulator.loads.iter().map(|&c| c as f64).collect();
                let mut stats = LayerStats::from_loads(layer, Some(self.num_tokens), &loads);
                if let Some(matrix) = &accumulator.to_next {
                    stats.affinity_top1 = matrix.concentration(1);
                    stats.affinity_top4 = matrix.concentration(AFFINITY_WIDE_TOP);
                }
                stats.coactivation = accumulator
                    .coactivation
                    .top_pairs(COACTIVATION_TOP, self.num_tokens);
                if k > 0 {
                    stats.lru_hit_rates = accumulator.lru.hits(capacities.clone());
                }
                stats
            })
            .collect();
        TraceStats {
            num_layers: self.layers.len(),
            num_experts: self.num_experts,
            num_tokens: Some(self.num_tokens),
            top_k: Some(k),
            out_of_range_entries: self.layers.iter().map(|l| l.out_of_range_entries).sum(),
            layers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{load_stats, trace_stats};
    use crate::trace::{ExpertLoads, LayerRouting, TokenMeta, Trace};

    /// Three top-1 tokens over two layers of 4 experts, rows = tokens:
    /// token 0: 0 -> 1, token 1: 0 -> 1, token 2: 2 -> 3.
    fn three_tokens() -> RoutingTrace {
        RoutingTrace::from_dense(4, 2, 1, &[0, 1, 0, 1, 2, 3]).unwrap()
    }

    #[test]
    fn three_token_trace_has_known_stats() {
        let stats = trace_stats(&Trace::Tokens(three_tokens()));
        assert_eq!(stats.num_tokens, Some(3));
        assert_eq!(stats.top_k, Some(1));
        let first = &stats.layers[0];
        // Layer 0 loads [2, 0, 1, 0]: mean 0.75, max/mean 2 / 0.75 = 8/3; 2 dead experts.
        assert_eq!(first.tokens, Some(3));
        assert_eq!(first.entries, 3.0);
        assert!((first.max_mean - 8.0 / 3.0).abs() < 1e-12);
        assert_eq!(first.dead_experts, 2);
        assert_eq!(first.experts_for_half_load, 1);
        // Expert 0 sends both tokens to 1, expert 2 its one token to 3: every expert's
        // favourite successor takes all of its tokens.
        assert_eq!(first.affinity_top1, Some(1.0));
        assert_eq!(first.affinity_top4, Some(1.0));
        // Last layer has no successor layer.
        assert_eq!(stats.layers[1].affinity_top1, None);
        // LRU capacities 1..=4 at layer 0 over 0 0 2: one hit (the repeated 0) at every capacity.
        let hits: Vec<(usize, u64)> = first
            .lru_hit_rates
            .iter()
            .map(|h| (h.capacity, h.hits))
            .collect();
        assert_eq!(hits, vec![(1, 1), (2, 1), (3, 1), (4, 1)]);
        assert!((first.lru_hit_rates[0].hit_rate - 1.0 / 3.0).abs() < 1e-12);
        assert!(first.coactivation.is_empty());
    }

    #[test]
    fn a_split_affinity_is_token_weighted() {
        // Tokens: 0->1, 0->1, 0->2, 2->3. Expert 0: 3 tokens, favourite takes 2; expert 2: 1 of 1.
        // affinity_top1 = (2 + 1) / 4 = 0.75.
        let trace = RoutingTrace::from_dense(4, 2, 1, &[0, 1, 0, 1, 0, 2, 2, 3]).unwrap();
        let stats = trace_stats(&Trace::Tokens(trace));
        assert_eq!(stats.layers[0].affinity_top1, Some(0.75));
    }

    #[test]
    fn chunks_give_the_same_stats_as_one_pass() {
        let ids: Vec<u16> = (0..600u32)
            .map(|i| ((i * 13 + i / 7) % 16) as u16)
            .collect();
        let trace = RoutingTrace::from_dense(16, 3, 2, &ids).unwrap();
        let whole = trace_stats(&Trace::Tokens(trace.clone()));
        let mut builder = StatsBuilder::new(3, 16);
        for range in [0..1, 1..40, 40..41, 41..100] {
            builder.add(&trace.slice_tokens(range));
        }
        assert_eq!(builder.finish(), whole);
        // Top-2 routing: co-activation is reported, and LRU capacities run 2..=8.
        assert!(!whole.layers[0].coactivation.is_empty());
        let capacities: Vec<usize> = whole.layers[0]
            .lru_hit_rates
            .iter()
            .map(|h| h.capacity)
            .collect();
        assert_eq!(capacities, (2..=8).collect::<Vec<_>>());
    }

    #[test]
    fn out_of_range_ids_are_counted_and_left_out() {
        let layer = LayerRouting::fixed_k(1, vec![0, 9, 1], None).unwrap();
        let trace = RoutingTrace::new(2, vec![layer], TokenMeta::default()).unwrap();
        let stats = trace_stats(&Trace::Tokens(trace));
        assert_eq!(stats.out_of_range_entries, 1);
        assert_eq!(stats.layers[0].entries, 2.0);
        assert_eq!(stats.layers[0].max_mean, 1.0);
    }

    #[test]
    fn aggregate_loads_get_imbalance_only() {
        let loads = ExpertLoads::new(4, vec![vec![4.0, 2.0, 1.0, 1.0]]).unwrap();
        let stats = load_stats(&loads);
        let layer = &stats.layers[0];
        assert_eq!(stats.num_tokens, None);
        assert_eq!(layer.tokens, None);
        assert_eq!(layer.max_mean, 2.0);
        assert_eq!(layer.gini, 0.3125);
        assert_eq!(layer.entropy, 1.75);
        assert_eq!(layer.affinity_top1, None);
        assert!(layer.lru_hit_rates.is_empty());
        assert_eq!(trace_stats(&Trace::Loads(loads)), stats);
    }
}
