//! Writing a capture: the trace in moesim's Parquet format plus a JSON sidecar with the kernel's
//! per-expert counters and the lost-record count.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::gating::GatingConfig;
use super::records::Captured;
use crate::error::{Error, Result};
use crate::output::write_bytes_atomic;
use crate::trace::{Trace, parquet};

/// The sidecar's content (`<trace stem>.capture.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptureSummary {
    /// The trace file this describes.
    pub trace: String,
    /// What routed: `cpu twin` or `gpu: <device name>`.
    pub engine: String,
    /// The gating configuration, e.g. `softmax top-2 of 8, renormalized`.
    pub gating: String,
    /// MoE layers.
    pub num_layers: usize,
    /// Tokens per layer.
    pub num_tokens: usize,
    /// Routed experts per layer.
    pub num_experts: usize,
    /// Experts per token.
    pub top_k: usize,
    /// Ring-buffer capacity in records (GPU captures only).
    pub ring_capacity: Option<u64>,
    /// Decisions lost to a full ring buffer; their tokens have no experts in the trace.
    pub lost_records: u64,
    /// The kernel's per-expert decision counts, `[layer][expert]`.
    pub expert_counts: Vec<Vec<u64>>,
}

/// The sidecar path of a trace: `t.parquet` -> `t.capture.json`.
pub fn sidecar_path(trace: &Path) -> PathBuf {
    trace.with_extension("capture.json")
}

/// Writes the trace (provenance naming the engine, gating, input and losses) and its sidecar,
/// each atomically. Returns the sidecar's path.
pub fn write(
    out: &Path,
    captured: Captured,
    config: &GatingConfig,
    engine: &str,
    input: &Path,
    ring_capacity: Option<u64>,
) -> Result<PathBuf> {
    let sidecar = sidecar_path(out);
    let summary = CaptureSummary {
        trace: out.display().to_string(),
        engine: engine.to_string(),
        gating: config.describe(),
        num_layers: captured.trace.num_layers(),
        num_tokens: captured.trace.num_tokens(),
        num_experts: captured.trace.num_experts(),
        top_k: config.top_k(),
        ring_capacity,
        lost_records: captured.lost_records,
        expert_counts: captured.expert_counts,
    };
    let source = format!(
        "moesim capture ({engine}): {} from {}; lost records: {}; per-expert counts in {}",
        summary.gating,
        input.display(),
        summary.lost_records,
        sidecar.display()
    );
    parquet::write_trace(out, &Trace::Tokens(captured.trace), &source)?;
    let mut json = serde_json::to_string_pretty(&summary)
        .map_err(|e| Error::invalid(format!("capture summary: {e}")))?;
    json.push('\n');
    write_bytes_atomic(&sidecar, json.as_bytes())?;
    Ok(sidecar)
}
