//! `moesim simulate`.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::output::write_bytes_atomic;
use crate::pipeline::{self, SimOptions};
use crate::report;
use crate::scenario::Scenario;

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
            timeline_excerpt: false,
        };
        let result = pipeline::simulate_scenario(&scenario, options)
            .map_err(|e| e.in_file(&self.scenario))?;
        if let (Some(path), Some(trace)) = (&self.perfetto, &result.perfetto) {
            write_bytes_atomic(path, serde_json::to_string(trace)?.as_bytes())?;
        }
        if let Some(dir) = &self.parquet_dir {
            report::write_sim_tables(&result, dir)?;
        }
        // Written with errors returned, not panics, so a closed pipe (`| head`) ends quietly.
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?;
            return Ok(());
        }
        writeln!(out, "{} step(s) per strategy", result.steps)?;
        writeln!(
            out,
            "{:<14} {:<13} {:>13} {:>10} {:>10} {:>8}",
            "placement", "strategy", "mean step ms", "p50 ms", "p99 ms", "exposed"
        )?;
        let ms = |ns: u64| ns as f64 / 1e6;
        for s in &result.strategies {
            writeln!(
                out,
                "{:<14} {:<13} {:>13.3} {:>10.3} {:>10.3} {:>7.1}%",
                s.placement,
                s.strategy,
                ms(s.step_ns),
                ms(s.p50_step_ns),
                ms(s.p99_step_ns),
                s.exposed_comm_share * 100.0
            )?;
        }
        if let Some(offload) = &result.offload {
            writeln!(out, "{offload}")?;
        }
        let d = &result.dispatch;
        for p in &d.placements {
            writeln!(
                out,
                "dispatch under {} (replica {}, capacity factor {}, LLEP {}): dropped {:.2}% of {} routed pairs; LLEP moved {} pairs, {:.1} MB of weights",
                p.placement,
                d.replica,
                d.capacity_factor.map_or("none".into(), |f| f.to_string()),
                if d.llep { "on" } else { "off" },
                p.dropped_share * 100.0,
                p.tally.routed_pairs,
                p.tally.moved_pairs,
                p.tally.weight_bytes / 1e6
            )?;
        }
        Ok(())
    }
}
