//! The report of a speculation sweep (`moesim speculate`): report.md (the verdict first, a table
//! per interconnect, per-layer bytes), summary.json (every comparison, per layer and per step)
//! and a chart of the step-time change against the oracle's accuracy per interconnect.

use std::fmt::Write as _;
use std::path::Path;

use crate::charts::{self, ChartLabels, XySeries};
use crate::error::{Error, Result};
use crate::output::{replace_dir, write_bytes_atomic};
use crate::pipeline::speculation::{ClusterSweep, Comparison, SpeculationSweep};

/// Writes the sweep's report into `dir` (replaced whole, or left as it was on failure);
/// `command` is the command line that made it, quoted in the report.
pub fn write_speculation(dir: &Path, sweep: &SpeculationSweep, command: &str) -> Result<()> {
    replace_dir(dir, |out| {
        let json =
            serde_json::to_string_pretty(sweep).map_err(|e| Error::invalid(e.to_string()))?;
        write_bytes_atomic(&out.join("summary.json"), json.as_bytes())?;
        chart(&out.join("step-time-vs-accuracy"), sweep)?;
        write_bytes_atomic(&out.join("report.md"), markdown(sweep, command).as_bytes())
    })
}

/// Step-time change against plain dispatch (%) over the oracle's accuracy (%), one line per
/// cluster and placement (its plain step time in the legend), plain dispatch the dashed zero.
fn chart(stem: &Path, sweep: &SpeculationSweep) -> Result<()> {
    let lines: Vec<(String, Vec<(f64, f64)>)> = sweep
        .clusters
        .iter()
        .flat_map(|c| {
            placements(c).into_iter().map(move |p| {
                let points: Vec<(f64, f64)> = oracle_of(c, &p)
                    .filter_map(|r| Some((r.accuracy? * 100.0, r.step_change * 100.0)))
                    .collect();
                let plain = oracle_of(c, &p).next().map_or(0, |r| r.plain_step_ns);
                let name = format!("{} / {p} (plain {:.1} µs)", c.cluster, us(plain));
                (name, points)
            })
        })
        .collect();
    let series: Vec<XySeries> = lines
        .iter()
        .map(|(name, points)| XySeries { name, points })
        .collect();
    let labels = ChartLabels {
        title: "Speculative token shuffling: mean step time vs plain dispatch",
        x: "oracle accuracy (% of experts predicted right)",
        y: "step time change vs plain (%)",
    };
    charts::xy_lines(stem, labels, &series, Some(("plain dispatch", 0.0))).map(drop)
}

/// The placements of a cluster's sweep, in order.
fn placements(cluster: &ClusterSweep) -> Vec<String> {
    cluster.break_even.iter().map(|(p, _)| p.clone()).collect()
}

/// The oracle comparisons of `placement`, by accuracy.
fn oracle_of<'a>(
    cluster: &'a ClusterSweep,
    placement: &'a str,
) -> impl Iterator<Item = &'a Comparison> + 'a {
    cluster
        .oracle
        .iter()
        .filter(move |r| r.placement == placement)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

fn percent(share: f64) -> String {
    format!("{:+.1}%", share * 100.0)
}

fn break_even_text(value: Option<f64>) -> String {
    match value {
        Some(a) if a <= 0.0 => "pays at every accuracy".into(),
        Some(a) => format!("{:.0}%", a * 100.0),
        None => "never pays".into(),
    }
}

/// The report's Markdown.
fn markdown(sweep: &SpeculationSweep, command: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Speculative token shuffling: {}\n", sweep.scenario);
    let _ = writeln!(md, "{}\n", verdict(sweep));
    let _ = writeln!(
        md,
        "Made by `{command}`.\n\nModel `{}`, trace {}; {} simulated step(s) of {} tokens (those \
         after the predictor's fitted tokens), {} dispatch bytes per token and destination GPU. \
         Volumes are bytes between distinct GPUs summed over all steps and MoE layers; step \
         time and exposed communication are means per step (first overlap strategy).\n",
        sweep.model, sweep.trace, sweep.steps, sweep.step_tokens, sweep.dispatch_bytes_per_token
    );
    if let Some(eval) = &sweep.predictor {
        let rate = |r: Option<f64>| r.map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
        let _ = write!(
            md,
            "Predictor `{}` out of sample (fitted on the first {} tokens, judged on {}): top-1 \
             hit rate {}, recall {}",
            eval.predictor,
            eval.fit_tokens,
            eval.eval_tokens,
            rate(eval.overall.top1_hit_rate),
            rate(eval.overall.recall)
        );
        let baseline = sweep.baseline.as_ref();
        if let Some(base) = baseline {
            let _ = write!(
                md,
                "; the popularity yardstick (each layer's k experts most loaded over the same \
                 fitted tokens, whatever the token) scores top-1 {}, recall {}",
                rate(base.overall.top1_hit_rate),
                rate(base.overall.recall)
            );
        }
        md.push_str(". Per layer:\n\n");
        let _ = writeln!(
            md,
            "| layer | tokens | unpredicted | top-1 | recall | popularity top-1 | popularity \
             recall |\n|---|---|---|---|---|---|---|"
        );
        for (index, s) in eval.layers.iter().enumerate() {
            let base = baseline.and_then(|b| b.layers.get(index));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                s.layer.unwrap_or(0),
                s.tokens,
                s.unpredicted,
                rate(s.top1_hit_rate),
                rate(s.recall),
                rate(base.and_then(|b| b.top1_hit_rate)),
                rate(base.and_then(|b| b.recall))
            );
        }
        md.push('\n');
    }
    md.push_str("![step time vs accuracy](step-time-vs-accuracy.png)\n\n");
    for cluster in &sweep.clusters {
        let _ = writeln!(md, "## {} ({} GPUs)\n", cluster.cluster, cluster.gpus);
        let _ = writeln!(
            md,
            "| placement | predictor | plain MB | speculative MB | saved MB | corrective MB | \
             wasted MB | exposed comm µs (plain → spec) | step µs (plain → spec) | change |\n\
             |---|---|---|---|---|---|---|---|---|---|"
        );
        for r in cluster.fitted.iter().chain(&cluster.oracle) {
            let name = r
                .accuracy
                .map_or(r.predictor.clone(), |a| format!("oracle {:.0}%", a * 100.0));
            let v = &r.total;
            let _ = writeln!(
                md,
                "| {} | {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} → {:.1} | {:.1} → {:.1} | {} |",
                r.placement,
                mb(v.plain),
                mb(v.speculative),
                mb(v.saved),
                mb(v.corrective),
                mb(v.wasted),
                us(r.plain_exposed_comm_ns),
                us(r.exposed_comm_ns),
                us(r.plain_step_ns),
                us(r.step_ns),
                percent(r.step_change)
            );
        }
        md.push('\n');
        for (placement, value) in &cluster.break_even {
            let _ = writeln!(
                md,
                "Break-even oracle accuracy under `{placement}`: {}.\n",
                break_even_text(*value)
            );
        }
    }
    if let Some(r) = sweep.clusters.first().and_then(|c| c.fitted.first()) {
        let _ = writeln!(
            md,
            "## Per layer: `{}` under `{}` on {}\n\n| layer | plain MB | saved MB | corrective \
             MB | wasted MB |\n|---|---|---|---|---|",
            r.predictor, r.placement, sweep.clusters[0].cluster
        );
        for (layer, v) in r.layers.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {layer} | {:.2} | {:.2} | {:.2} | {:.2} |",
                mb(v.plain),
                mb(v.saved),
                mb(v.corrective),
                mb(v.wasted)
            );
        }
        md.push_str("\nPer-step volumes and times: `summary.json`.\n");
    }
    md
}

/// One sentence: where shuffling pays most, the break-even per interconnect and where the
/// fitted predictor lands.
fn verdict(sweep: &SpeculationSweep) -> String {
    // The oracle run with the shortest step, its change and the microseconds it saves.
    let best = |c: &ClusterSweep| {
        c.oracle
            .iter()
            .min_by(|a, b| a.step_change.total_cmp(&b.step_change))
            .map_or(String::from("-"), |r| {
                let saved = r.plain_step_ns as f64 - r.step_ns as f64;
                format!(
                    "{} ({:.1} µs per step)",
                    percent(r.step_change),
                    -saved / 1e3
                )
            })
    };
    let parts: Vec<String> = sweep
        .clusters
        .iter()
        .map(|c| {
            let even = c.break_even.first().and_then(|b| b.1);
            let fitted = c
                .fitted
                .first()
                .map(|r| format!(", {} {}", r.predictor, percent(r.step_change)))
                .unwrap_or_default();
            format!(
                "{} {} at best (break-even {}{fitted})",
                c.cluster,
                best(c),
                break_even_text(even)
            )
        })
        .collect();
    format!(
        "**Verdict:** speculative token shuffling changes the mean step time by {}.",
        parts.join("; ")
    )
}
