//! `moesim compare`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::compare::{Thresholds, compare, load_metrics, render_json, render_markdown};

/// Arguments of `moesim compare`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 no metric regressed past its threshold, 1 one did, 2 bad input or usage.

Thresholds TOML (percent; `*` matches any run of characters, the most specific rule wins):
  default = 5.0
  [metrics]
  \"simulated.strategies.*.step_ns\" = 0.5
  \"trace.*\" = 0

Examples:
  moesim compare reports/baseline/quickstart reports/quickstart
  moesim compare old/summary.json new/summary.json --thresholds thresholds.toml --format json"
)]
pub struct CompareArgs {
    /// The baseline: a summary.json, or a results folder holding one.
    baseline: PathBuf,
    /// The run to judge: a summary.json, or a results folder holding one.
    current: PathBuf,
    /// Regression thresholds per metric (TOML); default: 5% for every metric.
    #[arg(long, value_name = "FILE")]
    thresholds: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    format: Format,
    /// List every metric in the Markdown table, the unchanged ones too.
    #[arg(long)]
    all: bool,
}

/// Output formats of `moesim compare`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// A sentence of counts and a table of the metrics that changed.
    Markdown,
    /// One JSON object with every metric.
    Json,
}

impl CompareArgs {
    /// Prints the comparison; exit 1 when a metric regressed, 2 (with one `error:` line) when
    /// an input cannot be read.
    pub fn execute(self) -> ExitCode {
        match self.report() {
            Ok(false) => ExitCode::SUCCESS,
            Ok(true) => ExitCode::from(1),
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::from(2)
            }
        }
    }

    /// Prints the comparison and returns whether a metric regressed.
    fn report(&self) -> anyhow::Result<bool> {
        let thresholds = match &self.thresholds {
            Some(path) => Thresholds::load(path)?,
            None => Thresholds::default(),
        };
        let baseline = load_metrics(&self.baseline)?;
        let current = load_metrics(&self.current)?;
        let comparison = compare(&baseline, &current, &thresholds);
        let (b, c) = (
            self.baseline.display().to_string(),
            self.current.display().to_string(),
        );
        let text = match self.format {
            Format::Markdown => render_markdown(&comparison, &b, &c, self.all),
            Format::Json => render_json(&comparison, &b, &c),
        };
        // A reader that stops early (`| head`) is not an error of the comparison.
        match std::io::stdout().lock().write_all(text.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(comparison.regressed()),
        }
    }
}
