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

use crate::cost::analytical::CostOptions;
use crate::model::MoeModel;
use crate::placement::evaluate::{EvalContext, Evaluation, evaluate};
use crate::placement::export::{ExportFormat, check_target, read_placement, write_placement};
use crate::placement::holdout::{TokenPart, token_part};
use crate::placement::simulated::{SimulatedStep, SimulationInput, simulate_placement};
use crate::placement::{self, ExpertMemory, PlacementRequest, slots_per_gpu_for};
use crate::sim::SimConfig;
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
        after_help = "Examples:\n  moesim place eval --placement eplb.json --trace prefill_in4096.json\n  moesim place eval --placement rr.json --trace switch128.parquet --skip-fraction 0.5 --json\n  moesim place eval --placement eplb.json --trace loads.json --model deepseek-v3 --cluster hgx-h800x4"
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
    /// GPUs to place onto.
    #[arg(long, required = true)]
    gpus: Option<usize>,
    /// Machines the GPUs span, consecutively [default: the cluster's count for these GPUs, else 1].
    #[arg(long)]
    nodes: Option<usize>,
    /// Physical expert slots over all GPUs, a multiple of --gpus [default: one per expert,
    /// rounded up to a multiple of --gpus].
    #[arg(long)]
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
    /// Time limit for solver-based strategies, in seconds.
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
    #[arg(long)]
    model: Option<String>,
    /// Cluster (preset or TOML) with the placement's GPU count: adds cross-node fractions,
    /// bytes per link and, with --model, step time.
    #[arg(long)]
    cluster: Option<String>,
    /// Skip the first F of the trace's tokens (evaluate on the held-out rest), 0 <= F < 1.
    #[arg(long, value_name = "F", conflicts_with = "first_fraction")]
    skip_fraction: Option<f64>,
    /// Evaluate on the first F of the trace's tokens only (the in-sample part of a
    /// `place --fit-fraction F` fit), 0 < F <= 1.
    #[arg(long, value_name = "F")]
    first_fraction: Option<f64>,
    /// Tokens each GPU contributes to one step of the step-time estimate.
    #[arg(long, default_value_t = 256)]
    tokens_per_gpu: usize,
    /// Print one JSON object (with a `layers` array) instead of the table.
    #[arg(long)]
    json: bool,
}

/// `place eval --json`: the evaluation and, with a model and a cluster, the simulated step.
#[derive(serde::Serialize)]
struct EvalOutput<'a> {
    #[serde(flatten)]
    evaluation: &'a Evaluation,
    /// Per overlap strategy, the event simulator's step of the first `step_tokens` tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    simulated: Option<Vec<SimulatedStep>>,
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
        let (Some(trace_path), Some(strategy), Some(gpus), Some(out)) =
            (&self.trace, &self.strategy, self.gpus, &self.out)
        else {
            bail!("--trace, --strategy, --gpus and -o are required");
        };
        let strategy = placement::strategy(strategy)?;
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
            time_limit_s: self.time_limit,
            transitions: trace.tokens(),
            cluster: cluster.as_ref(),
            max_load_ratio: self.max_load_ratio,
            load_weight: self.load_weight,
            comm_weight: self.comm_weight,
            ..PlacementRequest::new(&loads, gpus)
        };
        let placement = strategy.place(&request)?;
        let name = Some(strategy.name());
        write_placement(out, &placement, name, self.format, model.as_ref())?;
        let fitted = evaluate(&placement, &trace, EvalContext::bare())?;
        println!(
            "{}: {} layers x {} experts on {gpus} GPUs x {slots_per_gpu} slots; fitted mean GPU \
             max/mean {:.3}; wrote {}",
            strategy.name(),
            placement.num_layers(),
            placement.num_experts(),
            fitted.mean_max_mean,
            out.display()
        );
        Ok(())
    }
}

impl EvalArgs {
    fn execute(self) -> anyhow::Result<()> {
        let document = read_placement(&self.placement)?;
        let part = self
            .skip_fraction
            .map(TokenPart::Rest)
            .or(self.first_fraction.map(TokenPart::First));
        let trace = load_part(&self.trace, part)?;
        let model = self.model.as_deref().map(MoeModel::resolve).transpose()?;
        let cluster = self.cluster.as_deref().map(Cluster::resolve).transpose()?;
        let context = EvalContext {
            model: model.as_ref(),
            cluster: cluster.as_ref(),
            step_tokens: document.placement.num_gpus() * self.tokens_per_gpu,
            cost: CostOptions::default(),
        };
        let evaluation = evaluate(&document.placement, &trace, context)
            .with_context(|| format!("evaluating {}", self.placement.display()))?;
        let simulated = match (&model, &cluster) {
            (Some(model), Some(cluster)) => {
                let input = SimulationInput {
                    model,
                    cluster,
                    step_tokens: context.step_tokens,
                    cost: context.cost,
                    config: &SimConfig::default(),
                };
                Some(
                    simulate_placement(&document.placement, &trace, input)
                        .with_context(|| format!("simulating {}", self.placement.display()))?,
                )
            }
            _ => None,
        };
        let mut stdout = std::io::stdout().lock();
        if self.json {
            let output = EvalOutput {
                evaluation: &evaluation,
                simulated,
            };
            serde_json::to_writer(&mut stdout, &output)?;
            writeln!(stdout)?;
        } else {
            write!(stdout, "{}", table(&evaluation))?;
            if let Some(steps) = &simulated {
                write!(stdout, "{}", simulated_lines(&evaluation, steps))?;
            }
        }
        Ok(())
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
fn simulated_lines(evaluation: &Evaluation, steps: &[SimulatedStep]) -> String {
    let analytical_ns: u64 = evaluation.layers.iter().filter_map(|l| l.step_ns).sum();
    let mut out = format!(
        "step time, all layers: analytical {:.1} us",
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
fn table(evaluation: &Evaluation) -> String {
    let fmt = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.4}"));
    let mut out = format!(
        "{:>5}  {:>8}  {:>9}  {:>10}  {:>11}  {:>12}  {:>10}\n",
        "layer", "max/mean", "cross-gpu", "cross-node", "busiest gpu", "peak mem MiB", "step us"
    );
    for layer in &evaluation.layers {
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
            layer
                .step_ns
                .map_or("-".to_string(), |ns| format!("{:.1}", ns as f64 / 1e3)),
        );
    }
    out += &format!(
        "mean max/mean over loaded layers {:.4}; cross-GPU fraction {}\n",
        evaluation.mean_max_mean,
        fmt(evaluation.cross_gpu_fraction)
    );
    out
}
