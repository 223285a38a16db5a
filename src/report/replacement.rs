//! Expert re-placement over time: the charts of one run (`imbalance.png`, `step_time.png`) and the
//! re-placement variants side by side (`moesim serve --compare-replacement`): one serving run per
//! variant of the same scenario, a table of re-placements, bytes moved, stall, step time,
//! imbalance, latency and SLO attainment, the verdict against `never`, and one chart per
//! quantity over time with every variant as a line.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::charts::{self, ChartLabels, Series};
use crate::error::{Error, Result};
use crate::output::write_bytes_atomic;
use crate::pipeline::replacement::{ReplacementEvent, StepSample};
use crate::pipeline::serve::ServeResult;

/// The variant every other is judged against.
const BASELINE: &str = "never";

/// A re-placing variant pays when it cuts the mean end-to-end latency of `never` by more than
/// this share (smaller differences are within the run-to-run spread of the routing).
pub const GAIN_THRESHOLD: f64 = 0.01;

/// Most bins of a chart over time.
const MAX_BINS: u64 = 120;

const GIB: f64 = (1u64 << 30) as f64;

/// One variant's row of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantRow {
    /// `never`, `periodic`, `triggered-async`, ...
    pub variant: String,
    /// Re-placements, all pools.
    pub replacements: usize,
    /// Expert copies moved.
    pub experts_moved: usize,
    /// Weight bytes moved.
    pub bytes_moved: u64,
    /// Planning time, all re-placements, ms.
    pub planning_ms: f64,
    /// Transfer time, all re-placements, ms.
    pub transfer_ms: f64,
    /// Serving paused, all re-placements, ms.
    pub stall_ms: f64,
    /// Mean step, stalls included, ms.
    pub mean_step_ms: f64,
    /// Mean MoE imbalance of the steps (busiest GPU over the mean).
    pub mean_imbalance: f64,
    /// Mean end-to-end latency, s.
    pub e2e_mean_s: f64,
    /// TTFT p50 and p99, s.
    pub ttft_p50_s: f64,
    pub ttft_p99_s: f64,
    /// TPOT p50 and p99, s.
    pub tpot_p50_s: f64,
    pub tpot_p99_s: f64,
    /// Share of requests meeting every SLO.
    pub slo_attainment: f64,
    /// Output tokens per second.
    pub output_tokens_per_s: f64,
}

impl VariantRow {
    /// The row of `result`, served as `variant`.
    pub fn of(variant: &str, result: &ServeResult) -> VariantRow {
        let events = result.pools.iter().flat_map(|p| &p.replacements);
        // Folded from +0: an empty float `sum` is -0 (printed "-0").
        let sum = |f: fn(&ReplacementEvent) -> f64| events.clone().map(f).fold(0.0, |a, b| a + b);
        let s = &result.summary;
        VariantRow {
            variant: variant.to_string(),
            replacements: events.clone().count(),
            experts_moved: events.clone().map(|e| e.experts_moved).sum(),
            bytes_moved: events.clone().map(|e| e.bytes_moved).sum(),
            planning_ms: sum(|e| e.planning_ms),
            transfer_ms: sum(|e| e.transfer_ms),
            stall_ms: sum(|e| e.stall_ms),
            mean_step_ms: s.mean_step_ms,
            mean_imbalance: s.mean_imbalance,
            e2e_mean_s: s.e2e.mean,
            ttft_p50_s: s.ttft.p50,
            ttft_p99_s: s.ttft.p99,
            tpot_p50_s: s.tpot.p50,
            tpot_p99_s: s.tpot.p99,
            slo_attainment: s.slo_attainment,
            output_tokens_per_s: s.output_tokens_per_s,
        }
    }
}

/// The verdict in one sentence: whether the best re-placing variant (lowest mean end-to-end
/// latency) beats `never` by more than [`GAIN_THRESHOLD`], and by what.
pub fn verdict(rows: &[VariantRow]) -> String {
    let Some(never) = rows.iter().find(|r| r.variant == BASELINE) else {
        return "The re-placement variants of one scenario side by side (no `never` run to judge \
                them against)."
            .into();
    };
    let Some(best) = rows
        .iter()
        .filter(|r| r.variant != BASELINE)
        .min_by(|a, b| a.e2e_mean_s.total_cmp(&b.e2e_mean_s))
    else {
        return "Only `never` was served: nothing to compare.".into();
    };
    let gain = 1.0 - best.e2e_mean_s / never.e2e_mean_s;
    let evidence = format!(
        "mean end-to-end latency {:.3} s against {:.3} s without re-placement ({:+.1}%), mean \
         step {:.2} ms against {:.2} ms, mean imbalance {:.3} against {:.3}, SLO attainment \
         {:.1}% against {:.1}%, after {} re-placements moving {:.1} GiB with {:.0} ms of stall",
        best.e2e_mean_s,
        never.e2e_mean_s,
        -100.0 * gain,
        best.mean_step_ms,
        never.mean_step_ms,
        best.mean_imbalance,
        never.mean_imbalance,
        100.0 * best.slo_attainment,
        100.0 * never.slo_attainment,
        best.replacements,
        best.bytes_moved as f64 / GIB,
        best.stall_ms
    );
    if gain > GAIN_THRESHOLD {
        format!(
            "Re-placement pays here: `{}`, the best variant, has {evidence}.",
            best.variant
        )
    } else {
        format!(
            "Re-placement does not pay here: no variant cuts `never`'s mean end-to-end latency by \
             more than {:.0}%; the best, `{}`, has {evidence}.",
            100.0 * GAIN_THRESHOLD,
            best.variant
        )
    }
}

/// The width of the bins of a chart over `duration_ns`: the smallest 1, 2 or 5 x 10^k ms
/// giving at most [`MAX_BINS`] bins.
pub fn bin_width_ns(duration_ns: u64) -> u64 {
    let mut width = 1_000_000u64;
    loop {
        for factor in [1, 2, 5] {
            if duration_ns.div_ceil(width * factor) <= MAX_BINS {
                return width * factor;
            }
        }
        width *= 10;
    }
}

/// Per bin of `bin_ns` (`bins` of them), the mean step time (ms, stalls included) and the mean
/// imbalance of the steps starting in it; a bin without a step keeps the values of the bin
/// before it (the first bins with none take the first values).
pub fn binned(samples: &[StepSample], bin_ns: u64, bins: usize) -> [Vec<f64>; 2] {
    let mut sums = vec![(0.0, 0.0, 0u64); bins];
    for s in samples {
        let bin = (s.start_ns / bin_ns) as usize;
        if let Some(sum) = sums.get_mut(bin) {
            *sum = (sum.0 + s.ns as f64 / 1e6, sum.1 + s.imbalance, sum.2 + 1);
        }
    }
    let first = sums
        .iter()
        .find(|s| s.2 > 0)
        .map_or((0.0, 0.0), |s| (s.0 / s.2 as f64, s.1 / s.2 as f64));
    let mut last = first;
    let (step_ms, imbalance) = sums
        .iter()
        .map(|&(ms, imbalance, n)| {
            if n > 0 {
                last = (ms / n as f64, imbalance / n as f64);
            }
            last
        })
        .unzip();
    [step_ms, imbalance]
}

/// The entry pool's steps of `result` (the pool a colocated run has; the prefill pool of a
/// disaggregated one).
fn timeline(result: &ServeResult) -> &[StepSample] {
    result.pools.first().map_or(&[], |p| &p.timeline)
}

/// Labels of the bins: their start time, s.
fn bin_names(bin_ns: u64, bins: usize) -> Vec<String> {
    let decimals = match bin_ns {
        0..10_000_000 => 3,
        10_000_000..100_000_000 => 2,
        100_000_000..1_000_000_000 => 1,
        _ => 0,
    };
    (0..bins)
        .map(|i| format!("{:.decimals$}", (i as u64 * bin_ns) as f64 / 1e9))
        .collect()
}

/// The two charts over time (`imbalance<suffix>`, `step_time<suffix>`) of `runs` (legend name,
/// steps), binned alike over the longest run.
fn charts_over_time(
    runs: &[(&str, &[StepSample])],
    scenario: &str,
    suffix: &str,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    let end_ns = runs
        .iter()
        .flat_map(|(_, steps)| steps.last())
        .map(|s| s.start_ns + 1)
        .max()
        .unwrap_or(1);
    let bin_ns = bin_width_ns(end_ns);
    let bins = end_ns.div_ceil(bin_ns) as usize;
    let values: Vec<[Vec<f64>; 2]> = runs
        .iter()
        .map(|(_, steps)| binned(steps, bin_ns, bins))
        .collect();
    let names = bin_names(bin_ns, bins);
    let mut written = Vec::new();
    for (which, file, y) in [
        (1, "imbalance", "MoE imbalance (GPU max / mean)"),
        (0, "step_time", "mean step time (ms)"),
    ] {
        let series: Vec<Series> = runs
            .iter()
            .zip(&values)
            .map(|((name, _), v)| Series {
                name,
                values: &v[which],
            })
            .collect();
        let title = format!(
            "{scenario}: {y}, steps started in each {} ms",
            bin_ns / 1_000_000
        );
        written.extend(charts::line_chart_named_x(
            &dir.join(format!("{file}{suffix}")),
            ChartLabels {
                title: &title,
                x: "simulated time (s)",
                y,
            },
            &names,
            &series,
        )?);
    }
    Ok(written)
}

/// `imbalance.png` and `step_time.png` of one run with `[replacement]`.
pub fn run_charts(result: &ServeResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let policy = result.replacement.as_deref().unwrap_or(BASELINE);
    charts_over_time(&[(policy, timeline(result))], &result.scenario, "", dir)
}

/// Writes `README.md`, `summary.json` and the charts over time (`imbalance_by_policy`,
/// `step_time_by_policy`) of `runs` (one per variant) into `dir`.
pub fn write_comparison(
    runs: &[(String, ServeResult)],
    command: &str,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    let rows: Vec<VariantRow> = runs.iter().map(|(v, r)| VariantRow::of(v, r)).collect();
    let summary = super::write_summary(&rows, dir)?;
    let readme = dir.join("README.md");
    let text = render(&rows, runs, command).map_err(|e| Error::invalid(e.to_string()))?;
    write_bytes_atomic(&readme, text.as_bytes())?;
    let lines: Vec<(&str, &[StepSample])> = runs
        .iter()
        .map(|(v, r)| (v.as_str(), timeline(r)))
        .collect();
    let scenario = runs.first().map_or("", |(_, r)| r.scenario.as_str());
    let mut files = vec![summary, readme];
    files.extend(charts_over_time(&lines, scenario, "_by_policy", dir)?);
    Ok(files)
}

fn render(
    rows: &[VariantRow],
    runs: &[(String, ServeResult)],
    command: &str,
) -> std::result::Result<String, std::fmt::Error> {
    let mut md = String::new();
    writeln!(md, "{}\n", verdict(rows))?;
    let Some((_, first)) = runs.first() else {
        return Ok(md);
    };
    writeln!(md, "# Expert re-placement: {}\n", first.scenario)?;
    writeln!(
        md,
        "{} on `{}` ({} GPUs), {} requests, placed first by `{}`. Each variant serves the same \
         scenario in its own folder. Regenerate with:\n\n```\n{command}\n```\n",
        first.model, first.cluster, first.summary.gpus, first.summary.requests, first.placement
    )?;
    writeln!(
        md,
        "| variant | re-placements | GiB moved | planning (ms) | transfers (ms) | stall (ms) | \
         mean step (ms) | mean imbalance | E2E mean (s) | TTFT p50 / p99 (ms) | TPOT p50 / p99 \
         (ms) | SLO attainment | output tok/s |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
    for r in rows {
        writeln!(
            md,
            "| {} | {} | {:.1} | {:.0} | {:.1} | {:.0} | {:.2} | {:.3} | {:.3} | {:.1} / {:.1} | \
             {:.2} / {:.2} | {:.1}% | {:.0} |",
            r.variant,
            r.replacements,
            r.bytes_moved as f64 / GIB,
            r.planning_ms,
            r.transfer_ms,
            r.stall_ms,
            r.mean_step_ms,
            r.mean_imbalance,
            r.e2e_mean_s,
            1e3 * r.ttft_p50_s,
            1e3 * r.ttft_p99_s,
            1e3 * r.tpot_p50_s,
            1e3 * r.tpot_p99_s,
            100.0 * r.slo_attainment,
            r.output_tokens_per_s
        )?;
    }
    writeln!(
        md,
        "\nStall: serving paused for planning and transfers (synchronous variants; the \
         asynchronous ones plan and copy beside serving). Mean step includes the stalls. Each \
         variant's `report.md` lists its re-placements (time, experts and bytes moved, imbalance \
         of the window before and after).\n"
    )?;
    writeln!(
        md,
        "![MoE imbalance over time](imbalance_by_policy.png)\n\n![step time over \
         time](step_time_by_policy.png)"
    )?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(start_ms: u64, ms: u64, imbalance: f64) -> StepSample {
        StepSample {
            start_ns: start_ms * 1_000_000,
            ns: ms * 1_000_000,
            imbalance,
        }
    }

    #[test]
    fn bins_are_1_2_or_5_times_a_power_of_ten_ms_and_at_most_120() {
        assert_eq!(bin_width_ns(50_000_000), 1_000_000);
        assert_eq!(bin_width_ns(120_000_000), 1_000_000);
        assert_eq!(bin_width_ns(120_000_001), 2_000_000);
        assert_eq!(bin_width_ns(500_000_000), 5_000_000);
        // 5.3 s: 100 ms bins give 53, 50 ms bins 106.
        assert_eq!(bin_width_ns(5_300_000_000), 50_000_000);
        assert_eq!(bin_width_ns(600_000_000_000), 5_000_000_000);
    }

    #[test]
    fn binned_means_take_the_steps_starting_in_each_bin_and_carry_over_gaps() {
        // Bins of 10 ms: steps at 0 and 4 ms in bin 0, none in bin 1, one at 25 ms in bin 2.
        let steps = [sample(0, 4, 1.2), sample(4, 2, 1.4), sample(25, 9, 2.0)];
        let [step_ms, imbalance] = binned(&steps, 10_000_000, 4);
        assert_eq!(step_ms, [3.0, 3.0, 9.0, 9.0]);
        assert!((imbalance[0] - 1.3).abs() < 1e-12 && (imbalance[1] - 1.3).abs() < 1e-12);
        assert_eq!(imbalance[2..], [2.0, 2.0]);
        // Leading bins without a step take the first bin's values.
        let [step_ms, _] = binned(&steps[2..], 10_000_000, 3);
        assert_eq!(step_ms, [9.0, 9.0, 9.0]);
        assert_eq!(bin_names(10_000_000, 3), ["0.00", "0.01", "0.02"]);
    }

    fn row(variant: &str, e2e_mean_s: f64) -> VariantRow {
        VariantRow {
            variant: variant.into(),
            replacements: 4,
            experts_moved: 96,
            bytes_moved: 3 << 30,
            planning_ms: 264.0,
            transfer_ms: 12.0,
            stall_ms: 276.0,
            mean_step_ms: 20.0,
            mean_imbalance: 1.25,
            e2e_mean_s,
            ttft_p50_s: 0.1,
            ttft_p99_s: 0.2,
            tpot_p50_s: 0.01,
            tpot_p99_s: 0.02,
            slo_attainment: 0.9,
            output_tokens_per_s: 1000.0,
        }
    }

    #[test]
    fn the_verdict_judges_the_fastest_re_placing_variant_against_never() {
        let never = row("never", 2.0);
        // 1.8 s against 2.0 s: 10% faster, pays.
        let text = verdict(&[never.clone(), row("periodic", 1.8), row("triggered", 1.9)]);
        assert!(
            text.starts_with(
                "Re-placement pays here: `periodic`, the best variant, has mean end-to-end \
                 latency 1.800 s against 2.000 s without re-placement (-10.0%)"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("after 4 re-placements moving 3.0 GiB with 276 ms of stall."),
            "{text}"
        );
        // 1.99 s: 0.5% faster, within the threshold.
        let text = verdict(&[row("periodic-async", 1.99), never.clone()]);
        assert!(
            text.starts_with(
                "Re-placement does not pay here: no variant cuts `never`'s mean end-to-end \
                 latency by more than 1%; the best, `periodic-async`, has mean end-to-end \
                 latency 1.990 s against 2.000 s without re-placement (-0.5%)"
            ),
            "{text}"
        );
        assert!(verdict(&[row("periodic", 1.0)]).contains("no `never` run"));
        assert!(verdict(&[never]).starts_with("Only `never`"));
    }
}
