//! `moesim trace import`.

use std::path::PathBuf;

use clap::Args;

use crate::trace::importers::{self, ImportFormat};
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
}

impl ImportArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let format = match self.format {
            Some(format) => format,
            None => importers::detect_format(&self.input)?,
        };
        let trace = importers::import(&self.input, Some(format), self.num_experts)?;
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
