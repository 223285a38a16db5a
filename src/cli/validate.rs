//! `moesim validate`.

use std::path::PathBuf;

use clap::Args;

use crate::profile::counters::read_pcie_counters;
use crate::profile::validate::{TARGET_MAPE_PCT, validate, write_validation};
use crate::profile::{Calibration, Measurements};

/// Arguments of `moesim validate`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  moesim validate --measurements prof/measurements.parquet --calibration calibration.toml -o reports/validation"
)]
pub struct ValidateArgs {
    /// measurements.parquet written by `moesim profile`.
    #[arg(long, value_name = "FILE")]
    measurements: PathBuf,
    /// Calibration TOML written by `moesim calibrate`.
    #[arg(long, value_name = "FILE")]
    calibration: PathBuf,
    /// NVML counters to check PCIe bandwidth against; default: counters.parquet next to the
    /// measurements, when present.
    #[arg(long, value_name = "FILE")]
    counters: Option<PathBuf>,
    /// Folder for validation.md, validation.json and the charts.
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// Exit 1 (after writing the report) when the held-out MAPE exceeds this percentage.
    #[arg(long, value_name = "PCT")]
    max_mape: Option<f64>,
}

impl ValidateArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let measurements = Measurements::read_parquet(&self.measurements)?;
        let calibration = Calibration::load(&self.calibration)?;
        let beside = self.measurements.with_file_name("counters.parquet");
        let counters = match &self.counters {
            Some(path) => Some(read_pcie_counters(path)?),
            None if beside.is_file() => Some(read_pcie_counters(&beside)?),
            None => None,
        };
        let validation = validate(&measurements, calibration, counters.as_deref())?;
        let files = write_validation(&validation, &self.output)?;
        println!(
            "held-out MAPE: {:.2}% over {} points (target <= {TARGET_MAPE_PCT}%){}",
            validation.mape_pct,
            validation.points.len(),
            if validation.source == "synthetic" {
                "; SYNTHETIC measurements"
            } else {
                ""
            }
        );
        for summary in &validation.kinds {
            println!(
                "  {:<9} {:>4} points  MAPE {:.2}%",
                summary.kind.name(),
                summary.points,
                summary.mape_pct
            );
        }
        println!("wrote {} files to {}", files.len(), self.output.display());
        match self.max_mape {
            Some(limit) if validation.mape_pct > limit => anyhow::bail!(
                "held-out MAPE {:.2}% exceeds --max-mape {limit}%",
                validation.mape_pct
            ),
            _ => Ok(()),
        }
    }
}
