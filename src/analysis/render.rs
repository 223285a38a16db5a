//! Presenting [`TraceStats`]: a fixed-width text table for terminals and a polars frame for
//! Parquet output.

use std::fmt::Write;

use polars::prelude::{Column, DataFrame};

use crate::analysis::{LayerStats, TraceStats};

impl TraceStats {
    /// The LRU capacities reported for every layer (the same for all layers).
    fn lru_capacities(&self) -> Vec<usize> {
        self.layers
            .first()
            .map(|l| l.lru_hit_rates.iter().map(|h| h.capacity).collect())
            .unwrap_or_default()
    }

    /// A readable table: a short header, then one fixed-width line per layer. Token-level columns
    /// show `-` where a metric does not apply (aggregate loads, last layer, top-1 co-activation).
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let shape = format!("{} layers x {} experts", self.num_layers, self.num_experts);
        match (self.num_tokens, self.top_k) {
            (Some(tokens), Some(k)) => {
                let _ = writeln!(out, "{shape}, {tokens} tokens, top-{k}");
            }
            _ => {
                let _ = writeln!(out, "{shape}, aggregate loads (imbalance metrics only)");
            }
        }
        if self.out_of_range_entries > 0 {
            let _ = writeln!(
                out,
                "{} entries with an out-of-range expert id were left out",
                self.out_of_range_entries
            );
        }
        // Show hit rates at k, 2k and 4k when reported.
        let shown_capacities: Vec<usize> = match self.top_k {
            Some(k) if k > 0 => [k, 2 * k, 4 * k]
                .into_iter()
                .filter(|c| self.lru_capacities().contains(c))
                .collect(),
            _ => Vec::new(),
        };
        let _ = write!(
            out,
            "{:>5} {:>12} {:>8} {:>6} {:>6} {:>7} {:>6} {:>5} {:>5} {:>6} {:>6}",
            "layer",
            "entries",
            "max/mean",
            "cv",
            "gini",
            "H_bits",
            "H_norm",
            "half",
            "dead",
            "aff1",
            "aff4"
        );
        for capacity in &shown_capacities {
            let _ = write!(out, " {:>7}", format!("lru@{capacity}"));
        }
        let _ = writeln!(out, "  top pair");
        for layer in &self.layers {
            let _ = write!(
                out,
                "{:>5} {:>12} {:>8.3} {:>6.3} {:>6.3} {:>7.3} {:>6.3} {:>5} {:>5} {:>6} {:>6}",
                layer.layer,
                layer.entries,
                layer.max_mean,
                layer.cv,
                layer.gini,
                layer.entropy,
                layer.entropy_norm,
                layer.experts_for_half_load,
                layer.dead_experts,
                optional(layer.affinity_top1),
                optional(layer.affinity_top4),
            );
            for capacity in &shown_capacities {
                let rate = layer
                    .lru_hit_rates
                    .iter()
                    .find(|h| h.capacity == *capacity)
                    .map(|h| h.hit_rate);
                let _ = write!(out, " {:>7}", optional(rate));
            }
            let _ = writeln!(out, "  {}", top_pair(layer));
        }
        out
    }

    /// One row per layer with every scalar metric, plus one `lru_hit_rate_c{capacity}` column
    /// per reported LRU capacity; optional metrics are nullable columns.
    pub fn layers_frame(&self) -> DataFrame {
        let layers = &self.layers;
        let float = |name: &str, get: fn(&LayerStats) -> f64| {
            Column::new(name.into(), layers.iter().map(get).collect::<Vec<f64>>())
        };
        let optional_float = |name: &str, get: fn(&LayerStats) -> Option<f64>| {
            Column::new(name.into(), layers.iter().map(get).collect::<Vec<_>>())
        };
        let count = |name: &str, get: fn(&LayerStats) -> usize| {
            Column::new(
                name.into(),
                layers.iter().map(|l| get(l) as u64).collect::<Vec<u64>>(),
            )
        };
        let mut columns = vec![
            count("layer", |l| l.layer),
            Column::new(
                "tokens".into(),
                layers
                    .iter()
                    .map(|l| l.tokens.map(|t| t as u64))
                    .collect::<Vec<_>>(),
            ),
            float("entries", |l| l.entries),
            float("max_mean", |l| l.max_mean),
            float("cv", |l| l.cv),
            float("gini", |l| l.gini),
            float("entropy", |l| l.entropy),
            float("entropy_norm", |l| l.entropy_norm),
            count("experts_for_half_load", |l| l.experts_for_half_load),
            count("dead_experts", |l| l.dead_experts),
            optional_float("affinity_top1", |l| l.affinity_top1),
            optional_float("affinity_top4", |l| l.affinity_top4),
        ];
        for (index, capacity) in self.lru_capacities().into_iter().enumerate() {
            columns.push(Column::new(
                format!("lru_hit_rate_c{capacity}").into(),
                layers
                    .iter()
                    .map(|l| l.lru_hit_rates.get(index).map(|h| h.hit_rate))
                    .collect::<Vec<_>>(),
            ));
        }
        DataFrame::new(layers.len(), columns)
            .expect("layer columns have one value per layer and distinct names")
    }
}

/// A metric with three decimals, or `-` when it does not apply.
fn optional(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

/// The most co-activated pair of a layer as `a+b share%`, or `-`.
fn top_pair(layer: &LayerStats) -> String {
    layer.coactivation.first().map_or_else(
        || "-".to_string(),
        |p| format!("{}+{} {:.1}%", p.pair[0], p.pair[1], 100.0 * p.share),
    )
}

#[cfg(test)]
mod tests {
    use crate::analysis::trace_stats;
    use crate::trace::{ExpertLoads, RoutingTrace, Trace};

    #[test]
    fn table_has_a_header_and_one_line_per_layer() {
        // Two top-2 tokens over 2 layers of 4 experts.
        let trace = RoutingTrace::from_dense(4, 2, 2, &[0, 1, 2, 3, 0, 1, 3, 2]).unwrap();
        let table = trace_stats(&Trace::Tokens(trace)).to_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "2 layers x 4 experts, 2 tokens, top-2");
        // Capacities 2..=4 are reported (4k = 8 is capped at 4 experts): k and 2k are shown.
        assert!(
            lines[1].contains("lru@2") && lines[1].contains("lru@4"),
            "{}",
            lines[1]
        );
        assert_eq!(lines.len(), 4);
        // Both tokens pick {0, 1} at layer 0: the top pair carries 100% of tokens.
        assert!(lines[2].ends_with("0+1 100.0%"), "{}", lines[2]);
        // Layer 0 -> 1: expert 0 goes to 2 and 3 once each, top-1 share 0.5; the last layer has
        // no affinity.
        assert!(lines[2].contains(" 0.500 "), "{}", lines[2]);
        assert!(lines[3].contains("     - "), "{}", lines[3]);
    }

    #[test]
    fn aggregate_tables_say_so() {
        let loads = ExpertLoads::new(2, vec![vec![3.0, 1.0]]).unwrap();
        let table = trace_stats(&Trace::Loads(loads)).to_table();
        assert!(table.starts_with("1 layers x 2 experts, aggregate loads"));
        assert!(table.lines().nth(2).unwrap().contains("1.500"));
    }

    #[test]
    fn frame_has_one_row_per_layer_and_nullable_affinity() {
        let trace = RoutingTrace::from_dense(4, 3, 1, &[0, 1, 2, 0, 1, 3]).unwrap();
        let frame = trace_stats(&Trace::Tokens(trace)).layers_frame();
        assert_eq!(frame.height(), 3);
        let affinity = frame.column("affinity_top1").unwrap();
        assert_eq!(affinity.null_count(), 1);
        // Layer 0: both tokens use expert 0 (loads [2,0,0,0]), max/mean = 2 / 0.5 = 4.
        let max_mean = frame.column("max_mean").unwrap().f64().unwrap();
        assert_eq!(max_mean.get(0), Some(4.0));
        // k = 1: LRU capacities 1..=4.
        assert!(frame.column("lru_hit_rate_c1").is_ok());
        assert!(frame.column("lru_hit_rate_c4").is_ok());
        assert!(frame.column("lru_hit_rate_c5").is_err());
    }
}
