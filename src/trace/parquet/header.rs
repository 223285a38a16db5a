//! The `moesim.*` file-level metadata of a trace file.

use std::path::Path;

use super::FORMAT_VERSION;
use crate::error::{Error, Result};
use crate::trace::{MAX_EXPERTS, MAX_LAYERS};

const KEY_FORMAT_VERSION: &str = "moesim.format_version";
const KEY_KIND: &str = "moesim.kind";
const KEY_NUM_EXPERTS: &str = "moesim.num_experts";
const KEY_NUM_LAYERS: &str = "moesim.num_layers";
const KEY_NUM_TOKENS: &str = "moesim.num_tokens";
const KEY_SOURCE: &str = "moesim.source";

/// What a trace file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    /// Token-level routing: one row per (token, layer, routed expert).
    Tokens,
    /// Aggregate per-expert loads: one row per (layer, expert).
    Loads,
}

impl TraceKind {
    /// The value stored under `moesim.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceKind::Tokens => "tokens",
            TraceKind::Loads => "loads",
        }
    }

    fn parse(text: &str) -> Option<TraceKind> {
        match text {
            "tokens" => Some(TraceKind::Tokens),
            "loads" => Some(TraceKind::Loads),
            _ => None,
        }
    }
}

/// The file-level metadata of a trace file: what it holds and where it came from. Readable
/// without touching the rows, so tools can describe a huge trace instantly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeader {
    /// File format version ([`FORMAT_VERSION`] for files this build writes).
    pub format_version: u32,
    /// Token-level routing or aggregate loads.
    pub kind: TraceKind,
    /// Routed experts per layer in the model the trace came from.
    pub num_experts: usize,
    /// Number of MoE layers.
    pub num_layers: usize,
    /// Number of tokens (0 for loads files: aggregates do not record a token count).
    pub num_tokens: usize,
    /// Free-text provenance, e.g. "imported from switch-base-32.trace.npy".
    pub source: String,
}

impl TraceHeader {
    /// The header as Parquet key-value pairs.
    pub(super) fn to_key_values(&self) -> Vec<(String, String)> {
        [
            (KEY_FORMAT_VERSION, self.format_version.to_string()),
            (KEY_KIND, self.kind.as_str().to_string()),
            (KEY_NUM_EXPERTS, self.num_experts.to_string()),
            (KEY_NUM_LAYERS, self.num_layers.to_string()),
            (KEY_NUM_TOKENS, self.num_tokens.to_string()),
            (KEY_SOURCE, self.source.clone()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
    }

    /// Parses the header from the file's key-value pairs, rejecting unknown versions and kinds.
    pub(super) fn from_key_values(path: &Path, pairs: &[(&str, Option<&str>)]) -> Result<Self> {
        let lookup = |key: &str| -> Result<&str> {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| *v)
                .ok_or_else(|| {
                    Error::bad_file(
                        path,
                        format!("missing metadata key `{key}` (not a moesim trace file?)"),
                    )
                })
        };
        let number = |key: &str| -> Result<usize> {
            let text = lookup(key)?;
            text.parse().map_err(|_| {
                Error::bad_file(
                    path,
                    format!("metadata key `{key}` = '{text}' is not a whole number"),
                )
            })
        };
        let format_version = number(KEY_FORMAT_VERSION)?;
        if format_version != FORMAT_VERSION as usize {
            return Err(Error::bad_file(
                path,
                format!(
                    "metadata key `{KEY_FORMAT_VERSION}` = {format_version}: this build reads \
                     format version {FORMAT_VERSION} only"
                ),
            ));
        }
        let kind_text = lookup(KEY_KIND)?;
        let kind = TraceKind::parse(kind_text).ok_or_else(|| {
            Error::bad_file(
                path,
                format!("metadata key `{KEY_KIND}` = '{kind_text}': expected 'tokens' or 'loads'"),
            )
        })?;
        let num_experts = number(KEY_NUM_EXPERTS)?;
        if num_experts == 0 || num_experts > MAX_EXPERTS {
            return Err(Error::bad_file(
                path,
                format!("metadata key `{KEY_NUM_EXPERTS}` = {num_experts}: expected 1 to 65536"),
            ));
        }
        // The row columns bound the shape: u16 layer index, u32 token index.
        let num_layers = number(KEY_NUM_LAYERS)?;
        if num_layers > MAX_LAYERS {
            return Err(Error::bad_file(
                path,
                format!("metadata key `{KEY_NUM_LAYERS}` = {num_layers}: at most 65536"),
            ));
        }
        let num_tokens = number(KEY_NUM_TOKENS)?;
        if num_tokens > u32::MAX as usize + 1 {
            return Err(Error::bad_file(
                path,
                format!("metadata key `{KEY_NUM_TOKENS}` = {num_tokens}: at most 2^32"),
            ));
        }
        Ok(TraceHeader {
            format_version: FORMAT_VERSION,
            kind,
            num_experts,
            num_layers,
            num_tokens,
            source: lookup(KEY_SOURCE)?.to_string(),
        })
    }
}
