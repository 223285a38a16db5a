//! `moesim trace stats`.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::analysis;
use crate::output;

/// Arguments of `moesim trace stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// A trace in moesim's Parquet format, or any file `trace import` reads.
    trace: PathBuf,
    /// Print one JSON object (with a `layers` array) instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the per-layer table as Parquet to this path.
    #[arg(long, value_name = "OUT")]
    parquet: Option<PathBuf>,
}

impl StatsArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let stats = analysis::file_stats(&self.trace)?;
        if let Some(path) = &self.parquet {
            output::write_parquet_frame(path, &mut stats.layers_frame())?;
        }
        let mut stdout = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer(&mut stdout, &stats)?;
            writeln!(stdout)?;
        } else {
            write!(stdout, "{}", stats.to_table())?;
        }
        Ok(())
    }
}
