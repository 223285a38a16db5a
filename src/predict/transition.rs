//! The inter-layer transition predictor: a token's experts at layer l+1 from its experts at
//! layer l, by the co-occurrence counts of the fitted tokens (the affinity ExFlow and
//! Speculative MoE exploit).

use std::ops::Range;

use super::{Ask, ExpertPredictor};
use crate::registry::{NoSettings, Plugin};
use crate::trace::{ExpertId, RoutingTrace};

/// Counts of `(expert at layer l, expert at layer l+1)` over the fitted tokens.
#[derive(Debug, Default)]
pub struct Transition {
    /// `counts[l][a * experts + b]`: fitted tokens routed to `a` at layer `l` and `b` at `l + 1`.
    counts: Vec<Vec<u64>>,
    /// Experts per layer.
    experts: usize,
}

impl Plugin for Transition {
    const NAME: &'static str = "transition";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(Transition::default())
    }
}

impl ExpertPredictor for Transition {
    fn fit(&mut self, trace: &RoutingTrace, fit: Range<usize>) -> Result<(), String> {
        let experts = trace.num_experts();
        self.experts = experts;
        self.counts = (1..trace.num_layers())
            .map(|next| {
                let (from, to) = (trace.layer(next - 1), trace.layer(next));
                let mut counts = vec![0; experts * experts];
                for token in fit.clone() {
                    for &a in from.experts_of(token) {
                        for &b in to.experts_of(token) {
                            counts[a as usize * experts + b as usize] += 1;
                        }
                    }
                }
                counts
            })
            .collect();
        Ok(())
    }

    fn predict(&mut self, trace: &RoutingTrace, ask: Ask) -> Option<Vec<ExpertId>> {
        let Ask { layer, token, k } = ask;
        let counts = self.counts.get(layer.checked_sub(1)?)?;
        let mut scores = vec![0u64; self.experts];
        for &a in trace.layer(layer - 1).experts_of(token) {
            let row = &counts[a as usize * self.experts..][..self.experts];
            scores.iter_mut().zip(row).for_each(|(s, c)| *s += c);
        }
        let mut ranked: Vec<ExpertId> = (0..self.experts as ExpertId)
            .filter(|&e| scores[e as usize] > 0)
            .collect();
        ranked.sort_by_key(|&e| std::cmp::Reverse(scores[e as usize]));
        ranked.truncate(k);
        (!ranked.is_empty()).then_some(ranked)
    }
}
