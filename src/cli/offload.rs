//! `moesim offload`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use super::predict::{predictor_settings, read_trace};
use crate::model::MoeModel;
use crate::offload::cache::EVICTIONS;
use crate::offload::spec::GIB;
use crate::offload::{Mode, Offload, cache_for_budget, check_cache};
use crate::predict::PREDICTORS;
use crate::registry::Settings;
use crate::report::offload::write_offload_report;
use crate::topology::Cluster;

/// Arguments of `moesim offload`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  moesim offload t.parquet --model mixtral-8x7b --cluster rtx4090-host --cache 1,2,4,8 --out reports/offload\n  moesim offload t.parquet --model qwen1.5-moe-a2.7b --cluster h100-host --memory-gib 12,16,24 --eviction lfu --predictor oracle --accuracy 0.8 --out o"
)]
pub struct OffloadArgs {
    /// A token-level trace file, or a scenario TOML whose trace is read (or generated); its
    /// expert and MoE layer counts must be the model's.
    input: PathBuf,
    /// The model: a preset name or a HuggingFace config.json.
    #[arg(long)]
    model: String,
    /// The cluster: its first GPU decodes, its experts in host memory (e.g. rtx4090-host,
    /// l40s-host, h100-host).
    #[arg(long)]
    cluster: String,
    /// Experts cached per MoE layer, a comma-separated list (1 to the model's experts).
    #[arg(long, value_delimiter = ',', required_unless_present = "memory_gib")]
    cache: Vec<usize>,
    /// GPU memory budgets in GiB, a comma-separated list, instead of --cache: each caches as
    /// many experts per layer as fit beside the non-expert weights.
    #[arg(long, value_delimiter = ',', conflicts_with = "cache")]
    memory_gib: Vec<f64>,
    /// The eviction policy: lru, lfu or predicted.
    #[arg(long, default_value = "lru")]
    eviction: String,
    /// The expert predictor that chooses the prefetches (and the predicted eviction):
    /// transition, history or oracle.
    #[arg(long, default_value = "transition")]
    predictor: String,
    /// The oracle's accuracy: the probability each actual expert is predicted, in [0, 1].
    #[arg(long)]
    accuracy: Option<f64>,
    /// The oracle's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Share of the trace's tokens (the first ones) the predictor is fitted on and the cache
    /// warmed with, in (0, 1); decode runs over the rest.
    #[arg(long, default_value_t = 0.5)]
    fit_fraction: f64,
    /// Sequences decoded together: each step takes the next BATCH tokens of the trace.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Keys each decode token attends over (its context length).
    #[arg(long, default_value_t = 1024)]
    context: u64,
    /// At most this many decode steps.
    #[arg(long)]
    steps: Option<usize>,
    /// The report folder (replaced whole).
    #[arg(long)]
    out: PathBuf,
}

impl OffloadArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let settings = predictor_settings(self.fit_fraction, self.accuracy, self.seed)?;
        let eviction = || {
            EVICTIONS
                .build(&self.eviction, &Settings::new())
                .map_err(|e| anyhow::anyhow!("--eviction: {e}"))
        };
        let eviction_name = eviction()?.name;
        // Built once here so that a bad name or knob fails before the trace is read.
        PREDICTORS
            .build(&self.predictor, &settings)
            .map_err(|e| anyhow::anyhow!("--predictor: {e}"))?;
        let model = MoeModel::resolve(&self.model).context("--model")?;
        let cluster = Cluster::resolve(&self.cluster).context("--cluster")?;
        let trace = read_trace(&self.input)?;
        let fit_tokens = (trace.num_tokens() as f64 * self.fit_fraction).floor() as usize;
        let input = self.input.display().to_string();
        let offload = Offload::new(
            &model,
            &cluster,
            &trace,
            self.batch,
            self.context,
            fit_tokens,
            self.steps,
        )
        .with_context(|| format!("{input} with --model {}", self.model))?;
        let caches = if self.memory_gib.is_empty() {
            for &c in &self.cache {
                check_cache(&model, c, "cache").map_err(|e| anyhow::anyhow!("--cache: {e}"))?;
            }
            self.cache.clone()
        } else {
            self.memory_gib
                .iter()
                .map(|&gib| {
                    if !(gib > 0.0 && gib.is_finite()) {
                        bail!("--memory-gib {gib} must be a positive number");
                    }
                    cache_for_budget(&model, (gib * GIB) as u64, "cache")
                        .map_err(|e| anyhow::anyhow!("--memory-gib {gib}: {e}"))
                })
                .collect::<anyhow::Result<_>>()?
        };
        let mut caches = caches;
        caches.sort_unstable();
        caches.dedup();
        let mut runs = Vec::new();
        for mode in [Mode::OnDemand, Mode::Prefetch] {
            for &cache in &caches {
                // A fresh predictor per run: the oracle's draws do not depend on the runs before.
                let mut predictor = PREDICTORS
                    .build(&self.predictor, &settings)
                    .map_err(anyhow::Error::msg)?;
                predictor
                    .strategy
                    .fit(&trace, 0..fit_tokens)
                    .map_err(|e| anyhow::anyhow!("{input}: --predictor {e}"))?;
                runs.push(offload.run(cache, mode, eviction()?.strategy, predictor.strategy)?);
            }
        }
        let report = offload.report(cluster.name(), eviction_name, &self.predictor, runs);
        write_offload_report(&report, &self.out)?;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{} on {}: expert {:.1} MB, one copy {:.2} ms over {} GB/s; batch {}, {} decode tokens",
            report.model,
            report.cluster,
            report.expert_bytes as f64 / 1e6,
            report.copy_ns as f64 / 1e6,
            report.pcie_gbps,
            report.batch,
            report.runs[0].tokens
        )?;
        writeln!(
            out,
            "{:>10} {:>6} {:>8} {:>9} {:>7} {:>10} {:>11}",
            "mode", "cache", "hit", "tokens/s", "stall", "PCIe GB", "fits memory"
        )?;
        for r in &report.runs {
            writeln!(
                out,
                "{:>10} {:>6} {:>7.1}% {:>9.2} {:>6.1}% {:>10.1} {:>11}",
                r.mode.name(),
                r.cache,
                r.copies.hit_rate * 100.0,
                r.tokens_per_s,
                r.stall_share * 100.0,
                (r.copies.demand_bytes + r.copies.prefetch_bytes) as f64 / 1e9,
                if r.fits_memory { "yes" } else { "no" }
            )?;
        }
        writeln!(out, "wrote {}", self.out.display())?;
        Ok(())
    }
}
