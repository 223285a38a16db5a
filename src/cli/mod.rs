//! The `moesim` command line: clap definitions and wiring, one file per subcommand.
//!
//! Exit codes (scripts and CI rely on them): 0 success, 1 bad input or failure, 2 bad usage
//! (`compare`: 1 a regression, 2 bad input or usage).

mod calibrate;
mod capture;
mod compare;
mod offload;
mod place;
mod plan;
mod predict;
mod profile;
mod report;
mod run;
mod serve;
mod simulate;
mod speculate;
mod sweep;
mod trace;
mod validate;
mod workload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  moesim run scenarios/quickstart.toml          run a scenario, write reports/quickstart/
  moesim simulate scenarios/quickstart.toml --json   event-simulate every step per overlap strategy
  moesim trace import routing.npy -o t.parquet  import an ExFlow / vLLM / SGLang / CSV trace
  moesim trace stats t.parquet                  per-layer load imbalance, affinity, locality
  moesim trace stats t.parquet --json           the same as one JSON object, for scripts
  moesim trace fit t.parquet -o fit.toml        learn a generator from a real trace
  moesim trace synth --params fit.toml --tokens 1000000 -o long.parquet
  moesim trace fit loads.json --model deepseek-v3 -o ds.toml   learn one from recorded loads
  moesim trace concat a.parquet b.parquet -o switch.parquet    a workload switch
  moesim place --trace loads.json --strategy eplb --gpus 32 --nodes 4 --slots 288 --groups 8 -o p.json
  moesim place eval --placement p.json --trace other.json --json
  moesim profile --out prof                     GPU micro-benchmarks + NVML counters
  moesim calibrate --measurements prof/measurements.parquet -o cal.toml
  moesim validate --measurements prof/measurements.parquet --calibration cal.toml -o val
  moesim capture --cpu --logits router_logits.npy --top-k 2 -o t.parquet   route recorded logits
  moesim workload scenarios/workloads/gamma.toml -o requests.csv   generate or replay serving requests
  moesim compare reports/baseline/quickstart reports/quickstart   metric changes; exit 1 on a regression
  moesim report reports/quickstart              rebuild a run's self-contained index.html
  moesim sweep sweep.toml -o results.parquet    run a scenario over a grid of settings
  moesim plan plan.toml --out reports/plan      cheapest configuration meeting serving SLOs
  moesim predict t.parquet --predictor transition   expert predictors judged out of sample
  moesim offload t.parquet --model mixtral-8x7b --cluster rtx4090-host --cache 1,2,4,8 --out o
                                                expert offloading: on-demand vs prefetch copies";

/// moesim: simulate and profile Mixture-of-Experts serving and training.
///
/// Turn real routing traces (which token went to which experts, per layer) into load-imbalance
/// analysis, expert placements and step-time estimates for a model on a GPU cluster.
#[derive(Debug, Parser)]
#[command(name = "moesim", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import, inspect, generate and convert routing traces.
    #[command(subcommand)]
    Trace(trace::TraceCommand),
    /// Run a scenario end to end and write its report (summary.json, report.md, index.html,
    /// charts).
    Run(run::RunArgs),
    /// Place experts on GPUs with a strategy fitted to a trace (`place eval`: judge a
    /// placement on a trace).
    Place(Box<place::PlaceArgs>),
    /// Simulate every step of the trace event by event per overlap strategy (JSON, Perfetto trace, Parquet).
    Simulate(simulate::SimulateArgs),
    /// Run GPU micro-benchmarks (expert GEMMs, HBM and PCIe copies) with NVML counters.
    Profile(profile::ProfileArgs),
    /// Fit a calibration (TOML) on half of the measured shapes.
    Calibrate(calibrate::CalibrateArgs),
    /// Predict the held-out half of the measurements with a calibration and compare.
    Validate(validate::ValidateArgs),
    /// Route recorded router logits through the instrumented CUDA gating kernel (or its CPU
    /// twin with --cpu) and write the decisions as a trace.
    Capture(capture::CaptureArgs),
    /// Generate or replay serving requests (arrival times, input and output tokens) from a
    /// `[workload]` spec and write them as plain CSV, with a summary.
    Workload(workload::WorkloadArgs),
    /// Serve a scenario's request traffic through continuous batching on the simulated
    /// cluster: per-request and per-second tables, latency percentiles, SLO attainment, cost.
    Serve(serve::ServeArgs),
    /// Compare two runs' summaries metric by metric (Markdown or JSON); exit 1 when a metric
    /// regresses past its threshold, 2 on bad input.
    Compare(compare::CompareArgs),
    /// Rebuild a results folder's self-contained web page (index.html) from its report.md and
    /// charts.
    Report(report::ReportArgs),
    /// Run a base scenario at every point of a grid or list of settings, in parallel, into one
    /// Parquet table (`--shard i/n` runs a slice; `sweep merge` joins the slices).
    Sweep(sweep::SweepArgs),
    /// Find the cheapest configuration of a sweep space that meets serving constraints
    /// (bisecting the GPU count per layout), with its runner-up and Pareto front.
    Plan(plan::PlanArgs),
    /// Fit an expert predictor (transition, history, oracle) on the first part of a trace and
    /// report its top-1 / top-k hit rates and recall per layer on the rest.
    Predict(predict::PredictArgs),
    /// Decode with the experts in host memory and a GPU cache of some per layer: hit rates,
    /// PCIe traffic, stalls and tokens/s per cache size, on-demand copies against prefetch of
    /// predicted experts.
    Offload(Box<offload::OffloadArgs>),
    /// Compare speculative token shuffling (tokens sent towards their predicted experts ahead
    /// of the gate) with plain dispatch per interconnect and oracle accuracy, with break-even.
    Speculate(speculate::SpeculateArgs),
}

/// Parses the command line, runs the command and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    let outcome = match cli.command {
        Command::Trace(command) => command.execute(),
        Command::Run(args) => args.execute(),
        Command::Place(args) => args.execute(),
        Command::Simulate(args) => args.execute(),
        Command::Profile(args) => args.execute(),
        Command::Calibrate(args) => args.execute(),
        Command::Validate(args) => args.execute(),
        Command::Capture(args) => args.execute(),
        Command::Workload(args) => args.execute(),
        Command::Serve(args) => args.execute(),
        Command::Compare(args) => return args.execute(),
        Command::Report(args) => args.execute(),
        Command::Sweep(args) => args.execute(),
        Command::Plan(args) => args.execute(),
        Command::Predict(args) => args.execute(),
        Command::Offload(args) => args.execute(),
        Command::Speculate(args) => args.execute(),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
