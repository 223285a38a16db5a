//! Which layers of a dense `[tokens][layers][k]` source become trace layers.
//!
//! vLLM's routed-experts capture holds one slot row per decoder layer, `[tokens,
//! num_hidden_layers, num_experts_per_tok]` (`RoutedExpertsCapturer.init_buffer` allocates it
//! zero-filled and `capture` writes the MoE layers only), so a dense layer (DeepSeek-V3's first
//! three) reads as "expert 0, k times". Such layers are dropped: by the model's layout when it is
//! given, else when every token's k >= 2 slots at the layer are all 0, which real top-k routing
//! never produces (it picks an expert at most once per token).

use std::path::Path;

use crate::error::{Error, Result};
use crate::trace::MAX_LAYERS;

/// A model's decoder stack: its layer count and which of its layers are MoE.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderLayers {
    /// Decoder layers (`num_hidden_layers`).
    pub num_layers: usize,
    /// Indices of the MoE layers, ascending.
    pub moe_layers: Vec<usize>,
}

/// Source layer -> trace layer, `None` for a dropped layer.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LayerMap {
    target: Vec<Option<usize>>,
    kept: usize,
}

impl LayerMap {
    /// The map for a source of `source_layers` layers in the file at `path`. With `decoder`, a
    /// source of one row per decoder layer keeps the MoE layers and one of one row per MoE layer
    /// keeps them all; other counts are errors. Without it, the layers `zero_filled` flags are
    /// dropped, unless that would drop them all.
    pub(super) fn new(
        path: &Path,
        source_layers: usize,
        decoder: Option<&DecoderLayers>,
        zero_filled: impl FnOnce() -> Vec<bool>,
    ) -> Result<Self> {
        // Checked before anything is sized by the count: a header may promise 2^32 layers of
        // zero tokens.
        if source_layers > MAX_LAYERS {
            return Err(Error::bad_file(
                path,
                format!(
                    "{source_layers} layers exceed the {MAX_LAYERS} a trace can hold (16-bit \
                     layer index)"
                ),
            ));
        }
        let keep: Vec<bool> = match decoder {
            Some(d) if source_layers == d.num_layers && source_layers != d.moe_layers.len() => (0
                ..source_layers)
                .map(|l| d.moe_layers.binary_search(&l).is_ok())
                .collect(),
            Some(d) if source_layers == d.moe_layers.len() => vec![true; source_layers],
            Some(d) => {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "has {source_layers} layers but the model has {} decoder layers ({} MoE)",
                        d.num_layers,
                        d.moe_layers.len()
                    ),
                ));
            }
            None => {
                let zero = zero_filled();
                if zero.iter().all(|&z| z) {
                    vec![true; source_layers]
                } else {
                    zero.iter().map(|&z| !z).collect()
                }
            }
        };
        let mut kept = 0;
        let target = keep
            .iter()
            .map(|&k| {
                k.then(|| {
                    kept += 1;
                    kept - 1
                })
            })
            .collect();
        Ok(LayerMap { target, kept })
    }

    /// The trace layer of source layer `layer`, `None` when it is dropped.
    #[inline]
    pub(super) fn target(&self, layer: usize) -> Option<usize> {
        self.target[layer]
    }

    /// Number of trace layers.
    pub(super) fn kept(&self) -> usize {
        self.kept
    }
}

/// Tracks, layer by layer, whether every token seen so far had k >= 2 slots there, all 0.
#[derive(Debug, Clone)]
pub(super) struct ZeroFill {
    zero: Vec<bool>,
}

impl ZeroFill {
    /// Every one of `layers` layers is a candidate until a token shows otherwise.
    pub(super) fn new(layers: usize) -> Self {
        ZeroFill {
            zero: vec![true; layers],
        }
    }

    /// One token's slots at `layer`.
    #[inline]
    pub(super) fn see(&mut self, layer: usize, slots: impl ExactSizeIterator<Item = i64>) {
        let flag = &mut self.zero[layer];
        if *flag {
            let len = slots.len();
            *flag = len >= 2 && slots.into_iter().all(|id| id == 0);
        }
    }

    /// The flags; none is set when no token was seen.
    pub(super) fn finish(self, tokens: usize) -> Vec<bool> {
        if tokens == 0 {
            vec![false; self.zero.len()]
        } else {
            self.zero
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deepseek_like() -> DecoderLayers {
        DecoderLayers {
            num_layers: 5,
            moe_layers: vec![2, 3, 4],
        }
    }

    #[test]
    fn the_model_picks_its_moe_layers() {
        let path = Path::new("cap.npy");
        let map = LayerMap::new(path, 5, Some(&deepseek_like()), Vec::new).unwrap();
        assert_eq!(map.kept(), 3);
        assert_eq!(
            (0..5).map(|l| map.target(l)).collect::<Vec<_>>(),
            [None, None, Some(0), Some(1), Some(2)]
        );
        let moe_only = LayerMap::new(path, 3, Some(&deepseek_like()), Vec::new).unwrap();
        assert_eq!(moe_only.kept(), 3);
        let message = LayerMap::new(path, 4, Some(&deepseek_like()), Vec::new)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "cap.npy: has 4 layers but the model has 5 decoder layers (3 MoE)"
        );
    }

    #[test]
    fn zero_filled_layers_are_detected_only_for_k_of_two_or_more() {
        let mut fill = ZeroFill::new(3);
        // token 0: layer 0 [0, 0], layer 1 [0, 3], layer 2 [0] (top-1 zero is real routing).
        fill.see(0, [0, 0].into_iter());
        fill.see(1, [0, 3].into_iter());
        fill.see(2, [0].into_iter());
        let zero = fill.finish(1);
        assert_eq!(zero, [true, false, false]);
        let map = LayerMap::new(Path::new("x"), 3, None, || zero).unwrap();
        assert_eq!(map.target(0), None);
        assert_eq!(map.target(1), Some(0));
        assert_eq!(ZeroFill::new(2).finish(0), [false, false]);
        let all = LayerMap::new(Path::new("x"), 2, None, || vec![true, true]).unwrap();
        assert_eq!(all.kept(), 2);
    }
}
