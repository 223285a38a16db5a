//! Expert predictors: guesses of which experts a token will be routed to at a layer before its
//! gate runs, the input of speculative pre-scheduling and prediction-driven prefetch (issue 19).
//!
//! Each predictor is a plug-in in [`PREDICTORS`]: fitted on the first part of a token-level
//! trace and judged out of sample on the rest by [`evaluate::evaluate`].

pub mod evaluate;
mod history;
mod oracle;
mod transition;

use std::ops::Range;

use crate::plugin_entry;
use crate::registry::{Registry, Settings};
use crate::trace::{ExpertId, RoutingTrace};

pub use history::History;
pub use oracle::Oracle;
pub use transition::Transition;

/// Predicts a token's experts at a layer before its gate runs.
pub trait ExpertPredictor: std::fmt::Debug + Send {
    /// Learns from tokens `fit` of `trace` and checks the trace carries what the predictor
    /// reads; the message says what is missing.
    fn fit(&mut self, trace: &RoutingTrace, fit: Range<usize>) -> Result<(), String>;

    /// At most `ask.k` distinct experts predicted for `ask.token` at `ask.layer`, most likely
    /// first, or `None` when the predictor has nothing to go on for this token.
    fn predict(&mut self, trace: &RoutingTrace, ask: Ask) -> Option<Vec<ExpertId>>;

    /// Restarts the predictor's random draws from `seed` (a no-op for deterministic ones), so
    /// that a batch of predictions does not depend on which batches were asked before.
    fn reseed(&mut self, _seed: u64) {}
}

/// One question to a predictor: which `k` experts will row `token` of the trace go to at
/// `layer`.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    pub layer: usize,
    pub token: usize,
    pub k: usize,
}

/// Every expert predictor, by name.
pub static PREDICTORS: Registry<dyn ExpertPredictor> = Registry {
    kind: "predictor",
    entries: &[
        plugin_entry!(ExpertPredictor, Transition),
        plugin_entry!(ExpertPredictor, History),
        plugin_entry!(ExpertPredictor, Oracle),
    ],
};

/// A predictor's settings from the oracle's knobs, as flags and scenario tables give them: its
/// `accuracy` and `seed` (a predictor without such a knob refuses it when built). The error
/// says the seed does not fit.
pub fn settings(accuracy: Option<f64>, seed: Option<u64>) -> Result<Settings, String> {
    let mut settings = Settings::new();
    if let Some(accuracy) = accuracy {
        settings.insert("accuracy".into(), accuracy.into());
    }
    if let Some(seed) = seed {
        let seed = i64::try_from(seed).map_err(|_| format!("seed {seed} must be below 2^63"))?;
        settings.insert("seed".into(), seed.into());
    }
    Ok(settings)
}

#[cfg(test)]
mod tests;
