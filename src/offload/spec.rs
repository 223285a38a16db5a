//! The `[offload]` table of a scenario: one GPU keeps a cache of experts per MoE layer, the rest
//! in host memory, and `moesim simulate` and `moesim serve` price each step's copies over its
//! PCIe path ([`super::OffloadGpu`]). Checked here on its own; against the model and cluster
//! when the scenario is resolved.

use serde::Deserialize;

use super::Mode;
use super::cache::EVICTIONS;
use crate::predict::PREDICTORS;
use crate::registry::Settings;

/// GiB in bytes.
pub const GIB: f64 = (1u64 << 30) as f64;

/// The `[offload]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OffloadSpec {
    /// Experts cached per MoE layer (1 to the model's experts per layer).
    #[serde(default)]
    pub cache_experts: Option<usize>,
    /// Instead of `cache_experts`: the GPU memory, GiB, the weights may take; the cache holds
    /// as many experts per layer as fit beside every non-expert weight.
    #[serde(default)]
    pub memory_gib: Option<f64>,
    /// The eviction policy (`offload::cache::EVICTIONS`): `lru`, `lfu` or `predicted`.
    #[serde(default = "OffloadSpec::default_eviction")]
    pub eviction: String,
    /// Copy the predicted experts of the next layer ahead (`true`), or only on demand.
    #[serde(default)]
    pub prefetch: bool,
    /// The expert predictor that names the prefetches and what `predicted` eviction keeps:
    /// `transition`, `history` or `oracle`.
    #[serde(default = "OffloadSpec::default_predictor")]
    pub predictor: String,
    /// Share of the trace's tokens (the first ones) the predictor is fitted on and the cache
    /// warmed with, in (0, 1); `moesim simulate` prices the steps after them.
    #[serde(default = "OffloadSpec::default_fit_fraction")]
    pub fit_fraction: f64,
    /// The oracle's accuracy, in [0, 1].
    #[serde(default)]
    pub accuracy: Option<f64>,
    /// The oracle's seed.
    #[serde(default)]
    pub seed: Option<u64>,
}

impl OffloadSpec {
    fn default_eviction() -> String {
        "lru".into()
    }

    fn default_predictor() -> String {
        "transition".into()
    }

    fn default_fit_fraction() -> f64 {
        0.5
    }

    /// The copy mode.
    pub fn mode(&self) -> Mode {
        if self.prefetch {
            Mode::Prefetch
        } else {
            Mode::OnDemand
        }
    }

    /// The predictor's settings (`accuracy`, `seed`).
    pub fn predictor_settings(&self) -> Result<Settings, String> {
        crate::predict::settings(self.accuracy, self.seed)
            .map_err(|e| format!("`offload.seed`: {e}"))
    }

    /// Checks what needs no model or cluster, naming the key at fault.
    pub fn check(&self) -> Result<(), String> {
        match (self.cache_experts, self.memory_gib) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(
                    "`offload` needs exactly one of `cache_experts` (experts per layer) or \
                     `memory_gib` (a GPU memory budget)"
                        .into(),
                );
            }
            (Some(0), None) => {
                return Err("`offload.cache_experts` = 0: must be at least 1".into());
            }
            (None, Some(gib)) if !(gib > 0.0 && gib.is_finite()) => {
                return Err(format!(
                    "`offload.memory_gib` = {gib} must be a positive number of GiB"
                ));
            }
            _ => {}
        }
        if !(self.fit_fraction > 0.0 && self.fit_fraction < 1.0) {
            return Err(format!(
                "`offload.fit_fraction` = {} must be strictly between 0 and 1",
                self.fit_fraction
            ));
        }
        EVICTIONS
            .build(&self.eviction, &Settings::new())
            .map_err(|e| format!("`offload.eviction`: {e}"))?;
        PREDICTORS
            .build(&self.predictor, &self.predictor_settings()?)
            .map_err(|e| format!("`offload.predictor`: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<OffloadSpec, String> {
        let spec: OffloadSpec = crate::error::parse_toml(text)?;
        spec.check().map(|()| spec)
    }

    #[test]
    fn defaults_are_on_demand_lru_transition() {
        let spec = parse("cache_experts = 2").unwrap();
        assert_eq!(spec.mode(), Mode::OnDemand);
        assert_eq!(
            (spec.eviction.as_str(), spec.predictor.as_str()),
            ("lru", "transition")
        );
        assert_eq!(spec.fit_fraction, 0.5);
        let spec =
            parse("memory_gib = 24\nprefetch = true\npredictor = \"oracle\"\naccuracy = 0.5")
                .unwrap();
        assert_eq!((spec.mode(), spec.memory_gib), (Mode::Prefetch, Some(24.0)));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("cache_experts = 0", "`offload.cache_experts` = 0"),
            ("memory_gib = -1", "`offload.memory_gib` = -1"),
            ("cache_experts = 2\nmemory_gib = 4", "exactly one of"),
            ("prefetch = true", "exactly one of"),
            (
                "cache_experts = 2\neviction = \"fifo\"",
                "`offload.eviction`",
            ),
            (
                "cache_experts = 2\npredictor = \"psychic\"",
                "`offload.predictor`",
            ),
            ("cache_experts = 2\naccuracy = 0.5", "`offload.predictor`"),
            (
                "cache_experts = 2\nfit_fraction = 1",
                "`offload.fit_fraction`",
            ),
            ("cache_experts = 2\ncache = 4", "unknown field `cache`"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
