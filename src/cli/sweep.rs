//! `moesim sweep` and `moesim sweep merge`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use indicatif::ProgressBar;

use crate::report;
use crate::sweep::{self, Shard, SweepSpec, SweepTable};

/// Arguments of `moesim sweep`.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Sweep TOML (axes are scenario fields by dotted path; values as in a scenario):
  scenario = \"quickstart.toml\"          # the base, relative to this file
  [grid]                                 # every combination (or [[points]] tables, one a point)
  tokens_per_gpu = [128, 256, 512]
  \"sim.overlap\" = [[\"none\"], [\"dual-batch\"]]

Examples:
  moesim sweep sweep.toml -o results.parquet --report reports/my-sweep
  moesim sweep sweep.toml -o part-1.parquet --shard 1/3     # points 1, 4, 7, ...
  moesim sweep merge -o results.parquet part-0.parquet part-1.parquet part-2.parquet"
)]
pub struct SweepArgs {
    #[command(subcommand)]
    command: Option<SweepCommand>,
    /// The sweep TOML.
    #[arg(required = true)]
    spec: Option<PathBuf>,
    /// Where to write the results table (Parquet: one row per point).
    #[arg(short, long, value_name = "FILE", required = true)]
    output: Option<PathBuf>,
    /// Run only shard i of n (0-based): the points whose index mod n is i.
    #[arg(long, value_name = "i/n", value_parser = parse_shard)]
    shard: Option<Shard>,
    /// Also write a report folder: report.md (verdict first), heatmaps of the headline metrics
    /// over two axes, the Pareto front of served points, index.html.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum SweepCommand {
    /// Merge the tables of a sweep's shards into the table of the whole sweep.
    Merge {
        /// The shards' tables.
        #[arg(required = true)]
        slices: Vec<PathBuf>,
        /// Where to write the merged table.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    text.parse()
}

impl SweepArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        if let Some(SweepCommand::Merge { slices, output }) = self.command {
            let tables = slices
                .iter()
                .map(|path| Ok((path.display().to_string(), SweepTable::read(path)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let merged = SweepTable::merge(tables)?;
            merged.write(&output)?;
            println!(
                "merged {} points into {}",
                merged.rows.len(),
                output.display()
            );
            return Ok(());
        }
        let (Some(spec_path), Some(output)) = (self.spec, self.output) else {
            anyhow::bail!("give a sweep TOML and -o FILE");
        };
        let spec = SweepSpec::load(&spec_path)?;
        if let Some(dir) = &self.report {
            report::check_replaceable(dir)?;
        }
        let shard = self.shard.unwrap_or(Shard::ALL);
        let start = std::time::Instant::now();
        let bar = ProgressBar::new(spec.points.len().div_ceil(shard.count) as u64);
        let table = sweep::run(&spec, shard, || bar.inc(1));
        bar.finish_and_clear();
        table.write(&output)?;
        if let Some(dir) = &self.report {
            report::sweep::write_sweep_report(&table, dir)?;
            println!("report: {}", dir.display());
        }
        let failed = table.rows.iter().filter(|r| r.outcome.is_err()).count();
        println!(
            "{} points ({} failed) in {:.1} s -> {}",
            table.rows.len(),
            failed,
            start.elapsed().as_secs_f64(),
            output.display()
        );
        Ok(())
    }
}
