//! The report of `moesim offload`: `summary.json` (the whole [`OffloadReport`]), `runs.csv`
//! (one row per cache size and mode), `layer_hit_rates.csv` (one row per cache size, mode and
//! layer), and the charts: hit rate and decode tokens/s against the cache size (on-demand and
//! prefetch), hit rate per layer (one line per cache size, on demand).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::charts::{self, ChartLabels, Series};
use crate::error::Result;
use crate::offload::{Mode, OffloadReport, OffloadRun};
use crate::output;

/// Writes the report as the folder `dir` (replaced whole, like every report), returning the
/// paths written.
pub fn write_offload_report(report: &OffloadReport, dir: &Path) -> Result<Vec<PathBuf>> {
    super::check_replaceable(dir)?;
    output::replace_dir(dir, |tmp| {
        let mut written = vec![super::write_summary(report, tmp)?];
        let runs = tmp.join("runs.csv");
        output::write_bytes_atomic(&runs, runs_csv(&report.runs).as_bytes())?;
        let layers = tmp.join("layer_hit_rates.csv");
        output::write_bytes_atomic(&layers, layers_csv(&report.runs).as_bytes())?;
        written.extend([runs, layers]);
        written.extend(charts(report, tmp)?);
        Ok(super::relocate(written, tmp, dir))
    })
}

fn runs_csv(runs: &[OffloadRun]) -> String {
    let mut csv = String::from(
        "mode,cache,hit_rate,tokens_per_s,stall_share,time_ns,stall_ns,tokens,demand_bytes,\
         prefetch_bytes,wasted_prefetch_bytes,gpu_bytes,fits_memory\n",
    );
    for r in runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.mode.name(),
            r.cache,
            r.copies.hit_rate,
            r.tokens_per_s,
            r.stall_share,
            r.time_ns,
            r.copies.stall_ns,
            r.tokens,
            r.copies.demand_bytes,
            r.copies.prefetch_bytes,
            r.copies.wasted_prefetch_bytes,
            r.gpu_bytes,
            r.fits_memory
        );
    }
    csv
}

fn layers_csv(runs: &[OffloadRun]) -> String {
    let mut csv = String::from("mode,cache,layer,hit_rate\n");
    for r in runs {
        for (layer, rate) in r.copies.layer_hit_rates.iter().enumerate() {
            let _ = writeln!(csv, "{},{},{layer},{rate}", r.mode.name(), r.cache);
        }
    }
    csv
}

/// The runs of `mode`, in the report's order (cache sizes ascending).
fn of_mode(report: &OffloadReport, mode: Mode) -> Vec<&OffloadRun> {
    report.runs.iter().filter(|r| r.mode == mode).collect()
}

fn charts(report: &OffloadReport, dir: &Path) -> Result<Vec<PathBuf>> {
    let on_demand = of_mode(report, Mode::OnDemand);
    let prefetch = of_mode(report, Mode::Prefetch);
    let sizes: Vec<String> = on_demand.iter().map(|r| r.cache.to_string()).collect();
    let x = "experts cached per MoE layer";
    let metric = |runs: &[&OffloadRun], f: fn(&OffloadRun) -> f64| -> Vec<f64> {
        runs.iter().map(|r| f(r)).collect()
    };
    let title = format!("{} on {}", report.model, report.cluster);
    let (hit_od, hit_pf) = (
        metric(&on_demand, |r| r.copies.hit_rate * 100.0),
        metric(&prefetch, |r| r.copies.hit_rate * 100.0),
    );
    let on_demand_name = format!("on-demand ({})", report.eviction);
    let prefetch_name = format!("prefetch ({})", report.predictor);
    let mut written = charts::line_chart_named_x(
        &dir.join("hit_rate"),
        ChartLabels {
            title: &format!("{title}: expert cache hit rate"),
            x,
            y: "hit rate (%)",
        },
        &sizes,
        &[
            Series {
                name: &on_demand_name,
                values: &hit_od,
            },
            Series {
                name: &prefetch_name,
                values: &hit_pf,
            },
        ],
    )?;
    let (tps_od, tps_pf) = (
        metric(&on_demand, |r| r.tokens_per_s),
        metric(&prefetch, |r| r.tokens_per_s),
    );
    written.extend(charts::line_chart_named_x(
        &dir.join("tokens_per_s"),
        ChartLabels {
            title: &format!("{title}: decode throughput, batch {}", report.batch),
            x,
            y: "decode tokens/s",
        },
        &sizes,
        &[
            Series {
                name: &on_demand_name,
                values: &tps_od,
            },
            Series {
                name: &prefetch_name,
                values: &tps_pf,
            },
        ],
    )?);
    // Per layer, on demand: at most eight cache sizes (the palette's colours), spread evenly.
    let step = on_demand.len().div_ceil(8).max(1);
    let shown: Vec<&&OffloadRun> = on_demand.iter().step_by(step).collect();
    let names: Vec<String> = shown.iter().map(|r| format!("cache {}", r.cache)).collect();
    let values: Vec<Vec<f64>> = shown
        .iter()
        .map(|r| r.copies.layer_hit_rates.iter().map(|h| h * 100.0).collect())
        .collect();
    let series: Vec<Series> = names
        .iter()
        .zip(&values)
        .map(|(name, values)| Series { name, values })
        .collect();
    written.extend(charts::line_chart(
        &dir.join("layer_hit_rate"),
        ChartLabels {
            title: &format!(
                "{title}: hit rate per layer, on demand ({})",
                report.eviction
            ),
            x: "MoE layer",
            y: "hit rate (%)",
        },
        &series,
    )?);
    Ok(written)
}
