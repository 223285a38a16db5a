//! `moesim run`.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::pipeline;
use crate::report;
use crate::scenario::{QUICKSTART_TOML, Scenario};

/// Arguments of `moesim run`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  moesim run scenarios/quickstart.toml\n  moesim run            # the built-in quickstart scenario, from the repository root\n  moesim run my.toml --out /tmp/report"
)]
pub struct RunArgs {
    /// Scenario TOML. Without it, the built-in copy of scenarios/quickstart.toml runs, with its
    /// paths taken relative to ./scenarios.
    scenario: Option<PathBuf>,
    /// Report folder (default: the scenario's `outputs.dir`, else reports/<name>).
    #[arg(long)]
    out: Option<PathBuf>,
}

impl RunArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let scenario = match &self.scenario {
            Some(path) => Scenario::load(path)?,
            None => Scenario::parse(QUICKSTART_TOML, Path::new("scenarios"))
                .map_err(|message| anyhow::anyhow!("built-in quickstart scenario: {message}"))?,
        };
        let dir = self.out.unwrap_or_else(|| scenario.output_dir());
        let result = pipeline::run(&scenario).map_err(|e| match &self.scenario {
            Some(path) => e.in_file(path),
            None => e,
        })?;
        let written = report::write_report(&result, &dir)?;
        for strategy in &result.strategies {
            println!(
                "{:<14} est. MoE step {:>9.3} ms   mean GPU max/mean {:.3}",
                strategy.name,
                strategy.step_ns as f64 / 1e6,
                strategy.mean_gpu_max_mean
            );
        }
        println!("report: {} ({} files)", dir.display(), written.len());
        if scenario.serving.is_some() {
            let serving = dir.join("serving");
            let result = super::serve::serve_into(&scenario, None, &serving).map_err(|e| {
                match &self.scenario {
                    Some(path) => e.in_file(path),
                    None => e,
                }
            })?;
            super::serve::print_summary(&result);
            println!("serving report: {}", serving.display());
        }
        Ok(())
    }
}
