//! `moesim plan`.

use std::path::PathBuf;

use clap::Args;
use indicatif::ProgressBar;

use crate::plan::{self, PlanSpec};
use crate::report;

/// Arguments of `moesim plan`.
#[derive(Debug, Args)]
#[command(
    after_help = "Plan TOML: a sweep file (see `moesim sweep --help`) with a [plan] table:
  scenario = \"qwen3-30b-a3b-serve.toml\"   # a scenario with [workload] and [serving]
  [grid]
  cluster = [\"dgx-h100\", \"hgx-h200\"]
  gpus = [1, 2, 4, 8]                      # the size axis, bisected per layout
  [plan]
  objective = \"cost_per_million_tokens\"  # or \"gpus\", \"throughput\" (tokens/s per GPU)
  scale = \"gpus\"                         # the size axis (default gpus)
  [plan.constraints]                       # all optional; no request may be rejected
  slo_attainment = 0.99
  ttft_p99_ms = 2000
  tpot_p99_ms = 100

Example:
  moesim plan reports/plan-example/plan.toml --out reports/plan-example/report"
)]
pub struct PlanArgs {
    /// The plan TOML.
    spec: PathBuf,
    /// Report folder (summary.json, points.parquet, pareto.parquet, report.md, index.html).
    #[arg(long, default_value = "reports/plan")]
    out: PathBuf,
}

impl PlanArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let spec = PlanSpec::load(&self.spec)?;
        report::check_replaceable(&self.out)?;
        let bar = ProgressBar::new(spec.sweep.points.len() as u64);
        let result = plan::plan(&spec, || bar.inc(1));
        bar.finish_and_clear();
        let result = result.map_err(|e| e.in_file(&self.spec))?;
        report::plan::write_plan_report(&spec, &result, &self.out)?;
        println!("{}", result.verdict);
        println!(
            "{} report: {}",
            report::plan::evaluated_line(&spec, &result),
            self.out.display()
        );
        Ok(())
    }
}
