//! `moesim simulate`.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::output::write_bytes_atomic;
use crate::scenario::Scenario;
use crate::sim::{self, SimOptions};

/// Arguments of `moesim simulate`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  moesim simulate scenarios/quickstart.toml\n  moesim simulate scenarios/quickstart.toml --json > sim.json\n  moesim simulate scenarios/quickstart.toml --perfetto /tmp/step.json --parquet-dir /tmp/sim"
)]
pub struct SimulateArgs {
    /// Scenario TOML (its optional [sim] table picks overlap strategies and the all-to-all).
    scenario: PathBuf,
    /// Print the whole result as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Write the simulated timeline as a Chrome / Perfetto trace JSON (ui.perfetto.dev).
    #[arg(long, value_name = "FILE")]
    perfetto: Option<PathBuf>,
    /// Write sim_layers, sim_gpus and sim_links Parquet tables into this folder.
    #[arg(long, value_name = "DIR")]
    parquet_dir: Option<PathBuf>,
}

impl SimulateArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let scenario = Scenario::load(&self.scenario)?;
        let options = SimOptions {
            perfetto: self.perfetto.is_some(),
        };
        let result = sim::simulate_scenario(&scenario, options)?;
        if let (Some(path), Some(trace)) = (&self.perfetto, &result.perfetto) {
            write_bytes_atomic(path, serde_json::to_string(trace)?.as_bytes())?;
        }
        if let Some(dir) = &self.parquet_dir {
            sim::write_tables(&result, dir)?;
        }
        // Written with errors returned, not panics, so a closed pipe (`| head`) ends quietly.
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?;
            return Ok(());
        }
        writeln!(
            out,
            "{:<14} {:<13} {:>12} {:>16} {:>8}",
            "placement", "strategy", "step ms", "exposed comm ms", "share"
        )?;
        for s in &result.strategies {
            writeln!(
                out,
                "{:<14} {:<13} {:>12.3} {:>16.3} {:>7.1}%",
                s.placement,
                s.strategy,
                s.step_ns as f64 / 1e6,
                s.exposed_comm_ns as f64 / 1e6,
                s.exposed_comm_share * 100.0
            )?;
        }
        Ok(())
    }
}
