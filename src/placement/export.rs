//! Placement files: moesim's own JSON (read back with validation) and the expert-location file
//! SGLang's `--init-expert-location` loads.
//!
//! moesim JSON, format version 1:
//! `{"format_version": 1, "strategy": "eplb", "placement": {"num_gpus": P, "num_experts": E,
//! "slots_per_gpu": S, "layers": [{"gpu_experts": [[expert ids of GPU 0's slots], ...]}, ...]}}`.
//!
//! SGLang: `{"physical_to_logical_map": [decoder layers][P * S]}`, nothing else.
//! `compute_initial_expert_location_metadata` (sglang/srt/eplb/expert_location.py) reads a file
//! only when its name ends in `.json` and passes the object's keys to
//! `ExpertLocationMetadata.init_by_mapping` as keyword arguments, which takes this map alone
//! (any other key is a `TypeError` at start-up; a `logical_count` key would instead be read as
//! token loads by `init_by_eplb`). Rows are indexed by absolute decoder layer, so the file has the
//! model's full layer count; dense layers get SGLang's own trivial row (`init_trivial`: physical
//! slot `p` holds logical expert `p % E`). Physical slot `p` is slot `p % S` of GPU `p / S`.
//! vLLM has no loader for an initial placement.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{LayerPlacement, Placement};
use crate::error::{Error, Result};
use crate::model::MoeModel;
use crate::output::write_bytes_atomic;
use crate::trace::ExpertId;

/// The moesim placement format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Which layout a placement is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// moesim's JSON (readable by `moesim place eval`).
    Moesim,
    /// SGLang's `--init-expert-location` file (needs `--model`, a `.json` output).
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

/// The file SGLang's `--init-expert-location` loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SglangExpertLocation {
    /// `[decoder layer][physical slot]` -> logical expert.
    pub physical_to_logical_map: Vec<Vec<i64>>,
}

/// Checks, before any work, that `placement` can be written to `path` in `format`: SGLang's
/// file needs the model and a name ending in `.json`.
pub fn check_target(path: &Path, format: ExportFormat, model: Option<&MoeModel>) -> Result<()> {
    if format != ExportFormat::Sglang {
        return Ok(());
    }
    if model.is_none() {
        return Err(Error::invalid(
            "--format sglang needs --model: SGLang's map has one row per decoder layer of the \
             model (DeepSeek-V3: 61, its 3 dense layers included)",
        ));
    }
    if path.extension().is_none_or(|e| e != "json") {
        return Err(Error::bad_file(
            path,
            "SGLang's --init-expert-location reads a file only when its name ends in .json",
        ));
    }
    Ok(())
}

/// SGLang's expert-location file for `placement` of `model`. The placement has a layer per MoE
/// layer of the model, or per decoder layer (its dense layers' rows are then replaced); every
/// slot of every GPU must be used, since the physical slot index is `gpu * slots_per_gpu + slot`.
pub fn sglang_expert_location(
    placement: &Placement,
    model: &MoeModel,
) -> Result<SglangExpertLocation> {
    let experts = placement.num_experts();
    if experts != model.num_experts {
        return Err(Error::invalid(format!(
            "the placement has {experts} experts but model {} has {}",
            model.name, model.num_experts
        )));
    }
    let moe_layers = model.moe_layers();
    let source_of: Vec<Option<usize>> = if placement.num_layers() == moe_layers.len() {
        let mut rows = vec![None; model.num_layers];
        for (source, &layer) in moe_layers.iter().enumerate() {
            rows[layer] = Some(source);
        }
        rows
    } else if placement.num_layers() == model.num_layers {
        (0..model.num_layers)
            .map(|layer| model.is_moe_layer(layer).then_some(layer))
            .collect()
    } else {
        return Err(Error::invalid(format!(
            "the placement has {} layers but model {} has {} MoE layers ({} decoder layers)",
            placement.num_layers(),
            model.name,
            moe_layers.len(),
            model.num_layers
        )));
    };
    let slots = placement.slots_per_gpu();
    let physical = placement.num_gpus() * slots;
    let trivial: Vec<i64> = (0..physical).map(|p| (p % experts) as i64).collect();
    let rows = source_of
        .iter()
        .map(|source| match source {
            Some(layer) => physical_row(&placement.layers()[*layer], *layer, slots),
            None => Ok(trivial.clone()),
        })
        .collect::<Result<_>>()?;
    Ok(SglangExpertLocation {
        physical_to_logical_map: rows,
    })
}

/// Placement layer `layer` as a row of logical experts, one per physical slot.
fn physical_row(placement: &LayerPlacement, layer: usize, slots: usize) -> Result<Vec<i64>> {
    if let Some((gpu, experts)) = placement
        .gpu_experts
        .iter()
        .enumerate()
        .find(|(_, e)| e.len() != slots)
    {
        return Err(Error::invalid(format!(
            "the SGLang layout needs every slot filled, but at layer {layer} GPU {gpu} uses {} \
             of its {slots} slots",
            experts.len()
        )));
    }
    Ok(placement
        .gpu_experts
        .iter()
        .flatten()
        .map(|&e| i64::from(e))
        .collect())
}

/// Writes `placement` to `path` in `format` (atomically: a temp file, then a rename); `model` is
/// needed for SGLang's layout (see [`check_target`]).
pub fn write_placement(
    path: &Path,
    placement: &Placement,
    strategy: Option<&str>,
    format: ExportFormat,
    model: Option<&MoeModel>,
) -> Result<()> {
    check_target(path, format, model)?;
    // `check_target` has made sure SGLang's layout comes with a model.
    let json = match (format, model) {
        (ExportFormat::Sglang, Some(model)) => {
            serde_json::to_vec(&sglang_expert_location(placement, model)?)
        }
        _ => serde_json::to_vec(&PlacementDocument {
            format_version: FORMAT_VERSION,
            strategy: strategy.map(str::to_string),
            placement: placement.clone(),
        }),
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
    from_value(value).map_err(|message| Error::bad_file(path, message))
}

/// `value` as a `T`; the error names the field's path, e.g.
/// `placement.layers[0].gpu_experts[1][3]: invalid type: floating point `1.5`, expected u16`.
fn from_value<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "." => e.into_inner().to_string(),
            _ => format!("{path}: {}", e.into_inner()),
        }
    })
}

/// An ExFlow `[layer][gpu] -> [expert ids]` placement as a document without a strategy.
fn read_exflow(value: serde_json::Value) -> std::result::Result<PlacementDocument, String> {
    let layers: Vec<Vec<Vec<ExpertId>>> = from_value(value)
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
