//! Which way is better for a metric, guessed from its name.

use serde::Serialize;

/// Whether a larger value of a metric is good news, bad news, or neither known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Times, latencies, bytes moved, imbalance, cost.
    LowerIsBetter,
    /// Throughput, tokens per second, SLO attainment, goodput, speed-up, hit rates.
    HigherIsBetter,
    /// Counts, settings and anything else: a change is reported, never judged.
    Unknown,
}

/// Name fragments of metrics where higher is better. Checked first, so that `tokens_per_s` is
/// throughput and not a time in seconds.
const HIGHER: [&str; 10] = [
    "throughput",
    "tokens_per_s",
    "per_second",
    "attainment",
    "goodput",
    "speedup",
    "speed_up",
    "hit_rate",
    "gbps",
    "tflops",
];

/// Name fragments of metrics where lower is better.
const LOWER: [&str; 10] = [
    "time",
    "latency",
    "ttft",
    "tpot",
    "bytes",
    "imbalance",
    "max_mean",
    "cost",
    "gini",
    "exposed",
];

/// Units of time a metric's name may end with (`step_ns`, `ttft_ms`, `wall_s`).
const TIME_SUFFIXES: [&str; 4] = ["_ns", "_us", "_ms", "_s"];

/// The direction of the metric at `path`, judged by its last segment (the field name), or by
/// the segment before it when the last is an array index (`layer_bytes.3`).
pub fn direction(path: &str) -> Direction {
    let name = path
        .rsplit('.')
        .find(|segment| !segment.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or(path)
        .to_ascii_lowercase();
    if HIGHER.iter().any(|word| name.contains(word)) {
        Direction::HigherIsBetter
    } else if LOWER.iter().any(|word| name.contains(word))
        || TIME_SUFFIXES.iter().any(|unit| name.ends_with(unit))
        || name == "cv"
    {
        Direction::LowerIsBetter
    } else {
        Direction::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_follow_the_field_name() {
        use Direction::*;
        for (path, expected) in [
            ("strategies.eplb.step_ns", LowerIsBetter),
            ("serve.ttft_p99_ms", LowerIsBetter),
            (
                "simulated.strategies.x.links.l.layer_bytes.3",
                LowerIsBetter,
            ),
            ("strategies.eplb.mean_gpu_max_mean", LowerIsBetter),
            ("trace.layers.0.cv", LowerIsBetter),
            ("cost_per_million_tokens", LowerIsBetter),
            ("output_tokens_per_s", HigherIsBetter),
            ("slo_attainment", HigherIsBetter),
            ("speed_up", HigherIsBetter),
            ("trace.layers.0.lru_hit_rates.0.hit_rate", HigherIsBetter),
            ("trace.num_tokens", Unknown),
            ("seed", Unknown),
            ("trace.layers.0.entropy", Unknown),
        ] {
            assert_eq!(direction(path), expected, "{path}");
        }
    }
}
