//! `moesim serve`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Error;
use crate::output;
use crate::pipeline::serve::{ServeResult, serve};
use crate::placement::replacement::comparison_variants;
use crate::report::check_replaceable;
use crate::report::elastic::write_comparison;
use crate::report::replacement::write_comparison as write_replacement_comparison;
use crate::report::serving::{RequestWriter, write_serving_files};
use crate::scenario::Scenario;
use crate::serve::scaling::Mechanism;
use crate::workload::plain::write_requests;

/// Arguments of `moesim serve`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  moesim serve scenarios/qwen3-30b-a3b-serve.toml\n  moesim serve scenarios/qwen3-30b-a3b-serve.toml --requests-out requests.csv --out /tmp/serve\n  moesim serve scenarios/deepseek-v3-pd-decode.toml --placement eplb --json\n  moesim serve reports/replacement-example/light.toml --compare-replacement --out reports/replacement-example/light"
)]
pub struct ServeArgs {
    /// Scenario TOML with `[serving]` and `[workload]` tables.
    scenario: PathBuf,
    /// Report folder (default: the scenario's report folder + `/serving`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Placement strategy of the experts (default: the scenario's first).
    #[arg(long)]
    placement: Option<String>,
    /// Also write the requests served as plain CSV, so another simulator can replay exactly
    /// the same requests.
    #[arg(long, value_name = "FILE")]
    requests_out: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Serve once per scale mechanism (horizontal, vertical, fine-grained) of the scenario's
    /// `[scaling]` table and write the runs side by side (each in a subfolder).
    #[arg(long)]
    compare_mechanisms: bool,
    /// Serve once per re-placement variant with the scenario's `[replacement]` table (its
    /// window, interval, threshold, planning) and write the runs side by side (each in a
    /// subfolder). Variants: a policy (synchronous) or a policy with `-async`; without a list,
    /// never, periodic, triggered, periodic-async, triggered-async.
    #[arg(
        long,
        value_name = "VARIANT,...",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "",
        conflicts_with = "compare_mechanisms"
    )]
    compare_replacement: Option<String>,
}

impl ServeArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let scenario = Scenario::load(&self.scenario)?;
        let dir = self
            .out
            .clone()
            .unwrap_or_else(|| scenario.output_dir().join("serving"));
        let in_file = |e: Error| e.in_file(&self.scenario);
        if self.compare_mechanisms {
            let runs = compare_mechanisms(&scenario, &self, &dir).map_err(in_file)?;
            for (mechanism, result) in &runs {
                println!("{}:", mechanism.name());
                print_summary(result);
            }
            println!("report: {}", dir.display());
            return Ok(());
        }
        if let Some(variants) = &self.compare_replacement {
            let runs = compare_replacement(&scenario, &self, variants, &dir).map_err(in_file)?;
            for (variant, result) in &runs {
                println!("{variant}:");
                print_summary(result);
            }
            println!("report: {}", dir.display());
            return Ok(());
        }
        let result = serve_into(&scenario, self.placement.as_deref(), &dir).map_err(in_file)?;
        if let Some(path) = &self.requests_out {
            let workload = scenario
                .workload
                .as_ref()
                .expect("serve checked the workload");
            write_requests(path, workload.open().map_err(in_file)?).map_err(in_file)?;
        }
        if self.json {
            println!("{}", serde_json::to_string(&result)?);
        } else {
            print_summary(&result);
            println!("report: {}", dir.display());
        }
        Ok(())
    }
}

/// Serves `scenario` once per scale mechanism into `dir/<mechanism>` and writes the comparison
/// into `dir`.
fn compare_mechanisms(
    scenario: &Scenario,
    args: &ServeArgs,
    dir: &Path,
) -> crate::error::Result<Vec<(Mechanism, ServeResult)>> {
    if scenario.scaling.is_none() {
        return Err(Error::invalid(
            "`--compare-mechanisms` needs a `[scaling]` table",
        ));
    }
    check_replaceable(dir)?;
    let command = format!(
        "moesim serve {} --compare-mechanisms --out {}",
        args.scenario.display(),
        dir.display()
    );
    output::replace_dir(dir, |tmp| {
        let mut runs = Vec::new();
        for mechanism in Mechanism::ALL {
            let mut one = scenario.clone();
            if let Some(scaling) = &mut one.scaling {
                scaling.knobs.mechanism = mechanism;
            }
            let result = serve_into(&one, args.placement.as_deref(), &tmp.join(mechanism.name()))?;
            runs.push((mechanism, result));
        }
        write_comparison(&runs, &command, tmp)?;
        Ok(runs)
    })
}

/// Serves `scenario` once per re-placement variant (`variants`, comma-separated; every default
/// one when empty) into `dir/<variant>` and writes the comparison into `dir`.
fn compare_replacement(
    scenario: &Scenario,
    args: &ServeArgs,
    variants: &str,
    dir: &Path,
) -> crate::error::Result<Vec<(String, ServeResult)>> {
    let Some(config) = &scenario.replacement else {
        return Err(Error::invalid(
            "`--compare-replacement` needs a `[replacement]` table",
        ));
    };
    let mut names: Vec<String> = variants
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() {
        names = comparison_variants();
    }
    let mut configs = Vec::new();
    for name in &names {
        if configs.iter().any(|(seen, _)| seen == name) {
            return Err(Error::invalid(format!(
                "`--compare-replacement`: variant `{name}` named twice"
            )));
        }
        let one = config
            .variant(name)
            .map_err(|m| Error::invalid(format!("`--compare-replacement`: {m}")))?;
        configs.push((name.clone(), one));
    }
    check_replaceable(dir)?;
    let command = format!(
        "moesim serve {} --compare-replacement={} --out {}",
        args.scenario.display(),
        names.join(","),
        dir.display()
    );
    output::replace_dir(dir, |tmp| {
        let mut runs = Vec::new();
        for (name, config) in configs {
            let mut one = scenario.clone();
            one.replacement = Some(config);
            let result = serve_into(&one, args.placement.as_deref(), &tmp.join(&name))?;
            runs.push((name, result));
        }
        write_replacement_comparison(&runs, &command, tmp)?;
        Ok(runs)
    })
}

/// Serves `scenario` and writes its report as the folder `dir` (replaced whole, as
/// `moesim run` replaces its report), with a progress bar on a terminal.
pub fn serve_into(
    scenario: &Scenario,
    placement: Option<&str>,
    dir: &Path,
) -> crate::error::Result<ServeResult> {
    check_replaceable(dir)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} serving: {msg} simulated")
                .expect("valid template"),
        );
        bar
    });
    let outcome = output::replace_dir(dir, |tmp| {
        let mut writer = RequestWriter::create(&tmp.join("requests.parquet"))?;
        let result = serve(
            scenario,
            placement,
            &mut |record| writer.push(record),
            &mut |seconds| {
                if let Some(bar) = &bar {
                    bar.set_message(format!("{seconds:.0} s"));
                    bar.tick();
                }
            },
        )?;
        writer.finish()?;
        write_serving_files(&result, tmp)?;
        Ok(result)
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    outcome
}

/// The summary in a few lines.
pub fn print_summary(result: &ServeResult) {
    let s = &result.summary;
    println!(
        "{} requests ({} finished, {} rejected) in {:.1} s simulated on {} GPUs",
        s.requests, s.finished, s.rejected, s.duration_s, s.gpus
    );
    println!(
        "TTFT p50 {:.1} / p99 {:.1} ms   TPOT p50 {:.2} / p99 {:.2} ms   E2E p99 {:.2} s",
        s.ttft.p50 * 1e3,
        s.ttft.p99 * 1e3,
        s.tpot.p50 * 1e3,
        s.tpot.p99 * 1e3,
        s.e2e.p99
    );
    println!(
        "output {:.0} tokens/s ({:.0} per GPU, {:.0} per node), input {:.0} tokens/s ({:.0} per node)",
        s.output_tokens_per_s,
        s.output_tokens_per_s_per_gpu,
        s.output_tokens_per_s_per_node,
        s.input_tokens_per_s,
        s.input_tokens_per_s_per_node
    );
    println!(
        "SLO attainment {:.1}%, goodput {:.2} requests/s, {:.3} per million output tokens",
        100.0 * s.slo_attainment,
        s.goodput_requests_per_s,
        s.cost_per_million_output_tokens
    );
    for pool in &result.pools {
        println!(
            "{:?} pool dispatch: dropped {:.2}% of {} routed pairs in its simulated steps; LLEP moved {} pairs",
            pool.config.role,
            100.0 * pool.dropped_share,
            pool.dispatch.routed_pairs,
            pool.dispatch.moved_pairs
        );
        if let Some(offload) = &pool.offload {
            println!("{:?} pool {offload}", pool.config.role);
        }
    }
    if let Some(e) = &result.elastic {
        println!(
            "{} scaling: {} changes, scale-up {} s, scale-down {} s, {:.3} GPU-hours",
            e.mechanism.name(),
            e.events.len(),
            e.scale_up_s.map_or("-".into(), |s| format!("{s:.2}")),
            e.scale_down_s.map_or("-".into(), |s| format!("{s:.2}")),
            e.gpu_hours
        );
    }
    if let Some(e) = &result.cached_error {
        println!(
            "cached step tier vs full simulation ({} steps): mean |error| {:.2}%, max {:.2}%",
            e.samples,
            100.0 * e.mean_abs,
            100.0 * e.max_abs
        );
    }
}
