//! Length distributions for input and output tokens. Each is a plug-in in [`LENGTHS`], selected
//! by `dist = "..."` in `[workload.input]` or `[workload.output]`, its knobs beside it; the
//! table's `max` clamps every draw to `[1, max]` ([`super::spec`]).

use rand::Rng;
use rand::distr::weighted::WeightedIndex;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal as LogNormalDist};
use serde::Deserialize;

use super::MAX_TOKENS;
use crate::plugin_entry;
use crate::registry::{Plugin, Registry, non_negative, positive};

/// A seeded distribution of token counts.
pub trait LengthDist: Send + Sync + std::fmt::Debug {
    /// One length, before clamping to `[1, max]`.
    fn sample(&self, rng: &mut ChaCha8Rng) -> u64;
}

/// Every length distribution, by name.
pub static LENGTHS: Registry<dyn LengthDist> = Registry {
    kind: "length distribution",
    entries: &[
        plugin_entry!(LengthDist, Fixed),
        plugin_entry!(LengthDist, Uniform),
        plugin_entry!(LengthDist, LogNormal),
        plugin_entry!(LengthDist, Histogram),
    ],
};

/// `Ok` when `tokens` (knob `knob`) is in 1..=[`MAX_TOKENS`].
fn check_tokens(knob: &str, tokens: u64) -> Result<(), String> {
    if (1..=MAX_TOKENS).contains(&tokens) {
        Ok(())
    } else {
        Err(format!("`{knob}` = {tokens} must be in 1..={MAX_TOKENS}"))
    }
}

/// Every request the same length.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fixed {
    /// The length.
    pub tokens: u64,
}

impl LengthDist for Fixed {
    fn sample(&self, _: &mut ChaCha8Rng) -> u64 {
        self.tokens
    }
}

impl Plugin for Fixed {
    const NAME: &'static str = "fixed";
    type Settings = Fixed;

    fn with_settings(settings: Fixed) -> Result<Self, String> {
        check_tokens("tokens", settings.tokens)?;
        Ok(settings)
    }
}

/// Every length in `low..=high` equally likely.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Uniform {
    /// Shortest length.
    pub low: u64,
    /// Longest length.
    pub high: u64,
}

impl LengthDist for Uniform {
    fn sample(&self, rng: &mut ChaCha8Rng) -> u64 {
        rng.random_range(self.low..=self.high)
    }
}

impl Plugin for Uniform {
    const NAME: &'static str = "uniform";
    type Settings = Uniform;

    fn with_settings(settings: Uniform) -> Result<Self, String> {
        check_tokens("low", settings.low)?;
        check_tokens("high", settings.high)?;
        if settings.low > settings.high {
            return Err(format!(
                "`low` = {} exceeds `high` = {}",
                settings.low, settings.high
            ));
        }
        Ok(settings)
    }
}

/// Largest `sigma` a lognormal takes: at 10 the mean sits beyond the 10^21st percentile.
pub const MAX_SIGMA: f64 = 10.0;

/// The knobs of [`LogNormal`].
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogNormalSettings {
    /// Mean length (before clamping and rounding): `exp(mu + sigma^2 / 2)`.
    pub mean: f64,
    /// Standard deviation of the length's logarithm, in [0, [`MAX_SIGMA`]].
    pub sigma: f64,
}

/// Lengths whose logarithm is normal, given by their mean and log-space `sigma` (so
/// `mu = ln(mean) - sigma^2 / 2`), rounded to whole tokens.
#[derive(Debug, Clone, Copy)]
pub struct LogNormal {
    dist: LogNormalDist<f64>,
}

impl LengthDist for LogNormal {
    fn sample(&self, rng: &mut ChaCha8Rng) -> u64 {
        // `as` saturates: a draw past u64 becomes u64::MAX, then the clamp's `max`.
        self.dist.sample(rng).round() as u64
    }
}

impl Plugin for LogNormal {
    const NAME: &'static str = "lognormal";
    type Settings = LogNormalSettings;

    fn with_settings(settings: LogNormalSettings) -> Result<Self, String> {
        positive("mean", settings.mean)?;
        non_negative("sigma", settings.sigma)?;
        if settings.sigma > MAX_SIGMA {
            return Err(format!("`sigma` = {} exceeds {MAX_SIGMA}", settings.sigma));
        }
        let mu = settings.mean.ln() - settings.sigma * settings.sigma / 2.0;
        let dist = LogNormalDist::new(mu, settings.sigma).map_err(|e| e.to_string())?;
        Ok(LogNormal { dist })
    }
}

/// The knobs of [`Histogram`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistogramSettings {
    /// Bin edges, increasing: bin `i` holds lengths `edges[i]..edges[i + 1]`.
    pub edges: Vec<u64>,
    /// One weight per bin (any scale).
    pub weights: Vec<f64>,
}

/// An empirical histogram: a bin drawn by weight, then a length uniform within it.
#[derive(Debug, Clone)]
pub struct Histogram {
    edges: Vec<u64>,
    bins: WeightedIndex<f64>,
}

impl LengthDist for Histogram {
    fn sample(&self, rng: &mut ChaCha8Rng) -> u64 {
        let bin = self.bins.sample(rng);
        rng.random_range(self.edges[bin]..self.edges[bin + 1])
    }
}

impl Plugin for Histogram {
    const NAME: &'static str = "histogram";
    type Settings = HistogramSettings;

    fn with_settings(settings: HistogramSettings) -> Result<Self, String> {
        let HistogramSettings { edges, weights } = settings;
        if weights.is_empty() || edges.len() != weights.len() + 1 {
            return Err(format!(
                "`edges` ({}) must have one more entry than `weights` ({}), at least 2",
                edges.len(),
                weights.len()
            ));
        }
        for (i, pair) in edges.windows(2).enumerate() {
            if pair[0] >= pair[1] {
                return Err(format!("`edges[{}]` must exceed `edges[{i}]`", i + 1));
            }
        }
        check_tokens("edges[0]", edges[0])?;
        check_tokens("edges[last]", edges[edges.len() - 1] - 1)?;
        for (i, &w) in weights.iter().enumerate() {
            non_negative(&format!("weights[{i}]"), w)?;
        }
        let bins = WeightedIndex::new(&weights)
            .map_err(|e| format!("`weights`: {e} (they must be finite, some above zero)"))?;
        Ok(Histogram { edges, bins })
    }
}
