//! `moesim trace convert`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::trace::importers::{self, ExportFormat};

/// Arguments of `moesim trace convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The trace to convert (Parquet or any importable format).
    input: PathBuf,
    /// Output path; its extension picks the format unless --to is given.
    #[arg(short, long)]
    out: PathBuf,
    /// Output format.
    #[arg(long)]
    to: Option<ExportFormat>,
}

impl ConvertArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let format = match self.to {
            Some(format) => format,
            None => ExportFormat::from_extension(&self.out).with_context(|| {
                format!(
                    "{}: cannot tell the output format from the extension; pass --to",
                    self.out.display()
                )
            })?,
        };
        let trace = crate::trace::load(&self.input)?;
        let source = format!(
            "converted from {}",
            self.input.file_name().unwrap_or_default().to_string_lossy()
        );
        importers::export(&trace, &self.out, format, &source)?;
        eprintln!("wrote {}", self.out.display());
        Ok(())
    }
}
