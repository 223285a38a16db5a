//! `moesim speculate`.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use crate::pipeline::speculation::sweep;
use crate::report::speculation::write_speculation;
use crate::scenario::Scenario;

/// Arguments of `moesim speculate`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  moesim speculate scenarios/switch-base-128-speculation.toml --clusters dgx-h100,pcie-l40s,hgx-h800x4 --out reports/speculation-example/switch-base-128"
)]
pub struct SpeculateArgs {
    /// Scenario TOML; its `[speculation]` predictor is compared too (default: the oracle only).
    scenario: PathBuf,
    /// Clusters to run on, all their GPUs (default: the scenario's).
    #[arg(long, value_delimiter = ',')]
    clusters: Vec<String>,
    /// Oracle accuracies to sweep, ascending, each in [0, 1].
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1"
    )]
    accuracies: Vec<f64>,
    /// Report folder (replaced whole).
    #[arg(long)]
    out: PathBuf,
}

impl SpeculateArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let a = &self.accuracies;
        if a.is_empty()
            || a.iter().any(|x| !(0.0..=1.0).contains(x))
            || a.windows(2).any(|w| w[0] >= w[1])
        {
            bail!("--accuracies must be ascending values between 0 and 1");
        }
        let scenario = Scenario::load(&self.scenario)?;
        let clusters = if self.clusters.is_empty() {
            vec![scenario.cluster.clone()]
        } else {
            self.clusters.clone()
        };
        let result = sweep(&scenario, &clusters, a).map_err(|e| e.in_file(&self.scenario))?;
        let command = format!(
            "moesim speculate {} --clusters {} --accuracies {} --out {}",
            self.scenario.display(),
            clusters.join(","),
            a.iter().map(f64::to_string).collect::<Vec<_>>().join(","),
            self.out.display()
        );
        write_speculation(&self.out, &result, &command)?;
        println!("{}", self.out.join("report.md").display());
        Ok(())
    }
}
