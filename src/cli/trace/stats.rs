//! `moesim trace stats`.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::analysis::{self, StatsBuilder, TraceStats};
use crate::output;
use crate::trace::parquet::{self, TraceKind};

/// Tokens read per chunk when summarising a Parquet trace as a stream.
const TOKENS_PER_CHUNK: usize = 1 << 16;

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
        let stats = summarise(&self.trace)?;
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

/// Statistics of a trace file; Parquet token traces are read as a stream of chunks so a trace
/// larger than memory can be summarised.
fn summarise(path: &std::path::Path) -> crate::Result<TraceStats> {
    let is_parquet = path.extension().is_some_and(|e| e == "parquet");
    if !is_parquet {
        return Ok(analysis::trace_stats(&crate::trace::load(path)?));
    }
    let header = parquet::read_header(path)?;
    if header.kind == TraceKind::Loads {
        return Ok(analysis::trace_stats(&parquet::read_trace(path)?));
    }
    let mut builder = StatsBuilder::new(header.num_layers, header.num_experts);
    for chunk in parquet::read_chunks(path, TOKENS_PER_CHUNK)? {
        builder.add(&chunk?.trace);
    }
    Ok(builder.finish())
}
