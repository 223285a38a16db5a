//! Collecting imported expert ids, token by token, into the canonical per-layer CSR form.
//!
//! Every token-level importer walks its source in token, then layer, then rank order and hands
//! each raw id to [`RoutingBuilder::push`]. Negative ids mean "no expert" (vLLM's -1 padding and
//! null routing) and are skipped; ids at or past the expert count are reported to the caller,
//! which knows the id's position in its own terms (row and column, or line).

use std::fmt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::trace::{ExpertId, LayerRouting, RoutingTrace, TokenMeta};

/// Ids the 16-bit expert id can hold.
const ID_SPACE: usize = ExpertId::MAX as usize + 1;

/// An expert id at or past the allowed bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IdOutOfRange {
    id: i64,
    num_experts: Option<usize>,
}

impl fmt::Display for IdOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.num_experts {
            Some(n) => write!(f, "expert id {} >= {n} experts", self.id),
            None => write!(
                f,
                "expert id {} does not fit a 16-bit expert id (at most {})",
                self.id,
                ID_SPACE - 1
            ),
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
}

impl RoutingBuilder {
    /// A builder for `num_layers` layers. `num_experts`, when given, bounds the ids; otherwise
    /// the largest id seen plus one becomes the expert count. `weighted` builders take gate
    /// weights with every id; `entries_hint` sizes the buffers.
    pub(super) fn new(
        num_layers: usize,
        num_experts: Option<usize>,
        weighted: bool,
        entries_hint: usize,
    ) -> Result<Self> {
        if let Some(n) = num_experts
            && !(1..=ID_SPACE).contains(&n)
        {
            return Err(Error::invalid(format!(
                "number of experts must be between 1 and {ID_SPACE}, got {n}"
            )));
        }
        let per_layer = entries_hint / num_layers.max(1);
        Ok(RoutingBuilder {
            num_experts,
            limit: num_experts.unwrap_or(ID_SPACE) as i64,
            max_id: -1,
            layers: (0..num_layers)
                .map(|_| LayerParts {
                    offsets: vec![0],
                    experts: Vec::with_capacity(per_layer),
                    weights: weighted.then(|| Vec::with_capacity(per_layer)),
                })
                .collect(),
        })
    }

    /// Records the next id of the current token at `layer`; negative ids mean "no expert".
    #[inline]
    pub(super) fn push(&mut self, layer: usize, id: i64) -> Result<(), IdOutOfRange> {
        self.push_with(layer, id, None)
    }

    /// Like [`RoutingBuilder::push`], with the entry's gate weight (weighted builders only).
    #[inline]
    pub(super) fn push_weighted(
        &mut self,
        layer: usize,
        id: i64,
        weight: f32,
    ) -> Result<(), IdOutOfRange> {
        self.push_with(layer, id, Some(weight))
    }

    #[inline]
    fn push_with(
        &mut self,
        layer: usize,
        id: i64,
        weight: Option<f32>,
    ) -> Result<(), IdOutOfRange> {
        if id < 0 {
            return Ok(());
        }
        if id >= self.limit {
            return Err(IdOutOfRange {
                id,
                num_experts: self.num_experts,
            });
        }
        self.max_id = self.max_id.max(id);
        let parts = &mut self.layers[layer];
        // In range: `limit` is at most the 16-bit id space.
        parts.experts.push(id as ExpertId);
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
        let mut b = RoutingBuilder::new(2, None, false, 0).unwrap();
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
        let mut given = RoutingBuilder::new(1, Some(32), false, 0).unwrap();
        assert_eq!(given.push(0, 31), Ok(()));
        let err = given.push(0, 32).unwrap_err();
        assert_eq!(err.to_string(), "expert id 32 >= 32 experts");
        let mut inferred = RoutingBuilder::new(1, None, false, 0).unwrap();
        assert_eq!(inferred.push(0, 65535), Ok(()));
        let err = inferred.push(0, 65536).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expert id 65536 does not fit a 16-bit expert id (at most 65535)"
        );
    }

    #[test]
    fn all_null_source_needs_an_expert_count() {
        let mut b = RoutingBuilder::new(1, None, false, 0).unwrap();
        b.push(0, -1).unwrap();
        b.end_token(0);
        let message = b.finish(Path::new("empty.npy")).unwrap_err().to_string();
        assert!(
            message.starts_with("empty.npy: routes no token"),
            "{message}"
        );
        assert!(RoutingBuilder::new(1, Some(0), false, 0).is_err());
        assert!(RoutingBuilder::new(1, Some(65537), false, 0).is_err());
    }
}
