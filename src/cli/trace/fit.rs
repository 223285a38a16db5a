//! `moesim trace fit`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::analysis::fit;
use crate::trace;

/// Arguments of `moesim trace fit`.
#[derive(Debug, Args)]
pub struct FitArgs {
    /// A token-level trace (Parquet or any importable format).
    trace: PathBuf,
    /// Where to write the fitted generator parameters (TOML, for `trace synth --params`).
    #[arg(short, long)]
    out: PathBuf,
}

impl FitArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let loaded = trace::load(&self.trace)?;
        let routing = loaded.tokens().with_context(|| {
            format!(
                "{}: holds per-expert loads only; fitting needs token-level routing",
                self.trace.display()
            )
        })?;
        let params = fit::fit(routing)?;
        params.save(&self.out)?;
        eprintln!("wrote {}", self.out.display());
        Ok(())
    }
}
