//! Placement files: moesim's own JSON (read back with validation) and the physical-to-logical
//! map layout SGLang's `--init-expert-location` and vLLM's EPLB load.
//!
//! moesim JSON, format version 1:
//! `{"format_version": 1, "strategy": "eplb", "placement": {"num_gpus": P, "num_experts": E,
//! "slots_per_gpu": S, "layers": [{"gpu_experts": [[expert ids of GPU 0's slots], ...]}, ...]}}`.
//!
//! Expert-location maps (physical slot `p` is slot `p % S` of GPU `p / S`):
//! `physical_to_logical_map` `[layers][P * S]` (logical expert of each physical slot),
//! `logical_to_all_physical_map` `[layers][E][max replicas]` (each expert's physical slots,
//! ascending, padded with -1 to the largest replica count of any layer), and `logical_count`
//! `[layers][E]`, the replica count of each expert, as DeepSeek's reference EPLB returns it.
//! (SGLang reads `physical_to_logical_map` first; its own `logical_count` input key means token
//! loads, which this file never holds.)

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{LayerPlacement, Placement};
use crate::error::{Error, Result};
use crate::output::write_bytes_atomic;
use crate::trace::ExpertId;

/// The moesim placement format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Which layout a placement is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// moesim's JSON (readable by `moesim place eval`).
    Moesim,
    /// SGLang / vLLM expert-location maps.
    Sglang,
}

/// moesim's placement file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementDocument {
    /// Always [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// The strategy that produced the placement, when known.
    pub strategy: Option<String>,
    /// The placement itself (validated on read).
    pub placement: Placement,
}

/// SGLang / vLLM expert-location maps of a placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpertLocationMaps {
    /// `[layer][physical slot]` -> logical expert.
    pub physical_to_logical_map: Vec<Vec<i64>>,
    /// `[layer][logical expert]` -> its physical slots, ascending, padded with -1.
    pub logical_to_all_physical_map: Vec<Vec<Vec<i64>>>,
    /// `[layer][logical expert]` -> replica count.
    pub logical_count: Vec<Vec<i64>>,
}

/// The expert-location maps of `placement`; every slot of every GPU must be used, since the
/// physical slot index is `gpu * slots_per_gpu + slot`.
pub fn expert_location_maps(placement: &Placement) -> Result<ExpertLocationMaps> {
    let slots = placement.slots_per_gpu();
    let mut physical = Vec::with_capacity(placement.num_layers());
    for (layer, layer_placement) in placement.layers().iter().enumerate() {
        if let Some((gpu, experts)) = layer_placement
            .gpu_experts
            .iter()
            .enumerate()
            .find(|(_, e)| e.len() != slots)
        {
            return Err(Error::invalid(format!(
                "the SGLang layout needs every slot filled, but at layer {layer} GPU {gpu} uses \
                 {} of its {slots} slots",
                experts.len()
            )));
        }
        let row: Vec<i64> = layer_placement
            .gpu_experts
            .iter()
            .flatten()
            .map(|&e| i64::from(e))
            .collect();
        physical.push(row);
    }
    let experts = placement.num_experts();
    let mut all_physical = vec![vec![Vec::new(); experts]; placement.num_layers()];
    for (layer, row) in physical.iter().enumerate() {
        for (slot, &expert) in row.iter().enumerate() {
            all_physical[layer][expert as usize].push(slot as i64);
        }
    }
    let widest = all_physical
        .iter()
        .flatten()
        .map(Vec::len)
        .max()
        .unwrap_or(0);
    let logical_count = all_physical
        .iter()
        .map(|layer| layer.iter().map(|slots| slots.len() as i64).collect())
        .collect();
    for slots in all_physical.iter_mut().flatten() {
        slots.resize(widest, -1);
    }
    Ok(ExpertLocationMaps {
        physical_to_logical_map: physical,
        logical_to_all_physical_map: all_physical,
        logical_count,
    })
}

/// Writes `placement` to `path` in `format` (atomically: a temp file, then a rename).
pub fn write_placement(
    path: &Path,
    placement: &Placement,
    strategy: Option<&str>,
    format: ExportFormat,
) -> Result<()> {
    let json = match format {
        ExportFormat::Moesim => serde_json::to_vec(&PlacementDocument {
            format_version: FORMAT_VERSION,
            strategy: strategy.map(str::to_string),
            placement: placement.clone(),
        }),
        ExportFormat::Sglang => serde_json::to_vec(&expert_location_maps(placement)?),
    }
    .map_err(|e| Error::invalid(format!("serialising the placement: {e}")))?;
    write_bytes_atomic(path, &json)
}

/// Reads a moesim placement file, checking its version and the placement's validity, or an
/// ExFlow placement (a bare `[layer][gpu] -> [expert ids]` array; experts counted as the largest
/// id + 1, slots as the fullest GPU). The error names the file and what is wrong.
pub fn read_placement(path: &Path) -> Result<PlacementDocument> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::bad_file(path, e.to_string()))?;
    if value.is_array() {
        return read_exflow(value).map_err(|message| Error::bad_file(path, message));
    }
    match value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
    {
        Some(version) if version == u64::from(FORMAT_VERSION) => {}
        Some(version) => {
            return Err(Error::bad_file(
                path,
                format!(
                    "format_version {version} is not supported (this build reads {FORMAT_VERSION})"
                ),
            ));
        }
        None => {
            return Err(Error::bad_file(
                path,
                "not a moesim placement: no numeric `format_version` field",
            ));
        }
    }
    serde_json::from_value(value).map_err(|e| Error::bad_file(path, e.to_string()))
}

/// An ExFlow `[layer][gpu] -> [expert ids]` placement as a document without a strategy.
fn read_exflow(value: serde_json::Value) -> std::result::Result<PlacementDocument, String> {
    let layers: Vec<Vec<Vec<ExpertId>>> = serde_json::from_value(value)
        .map_err(|e| format!("an ExFlow placement is [layer][gpu] -> [expert ids]: {e}"))?;
    let num_gpus = layers.first().map_or(0, Vec::len);
    let gpus = || layers.iter().flatten();
    let num_experts = gpus().flatten().max().map_or(0, |&e| usize::from(e) + 1);
    let slots_per_gpu = gpus().map(Vec::len).max().unwrap_or(0);
    let layers = layers
        .into_iter()
        .map(|gpu_experts| LayerPlacement { gpu_experts })
        .collect();
    let placement =
        Placement::new(num_gpus, num_experts, slots_per_gpu, layers).map_err(|e| e.to_string())?;
    Ok(PlacementDocument {
        format_version: FORMAT_VERSION,
        strategy: None,
        placement,
    })
}

#[cfg(test)]
mod tests;
