//! `moesim trace ...`: routing trace subcommands.

mod concat;
mod convert;
mod fit;
mod import;
mod stats;
mod synth;
mod validate;

use clap::Subcommand;

/// Routing trace subcommands.
#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Import a trace from ExFlow/vLLM .npy, vLLM JSON, SGLang expert-distribution JSON or CSV
    /// into moesim's Parquet format.
    #[command(
        after_help = "Examples:\n  moesim trace import switch-base-32.trace.npy -o switch32.parquet --num-experts 32\n  moesim trace import expert_distribution.json -o loads.parquet --format sglang"
    )]
    Import(import::ImportArgs),
    /// Per-layer statistics: load imbalance (max/mean, CV, Gini, entropy), dead experts,
    /// inter-layer affinity, co-activation and LRU cache hit rates.
    #[command(
        after_help = "Examples:\n  moesim trace stats t.parquet\n  moesim trace stats t.parquet --json | jq '.layers[].max_mean'\n  moesim trace stats t.parquet --parquet stats.parquet"
    )]
    Stats(stats::StatsArgs),
    /// Generate a seeded synthetic trace (Zipf/Dirichlet skew, inter-layer affinity, drift,
    /// group-limited top-k), or extend a fitted one to any length.
    #[command(
        after_help = "Examples:\n  moesim trace synth --experts 64 --layers 16 --top-k 8 --tokens 100000 --zipf 1.1 -o t.parquet\n  moesim trace synth --params fit.toml --tokens 1000000 --seed 3 -o long.parquet"
    )]
    Synth(synth::SynthArgs),
    /// Fit the synthetic generator to a real trace, or to per-expert loads (then with the
    /// model's top-k); `trace synth --params` then reproduces it.
    #[command(
        after_help = "Examples:\n  moesim trace fit switch32.parquet -o switch32-fit.toml\n  moesim trace fit prefill_in1024.json --model deepseek-v3 -o prefill-fit.toml"
    )]
    Fit(fit::FitArgs),
    /// Join token-level traces one after the other (a workload switch), e.g. synthetic traces
    /// of two fitted workloads.
    #[command(
        after_help = "Example:\n  moesim trace concat prefill.parquet decode.parquet -o switch.parquet"
    )]
    Concat(concat::ConcatArgs),
    /// Check a trace: expert ids in range, no duplicate expert in a token's top-k, finite
    /// weights. Lists every violation with its row and column; exits 1 if there is any.
    #[command(
        after_help = "Examples:\n  moesim trace validate t.parquet --model mixtral-8x7b\n  moesim trace validate t.parquet --num-experts 64"
    )]
    Validate(validate::ValidateArgs),
    /// Convert a trace between formats (parquet, csv, npy in vLLM's layout, sglang JSON).
    #[command(
        after_help = "Examples:\n  moesim trace convert t.parquet -o t.csv\n  moesim trace convert t.parquet -o t.npy   # int16 [tokens, layers, top_k]"
    )]
    Convert(convert::ConvertArgs),
}

impl TraceCommand {
    /// Runs the subcommand.
    pub fn execute(self) -> anyhow::Result<()> {
        match self {
            TraceCommand::Import(args) => args.execute(),
            TraceCommand::Stats(args) => args.execute(),
            TraceCommand::Synth(args) => args.execute(),
            TraceCommand::Fit(args) => args.execute(),
            TraceCommand::Concat(args) => args.execute(),
            TraceCommand::Validate(args) => args.execute(),
            TraceCommand::Convert(args) => args.execute(),
        }
    }
}
