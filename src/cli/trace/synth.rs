//! `moesim trace synth`.

use std::path::PathBuf;

use clap::Args;

use crate::trace::parquet;
use crate::trace::synth::{self, GroupLimit, Skew, SynthParams};
use crate::trace::{MAX_EXPERTS, Trace};

/// Arguments of `moesim trace synth`. Either start from `--params` (a file written by
/// `trace fit`, or a hand-written one) or describe the generator with flags; flags given
/// together with `--params` override the file.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Generator parameters as TOML (e.g. from `moesim trace fit`).
    #[arg(long)]
    params: Option<PathBuf>,
    /// Where to write the trace (moesim Parquet).
    #[arg(short, long)]
    out: PathBuf,
    /// Number of tokens to generate.
    #[arg(long)]
    tokens: Option<usize>,
    /// Random seed; the same parameters and seed give the same trace.
    #[arg(long)]
    seed: Option<u64>,
    /// Routed experts per layer (without --params), 1 to 65536.
    #[arg(long, required_unless_present = "params", value_parser = experts_count)]
    experts: Option<usize>,
    /// MoE layers (without --params).
    #[arg(long, required_unless_present = "params", value_parser = at_least_one)]
    layers: Option<usize>,
    /// Experts per token (without --params).
    #[arg(long, required_unless_present = "params", value_parser = at_least_one)]
    top_k: Option<usize>,
    /// Zipf exponent of per-layer expert popularity (0 = uniform).
    #[arg(long, conflicts_with = "dirichlet", value_parser = non_negative)]
    zipf: Option<f64>,
    /// Dirichlet concentration of per-layer expert popularity (small = skewed), > 0.
    #[arg(long, value_parser = positive)]
    dirichlet: Option<f64>,
    /// Share of tokens whose next-layer expert follows the current expert's preferred successors.
    #[arg(long, value_parser = share)]
    affinity: Option<f64>,
    /// Popularity drift per drift period (0 = stationary), at most 1.
    #[arg(long, value_parser = share)]
    drift: Option<f64>,
    /// Group-limited routing as GROUPS:TOPK_GROUPS, e.g. 8:4 for DeepSeek-V3.
    #[arg(long, value_parser = parse_groups)]
    groups: Option<GroupLimit>,
}

/// A number of experts a trace can hold, 1 to 65536.
fn experts_count(text: &str) -> Result<usize, String> {
    let n = at_least_one(text)?;
    if n > MAX_EXPERTS {
        return Err(format!("must be at most {MAX_EXPERTS}"));
    }
    Ok(n)
}

/// A whole number of at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number >= 1".into()),
    }
}

/// A finite number `check` accepts, or the error `requirement`.
fn number_that(text: &str, check: fn(f64) -> bool, requirement: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|&v| v.is_finite() && check(v))
        .ok_or_else(|| format!("must be a finite number {requirement}"))
}

/// A finite number >= 0.
fn non_negative(text: &str) -> Result<f64, String> {
    number_that(text, |v| v >= 0.0, ">= 0")
}

/// A finite number > 0.
fn positive(text: &str) -> Result<f64, String> {
    number_that(text, |v| v > 0.0, "> 0")
}

/// A share, 0 to 1.
fn share(text: &str) -> Result<f64, String> {
    number_that(text, |v| (0.0..=1.0).contains(&v), "from 0 to 1")
}

/// `GROUPS:TOPK_GROUPS` as a group limit.
pub(super) fn parse_groups(text: &str) -> Result<GroupLimit, String> {
    let (groups, chosen) = text
        .split_once(':')
        .ok_or_else(|| format!("expected GROUPS:TOPK_GROUPS such as 8:4, got `{text}`"))?;
    let number = |s: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{s}` is not a whole number"))
    };
    Ok(GroupLimit {
        n_groups: number(groups)?,
        topk_groups: number(chosen)?,
    })
}

impl SynthArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let params = self.params()?;
        let trace = synth::synthesize(&params)?;
        let source = format!(
            "synthetic: moesim trace synth seed={} tokens={}",
            params.seed, params.num_tokens
        );
        parquet::write_trace(&self.out, &Trace::Tokens(trace), &source)?;
        eprintln!("wrote {}", self.out.display());
        Ok(())
    }

    /// The generator parameters: the file's (if any) with the flags applied on top.
    fn params(&self) -> anyhow::Result<SynthParams> {
        let mut params = match &self.params {
            Some(path) => SynthParams::load(path)?,
            None => SynthParams::default(),
        };
        if let Some(v) = self.experts {
            params.num_experts = v;
        }
        if let Some(v) = self.layers {
            params.num_layers = v;
        }
        if let Some(v) = self.top_k {
            params.top_k = v;
        }
        if let Some(v) = self.tokens {
            params.num_tokens = v;
        }
        if let Some(v) = self.seed {
            params.seed = v;
        }
        if let Some(exponent) = self.zipf {
            params.skew = Skew::Zipf { exponent };
        }
        if let Some(alpha) = self.dirichlet {
            params.skew = Skew::Dirichlet { alpha };
        }
        if let Some(v) = self.affinity {
            params.affinity = v;
        }
        if let Some(v) = self.drift {
            params.drift = v;
        }
        if let Some(groups) = self.groups {
            params.groups = Some(groups);
        }
        Ok(params)
    }
}
