//! `moesim trace fit`.

use std::path::PathBuf;

use clap::Args;

use crate::analysis::{fit, fit_loads};
use crate::error::Error;
use crate::model::MoeModel;
use crate::trace::synth::GroupLimit;
use crate::trace::{self, Trace};

use super::synth::parse_groups;

/// Arguments of `moesim trace fit`.
#[derive(Debug, Args)]
pub struct FitArgs {
    /// A token-level trace, or per-expert loads (an SGLang expert-distribution dump or a loads
    /// Parquet), in Parquet or any importable format.
    trace: PathBuf,
    /// Where to write the fitted generator parameters (TOML, for `trace synth --params`).
    #[arg(short, long)]
    out: PathBuf,
    /// Loads only: experts per token of the model that recorded them.
    #[arg(long)]
    top_k: Option<usize>,
    /// Loads only: the model that recorded them (preset name or config.json), for its top-k
    /// and expert-group limit; --top-k and --groups override them.
    #[arg(long)]
    model: Option<String>,
    /// Loads only: group-limited routing as GROUPS:TOPK_GROUPS, e.g. 8:4 for DeepSeek-V3.
    #[arg(long, value_parser = parse_groups)]
    groups: Option<GroupLimit>,
}

impl FitArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let loaded = trace::load(&self.trace)?;
        let params = match &loaded {
            Trace::Tokens(routing) => {
                if self.top_k.is_some() || self.model.is_some() || self.groups.is_some() {
                    anyhow::bail!(
                        "{}: a token-level trace gives its own top-k and routing; --top-k, \
                         --model and --groups are for per-expert loads",
                        self.trace.display()
                    );
                }
                fit::fit(routing)?
            }
            Trace::Loads(loads) => {
                let (top_k, groups) = self.routing(loads.num_experts())?;
                let fitted = fit_loads::fit_loads(loads, top_k, groups)
                    .map_err(|e| e.in_file(&self.trace))?;
                if !fitted.dropped_layers.is_empty() {
                    eprintln!(
                        "{}: dropped {} all-zero (dense) layer(s) {:?}; fitted {} MoE layers",
                        self.trace.display(),
                        fitted.dropped_layers.len(),
                        fitted.dropped_layers,
                        fitted.params.num_layers
                    );
                }
                eprintln!(
                    "layers are independent (loads carry no inter-layer routing); expected \
                     per-expert shares within {:.2}% of the recorded ones",
                    100.0 * fitted.worst_share_error
                );
                fitted.params
            }
        };
        params.save(&self.out)?;
        eprintln!("wrote {}", self.out.display());
        Ok(())
    }

    /// Top-k and group limit for a loads fit: the flags, else the model's, else an error naming
    /// the flags and the file.
    fn routing(&self, experts: usize) -> anyhow::Result<(usize, Option<GroupLimit>)> {
        let model = self
            .model
            .as_deref()
            .map(|spec| {
                let model = MoeModel::resolve(spec)
                    .map_err(|e| Error::invalid(format!("--model: {e}")).in_file(&self.trace))?;
                if model.num_experts != experts {
                    anyhow::bail!(
                        "{}: holds loads of {experts} experts per layer but --model {spec} has {}",
                        self.trace.display(),
                        model.num_experts
                    );
                }
                Ok(model)
            })
            .transpose()?;
        let top_k = match (self.top_k, &model) {
            (Some(k), _) => k,
            (None, Some(model)) => model.top_k,
            (None, None) => anyhow::bail!(
                "{}: holds per-expert loads only; fitting them needs the model's top-k: pass \
                 --top-k K or --model M",
                self.trace.display()
            ),
        };
        let groups = self.groups.or_else(|| {
            model
                .filter(|m| m.num_expert_groups > 1 && m.topk_groups < m.num_expert_groups)
                .map(|m| GroupLimit {
                    n_groups: m.num_expert_groups,
                    topk_groups: m.topk_groups,
                })
        });
        Ok((top_k, groups))
    }
}
