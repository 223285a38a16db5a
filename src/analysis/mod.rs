//! Routing analysis: load imbalance, inter-layer affinity, co-activation and temporal locality.
//!
//! [`StatsBuilder`] consumes a token-level trace chunk by chunk in token order, in memory bounded
//! by layers x experts^2 for small expert counts and by the distinct expert pairs past
//! [`pairs::DENSE_MAX_EXPERTS`] (never by tokens), and [`StatsBuilder::finish`] turns the counts into
//! [`TraceStats`], one [`LayerStats`] per layer. Aggregate loads ([`ExpertLoads`]) only support the
//! imbalance metrics ([`load_stats`]). The imbalance primitives in [`imbalance`] work on any load
//! vector, so placement evaluation and reports reuse them for per-GPU loads.

pub mod affinity;
pub mod builder;
pub mod coactivation;
pub mod fit;
pub mod fit_loads;
pub mod imbalance;
pub mod locality;
pub mod pairs;
pub mod render;
#[cfg(test)]
pub(crate) mod test_data;

use serde::Serialize;

use std::path::Path;

use crate::error::Result;
use crate::trace::parquet::{self, TraceKind};
use crate::trace::{self, ExpertLoads, Trace};

pub use builder::StatsBuilder;
pub use coactivation::PairCount;
pub use imbalance::{cv, dead_units, entropy_bits, entropy_norm, gini, max_mean, units_for_share};
pub use locality::CacheHit;

/// Routing statistics of a whole trace (the `--json` output of `moesim trace stats`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceStats {
    /// Number of MoE layers.
    pub num_layers: usize,
    /// Routed experts per layer.
    pub num_experts: usize,
    /// Number of tokens; `None` for aggregate loads.
    pub num_tokens: Option<usize>,
    /// The largest number of experts any token was routed to (the k of top-k routing); `None`
    /// for aggregate loads.
    pub top_k: Option<usize>,
    /// Entries whose expert id is not below `num_experts`; they are left out of every metric
    /// (`moesim trace validate` lists them).
    pub out_of_range_entries: u64,
    /// One entry per layer, in layer order.
    pub layers: Vec<LayerStats>,
}

/// Routing statistics of one MoE layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerStats {
    /// Layer index, from 0.
    pub layer: usize,
    /// Tokens of the trace (every layer sees all of them); `None` for aggregate loads.
    pub tokens: Option<usize>,
    /// Routed entries: the sum of the expert loads (tokens x k for top-k routing).
    pub entries: f64,
    /// Busiest expert's load over the mean load of all experts (dead ones included).
    pub max_mean: f64,
    /// Coefficient of variation of expert loads (population std / mean).
    pub cv: f64,
    /// Gini coefficient of expert loads.
    pub gini: f64,
    /// Entropy of the load distribution over experts, in bits.
    pub entropy: f64,
    /// `entropy / log2(num_experts)`: 1 is uniform.
    pub entropy_norm: f64,
    /// Fewest experts that carry half the load, heaviest first.
    pub experts_for_half_load: usize,
    /// Experts with no load.
    pub dead_experts: usize,
    /// Share of each expert's pairs going to its favourite successor at the next layer,
    /// token-weighted over experts; `None` for the last layer and for aggregate loads.
    pub affinity_top1: Option<f64>,
    /// The same for the four favourite successors.
    pub affinity_top4: Option<f64>,
    /// The most co-activated expert pairs (empty unless tokens have 2+ experts).
    pub coactivation: Vec<PairCount>,
    /// LRU expert-cache hit rates for capacities k..=4k (capped at the number of experts).
    pub lru_hit_rates: Vec<CacheHit>,
}

impl LayerStats {
    /// The imbalance metrics of `loads`; the token-level fields are left empty.
    pub fn from_loads(layer: usize, tokens: Option<usize>, loads: &[f64]) -> Self {
        LayerStats {
            layer,
            tokens,
            entries: loads.iter().sum(),
            max_mean: max_mean(loads),
            cv: cv(loads),
            gini: gini(loads),
            entropy: entropy_bits(loads),
            entropy_norm: entropy_norm(loads),
            experts_for_half_load: units_for_share(loads, 0.5),
            dead_experts: dead_units(loads),
            affinity_top1: None,
            affinity_top4: None,
            coactivation: Vec::new(),
            lru_hit_rates: Vec::new(),
        }
    }
}

/// Statistics of a trace in either form: token-level traces get every metric, aggregate loads
/// the imbalance metrics only.
pub fn trace_stats(trace: &Trace) -> TraceStats {
    match trace {
        Trace::Tokens(tokens) => {
            let mut builder = StatsBuilder::new(tokens.num_layers(), tokens.num_experts());
            builder.add(tokens);
            builder.finish()
        }
        Trace::Loads(loads) => load_stats(loads),
    }
}

/// Tokens read per chunk when summarising a Parquet trace as a stream.
const TOKENS_PER_CHUNK: usize = 1 << 16;

/// Statistics of a trace file. Token-level Parquet traces are read as a stream of chunks, so a
/// trace larger than memory can be summarised; other formats are loaded whole.
pub fn file_stats(path: &Path) -> Result<TraceStats> {
    let is_parquet = path.extension().is_some_and(|e| e == "parquet");
    if !is_parquet {
        return Ok(trace_stats(&trace::load(path)?));
    }
    let header = parquet::read_header(path)?;
    if header.kind == TraceKind::Loads {
        return Ok(trace_stats(&parquet::read_trace(path)?));
    }
    let mut builder = StatsBuilder::new(header.num_layers, header.num_experts);
    for chunk in parquet::read_chunks(path, TOKENS_PER_CHUNK)? {
        builder.add(&chunk?.trace);
    }
    Ok(builder.finish())
}

/// Imbalance statistics of aggregate loads; affinity, co-activation and locality stay empty.
pub fn load_stats(loads: &ExpertLoads) -> TraceStats {
    TraceStats {
        num_layers: loads.num_layers(),
        num_experts: loads.num_experts(),
        num_tokens: None,
        top_k: None,
        out_of_range_entries: 0,
        layers: (0..loads.num_layers())
            .map(|layer| LayerStats::from_loads(layer, None, loads.layer(layer)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::test_data::{shared_data, switch_trace};
    use super::*;

    #[test]
    fn json_uses_the_public_field_names() {
        let trace = crate::trace::RoutingTrace::from_dense(2, 2, 1, &[0, 1, 0, 1]).unwrap();
        let json = serde_json::to_value(trace_stats(&Trace::Tokens(trace))).unwrap();
        assert_eq!(json["num_tokens"], 2);
        assert_eq!(json["top_k"], 1);
        let layer = &json["layers"][0];
        for field in ["layer", "tokens", "max_mean", "cv", "gini", "entropy"] {
            assert!(layer.get(field).is_some(), "missing {field}: {layer}");
        }
        // Both tokens on expert 0 of 2: max/mean 2, and both go on to expert 1.
        assert_eq!(layer["max_mean"], 2.0);
        assert_eq!(layer["affinity_top1"], 1.0);
        assert_eq!(json["layers"][1]["affinity_top1"], serde_json::Value::Null);
        assert_eq!(layer["lru_hit_rates"][0]["capacity"], 1);
    }

    /// Pinned against an independent pure-Python computation over the same `.npy` files
    /// (numpy was not available): loads by counting, the textbook formulas, pair matrices, and a
    /// list-based LRU per capacity.
    #[test]
    fn switch_base_traces_match_an_independent_computation() {
        let Some(data) = shared_data() else {
            return;
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-5;
        // (experts, layer, max/mean, cv, gini, entropy bits, entropy norm, half, dead,
        //  affinity top-1, affinity top-4, LRU hit rate at capacity 1)
        let expected = [
            (
                8,
                0,
                1.390588,
                0.329292,
                0.179393,
                2.919571,
                0.973190,
                3,
                0,
                Some(0.750490),
                Some(1.0),
                0.998431,
            ),
            (
                32,
                0,
                3.829020,
                0.790916,
                0.389747,
                4.629372,
                0.925874,
                8,
                0,
                Some(0.644559),
                Some(0.975809),
                0.993725,
            ),
            (
                32, 5, 8.627451, 1.571469, 0.617911, 3.927365, 0.785473, 5, 0, None, None, 0.993897,
            ),
            (
                128,
                4,
                52.144314,
                4.720635,
                0.862146,
                4.024994,
                0.574999,
                3,
                19,
                Some(0.569461),
                Some(0.823333),
                0.982672,
            ),
        ];
        for (experts, layer, mm, cv, gini, h, hn, half, dead, aff1, aff4, lru1) in expected {
            let stats = trace_stats(&Trace::Tokens(switch_trace(&data, experts)));
            assert_eq!(stats.num_tokens, Some(40800));
            assert_eq!(stats.top_k, Some(1));
            let got = &stats.layers[layer];
            println!("switch-base-{experts} layer {layer}: {got:?}");
            let context = format!("switch-base-{experts} layer {layer}");
            assert!(close(got.max_mean, mm), "{context}: {}", got.max_mean);
            assert!(close(got.cv, cv), "{context}: {}", got.cv);
            assert!(close(got.gini, gini), "{context}: {}", got.gini);
            assert!(close(got.entropy, h), "{context}: {}", got.entropy);
            assert!(
                close(got.entropy_norm, hn),
                "{context}: {}",
                got.entropy_norm
            );
            assert_eq!(got.experts_for_half_load, half, "{context}");
            assert_eq!(got.dead_experts, dead, "{context}");
            for (value, want) in [(got.affinity_top1, aff1), (got.affinity_top4, aff4)] {
                match (value, want) {
                    (Some(v), Some(w)) => assert!(close(v, w), "{context}: {v}"),
                    (v, w) => assert_eq!(v, w, "{context}"),
                }
            }
            assert_eq!(got.lru_hit_rates[0].capacity, 1);
            assert!(close(got.lru_hit_rates[0].hit_rate, lru1), "{context}");
        }
    }
}
