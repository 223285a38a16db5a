//! Out-of-sample judgement of a predictor: fitted on the first `fit_fraction` of a trace's
//! tokens, asked for every later token at every layer, scored per layer and overall.

use std::fmt;

use serde::Serialize;

use super::{Ask, ExpertPredictor};
use crate::trace::RoutingTrace;

/// Hits of one layer (or of all layers together).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Tally {
    /// Evaluated tokens with at least one actual expert.
    tokens: usize,
    /// Of those, the ones the predictor could not predict.
    unpredicted: usize,
    /// Predicted tokens whose predicted top-1 is an actual expert.
    top1_hits: usize,
    /// Experts predicted, over all predicted tokens.
    predicted: usize,
    /// Predicted experts that are actual.
    hits: usize,
    /// Sum over predicted tokens of the share of their actual experts predicted.
    recall: f64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.tokens += other.tokens;
        self.unpredicted += other.unpredicted;
        self.top1_hits += other.top1_hits;
        self.predicted += other.predicted;
        self.hits += other.hits;
        self.recall += other.recall;
    }

    fn score(&self, layer: Option<usize>) -> Score {
        let covered = self.tokens - self.unpredicted;
        let share = |part: f64, whole: usize| (whole > 0).then(|| part / whole as f64);
        Score {
            layer,
            tokens: self.tokens,
            unpredicted: self.unpredicted,
            top1_hit_rate: share(self.top1_hits as f64, covered),
            topk_hit_rate: share(self.hits as f64, self.predicted),
            recall: share(self.recall, covered),
        }
    }
}

/// The rates of one layer (or overall, without `layer`); a rate is `None` when no token was
/// predicted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    /// Evaluated tokens routed to at least one expert.
    pub tokens: usize,
    /// Of those, the ones the predictor had nothing to go on for (coverage).
    pub unpredicted: usize,
    /// Share of predicted tokens whose predicted top-1 is among the actual experts.
    pub top1_hit_rate: Option<f64>,
    /// Share of predicted experts that are actual.
    pub topk_hit_rate: Option<f64>,
    /// Mean over predicted tokens of the share of the actual experts predicted.
    pub recall: Option<f64>,
}

/// A predictor's out-of-sample report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub predictor: String,
    /// Tokens the predictor was fitted on (the first ones).
    pub fit_tokens: usize,
    /// Tokens it was judged on (the rest).
    pub eval_tokens: usize,
    pub layers: Vec<Score>,
    pub overall: Score,
}

/// Fits `predictor` on the first `fit_fraction` (in (0, 1)) of `trace`'s tokens and scores its
/// predictions of the rest, asking for as many experts as each token was routed to.
pub fn evaluate(
    name: &str,
    predictor: &mut dyn ExpertPredictor,
    trace: &RoutingTrace,
    fit_fraction: f64,
) -> Result<Evaluation, String> {
    if !(fit_fraction > 0.0 && fit_fraction < 1.0) {
        return Err(format!(
            "fit fraction {fit_fraction} must be strictly between 0 and 1"
        ));
    }
    let tokens = trace.num_tokens();
    let fit_tokens = (tokens as f64 * fit_fraction).floor() as usize;
    if fit_tokens == 0 || fit_tokens == tokens {
        return Err(format!(
            "fit fraction {fit_fraction} of {tokens} tokens leaves no token to fit on or to judge"
        ));
    }
    predictor.fit(trace, 0..fit_tokens)?;
    let mut overall = Tally::default();
    let layers = (0..trace.num_layers())
        .map(|layer| {
            let tally = score_layer(predictor, trace, layer, fit_tokens..tokens);
            overall.add(&tally);
            tally.score(Some(layer))
        })
        .collect();
    Ok(Evaluation {
        predictor: name.to_string(),
        fit_tokens,
        eval_tokens: tokens - fit_tokens,
        layers,
        overall: overall.score(None),
    })
}

fn score_layer(
    predictor: &mut dyn ExpertPredictor,
    trace: &RoutingTrace,
    layer: usize,
    judged: std::ops::Range<usize>,
) -> Tally {
    let mut tally = Tally::default();
    for token in judged {
        let actual = trace.layer(layer).experts_of(token);
        if actual.is_empty() {
            continue;
        }
        tally.tokens += 1;
        let Some(predicted) = predictor.predict(
            trace,
            Ask {
                layer,
                token,
                k: actual.len(),
            },
        ) else {
            tally.unpredicted += 1;
            continue;
        };
        let hits = predicted.iter().filter(|e| actual.contains(e)).count();
        tally.top1_hits += usize::from(predicted.first().is_some_and(|e| actual.contains(e)));
        tally.predicted += predicted.len();
        tally.hits += hits;
        tally.recall += hits as f64 / actual.len() as f64;
    }
    tally
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "predictor {}: fitted on {} tokens, judged on {}",
            self.predictor, self.fit_tokens, self.eval_tokens
        )?;
        writeln!(
            f,
            "{:>7} {:>9} {:>11} {:>7} {:>7} {:>7}",
            "layer", "tokens", "unpredicted", "top-1", "top-k", "recall"
        )?;
        for score in self.layers.iter().chain([&self.overall]) {
            let layer = score.layer.map_or("all".to_string(), |l| l.to_string());
            let rate = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
            writeln!(
                f,
                "{layer:>7} {:>9} {:>11} {:>7} {:>7} {:>7}",
                score.tokens,
                score.unpredicted,
                rate(score.top1_hit_rate),
                rate(score.topk_hit_rate),
                rate(score.recall)
            )?;
        }
        Ok(())
    }
}
