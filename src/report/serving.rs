//! What `moesim serve` writes: `requests.parquet` (streamed as requests finish, so memory does
//! not grow with their number), `seconds.parquet`, `summary.json`, `report.md` and the charts
//! (latency percentiles, throughput and queues over time, SLO attainment over time).

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::charts::{self, ChartLabels, Series};
use crate::error::{Error, Result};
use crate::output::write_parquet_frame;
use crate::pipeline::failure_impact::IMPACT_WINDOW_S;
use crate::pipeline::serve::ServeResult;
use crate::serve::RequestRecord;
use crate::serve::metrics::{Latency, SecondRow};

/// Rows buffered before a row group is written.
const ROWS_PER_GROUP: usize = 65_536;

/// Writes request records to a Parquet file as they come, one row group at a time.
pub struct RequestWriter {
    path: PathBuf,
    writer: Option<polars::io::parquet::write::BatchedWriter<File>>,
    rows: Vec<RequestRecord>,
}

impl RequestWriter {
    /// A writer of `path` (created now; complete once [`RequestWriter::finish`] returns).
    pub fn create(path: &Path) -> Result<RequestWriter> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let schema = frame(&[])
            .map_err(|e| Error::bad_file(path, e.to_string()))?
            .schema()
            .clone();
        let writer = ParquetWriter::new(file)
            .batched(&schema)
            .map_err(|e| Error::bad_file(path, e.to_string()))?;
        Ok(RequestWriter {
            path: path.to_path_buf(),
            writer: Some(writer),
            rows: Vec::new(),
        })
    }

    /// Adds one record.
    pub fn push(&mut self, record: &RequestRecord) -> Result<()> {
        self.rows.push(record.clone());
        if self.rows.len() >= ROWS_PER_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let frame = frame(&self.rows).map_err(|e| Error::bad_file(path, e.to_string()))?;
        if let Some(writer) = &mut self.writer {
            writer
                .write_batch(&frame)
                .map_err(|e| Error::bad_file(path, e.to_string()))?;
        }
        self.rows.clear();
        Ok(())
    }

    /// Writes what is buffered and the file's footer.
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        if let Some(writer) = self.writer.take() {
            writer
                .finish()
                .map_err(|e| Error::bad_file(&self.path, e.to_string()))?;
        }
        Ok(())
    }
}

/// A column named `name` of `value` over `rows`.
fn column<R, T>(rows: &[R], name: &str, value: fn(&R) -> T) -> Column
where
    polars::prelude::Series: NamedFrom<Vec<T>, [T]>,
{
    Column::new(name.into(), rows.iter().map(value).collect::<Vec<T>>())
}

/// The requests table of `rows`.
fn frame(rows: &[RequestRecord]) -> PolarsResult<DataFrame> {
    let u64s = |name: &str, f: fn(&RequestRecord) -> u64| column(rows, name, f);
    let f64s = |name: &str, f: fn(&RequestRecord) -> f64| column(rows, name, f);
    DataFrame::new(
        rows.len(),
        vec![
            u64s("id", |r| r.id),
            f64s("arrival_s", |r| r.arrival_s),
            f64s("queue_s", |r| r.queue_s),
            f64s("ttft_s", |r| r.ttft_s),
            f64s("tpot_s", |r| r.tpot_s),
            f64s("e2e_s", |r| r.e2e_s),
            u64s("input_tokens", |r| r.input_tokens),
            u64s("output_tokens", |r| r.output_tokens),
            u64s("dp_rank", |r| u64::from(r.dp_rank)),
            u64s("preemptions", |r| u64::from(r.preemptions)),
            u64s("cached_tokens", |r| r.cached_tokens),
            f64s("kv_transfer_s", |r| r.kv_transfer_s),
            Column::new(
                "rejected".into(),
                rows.iter().map(|r| r.rejected).collect::<Vec<bool>>(),
            ),
        ],
    )
}

/// Writes `summary.json`, `seconds.parquet`, `report.md` and the charts of `result` into `dir`,
/// returning the paths written.
pub fn write_serving_files(result: &ServeResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = vec![super::write_summary(result, dir)?];
    let seconds = dir.join("seconds.parquet");
    let mut frame = seconds_frame(result).map_err(|e| Error::bad_file(&seconds, e.to_string()))?;
    write_parquet_frame(&seconds, &mut frame)?;
    written.push(seconds);
    written.extend(latency_charts(result, dir)?);
    written.extend(throughput_chart(result, dir)?);
    written.extend(queue_chart(result, dir)?);
    written.extend(slo_chart(result, dir)?);
    if replaces(result) {
        written.extend(super::replacement::run_charts(result, dir)?);
    }
    written.extend(super::write_markdown(&render(result), dir)?);
    Ok(written)
}

/// The per-second table.
fn seconds_frame(result: &ServeResult) -> PolarsResult<DataFrame> {
    let rows = &result.seconds;
    let u64s = |name: &str, f: fn(&SecondRow) -> u64| column(rows, name, f);
    let f64s = |name: &str, f: fn(&SecondRow) -> f64| column(rows, name, f);
    DataFrame::new(
        rows.len(),
        vec![
            u64s("second", |s| s.second),
            u64s("arrivals", |s| s.arrivals),
            u64s("finished", |s| s.finished),
            u64s("slo_met", |s| s.slo_met),
            f64s("running", |s| s.running),
            f64s("waiting", |s| s.waiting),
            u64s("steps", |s| s.steps),
            u64s("prefill_tokens", |s| s.prefill_tokens),
            u64s("decode_tokens", |s| s.decode_tokens),
            f64s("kv_use", |s| s.kv_use),
            f64s("step_ms", |s| s.step_ms),
            f64s("imbalance", |s| s.imbalance),
            f64s("gpus_busy", |s| s.gpus_busy),
        ],
    )
}

/// TTFT, TPOT and E2E at every percentile from 1 to 100 (the inverse of their CDFs), one chart
/// each (their scales differ by orders of magnitude).
fn latency_charts(result: &ServeResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (name, sorted) in ["TTFT", "TPOT", "E2E"].iter().zip(&result.latencies) {
        if sorted.is_empty() {
            continue;
        }
        let values: Vec<f64> = (0..=100)
            .map(|p| {
                let rank = (p as f64 / 100.0 * sorted.len() as f64).ceil() as usize;
                sorted[rank.clamp(1, sorted.len()) - 1] * 1e3
            })
            .collect();
        let title = format!(
            "{}: {name} by percentile of requests (inverse CDF)",
            result.scenario
        );
        let y = format!("{name} (ms)");
        written.extend(charts::line_chart(
            &dir.join(format!("latency_{}", name.to_lowercase())),
            ChartLabels {
                title: &title,
                x: "percentile of requests (%)",
                y: &y,
            },
            &[Series {
                name,
                values: &values,
            }],
        )?);
    }
    Ok(written)
}

/// Output and input tokens per second over simulated time.
fn throughput_chart(result: &ServeResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let decode: Vec<f64> = result
        .seconds
        .iter()
        .map(|s| s.decode_tokens as f64)
        .collect();
    let prefill: Vec<f64> = result
        .seconds
        .iter()
        .map(|s| s.prefill_tokens as f64)
        .collect();
    let title = format!("{}: tokens per second of simulated time", result.scenario);
    charts::line_chart(
        &dir.join("throughput"),
        ChartLabels {
            title: &title,
            x: "simulated time (s)",
            y: "tokens / s",
        },
        &[
            Series {
                name: "decode (output) tokens",
                values: &decode,
            },
            Series {
                name: "prefill (prompt) tokens",
                values: &prefill,
            },
        ],
    )
}

/// Whether the scenario has a `[replacement]` table (even with policy `never`, whose imbalance
/// over time is the baseline of the others).
fn replaces(result: &ServeResult) -> bool {
    result.replacement.is_some()
}

/// The re-placements of every pool, one row each.
fn write_replacements(md: &mut String, r: &ServeResult) -> std::fmt::Result {
    writeln!(
        md,
        "
## Re-placements
"
    )?;
    writeln!(
        md,
        "| pool | decided (s) | serving (s) | experts moved | GiB moved | planning (ms) | transfers (ms) | stall (ms) | extra GiB per GPU | imbalance before | after |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    for pool in &r.pools {
        for e in &pool.replacements {
            writeln!(
                md,
                "| {:?} | {:.2} | {:.2} | {} | {:.2} | {:.0} | {:.1} | {:.1} | {:.2} | {:.3} | {:.3} |",
                pool.config.role,
                e.at_s,
                e.serving_s,
                e.experts_moved,
                e.bytes_moved as f64 / GIB,
                e.planning_ms,
                e.transfer_ms,
                e.stall_ms,
                e.extra_bytes_per_gpu as f64 / GIB,
                e.imbalance_before,
                e.imbalance_after
            )?;
        }
    }
    Ok(())
}

/// Each network failure, the seconds before it against those after.
fn write_network_failures(md: &mut String, r: &ServeResult) -> std::fmt::Result {
    writeln!(
        md,
        "\n## Network failures\n\nRoutes go around a failed component and it stays down: no \
         request is lost, those running are slowed. Windows: up to {IMPACT_WINDOW_S} whole \
         seconds before and after the failure's second.\n"
    )?;
    writeln!(
        md,
        "| component | at (s) | requests running | output tok/s before / after | mean step (ms) before / after |"
    )?;
    writeln!(md, "|---|---|---|---|---|")?;
    for f in &r.network_failures {
        writeln!(
            md,
            "| {} | {:.2} | {:.1} | {:.0} / {:.0} | {:.2} / {:.2} |",
            f.component,
            f.at_s,
            f.requests_running,
            f.before.output_tokens_per_s,
            f.after.output_tokens_per_s,
            f.before.step_ms,
            f.after.step_ms
        )?;
    }
    Ok(())
}

const GIB: f64 = (1u64 << 30) as f64;

/// Requests running and waiting over simulated time.
fn queue_chart(result: &ServeResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let running: Vec<f64> = result.seconds.iter().map(|s| s.running).collect();
    let waiting: Vec<f64> = result.seconds.iter().map(|s| s.waiting).collect();
    let title = format!("{}: requests in the engine over time", result.scenario);
    charts::line_chart(
        &dir.join("queue"),
        ChartLabels {
            title: &title,
            x: "simulated time (s)",
            y: "requests (mean over the second)",
        },
        &[
            Series {
                name: "running",
                values: &running,
            },
            Series {
                name: "waiting",
                values: &waiting,
            },
        ],
    )
}

/// Share of the requests arriving each second that met every SLO (a second without arrivals
/// keeps the value before it).
fn slo_chart(result: &ServeResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut last = None;
    let mut attainment: Vec<f64> = result
        .seconds
        .iter()
        .map(|s| {
            if s.arrivals > 0 {
                last = Some(100.0 * s.slo_met as f64 / s.arrivals as f64);
            }
            last.unwrap_or(f64::NAN)
        })
        .collect();
    let first = attainment
        .iter()
        .copied()
        .find(|v| v.is_finite())
        .unwrap_or(0.0);
    for value in attainment.iter_mut().take_while(|v| v.is_nan()) {
        *value = first;
    }
    let title = format!("{}: SLO attainment by arrival second", result.scenario);
    charts::line_chart(
        &dir.join("slo_attainment"),
        ChartLabels {
            title: &title,
            x: "arrival time (s)",
            y: "requests meeting the SLO (%)",
        },
        &[Series {
            name: "SLO attainment",
            values: &attainment,
        }],
    )
}

fn ms(latency: &Latency) -> String {
    format!(
        "{:.1} | {:.1} | {:.1} | {:.1}",
        latency.mean * 1e3,
        latency.p50 * 1e3,
        latency.p90 * 1e3,
        latency.p99 * 1e3
    )
}

/// `report.md`: the verdict in a sentence, then the tables.
pub fn render(r: &ServeResult) -> String {
    let mut md = String::new();
    let _ = write_body(&mut md, r);
    md
}

fn write_body(md: &mut String, r: &ServeResult) -> std::fmt::Result {
    let s = &r.summary;
    writeln!(md, "# moesim serving report: {}\n", r.scenario)?;
    let slo = match (s.slo.ttft_ms, s.slo.tpot_ms) {
        (None, None) => "no SLO set".to_string(),
        (ttft, tpot) => {
            let parts: Vec<String> = [("TTFT", ttft), ("TPOT", tpot)]
                .iter()
                .filter_map(|(name, v)| v.map(|v| format!("{name} <= {v} ms")))
                .collect();
            format!(
                "{:.1}% of requests met the SLO ({})",
                100.0 * s.slo_attainment,
                parts.join(", ")
            )
        }
    };
    writeln!(
        md,
        "**Verdict:** {} GPUs served {} of {} requests at {:.0} output tokens/s ({:.0} per GPU); \
         {slo}; p99 TTFT {:.0} ms, p99 TPOT {:.1} ms; {:.2} per million output tokens at {} per \
         GPU-hour.\n",
        s.gpus,
        s.finished,
        s.requests,
        s.output_tokens_per_s,
        s.output_tokens_per_s_per_gpu,
        s.ttft.p99 * 1e3,
        s.tpot.p99 * 1e3,
        s.cost_per_million_output_tokens,
        s.price_per_gpu_hour
    )?;
    writeln!(md, "| setting | value |\n|---|---|")?;
    writeln!(md, "| model | {} |", r.model)?;
    writeln!(md, "| cluster | {} |", r.cluster)?;
    writeln!(
        md,
        "| placement / overlap | {} / {} |",
        r.placement, r.overlap
    )?;
    writeln!(md, "| step pricing | {:?} |", r.fidelity)?;
    for pool in &r.pools {
        writeln!(
            md,
            "| {:?} pool | {} GPUs, {} DP ranks, {} all-to-all, budget {} tokens, {} running max, {} KV tokens per rank ({:.0} KiB per token per GPU), {:.1} GiB weights per GPU, {} step shapes / {} steps simulated ({:.2}% of their routed pairs dropped); while stepping {:.0} input and {:.0} output tokens/s per node |",
            pool.config.role,
            pool.config.gpus,
            pool.config.ranks,
            pool.all_to_all,
            pool.config.max_batch_tokens,
            pool.config.max_running,
            pool.kv_tokens_per_rank,
            pool.kv_bytes_per_token / 1024.0,
            pool.weight_bytes_per_gpu / (1u64 << 30) as f64,
            pool.shapes_simulated,
            pool.steps_simulated,
            100.0 * pool.dropped_share,
            pool.busy_input_tokens_per_s_per_node,
            pool.busy_output_tokens_per_s_per_node
        )?;
    }
    writeln!(md, "\n## Latency (ms)\n")?;
    writeln!(
        md,
        "| latency | mean | p50 | p90 | p99 |\n|---|---|---|---|---|"
    )?;
    writeln!(md, "| TTFT | {} |", ms(&s.ttft))?;
    writeln!(md, "| TPOT | {} |", ms(&s.tpot))?;
    writeln!(md, "| E2E | {} |", ms(&s.e2e))?;
    writeln!(md, "| queueing | {} |", ms(&s.queue))?;
    writeln!(md, "\n## Throughput and cost\n")?;
    writeln!(md, "| metric | value |\n|---|---|")?;
    for (name, value) in [
        (
            "requests (finished / rejected)",
            format!("{} / {}", s.finished, s.rejected),
        ),
        ("simulated time", format!("{:.1} s", s.duration_s)),
        ("requests per second", format!("{:.2}", s.requests_per_s)),
        (
            "input tokens/s (total / per GPU / per node)",
            format!(
                "{:.0} / {:.0} / {:.0}",
                s.input_tokens_per_s, s.input_tokens_per_s_per_gpu, s.input_tokens_per_s_per_node
            ),
        ),
        (
            "output tokens/s (total / per GPU / per node)",
            format!(
                "{:.0} / {:.0} / {:.0}",
                s.output_tokens_per_s,
                s.output_tokens_per_s_per_gpu,
                s.output_tokens_per_s_per_node
            ),
        ),
        (
            "goodput (requests/s, output tokens/s)",
            format!(
                "{:.2}, {:.0}",
                s.goodput_requests_per_s, s.goodput_output_tokens_per_s
            ),
        ),
        ("GPU-hours", format!("{:.3}", s.gpu_hours)),
        (
            "cost per million output tokens",
            format!("{:.3}", s.cost_per_million_output_tokens),
        ),
        ("preemptions", s.preemptions.to_string()),
        (
            "prompt tokens from the prefix cache",
            s.cached_prompt_tokens.to_string(),
        ),
        (
            "steps / mean step",
            format!("{} / {:.2} ms", s.steps, s.mean_step_ms),
        ),
        (
            "mean MoE imbalance (GPU max / mean)",
            format!("{:.3}", s.mean_imbalance),
        ),
        (
            "peak KV-cache use",
            format!("{:.1}%", 100.0 * s.peak_kv_use),
        ),
    ] {
        writeln!(md, "| {name} | {value} |")?;
    }
    match &r.cached_error {
        Some(e) => writeln!(
            md,
            "\nCached step tier against full simulation on {} sampled steps: mean |error| {:.2}%, \
             max {:.2}%, bias {:+.2}%.",
            e.samples,
            100.0 * e.mean_abs,
            100.0 * e.max_abs,
            100.0 * e.mean
        )?,
        None => writeln!(
            md,
            "\nEvery step was simulated (no cached tier error to state)."
        )?,
    }
    if replaces(r) {
        write_replacements(md, r)?;
    }
    if !r.network_failures.is_empty() {
        write_network_failures(md, r)?;
    }
    writeln!(md, "\n## Charts\n")?;
    // The latency charts exist for latencies some request has (TPOT needs 2 output tokens).
    let latencies = ["ttft", "tpot", "e2e"]
        .iter()
        .zip(&r.latencies)
        .filter(|(_, values)| !values.is_empty())
        .map(|(name, _)| {
            (
                format!("{} by percentile", name.to_uppercase()),
                format!("latency_{name}.png"),
            )
        });
    let over_time = [
        ("tokens per second over time", "throughput.png"),
        ("requests running and waiting over time", "queue.png"),
        ("SLO attainment by arrival second", "slo_attainment.png"),
    ]
    .map(|(alt, file)| (alt.to_string(), file.to_string()));
    let replacement = [
        ("MoE imbalance over time", "imbalance.png"),
        ("mean step time over time", "step_time.png"),
    ]
    .map(|(alt, file)| (alt.to_string(), file.to_string()))
    .into_iter()
    .filter(|_| replaces(r));
    for (alt, file) in latencies.chain(over_time).chain(replacement) {
        writeln!(md, "![{alt}]({file})\n")?;
    }
    writeln!(
        md,
        "Tables: `requests.parquet` (one row per request), `seconds.parquet` (one row per second)."
    )
}
