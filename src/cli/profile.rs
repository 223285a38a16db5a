//! `moesim profile`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::profile::bench::Repetitions;
use crate::profile::session::{ProfileOptions, run_profile};

/// Arguments of `moesim profile`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  moesim profile --out reports/profile-h100\n  moesim profile --out /tmp/prof --reps 50 --sample-ms 5"
)]
pub struct ProfileArgs {
    /// Folder for measurements.parquet, counters.parquet and gpu.json.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// CUDA / NVML device index.
    #[arg(long, default_value_t = 0)]
    device: u32,
    /// Untimed runs before each benchmark point.
    #[arg(long, default_value_t = 3)]
    warmup: u32,
    /// Timed runs per benchmark point (the median is kept).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    reps: u32,
    /// NVML sample period in milliseconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    sample_ms: u64,
}

impl ProfileArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let options = ProfileOptions {
            device: self.device,
            reps: Repetitions {
                warmup: self.warmup,
                timed: self.reps,
            },
            sample_period: Duration::from_millis(self.sample_ms),
        };
        for file in run_profile(&self.out, options)? {
            println!("wrote {}", file.display());
        }
        Ok(())
    }
}
