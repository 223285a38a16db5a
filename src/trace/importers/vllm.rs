//! vLLM routed-experts capture: expert ids `[tokens][layers][top_k]`, as an `.npy` file (int32 or
//! int16) or as JSON (a bare nested array, or an object whose `routed_experts` key holds it).
//! -1 marks an empty slot, read as "no expert". A capture has one row per decoder layer; the
//! zero-filled rows of dense layers are dropped ([`super::layer_map`]).

use std::fs;
use std::path::Path;

use serde_json::Value;

use super::layer_map::{LayerMap, ZeroFill};
use super::routing_builder::RoutingBuilder;
use super::{ImportOptions, npy};
use crate::error::{Error, Result};
use crate::trace::RoutingTrace;

/// The key under which an object-form JSON dump holds the array.
const KEY: &str = "routed_experts";

/// Reads a vLLM routed-experts replay, `.npy` or JSON (told apart by the NumPy magic bytes).
pub(super) fn import(path: &Path, options: &ImportOptions) -> Result<RoutingTrace> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(npy::MAGIC) {
        return npy::import_bytes(path, &bytes, options);
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::bad_file(path, format!("neither .npy nor valid JSON: {e}")))?;
    let tokens = match &value {
        Value::Array(tokens) => tokens,
        Value::Object(fields) => match fields.get(KEY) {
            Some(Value::Array(tokens)) => tokens,
            Some(_) => {
                return Err(Error::bad_file(
                    path,
                    format!("key \"{KEY}\" must hold an array [tokens][layers][top_k]"),
                ));
            }
            None => {
                return Err(Error::bad_file(
                    path,
                    format!("the JSON object has no \"{KEY}\" key"),
                ));
            }
        },
        _ => {
            return Err(Error::bad_file(
                path,
                format!("expected an array [tokens][layers][top_k] or an object with \"{KEY}\""),
            ));
        }
    };
    let num_layers = match tokens.first() {
        Some(first) => layers_of(path, 0, first)?.len(),
        None => 0,
    };
    let map = LayerMap::new(path, num_layers, options.decoder.as_ref(), || {
        let mut fill = ZeroFill::new(num_layers);
        for token in tokens {
            let layers = token.as_array().map_or(&[][..], Vec::as_slice);
            for (layer, slots) in layers.iter().take(num_layers).enumerate() {
                // A non-integer slot is not a zero; the main pass reports it.
                fill.see(
                    layer,
                    ids_of(slots).iter().map(|id| id.as_i64().unwrap_or(-1)),
                );
            }
        }
        fill.finish(tokens.len())
    })?;
    let mut builder = RoutingBuilder::new(path, map.kept(), options.num_experts, false, 0)?
        .keeping_violations(options.keep_violations);
    for (row, token) in tokens.iter().enumerate() {
        let layers = layers_of(path, row, token)?;
        if layers.len() != num_layers {
            return Err(Error::bad_file(
                path,
                format!(
                    "row {row} has {} layers but row 0 has {num_layers}",
                    layers.len()
                ),
            ));
        }
        for (layer, slots) in layers.iter().enumerate() {
            let Some(target) = map.target(layer) else {
                continue;
            };
            for (rank, id) in ids_of(slots).iter().enumerate() {
                let at = || format!("row {row}, layer {layer}, rank {rank}");
                let id = id.as_i64().ok_or_else(|| {
                    Error::bad_file(path, format!("{}: {id} is not an integer expert id", at()))
                })?;
                builder
                    .push(target, id)
                    .map_err(|e| Error::bad_file(path, format!("{}: {e}", at())))?;
            }
            builder.end_token(target);
        }
    }
    builder.finish(path)
}

/// One layer's slots; a top-1 dump may give the id without its one-element list.
fn ids_of(slots: &Value) -> &[Value] {
    match slots {
        Value::Array(ids) => ids.as_slice(),
        single => std::slice::from_ref(single),
    }
}

/// Row `row`'s per-layer entries.
fn layers_of<'a>(path: &Path, row: usize, token: &'a Value) -> Result<&'a [Value]> {
    token
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| Error::bad_file(path, format!("row {row}: expected an array of layers")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import_text(text: &str, num_experts: Option<usize>) -> Result<RoutingTrace> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay.json");
        fs::write(&path, text).unwrap();
        import(&path, &ImportOptions::experts(num_experts))
    }

    #[test]
    fn bare_and_keyed_json_give_the_same_trace() {
        let array = "[[[1, 2], [3, -1]], [[0, 3], [-1, -1]]]";
        let bare = import_text(array, None).unwrap();
        let keyed = import_text(&format!("{{\"routed_experts\": {array}}}"), None).unwrap();
        assert_eq!(bare, keyed);
        assert_eq!(bare.num_experts(), 4);
        assert_eq!(bare.layer(0).experts(), &[1, 2, 0, 3]);
        assert_eq!(bare.layer(1).offsets(), &[0, 1, 1]);
    }

    #[test]
    fn top1_ids_may_skip_the_inner_list() {
        let trace = import_text("[[5, 1], [2, 2]]", Some(6)).unwrap();
        assert_eq!(trace.layer(0).experts(), &[5, 2]);
        assert_eq!(trace.uniform_k(), Some(1));
    }

    #[test]
    fn malformed_json_names_the_position() {
        let message = |text: &str, n| import_text(text, n).unwrap_err().to_string();
        assert!(
            message("[[[1]], [[1], [2]]]", None).ends_with("row 1 has 2 layers but row 0 has 1")
        );
        assert!(
            message("[[[1, 2.5]]]", None)
                .ends_with("row 0, layer 0, rank 1: 2.5 is not an integer expert id")
        );
        assert!(
            message("[[[1]], [[9]]]", Some(8))
                .ends_with("row 1, layer 0, rank 0: expert id 9 >= 8 experts")
        );
        assert!(
            message("{\"experts\": []}", None)
                .ends_with("the JSON object has no \"routed_experts\" key")
        );
        assert!(message("[[[1]", None).contains("neither .npy nor valid JSON"));
    }
}
