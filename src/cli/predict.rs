//! `moesim predict`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use crate::predict::PREDICTORS;
use crate::predict::evaluate::evaluate;
use crate::registry::Settings;
use crate::scenario::{Scenario, TraceSource};
use crate::trace::{self, RoutingTrace, Trace};

/// Arguments of `moesim predict`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  moesim predict scenarios/switch-base-128-replay.toml --predictor transition\n  moesim predict t.parquet --predictor history --fit-fraction 0.2 --json\n  moesim predict t.parquet --predictor oracle --accuracy 0.8 --seed 3"
)]
pub struct PredictArgs {
    /// A token-level trace file, or a scenario TOML whose trace is read (or generated).
    input: PathBuf,
    /// The predictor: transition, history or oracle.
    #[arg(long)]
    predictor: String,
    /// Share of the trace's tokens (the first ones) the predictor is fitted on, in (0, 1); it
    /// is judged on the rest.
    #[arg(long, default_value_t = 0.5)]
    fit_fraction: f64,
    /// The oracle's accuracy: the probability each actual expert is predicted, in [0, 1].
    #[arg(long)]
    accuracy: Option<f64>,
    /// The oracle's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Print the report as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

impl PredictArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let settings = predictor_settings(self.fit_fraction, self.accuracy, self.seed)?;
        let mut predictor = PREDICTORS
            .build(&self.predictor, &settings)
            .map_err(anyhow::Error::msg)?;
        let trace = read_trace(&self.input)?;
        let report = evaluate(
            predictor.name,
            predictor.strategy.as_mut(),
            &trace,
            self.fit_fraction,
        )
        .map_err(anyhow::Error::msg)
        .with_context(|| self.input.display().to_string())?;
        // Written with errors returned, not panics, so a closed pipe (`| head`) ends quietly.
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        } else {
            write!(out, "{report}")?;
        }
        Ok(())
    }
}

/// The token-level trace of a trace file or of a scenario.
pub(super) fn read_trace(input: &Path) -> anyhow::Result<RoutingTrace> {
    let loaded = if input.extension().is_some_and(|e| e == "toml") {
        let scenario = Scenario::load(input)?;
        match scenario.trace {
            TraceSource::File(file) => trace::load(&file)?,
            TraceSource::Synth(params) => Trace::Tokens(trace::synth::synthesize(&params)?),
        }
    } else {
        trace::load(input)?
    };
    match loaded {
        Trace::Tokens(tokens) => Ok(tokens),
        Trace::Loads(_) => bail!(
            "{}: the trace holds only expert loads; a predictor needs a token-level trace",
            input.display()
        ),
    }
}

/// The predictor's settings from `--accuracy` and `--seed`, once `--fit-fraction` is checked
/// to lie strictly between 0 and 1.
pub(super) fn predictor_settings(
    fit_fraction: f64,
    accuracy: Option<f64>,
    seed: Option<u64>,
) -> anyhow::Result<Settings> {
    if !(fit_fraction > 0.0 && fit_fraction < 1.0) {
        bail!("--fit-fraction {fit_fraction} must be strictly between 0 and 1");
    }
    crate::predict::settings(accuracy, seed).map_err(|e| anyhow::anyhow!("--seed: {e}"))
}
