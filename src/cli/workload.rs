//! `moesim workload`.

use std::path::PathBuf;

use clap::Args;

use crate::workload::plain::write_requests;
use crate::workload::spec::WorkloadSpec;

/// Arguments of `moesim workload`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  moesim workload scenarios/workloads/gamma.toml -o requests.csv\n  moesim workload scenarios/workloads/azure-replay.toml -o requests.csv"
)]
pub struct WorkloadArgs {
    /// TOML file with a `[workload]` table (synthetic or `[workload.replay]`).
    spec: PathBuf,
    /// Where to write the requests as plain CSV (`arrival_s,input_tokens,output_tokens`).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

impl WorkloadArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let spec = WorkloadSpec::load(&self.spec)?;
        let requests = spec.open().map_err(|e| e.in_file(&self.spec))?;
        let summary = write_requests(&self.output, requests).map_err(|e| e.in_file(&self.spec))?;
        println!("{summary}");
        println!("wrote {}", self.output.display());
        Ok(())
    }
}
