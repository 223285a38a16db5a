//! Recorded router logits, the input of a capture: float32 `.npy` files.
//!
//! Either one file of shape `[layers, tokens, E]` (or `[tokens, E]` for a single layer), or a
//! directory of per-layer `[tokens, E]` files taken in file-name order (`layer_00.npy`,
//! `layer_01.npy`, ...). A score-correction bias is `[E]` (shared by every layer) or
//! `[layers, E]`.

use std::fs;
use std::path::Path;

use crate::error::{Error, Result};
use crate::trace::importers::read_f32;

/// Router logits of every MoE layer for the same tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterLogits {
    /// Routed experts per layer, `E`.
    pub num_experts: usize,
    /// Tokens per layer.
    pub num_tokens: usize,
    /// Per layer, row-major `[tokens, E]`.
    pub layers: Vec<Vec<f32>>,
}

impl RouterLogits {
    /// Reads a `[layers, tokens, E]` or `[tokens, E]` float32 file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let array = read_f32(path)?;
        let (layers, tokens, experts) = match array.shape[..] {
            [tokens, experts] => (1, tokens, experts),
            [layers, tokens, experts] => (layers, tokens, experts),
            _ => {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "header field 'shape' {:?}: expected [layers, tokens, experts] or \
                         [tokens, experts]",
                        array.shape
                    ),
                ));
            }
        };
        if layers == 0 || tokens == 0 || experts == 0 {
            return Err(Error::bad_file(
                path,
                format!("header field 'shape' {:?} is empty", array.shape),
            ));
        }
        let per_layer = tokens * experts;
        Ok(RouterLogits {
            num_experts: experts,
            num_tokens: tokens,
            layers: array
                .values
                .chunks_exact(per_layer)
                .map(<[f32]>::to_vec)
                .collect(),
        })
    }

    /// Reads every `*.npy` file of `dir`, in file-name order, one layer each.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            if path.extension().is_some_and(|e| e == "npy") {
                files.push(path);
            }
        }
        files.sort();
        let mut logits: Option<RouterLogits> = None;
        for file in &files {
            let layer = RouterLogits::from_file(file)?;
            if layer.layers.len() != 1 {
                return Err(Error::bad_file(
                    file,
                    "a per-layer file must be [tokens, experts]",
                ));
            }
            match &mut logits {
                None => logits = Some(layer),
                Some(all) => {
                    if (layer.num_tokens, layer.num_experts) != (all.num_tokens, all.num_experts) {
                        return Err(Error::bad_file(
                            file,
                            format!(
                                "[{}, {}] does not match the first layer's [{}, {}]",
                                layer.num_tokens,
                                layer.num_experts,
                                all.num_tokens,
                                all.num_experts
                            ),
                        ));
                    }
                    all.layers.extend(layer.layers);
                }
            }
        }
        logits.ok_or_else(|| Error::bad_file(dir, "no .npy files in the directory"))
    }

    /// Reads a score-correction bias for these logits: `[E]` for every layer or `[layers, E]`.
    pub fn read_bias(&self, path: &Path) -> Result<Vec<Vec<f32>>> {
        let array = read_f32(path)?;
        let (layers, e) = (self.layers.len(), self.num_experts);
        match array.shape[..] {
            [n] if n == e => Ok(vec![array.values; layers]),
            [l, n] if l == layers && n == e => {
                Ok(array.values.chunks_exact(e).map(<[f32]>::to_vec).collect())
            }
            _ => Err(Error::bad_file(
                path,
                format!(
                    "header field 'shape' {:?}: expected [{e}] or [{layers}, {e}] for \
                     {layers} layers of {e} experts",
                    array.shape
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::importers::write_f32;

    #[test]
    fn a_three_dimensional_file_splits_into_layers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logits.npy");
        let values: Vec<f32> = (0..12).map(|v| v as f32).collect();
        write_f32(&path, &[2, 3, 2], &values).unwrap();
        let logits = RouterLogits::from_file(&path).unwrap();
        assert_eq!((logits.num_tokens, logits.num_experts), (3, 2));
        assert_eq!(logits.layers[1], [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        write_f32(&dir.path().join("bias.npy"), &[2], &[0.5, -0.5]).unwrap();
        let bias = logits.read_bias(&dir.path().join("bias.npy")).unwrap();
        assert_eq!(bias, [[0.5, -0.5], [0.5, -0.5]]);
        write_f32(&dir.path().join("bad.npy"), &[3], &[0.0; 3]).unwrap();
        let error = logits.read_bias(&dir.path().join("bad.npy")).err().unwrap();
        assert!(
            error.to_string().ends_with(
                "header field 'shape' [3]: expected [2] or [2, 2] for 2 layers of 2 experts"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_directory_is_read_in_file_name_order_and_must_agree_in_shape() {
        let dir = tempfile::tempdir().unwrap();
        write_f32(&dir.path().join("layer_01.npy"), &[1, 2], &[1.0, 2.0]).unwrap();
        write_f32(&dir.path().join("layer_00.npy"), &[1, 2], &[3.0, 4.0]).unwrap();
        let logits = RouterLogits::from_dir(dir.path()).unwrap();
        assert_eq!(logits.layers, [[3.0, 4.0], [1.0, 2.0]]);
        write_f32(&dir.path().join("layer_02.npy"), &[1, 3], &[0.0; 3]).unwrap();
        let error = RouterLogits::from_dir(dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.ends_with("layer_02.npy: [1, 3] does not match the first layer's [1, 2]"),
            "{error}"
        );
    }
}
