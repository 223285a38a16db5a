//! A simulation's results as Parquet tables for notebooks: `sim_steps.parquet` (one row per
//! placement, strategy and step), `sim_layers.parquet` (per layer, summed over steps),
//! `sim_gpus.parquet` (per GPU too) and `sim_links.parquet` (per link that carried bytes).

use std::path::{Path, PathBuf};

use polars::prelude::{Column, DataFrame};

use crate::error::{Error, Result};
use crate::output::write_parquet_frame;
use crate::pipeline::SimResult;
use crate::sim::StepTime;
use crate::sim::metrics::LayerTimes;

/// Writes the four tables into `dir` (created if needed) and returns their paths.
pub fn write_sim_tables(result: &SimResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (name, frame) in [
        ("sim_steps.parquet", steps_frame(result)),
        ("sim_layers.parquet", layers_frame(result)),
        ("sim_gpus.parquet", gpus_frame(result)),
        ("sim_links.parquet", links_frame(result)),
    ] {
        let path = dir.join(name);
        let mut frame = frame.map_err(|e| Error::invalid(format!("{name}: {e}")))?;
        write_parquet_frame(&path, &mut frame)?;
        written.push(path);
    }
    Ok(written)
}

/// Placement and strategy names repeated for each row `rows(strategy)` yields.
fn keys(result: &SimResult, rows: impl Fn(usize) -> usize) -> (Column, Column) {
    let (mut placement, mut strategy) = (Vec::new(), Vec::new());
    for (i, s) in result.strategies.iter().enumerate() {
        for _ in 0..rows(i) {
            placement.push(s.placement.clone());
            strategy.push(s.strategy.clone());
        }
    }
    (
        Column::new("placement".into(), placement),
        Column::new("strategy".into(), strategy),
    )
}

fn steps_frame(result: &SimResult) -> polars::prelude::PolarsResult<DataFrame> {
    let (placement, strategy) = keys(result, |i| result.strategies[i].steps.len());
    let steps = || result.strategies.iter().flat_map(|s| &s.steps);
    let col = |name: &str, f: fn(&StepTime) -> u64| {
        Column::new(name.into(), steps().map(f).collect::<Vec<u64>>())
    };
    let phases: Vec<Option<&str>> = steps().map(|s| s.phase.map(|p| p.as_str())).collect();
    DataFrame::new(
        phases.len(),
        vec![
            placement,
            strategy,
            col("step", |s| s.step as u64),
            Column::new("phase".into(), phases),
            col("tokens", |s| s.tokens as u64),
            col("step_ns", |s| s.step_ns),
        ],
    )
}

fn layers_frame(result: &SimResult) -> polars::prelude::PolarsResult<DataFrame> {
    let (placement, strategy) = keys(result, |i| result.strategies[i].layers.len());
    let layers = || result.strategies.iter().flat_map(|s| &s.layers);
    let col = |name: &str, f: fn(&LayerTimes) -> u64| {
        Column::new(name.into(), layers().map(f).collect::<Vec<u64>>())
    };
    let height = layers().count();
    DataFrame::new(
        height,
        vec![
            placement,
            strategy,
            col("layer", |l| l.layer as u64),
            col("attention_ns", |l| l.attention_ns),
            col("dispatch_ns", |l| l.dispatch_ns),
            col("expert_ns", |l| l.expert_ns),
            col("combine_ns", |l| l.combine_ns),
            col("exposed_comm_ns", |l| l.exposed_comm_ns),
        ],
    )
}

fn gpus_frame(result: &SimResult) -> polars::prelude::PolarsResult<DataFrame> {
    let per_strategy = |i: usize| -> usize {
        result.strategies[i]
            .layers
            .iter()
            .map(|l| l.gpus.len())
            .sum()
    };
    let (placement, strategy) = keys(result, per_strategy);
    let rows: Vec<(u64, u64, u64, u64)> = result
        .strategies
        .iter()
        .flat_map(|s| &s.layers)
        .flat_map(|l| {
            l.gpus
                .iter()
                .map(move |g| (l.layer as u64, g.gpu as u64, g.busy_ns, g.idle_ns))
        })
        .collect();
    let col = |name: &str, f: fn(&(u64, u64, u64, u64)) -> u64| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<u64>>())
    };
    DataFrame::new(
        rows.len(),
        vec![
            placement,
            strategy,
            col("layer", |r| r.0),
            col("gpu", |r| r.1),
            col("busy_ns", |r| r.2),
            col("idle_ns", |r| r.3),
        ],
    )
}

fn links_frame(result: &SimResult) -> polars::prelude::PolarsResult<DataFrame> {
    let (placement, strategy) = keys(result, |i| result.strategies[i].links.len());
    let links = || result.strategies.iter().flat_map(|s| &s.links);
    DataFrame::new(
        links().count(),
        vec![
            placement,
            strategy,
            Column::new(
                "link".into(),
                links().map(|l| l.link.clone()).collect::<Vec<_>>(),
            ),
            Column::new("bytes".into(), links().map(|l| l.bytes).collect::<Vec<_>>()),
            Column::new(
                "utilization".into(),
                links().map(|l| l.utilization).collect::<Vec<_>>(),
            ),
        ],
    )
}
