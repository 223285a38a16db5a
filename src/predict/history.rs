//! The request-history predictor for decode: a token's experts at a layer are its request's
//! previous step's experts at the same layer (consecutive decode tokens route alike).

use std::collections::HashMap;
use std::ops::Range;

use super::{Ask, ExpertPredictor};
use crate::registry::{NoSettings, Plugin};
use crate::trace::{ExpertId, Phase, RoutingTrace};

/// Each decode token's predecessor in its request.
#[derive(Debug, Default)]
pub struct History {
    /// `previous[t]`: the row of token `t`'s request at the position before, when `t` is a
    /// decode token and that row is in the trace.
    previous: Vec<Option<usize>>,
}

impl Plugin for History {
    const NAME: &'static str = "history";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(History::default())
    }
}

impl ExpertPredictor for History {
    fn fit(&mut self, trace: &RoutingTrace, _: Range<usize>) -> Result<(), String> {
        let meta = trace.meta();
        let (Some(requests), Some(positions)) = (&meta.request_id, &meta.position) else {
            return Err(
                "predictor `history` needs the trace's `request_id` and `position` columns".into(),
            );
        };
        let rows: HashMap<(u64, u32), usize> = requests
            .iter()
            .zip(positions)
            .enumerate()
            .map(|(row, (&r, &p))| ((r, p), row))
            .collect();
        let is_decode = |t: usize| meta.phase.as_ref().is_none_or(|p| p[t] == Phase::Decode);
        self.previous = (0..trace.num_tokens())
            .map(|t| {
                let before = positions[t].checked_sub(1)?;
                rows.get(&(requests[t], before))
                    .copied()
                    .filter(|_| is_decode(t))
            })
            .collect();
        Ok(())
    }

    fn predict(&mut self, trace: &RoutingTrace, ask: Ask) -> Option<Vec<ExpertId>> {
        let Ask { layer, token, k } = ask;
        let previous = self.previous[token]?;
        let experts = trace.layer(layer).experts_of(previous);
        Some(experts.iter().take(k).copied().collect())
    }
}
