//! The oracle of a given accuracy: each actual expert kept with probability `accuracy`, else
//! replaced by a wrong one drawn uniformly, to ask "what accuracy would a predictor need".

use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::{Ask, ExpertPredictor};
use crate::registry::Plugin;
use crate::trace::{ExpertId, RoutingTrace};

/// The oracle's knobs.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OracleSettings {
    /// Probability each actual expert is predicted, in 0..=1.
    pub accuracy: f64,
    /// Seed of the draws: the same seed gives the same predictions.
    pub seed: u64,
}

impl Default for OracleSettings {
    fn default() -> Self {
        OracleSettings {
            accuracy: 1.0,
            seed: 0,
        }
    }
}

/// Right with probability `accuracy` per expert.
#[derive(Debug)]
pub struct Oracle {
    accuracy: f64,
    rng: ChaCha8Rng,
}

impl Plugin for Oracle {
    const NAME: &'static str = "oracle";
    type Settings = OracleSettings;

    fn with_settings(settings: OracleSettings) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&settings.accuracy) {
            return Err(format!(
                "`accuracy` = {} must be between 0 and 1",
                settings.accuracy
            ));
        }
        Ok(Oracle {
            accuracy: settings.accuracy,
            rng: ChaCha8Rng::seed_from_u64(settings.seed),
        })
    }
}

impl ExpertPredictor for Oracle {
    fn fit(&mut self, _: &RoutingTrace, _: Range<usize>) -> Result<(), String> {
        Ok(())
    }

    fn predict(&mut self, trace: &RoutingTrace, ask: Ask) -> Option<Vec<ExpertId>> {
        let Ask { layer, token, k } = ask;
        let actual = trace.layer(layer).experts_of(token);
        let mut wrong: Vec<ExpertId> = (0..trace.num_experts() as ExpertId)
            .filter(|e| !actual.contains(e))
            .collect();
        let predicted = actual
            .iter()
            .take(k)
            .map(|&expert| {
                if wrong.is_empty() || self.rng.random_bool(self.accuracy) {
                    expert
                } else {
                    wrong.swap_remove(self.rng.random_range(0..wrong.len()))
                }
            })
            .collect();
        Some(predicted)
    }

    fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }
}
