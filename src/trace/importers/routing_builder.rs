//! Collecting imported expert ids, token by token, into the canonical per-layer CSR form.
//!
//! Every token-level importer walks its source in token, then layer, then rank order and hands
//! each raw id to [`RoutingBuilder::push`]. Negative ids mean "no expert" (vLLM's -1 padding and
//! null routing) and are skipped. What `trace validate` would reject is refused here, so no
//! importer accepts it: ids at or past the expert count, an expert repeated in one token's top-k
//! at a layer, and gate weights that are negative or not finite. The refusal goes back to the
//! caller, which knows the entry's position in its own terms (row and column, or line).

use std::fmt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::trace::validate::sign_problem;
use crate::trace::{ExpertId, LayerRouting, MAX_EXPERTS, MAX_LAYERS, RoutingTrace, TokenMeta};

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Refused {
    /// An expert id at or past the allowed bound (`num_experts`, or the 16-bit id space).
    OutOfRange { id: i64, num_experts: Option<usize> },
    /// The token already has this expert at this layer, at rank `first`.
    Repeat { id: ExpertId, first: usize },
    /// A gate weight that is negative or not finite.
    Weight(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::OutOfRange {
                id,
                num_experts: Some(n),
            } => write!(f, "expert id {id} >= {n} experts"),
            Refused::OutOfRange {
                id,
                num_experts: None,
            } => write!(
                f,
                "expert id {id} does not fit a 16-bit expert id (at most {})",
                MAX_EXPERTS - 1
            ),
            Refused::Repeat { id, first } => write!(
                f,
                "expert {id} repeats rank {first} (an expert is routed at most once per token)"
            ),
            Refused::Weight(problem) => write!(f, "gate weight {problem}"),
        }
    }
}

/// One layer's CSR parts while they are being filled.
struct LayerParts {
    offsets: Vec<u32>,
    experts: Vec<ExpertId>,
    weights: Option<Vec<f32>>,
}

/// Builds a [`RoutingTrace`] from ids pushed in token, layer, rank order.
pub(super) struct RoutingBuilder {
    /// The expert count the caller gave, if any; ids must stay below it.
    num_experts: Option<usize>,
    /// Exclusive upper bound on ids: `num_experts`, or the 16-bit id space.
    limit: i64,
    /// Largest id pushed so far (-1 before the first).
    max_id: i64,
    layers: Vec<LayerParts>,
    /// Per expert id, the `stamp` of the last (token, layer) it was pushed in, to find repeats
    /// in O(1): every importer pushes one token's ids at one layer in a row.
    last_stamp: Vec<u32>,
    /// Identifies the current (token, layer); bumped by every [`RoutingBuilder::end_token`].
    stamp: u32,
    /// Whether repeated experts and bad gate weights are kept for validation to report.
    keep_violations: bool,
}

impl RoutingBuilder {
    /// A builder for the `num_layers` layers of the file at `path` (at most [`MAX_LAYERS`]).
    /// `num_experts`, when given, bounds the ids; otherwise the largest id seen plus one becomes
    /// the expert count. `weighted` builders take gate weights with every id; `entries_hint`
    /// sizes the buffers.
    pub(super) fn new(
        path: &Path,
        num_layers: usize,
        num_experts: Option<usize>,
        weighted: bool,
        entries_hint: usize,
    ) -> Result<Self> {
        if let Some(n) = num_experts
            && !(1..=MAX_EXPERTS).contains(&n)
        {
            return Err(Error::invalid(format!(
                "number of experts must be between 1 and {MAX_EXPERTS}, got {n}"
            )));
        }
        if num_layers > MAX_LAYERS {
            return Err(Error::bad_file(
                path,
                format!(
                    "{num_layers} layers exceed the {MAX_LAYERS} a trace can hold (16-bit layer \
                     index)"
                ),
            ));
        }
        let per_layer = entries_hint / num_layers.max(1);
        Ok(RoutingBuilder {
            num_experts,
            limit: num_experts.unwrap_or(MAX_EXPERTS) as i64,
            max_id: -1,
            last_stamp: Vec::new(),
            stamp: 1,
            keep_violations: false,
            layers: (0..num_layers)
                .map(|_| LayerParts {
                    offsets: vec![0],
                    experts: Vec::with_capacity(per_layer),
                    weights: weighted.then(|| Vec::with_capacity(per_layer)),
                })
                .collect(),
        })
    }

    /// The builder, keeping (`true`) or refusing repeated experts and bad gate weights; ids past
    /// the bound are refused either way.
    pub(super) fn keeping_violations(mut self, keep: bool) -> Self {
        self.keep_violations = keep;
        self
    }

    /// Records the next id of the current token at `layer`; negative ids mean "no expert".
    #[inline]
    pub(super) fn push(&mut self, layer: usize, id: i64) -> Result<(), Refused> {
        self.push_with(layer, id, None)
    }

    /// Like [`RoutingBuilder::push`], with the entry's gate weight (weighted builders only).
    #[inline]
    pub(super) fn push_weighted(
        &mut self,
        layer: usize,
        id: i64,
        weight: f32,
    ) -> Result<(), Refused> {
        self.push_with(layer, id, Some(weight))
    }

    #[inline]
    fn push_with(&mut self, layer: usize, id: i64, weight: Option<f32>) -> Result<(), Refused> {
        if id < 0 {
            return Ok(());
        }
        if id >= self.limit {
            return Err(Refused::OutOfRange {
                id,
                num_experts: self.num_experts,
            });
        }
        if let Some(problem) = weight.and_then(sign_problem)
            && !self.keep_violations
        {
            return Err(Refused::Weight(problem));
        }
        // In range: `limit` is at most the 16-bit id space.
        let expert = id as ExpertId;
        let parts = &mut self.layers[layer];
        if self.last_stamp.is_empty() {
            self.last_stamp.resize(self.limit as usize, 0);
        }
        if std::mem::replace(&mut self.last_stamp[id as usize], self.stamp) == self.stamp
            && !self.keep_violations
        {
            let token_start = *parts.offsets.last().unwrap_or(&0) as usize;
            let first = parts.experts[token_start..]
                .iter()
                .position(|&e| e == expert)
                .unwrap_or(0);
            return Err(Refused::Repeat { id: expert, first });
        }
        self.max_id = self.max_id.max(id);
        parts.experts.push(expert);
        if let (Some(weights), Some(weight)) = (&mut parts.weights, weight) {
            weights.push(weight);
        }
        Ok(())
    }

    /// Ends the current token at `layer`: the ids pushed since the last call are its experts.
    #[inline]
    pub(super) fn end_token(&mut self, layer: usize) {
        let parts = &mut self.layers[layer];
        // Wraps only past u32::MAX entries, which `finish` rejects.
        parts.offsets.push(parts.experts.len() as u32);
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            // Stamps wrapped: forget every old one so none is mistaken for the current token.
            self.last_stamp.fill(0);
            self.stamp = 1;
        }
    }

    /// The trace. Without a given expert count, it is the largest id seen plus one, so a source
    /// with no routed id at all needs one.
    pub(super) fn finish(self, path: &Path) -> Result<RoutingTrace> {
        let num_experts = match self.num_experts {
            Some(n) => n,
            None if self.max_id >= 0 => self.max_id as usize + 1,
            None => {
                return Err(Error::bad_file(
                    path,
                    "routes no token to any expert, so the number of experts cannot be inferred; \
                     give it explicitly",
                ));
            }
        };
        let layers = self
            .layers
            .into_iter()
            .enumerate()
            .map(|(layer, parts)| {
                if parts.experts.len() > u32::MAX as usize {
                    return Err(Error::bad_file(
                        path,
                        format!("layer {layer} has more than {} routed entries", u32::MAX),
                    ));
                }
                LayerRouting::new(parts.offsets, parts.experts, parts.weights)
                    .map_err(|e| Error::bad_file(path, e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        RoutingTrace::new(num_experts, layers, TokenMeta::default())
            .map_err(|e| Error::bad_file(path, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_ids_are_null_routing_and_width_is_inferred() {
        let mut b = RoutingBuilder::new(Path::new("x"), 2, None, false, 0).unwrap();
        // token 0: layer 0 -> [3, -1], layer 1 -> [-1, -1]; token 1: layer 0 -> [9], layer 1 -> [0].
        for (layer, ids) in [
            (0, vec![3, -1]),
            (1, vec![-1, -1]),
            (0, vec![9]),
            (1, vec![0]),
        ] {
            for id in ids {
                b.push(layer, id).unwrap();
            }
            b.end_token(layer);
        }
        let trace = b.finish(Path::new("x")).unwrap();
        assert_eq!(trace.num_experts(), 10);
        assert_eq!(trace.layer(0).offsets(), &[0, 1, 2]);
        assert_eq!(trace.layer(0).experts(), &[3, 9]);
        assert_eq!(trace.layer(1).experts_of(0), &[] as &[u16]);
        assert_eq!(trace.layer(1).experts_of(1), &[0]);
    }

    #[test]
    fn ids_past_the_bound_are_refused() {
        let mut given = RoutingBuilder::new(Path::new("x"), 1, Some(32), false, 0).unwrap();
        assert_eq!(given.push(0, 31), Ok(()));
        let err = given.push(0, 32).unwrap_err();
        assert_eq!(err.to_string(), "expert id 32 >= 32 experts");
        let mut inferred = RoutingBuilder::new(Path::new("x"), 1, None, false, 0).unwrap();
        assert_eq!(inferred.push(0, 65535), Ok(()));
        let err = inferred.push(0, 65536).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expert id 65536 does not fit a 16-bit expert id (at most 65535)"
        );
    }

    #[test]
    fn repeats_and_bad_weights_are_refused_per_token() {
        let mut b = RoutingBuilder::new(Path::new("x"), 2, Some(4), true, 0).unwrap();
        assert_eq!(b.push_weighted(0, 1, 0.5), Ok(()));
        assert_eq!(b.push_weighted(0, 3, 0.5), Ok(()));
        let repeat = b.push_weighted(0, 1, 0.5).unwrap_err();
        assert_eq!(repeat, Refused::Repeat { id: 1, first: 0 });
        assert_eq!(
            repeat.to_string(),
            "expert 1 repeats rank 0 (an expert is routed at most once per token)"
        );
        b.end_token(0);
        // The same expert in the next (token, layer) is no repeat.
        assert_eq!(b.push_weighted(1, 1, 1.0), Ok(()));
        let weight = b.push_weighted(1, 2, -0.5).unwrap_err();
        assert_eq!(weight.to_string(), "gate weight -0.5 is negative");
        assert_eq!(
            b.push_weighted(1, 2, f32::NAN).unwrap_err().to_string(),
            "gate weight NaN is not finite"
        );
    }

    #[test]
    fn all_null_source_needs_an_expert_count() {
        let mut b = RoutingBuilder::new(Path::new("x"), 1, None, false, 0).unwrap();
        b.push(0, -1).unwrap();
        b.end_token(0);
        let message = b.finish(Path::new("empty.npy")).unwrap_err().to_string();
        assert!(
            message.starts_with("empty.npy: routes no token"),
            "{message}"
        );
        let new =
            |layers, experts| RoutingBuilder::new(Path::new("a.npy"), layers, experts, false, 0);
        assert!(new(1, Some(0)).is_err());
        assert!(new(1, Some(65537)).is_err());
        assert!(new(65536, None).is_ok());
        let message = new(244800, None).err().unwrap().to_string();
        assert_eq!(
            message,
            "a.npy: 244800 layers exceed the 65536 a trace can hold (16-bit layer index)"
        );
    }
}
