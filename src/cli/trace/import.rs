//! `moesim trace import`.

use std::path::PathBuf;

use clap::Args;

use crate::model::MoeModel;
use crate::trace::importers::{self, DecoderLayers, ImportFormat, ImportOptions};
use crate::trace::parquet;

/// Arguments of `moesim trace import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file to import (.npy, .json or .csv).
    input: PathBuf,
    /// Where to write the trace in moesim's Parquet format.
    #[arg(short, long)]
    out: PathBuf,
    /// Input format; inferred from the file's extension and content when omitted.
    #[arg(long)]
    format: Option<ImportFormat>,
    /// Routed experts per layer in the model; ids at or past it are errors. Inferred as the
    /// largest id + 1 when omitted.
    #[arg(long)]
    num_experts: Option<usize>,
    /// Model (preset or HF config.json): its expert count is the default for --num-experts, and
    /// a vLLM capture with one row per decoder layer keeps only the model's MoE layers (without
    /// it, zero-filled dense layers are detected when top-k >= 2).
    #[arg(long)]
    model: Option<String>,
}

impl ImportArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let format = match self.format {
            Some(format) => format,
            None => importers::detect_format(&self.input)?,
        };
        let model = self.model.as_deref().map(MoeModel::resolve).transpose()?;
        let options = ImportOptions {
            num_experts: self.num_experts.or(model.as_ref().map(|m| m.num_experts)),
            decoder: model.map(|m| DecoderLayers {
                moe_layers: m.moe_layers(),
                num_layers: m.num_layers,
            }),
            keep_violations: false,
        };
        let trace = importers::import_with(&self.input, Some(format), &options)?;
        parquet::write_trace(
            &self.out,
            &trace,
            &importers::provenance(&self.input, format),
        )?;
        eprintln!(
            "wrote {}: {} layers, {} experts",
            self.out.display(),
            trace.num_layers(),
            trace.num_experts()
        );
        Ok(())
    }
}
