//! `moesim calibrate`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::profile::{Calibration, FitHalf, Measurements};

/// The half of the shapes to fit, as the command line names it.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum HalfArg {
    /// Shapes 0, 2, 4, ... of each kind.
    Even,
    /// Shapes 1, 3, 5, ...
    Odd,
    /// Every shape (nothing held out for validation).
    All,
}

/// Arguments of `moesim calibrate`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  moesim calibrate --measurements prof/measurements.parquet -o calibration.toml\n  moesim calibrate --measurements prof/measurements.parquet -o cal-odd.toml --fit-half odd"
)]
pub struct CalibrateArgs {
    /// measurements.parquet written by `moesim profile`.
    #[arg(long, value_name = "FILE")]
    measurements: PathBuf,
    /// Calibration TOML to write.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Which half of the shapes (sorted, alternating) to fit; the other is for `validate`.
    #[arg(long, value_enum, default_value = "even")]
    fit_half: HalfArg,
}

impl CalibrateArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let measurements = Measurements::read_parquet(&self.measurements)?;
        let half = match self.fit_half {
            HalfArg::Even => FitHalf::Even,
            HalfArg::Odd => FitHalf::Odd,
            HalfArg::All => FitHalf::All,
        };
        let calibration = Calibration::fit(&measurements, half)?;
        calibration.save(&self.output)?;
        println!(
            "wrote {}: {} GEMM shapes, {} copy kinds fitted ({:?} half) from {} ({})",
            self.output.display(),
            calibration.gemm.len(),
            calibration.copy.len(),
            half,
            measurements.provenance.gpu,
            measurements.provenance.source
        );
        Ok(())
    }
}
