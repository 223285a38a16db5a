//! The scale mechanisms side by side (`moesim serve --compare-mechanisms`): one serving run per
//! mechanism on the same scenario, a table of scale-up and scale-down latency, throughput while
//! scaling, SLO attainment, GPU-hours and cost, set against ElasticMoE's published ratios, and
//! charts of throughput and GPUs over time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::charts::{self, ChartLabels, Series};
use crate::error::{Error, Result};
use crate::output::write_bytes_atomic;
use crate::pipeline::elastic::ElasticReport;
use crate::pipeline::serve::ServeResult;
use crate::serve::scaling::Mechanism;

/// ElasticMoE's scale-up latency against horizontal and vertical scaling ("up to ~9x lower").
pub const ELASTICMOE_SCALE_UP_RATIO: f64 = 9.0;
/// ElasticMoE's throughput during scaling against them ("~2x").
pub const ELASTICMOE_THROUGHPUT_RATIO: f64 = 2.0;

/// One mechanism's row.
#[derive(Debug, Clone, Serialize)]
struct Row<'a> {
    mechanism: &'static str,
    slo_attainment: f64,
    ttft_p99_s: f64,
    #[serde(flatten)]
    elastic: &'a ElasticReport,
}

/// Writes `README.md`, `summary.json` and the charts of `runs` (one per mechanism) into `dir`.
pub fn write_comparison(
    runs: &[(Mechanism, ServeResult)],
    command: &str,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    let rows: Vec<Row> = runs
        .iter()
        .map(|(m, r)| {
            let elastic = r.elastic.as_ref().ok_or_else(|| {
                Error::invalid("`--compare-mechanisms` needs a `[scaling]` table")
            })?;
            Ok(Row {
                mechanism: m.name(),
                slo_attainment: r.summary.slo_attainment,
                ttft_p99_s: r.summary.ttft.p99,
                elastic,
            })
        })
        .collect::<Result<_>>()?;
    let summary = super::write_summary(&rows, dir)?;
    let readme = dir.join("README.md");
    let text = render(&rows, runs, command).map_err(|e| Error::invalid(e.to_string()))?;
    write_bytes_atomic(&readme, text.as_bytes())?;
    let mut files = vec![summary, readme];
    files.extend(charts(runs, dir)?);
    Ok(files)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt_opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".into(), |x| format!("{x:.digits$}"))
}

fn render(
    rows: &[Row],
    runs: &[(Mechanism, ServeResult)],
    command: &str,
) -> Result<String, std::fmt::Error> {
    let mut md = String::new();
    let find = |m: Mechanism| rows.iter().find(|r| r.mechanism == m.name());
    let fine = find(Mechanism::FineGrained);
    let up = |m: Mechanism| find(m).and_then(|r| r.elastic.scale_up_s);
    let during = |m: Mechanism| find(m).map(|r| r.elastic.output_tokens_per_s_scaling);
    let speedup = |m: Mechanism| ratio(up(m), up(Mechanism::FineGrained));
    let gain = |m: Mechanism| ratio(during(Mechanism::FineGrained), during(m));
    if fine.is_some() {
        writeln!(
            md,
            "Fine-grained scaling came up {}x faster than horizontal and {}x faster than vertical \
             scaling, and served {}x and {}x their output tokens per second while scaling \
             (ElasticMoE: up to ~{ELASTICMOE_SCALE_UP_RATIO:.0}x and ~{ELASTICMOE_THROUGHPUT_RATIO:.0}x).\n",
            fmt_opt(speedup(Mechanism::Horizontal), 1),
            fmt_opt(speedup(Mechanism::Vertical), 1),
            fmt_opt(gain(Mechanism::Horizontal), 2),
            fmt_opt(gain(Mechanism::Vertical), 2),
        )?;
    } else {
        writeln!(md, "The scale mechanisms of one scenario side by side.\n")?;
    }
    let first = &runs[0].1;
    writeln!(md, "# Elastic scaling: {}\n", first.scenario)?;
    writeln!(
        md,
        "{} on `{}`, {} arrivals, policy `{}`, scale unit `{}` ({} GPUs). Regenerate with:\n\n```\n{command}\n```\n",
        first.model,
        first.cluster,
        first.summary.requests,
        rows[0].elastic.policy,
        serde_json::to_value(rows[0].elastic.unit)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        rows[0].elastic.unit_gpus
    )?;
    writeln!(
        md,
        "| mechanism | scale-ups | scale-up latency (s) | scale-downs | scale-down latency (s) | output tok/s while scaling up | output tok/s overall | SLO attainment | TTFT p99 (s) | GPU-hours | cost |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    for r in rows {
        let e = r.elastic;
        let count = |kind: &str| e.events.iter().filter(|x| x.kind == kind).count();
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.1}% | {:.2} | {:.3} | {:.2} |",
            r.mechanism,
            count("up"),
            fmt_opt(e.scale_up_s, 2),
            count("down"),
            fmt_opt(e.scale_down_s, 2),
            e.output_tokens_per_s_scaling,
            e.output_tokens_per_s,
            100.0 * r.slo_attainment,
            r.ttft_p99_s,
            e.gpu_hours,
            e.cost
        )?;
    }
    writeln!(md, "\n## Against the published figures\n")?;
    writeln!(md, "| ratio | ElasticMoE (published) | simulated |")?;
    writeln!(md, "|---|---|---|")?;
    for (name, published, simulated) in [
        (
            "scale-up latency, horizontal / fine-grained",
            ELASTICMOE_SCALE_UP_RATIO,
            speedup(Mechanism::Horizontal),
        ),
        (
            "scale-up latency, vertical / fine-grained",
            ELASTICMOE_SCALE_UP_RATIO,
            speedup(Mechanism::Vertical),
        ),
        (
            "throughput while scaling, fine-grained / horizontal",
            ELASTICMOE_THROUGHPUT_RATIO,
            gain(Mechanism::Horizontal),
        ),
        (
            "throughput while scaling, fine-grained / vertical",
            ELASTICMOE_THROUGHPUT_RATIO,
            gain(Mechanism::Vertical),
        ),
    ] {
        writeln!(
            md,
            "| {name} | up to ~{published:.0}x | {}x |",
            fmt_opt(simulated, 2)
        )?;
    }
    writeln!(md, "\n## Where the time goes: bytes and links\n")?;
    for r in rows {
        let e = r.elastic;
        let Some(event) = e.events.iter().find(|x| x.kind == "up") else {
            continue;
        };
        let how = match e.mechanism {
            Mechanism::Horizontal => format!(
                "a new replica: {:.0} s provisioning, then its {:.1} GB of weights read from storage at {} GB/s per GPU",
                e.provision_s,
                event.bytes / 1e9,
                e.storage_gbps
            ),
            Mechanism::Vertical => format!(
                "the expert-parallel group restarts ({:.0} s) and every GPU reloads its shard from storage at {} GB/s ({:.1} GB in all); the pool serves nothing meanwhile and running requests lose their KV cache",
                e.restart_s,
                e.storage_gbps,
                event.bytes / 1e9
            ),
            Mechanism::FineGrained => format!(
                "the new GPU pulls its {:.1} GB (its expert shard and the non-expert weights) from a peer over the simulated links while the others serve, then joins between two steps ({:.1} s to rebuild communicators and expert maps)",
                event.bytes / 1e9,
                e.join_s
            ),
        };
        writeln!(
            md,
            "- **{}**: {:.2} s per scale-up: {how}.",
            r.mechanism,
            event.ready_s - event.start_s
        )?;
    }
    let failures: Vec<_> = rows
        .iter()
        .flat_map(|r| r.elastic.failures.iter().map(move |f| (r.mechanism, f)))
        .collect();
    if !failures.is_empty() {
        writeln!(md, "\n## GPU failures\n")?;
        writeln!(
            md,
            "| mechanism | failed at (s) | recovered (s) | requests affected | recomputed | tok/s before / during / after | mean TTFT before / during / after (s) |"
        )?;
        writeln!(md, "|---|---|---|---|---|---|---|")?;
        for (m, f) in failures {
            writeln!(
                md,
                "| {m} | {:.1} | {:.1} | {} | {} | {:.0} / {:.0} / {:.0} | {:.2} / {:.2} / {:.2} |",
                f.at_s,
                f.recovered_s,
                f.requests_affected,
                f.recomputed,
                f.before.output_tokens_per_s,
                f.during.output_tokens_per_s,
                f.after.output_tokens_per_s,
                f.before.ttft_mean_s,
                f.during.ttft_mean_s,
                f.after.ttft_mean_s
            )?;
        }
    }
    writeln!(
        md,
        "\n![throughput](throughput_by_mechanism.png)\n\n![GPUs](gpus_by_mechanism.png)"
    )?;
    Ok(md)
}

fn charts(runs: &[(Mechanism, ServeResult)], dir: &Path) -> Result<Vec<PathBuf>> {
    let throughput: Vec<Vec<f64>> = runs
        .iter()
        .map(|(_, r)| r.seconds.iter().map(|s| s.decode_tokens as f64).collect())
        .collect();
    let gpus: Vec<Vec<f64>> = runs
        .iter()
        .map(|(_, r)| {
            r.elastic.as_ref().map_or(Vec::new(), |e| {
                e.gpus_by_second.iter().map(|&g| g as f64).collect()
            })
        })
        .collect();
    let mut files = Vec::new();
    for (stem, title, y, values) in [
        (
            "throughput_by_mechanism",
            "output tokens per second while the autoscaler scales",
            "output tokens / s",
            &throughput,
        ),
        (
            "gpus_by_mechanism",
            "GPUs held (billed) over time",
            "GPUs",
            &gpus,
        ),
    ] {
        let series: Vec<Series> = runs
            .iter()
            .zip(values)
            .map(|((m, _), v)| Series {
                name: m.name(),
                values: v,
            })
            .collect();
        files.extend(charts::line_chart(
            &dir.join(stem),
            ChartLabels {
                title,
                x: "simulated time (s)",
                y,
            },
            &series,
        )?);
    }
    Ok(files)
}
