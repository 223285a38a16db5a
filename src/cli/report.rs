//! `moesim report`.

use std::path::PathBuf;

use clap::Args;

use crate::report;

/// Arguments of `moesim report`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  moesim report reports/quickstart     # rewrites reports/quickstart/index.html"
)]
pub struct ReportArgs {
    /// A results folder written by `moesim run` (summary.json, report.md and the charts).
    dir: PathBuf,
}

impl ReportArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let html = report::rebuild_html(&self.dir)?;
        println!("wrote {}", html.display());
        Ok(())
    }
}
