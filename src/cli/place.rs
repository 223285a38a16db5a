//! `moesim place` (fit a placement to a trace) and `moesim place eval` (judge one on a trace).
//!
//! Held-out evaluation: `place --fit-fraction F` fits on the first `floor(F x tokens)` tokens of
//! a token-level trace and `place eval --skip-fraction F` evaluates on the tokens from
//! `floor(F x tokens)` on, so the same `F` on both splits the trace into disjoint parts;
//! `place eval --first-fraction F` evaluates on the fitted part itself (in-sample).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::model::MoeModel;
use crate::pipeline::Setup;
use crate::pipeline::evaluate::{
    PlacementReport, SimulatedStep, evaluate_placement, judge_placement,
};
use crate::placement::evaluate::{EvalContext, evaluate};
use crate::placement::export::{ExportFormat, check_target, read_placement, write_placement};
use crate::placement::holdout::{TokenPart, token_part};
use crate::placement::{
    ExpertMemory, MAX_GPUS, MAX_SLOTS, PlacementRequest, STRATEGIES, slots_per_gpu_for,
};
use crate::registry::Settings;
use crate::scenario::Scenario;
use crate::topology::Cluster;
use crate::trace::{self, Trace};

const PLACE_EXAMPLES: &str = "\
Examples:
  moesim place --trace prefill_in1024.json --strategy eplb --gpus 32 --nodes 4 --slots 288 --groups 8 -o eplb.json
  moesim place --trace switch128.parquet --strategy round-robin --gpus 8 --fit-fraction 0.5 -o rr.json
  moesim place --trace loads.json --strategy eplb --gpus 32 --slots 288 --model deepseek-v3 --format sglang -o expert_location.json
  moesim place eval --placement eplb.json --trace prefill_in4096.json --json";

/// Arguments of `moesim place` and its `eval` subcommand.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = PLACE_EXAMPLES
)]
pub struct PlaceArgs {
    #[command(subcommand)]
    command: Option<PlaceCommand>,
    #[command(flatten)]
    fit: FitArgs,
}

/// `moesim place` subcommands.
#[derive(Debug, Subcommand)]
enum PlaceCommand {
    /// Evaluate a placement on a trace: per-layer GPU loads and max/mean, cross-GPU and
    /// cross-node transition fractions, memory, all-to-all bytes per link and step time.
    #[command(
        after_help = "Examples:\n  moesim place eval --placement eplb.json --trace prefill_in4096.json\n  moesim place eval --placement rr.json --trace switch128.parquet --skip-fraction 0.5 --json\n  moesim place eval --placement eplb.json --trace loads.json --model deepseek-v3 --cluster hgx-h800x4\n  moesim place eval --placement eplb.json --trace loads.json --scenario my.toml"
    )]
    Eval(EvalArgs),
}

/// Fitting a placement.
#[derive(Debug, Args)]
struct FitArgs {
    /// Trace to fit on (moesim Parquet, or any format `trace import` reads).
    #[arg(long, required = true)]
    trace: Option<PathBuf>,
    /// Placement strategy (contiguous, round-robin, eplb, and any other registered name).
    #[arg(long, required = true)]
    strategy: Option<String>,
    /// GPUs to place onto (1 to 1,048,576).
    #[arg(long, required = true, value_parser = count_up_to(MAX_GPUS))]
    gpus: Option<usize>,
    /// Machines the GPUs span, consecutively [default: the cluster's count for these GPUs, else 1].
    #[arg(long)]
    nodes: Option<usize>,
    /// Physical expert slots over all GPUs, a multiple of --gpus, at most 16,777,216 [default:
    /// one per expert, rounded up to a multiple of --gpus].
    #[arg(long, value_parser = count_up_to(MAX_SLOTS))]
    slots: Option<usize>,
    /// Expert groups [default: the model's, else 1].
    #[arg(long)]
    groups: Option<usize>,
    /// Model (preset or HF config.json): expert groups and weight bytes for the memory check.
    #[arg(long)]
    model: Option<String>,
    /// Cluster (preset or TOML): node count and GPU memory for the memory check.
    #[arg(long)]
    cluster: Option<String>,
    /// ilp-balance / ilp-affinity / topology-aware: time limit for the whole solve, in seconds
    /// [default: 60].
    #[arg(long, value_name = "S")]
    time_limit: Option<f64>,
    /// ilp-affinity / topology-aware: cap every GPU's token load at R times a perfect split
    /// (raised to a balanced packing's peak where that is higher; `inf`: no cap) [default: 2].
    #[arg(long, value_name = "R")]
    max_load_ratio: Option<f64>,
    /// ilp-affinity / topology-aware: transitions one token of a layer's peak GPU load is worth
    /// in the objective [default: 0.3].
    #[arg(long, value_name = "W")]
    load_weight: Option<f64>,
    /// ilp-balance: weight of the expected cross-node tokens (tokens start evenly on the
    /// machines and use a local replica when there is one) next to the peak GPU load in the
    /// objective [default: 0, balance only].
    #[arg(long, value_name = "W")]
    comm_weight: Option<f64>,
    /// Fit on the first F of the trace's tokens (token-level traces), 0 < F <= 1.
    #[arg(long, value_name = "F")]
    fit_fraction: Option<f64>,
    /// Output layout: moesim JSON (for `place eval`) or SGLang's `--init-expert-location` file
    /// (needs --model and a .json output).
    #[arg(long, value_enum, default_value = "moesim")]
    format: ExportFormat,
    /// Where to write the placement.
    #[arg(short = 'o', long = "out", required = true)]
    out: Option<PathBuf>,
}

/// Evaluating a placement.
#[derive(Debug, Args)]
struct EvalArgs {
    /// A placement written by `moesim place` (moesim JSON).
    #[arg(long)]
    placement: PathBuf,
    /// Trace to evaluate on.
    #[arg(long)]
    trace: PathBuf,
    /// Model (preset or HF config.json): adds memory per GPU and, with --cluster, step time.
    #[arg(long, conflicts_with = "scenario")]
    model: Option<String>,
    /// Cluster (preset or TOML) whose first GPUs hold the placement: adds cross-node
    /// fractions, bytes per link and, with --model, step time.
    #[arg(long, conflicts_with = "scenario")]
    cluster: Option<String>,
    /// Price the steps with this scenario's model, cluster, steps (tokens per GPU, schedule),
    /// activation precision and [sim] settings (calibration included) instead of --model,
    /// --cluster and --tokens-per-gpu with default settings; the trace is still --trace.
    #[arg(long, value_name = "S")]
    scenario: Option<PathBuf>,
    /// Skip the first F of the trace's tokens (evaluate on the held-out rest), 0 <= F < 1.
    #[arg(long, value_name = "F", conflicts_with = "first_fraction")]
    skip_fraction: Option<f64>,
    /// Evaluate on the first F of the trace's tokens only (the in-sample part of a
    /// `place --fit-fraction F` fit), 0 < F <= 1.
    #[arg(long, value_name = "F")]
    first_fraction: Option<f64>,
    /// Tokens each GPU contributes to one step of the step times.
    #[arg(long, default_value_t = 256, conflicts_with = "scenario")]
    tokens_per_gpu: usize,
    /// Print one JSON object (with a `layers` array) instead of the table.
    #[arg(long)]
    json: bool,
}

impl PlaceArgs {
    /// Runs `place` or `place eval`.
    pub fn execute(self) -> anyhow::Result<()> {
        match self.command {
            Some(PlaceCommand::Eval(args)) => args.execute(),
            None => self.fit.execute(),
        }
    }
}

impl FitArgs {
    fn execute(self) -> anyhow::Result<()> {
        // clap enforces these when no subcommand is given.
        let (Some(trace_path), Some(name), Some(gpus), Some(out)) =
            (&self.trace, &self.strategy, self.gpus, &self.out)
        else {
            bail!("--trace, --strategy, --gpus and -o are required");
        };
        let strategy = STRATEGIES
            .build(name, &self.strategy_settings()?)
            .map_err(|message| anyhow::anyhow!(flag_names(message)))?;
        let trace = load_part(trace_path, self.fit_fraction.map(TokenPart::First))?;
        let model = self.model.as_deref().map(MoeModel::resolve).transpose()?;
        check_target(out, self.format, model.as_ref())?;
        let cluster = self.cluster.as_deref().map(Cluster::resolve).transpose()?;
        let loads = trace.expert_loads();
        let slots = self
            .slots
            .unwrap_or_else(|| loads.num_experts().div_ceil(gpus.max(1)) * gpus);
        let nodes = match (self.nodes, &cluster) {
            (Some(nodes), _) => nodes,
            (None, Some(cluster)) => gpus.div_ceil(cluster.gpus_per_node()),
            (None, None) => 1,
        };
        let slots_per_gpu = slots_per_gpu_for(slots, gpus)?;
        let memory = match (&model, &cluster) {
            (Some(model), Some(cluster)) => Some(ExpertMemory {
                // One slot holds an expert in every layer of the placement.
                expert_weight_bytes: model.expert_weight_bytes() * loads.num_layers() as u64,
                gpu_capacity_bytes: cluster.gpu_spec(0).memory_bytes,
            }),
            _ => None,
        };
        let request = PlacementRequest {
            slots_per_gpu,
            num_nodes: nodes,
            num_groups: self
                .groups
                .or(model.as_ref().map(|m| m.num_expert_groups))
                .unwrap_or(1),
            memory,
            transitions: trace.tokens(),
            cluster: cluster.as_ref(),
            ..PlacementRequest::new(&loads, gpus)
        };
        let placement = strategy.place(&request)?;
        write_placement(
            out,
            &placement,
            Some(strategy.name),
            self.format,
            model.as_ref(),
        )?;
        let fitted = evaluate(&placement, &trace, EvalContext::bare())?;
        println!(
            "{}: {} layers x {} experts on {gpus} GPUs x {slots_per_gpu} slots; fitted mean GPU \
             max/mean {:.3}; wrote {}",
            strategy.name,
            placement.num_layers(),
            placement.num_experts(),
            fitted.summary.mean_max_mean,
            out.display()
        );
        Ok(())
    }

    /// The strategy knobs given as flags, as a settings table.
    fn strategy_settings(&self) -> anyhow::Result<Settings> {
        let mut settings = Settings::new();
        for (key, value) in [
            ("time_limit_s", self.time_limit),
            ("max_load_ratio", self.max_load_ratio),
            ("load_weight", self.load_weight),
            ("comm_weight", self.comm_weight),
        ] {
            if let Some(value) = value {
                settings.insert(key.into(), toml::Value::Float(value));
            }
        }
        Ok(settings)
    }
}

/// A strategy's complaint about a knob it does not have, with the knob named by its flag.
fn flag_names(message: String) -> String {
    let flags = [
        ("time_limit_s", "--time-limit"),
        ("max_load_ratio", "--max-load-ratio"),
        ("load_weight", "--load-weight"),
        ("comm_weight", "--comm-weight"),
    ];
    match flags
        .iter()
        .find(|(key, _)| message.contains(&format!("unknown field `{key}`")))
    {
        Some((_, flag)) => format!(
            "{flag} does not apply: {}",
            message.split(": unknown field").next().unwrap_or(&message)
        ),
        None => flags.iter().fold(message, |m, (key, flag)| {
            m.replace(&format!("`{key}`"), &format!("`{flag}`"))
        }),
    }
}

impl EvalArgs {
    fn execute(self) -> anyhow::Result<()> {
        let document = read_placement(&self.placement)?;
        let placement = &document.placement;
        let part = self
            .skip_fraction
            .map(TokenPart::Rest)
            .or(self.first_fraction.map(TokenPart::First));
        let trace = load_part(&self.trace, part)?;
        let report = match self.scenario(placement.num_gpus())? {
            Some(scenario) => {
                let source = self.trace.display().to_string();
                let in_scenario = |e: crate::Error| match &self.scenario {
                    Some(path) => e.in_file(path),
                    None => e,
                };
                let setup = Setup::new(&scenario, trace, source).map_err(in_scenario)?;
                evaluate_placement(placement, &setup)
                    .with_context(|| format!("evaluating {}", self.placement.display()))?
            }
            None => {
                let model = self.model.as_deref().map(MoeModel::resolve).transpose()?;
                let cluster = match self.cluster.as_deref() {
                    Some(name) => Some(Cluster::resolve(name)?.first_gpus(placement.num_gpus())?),
                    None => None,
                };
                let context = EvalContext {
                    model: model.as_ref(),
                    cluster: cluster.as_ref(),
                };
                judge_placement(placement, &trace, context)
                    .with_context(|| format!("evaluating {}", self.placement.display()))?
            }
        };
        let mut stdout = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer(&mut stdout, &report)?;
            writeln!(stdout)?;
        } else {
            write!(stdout, "{}", table(&report))?;
            if let Some(steps) = &report.simulated {
                write!(stdout, "{}", simulated_lines(&report, steps))?;
            }
        }
        Ok(())
    }

    /// The scenario the steps are priced with: `--scenario`, or `--model` and `--cluster` with
    /// `--tokens-per-gpu` and default settings; `None` without either. Its expert-parallel
    /// group is the placement's `gpus` GPUs.
    fn scenario(&self, gpus: usize) -> anyhow::Result<Option<Scenario>> {
        let scenario = match (&self.scenario, &self.model, &self.cluster) {
            (Some(path), _, _) => Scenario::load(path)?,
            (None, Some(model), Some(cluster)) => {
                Scenario::for_placement_eval(model, cluster, self.tokens_per_gpu, &self.trace)
            }
            _ => return Ok(None),
        };
        if let (Some(path), Some(wanted)) = (&self.scenario, scenario.gpus)
            && wanted != gpus
        {
            bail!(
                "{}: `gpus` = {wanted} but the placement {} has {gpus} GPUs",
                path.display(),
                self.placement.display()
            );
        }
        Ok(Some(Scenario {
            gpus: Some(gpus),
            ..scenario
        }))
    }
}

/// A flag's count, 1 to `max`: the work behind it grows with the count.
fn count_up_to(max: usize) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync {
    move |text| match text.parse::<usize>() {
        Ok(count) if (1..=max).contains(&count) => Ok(count),
        _ => Err(format!("expected a whole number from 1 to {max}")),
    }
}

/// Loads `path`, keeping only `part` of its tokens when given; errors name the file.
fn load_part(path: &Path, part: Option<TokenPart>) -> anyhow::Result<Trace> {
    let trace = trace::load(path)?;
    match part {
        Some(part) => Ok(token_part(&trace, part).with_context(|| path.display().to_string())?),
        None => Ok(trace),
    }
}

/// The analytical step (the layers' sum) and the simulated one per overlap strategy.
fn simulated_lines(report: &PlacementReport, steps: &[SimulatedStep]) -> String {
    let analytical_ns: u64 = report.layers.iter().filter_map(|l| l.step_ns).sum();
    let mut out = format!(
        "step time, all layers, mean of {} step(s): analytical {:.1} us",
        report.steps.unwrap_or(0),
        analytical_ns as f64 / 1e3
    );
    for step in steps {
        out += &format!(
            "; simulated {} {:.1} us",
            step.overlap,
            step.step_ns as f64 / 1e3
        );
    }
    out + "\n"
}

/// The evaluation as a readable table, one row per layer, then the totals.
fn table(report: &PlacementReport) -> String {
    let fmt = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.4}"));
    let mut out = format!(
        "{:>5}  {:>8}  {:>9}  {:>10}  {:>11}  {:>12}  {:>10}\n",
        "layer", "max/mean", "cross-gpu", "cross-node", "busiest gpu", "peak mem MiB", "step us"
    );
    for row in &report.layers {
        let layer = &row.placement;
        let busiest = layer.gpu_loads.iter().copied().fold(0.0, f64::max);
        out += &format!(
            "{:>5}  {:>8.3}  {:>9}  {:>10}  {:>11.0}  {:>12}  {:>10}\n",
            layer.layer,
            layer.max_mean,
            fmt(layer.cross_gpu_fraction),
            fmt(layer.cross_node_fraction),
            busiest,
            layer
                .peak_memory_bytes
                .map_or("-".to_string(), |b| format!("{:.1}", b as f64 / 1048576.0)),
            row.step_ns
                .map_or("-".to_string(), |ns| format!("{:.1}", ns as f64 / 1e3)),
        );
    }
    out += &format!(
        "mean max/mean over loaded layers {:.4}; cross-GPU fraction {}\n",
        report.summary.mean_max_mean,
        fmt(report.summary.cross_gpu_fraction)
    );
    out
}
