//! Reports: what a run writes to disk for people (Markdown, a self-contained web page, charts)
//! and tools (JSON), for the analytical estimate and the simulated steps.
//!
//! `report` only reads results; it never computes them.

pub mod elastic;
mod html;
mod markdown;
pub mod offload;
pub mod plan;
pub mod replacement;
pub mod serving;
mod sim_charts;
mod sim_tables;
pub mod speculation;
pub mod sweep;

use std::path::{Path, PathBuf};

pub use sim_tables::write_sim_tables;

use crate::charts::{self, ChartLabels, HeatmapPanel, Series};
use crate::error::{Error, Result};
use crate::output;
use crate::pipeline::RunResult;

/// Writes `summary.json`, `report.md`, `index.html` and the charts for `result` as the folder
/// `dir`, returning every path written. The folder is replaced whole
/// ([`output::replace_dir`]): killed at any instant, a run leaves it holding the previous
/// report or this one, never a mix, and the next run removes what a killed one left beside it. So that no other files go with it,
/// `dir` must be absent, empty or a report (holding `summary.json`).
pub fn write_report(result: &RunResult, dir: &Path) -> Result<Vec<PathBuf>> {
    check_replaceable(dir)?;
    output::replace_dir(dir, |tmp| {
        let written = write_files(result, tmp)?;
        Ok(relocate(written, tmp, dir))
    })
}

/// Checks that replacing the folder `dir` takes nothing but a report with it (see
/// [`write_report`]).
pub fn check_replaceable(dir: &Path) -> Result<()> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    if entries.next().is_none() || dir.join("summary.json").is_file() {
        return Ok(());
    }
    Err(Error::bad_file(
        dir,
        "holds files that are not a moesim report (no summary.json), and a report replaces its \
         folder whole: choose a new or empty folder",
    ))
}

/// Writes the report's files into the folder `dir`, returning their paths.
fn write_files(result: &RunResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = vec![write_summary(result, dir)?];
    written.extend(imbalance_chart(result, dir)?);
    written.extend(gpu_load_heatmap(result, dir)?);
    written.extend(sim_charts::write(&result.simulated, dir)?);
    written.extend(write_markdown(&markdown::render(result), dir)?);
    Ok(written)
}

/// Writes `md` as `<dir>/report.md` and the page made of it, `<dir>/index.html`, returning
/// their paths.
fn write_markdown(md: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    let report = dir.join("report.md");
    output::write_bytes_atomic(&report, md.as_bytes())?;
    Ok(vec![report, html::write_html(dir)?])
}

/// `paths` written in the temporary folder `tmp` as the paths they take in `dir`.
fn relocate(paths: Vec<PathBuf>, tmp: &Path, dir: &Path) -> Vec<PathBuf> {
    paths
        .iter()
        .map(|p| dir.join(p.strip_prefix(tmp).expect("written in the folder")))
        .collect()
}

/// Writes `result` as `<dir>/summary.json` (pretty JSON, one trailing newline), returning its
/// path.
fn write_summary(result: &impl serde::Serialize, dir: &Path) -> Result<PathBuf> {
    let summary = dir.join("summary.json");
    let mut json = serde_json::to_vec_pretty(result)
        .map_err(|e| Error::invalid(format!("cannot serialise the summary: {e}")))?;
    json.push(b'\n');
    output::write_bytes_atomic(&summary, &json)?;
    Ok(summary)
}

/// Rebuilds `index.html` in the results folder `dir` (what `moesim run` wrote: `summary.json`,
/// `report.md` and the charts) from its `report.md` and charts, returning its path.
pub fn rebuild_html(dir: &Path) -> Result<PathBuf> {
    if !dir.join("summary.json").is_file() {
        return Err(Error::bad_file(
            dir,
            "is not a moesim results folder (no summary.json): give the folder `moesim run` wrote",
        ));
    }
    html::write_html(dir)
}

/// Per-layer imbalance: the trace's expert max/mean and each placement's GPU max/mean.
fn imbalance_chart(result: &RunResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let expert: Vec<f64> = result.trace.layers.iter().map(|l| l.max_mean).collect();
    let per_strategy: Vec<(String, Vec<f64>)> = result
        .strategies
        .iter()
        .map(|s| {
            (
                format!("GPU load, {}", s.name),
                s.layers.iter().map(|l| l.max_mean).collect(),
            )
        })
        .collect();
    let mut series = vec![Series {
        name: "expert load",
        values: &expert,
    }];
    series.extend(
        per_strategy
            .iter()
            .map(|(name, values)| Series { name, values }),
    );
    let title = format!("{}: load imbalance per MoE layer", result.scenario);
    let labels = ChartLabels {
        title: &title,
        x: "MoE layer",
        y: "max / mean load",
    };
    charts::line_chart(&dir.join("imbalance"), labels, &series)
}

/// Per-GPU load (relative to the layer mean) for every layer, one panel per placement.
fn gpu_load_heatmap(result: &RunResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let matrices: Vec<(String, Vec<Vec<f64>>)> = result
        .strategies
        .iter()
        .map(|s| {
            let rows = s
                .layers
                .iter()
                .map(|l| {
                    let mean = l.gpu_loads.iter().sum::<f64>() / l.gpu_loads.len().max(1) as f64;
                    l.gpu_loads
                        .iter()
                        .map(|&load| if mean > 0.0 { load / mean } else { 0.0 })
                        .collect()
                })
                .collect();
            (s.name.clone(), rows)
        })
        .collect();
    let panels: Vec<HeatmapPanel> = matrices
        .iter()
        .map(|(title, rows)| HeatmapPanel { title, rows })
        .collect();
    let title = format!("{}: GPU load / layer mean", result.scenario);
    let labels = ChartLabels {
        title: &title,
        x: "GPU",
        y: "MoE layer",
    };
    charts::heatmap(&dir.join("gpu_load_heatmap"), labels, &panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_or_empty_folder_or_a_report_may_be_replaced() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        assert!(check_replaceable(&dir).is_ok());
        std::fs::create_dir(&dir).unwrap();
        assert!(check_replaceable(&dir).is_ok());
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let err = check_replaceable(&dir).unwrap_err().to_string();
        assert!(
            err.contains(&dir.display().to_string()) && err.contains("not a moesim report"),
            "{err}"
        );
        std::fs::write(dir.join("summary.json"), "{}").unwrap();
        assert!(check_replaceable(&dir).is_ok());
        assert!(check_replaceable(&dir.join("summary.json")).is_err());
    }
}
