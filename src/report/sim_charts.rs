//! Charts of the simulated steps: the mean step's critical-path breakdown per strategy, link
//! utilisation per MoE layer, and a Gantt excerpt of one layer's timeline.

use std::path::{Path, PathBuf};

use crate::charts::{self, ChartLabels, GanttBar, GanttPanel, HeatmapPanel, Series};
use crate::error::Result;
use crate::pipeline::SimResult;
use crate::sim::excerpt_layer;
use crate::sim::metrics::{ExcerptRow, LayerTimes};
use crate::sim::step::Phase;

/// Parts of a layer in the charts, in stacking order, with their legend names. The TP
/// reduce-scatter comes last so that leaving it out (without TP) keeps every other colour.
const PARTS: [(Phase, &str); 5] = [
    (Phase::Attention, "attention + gate"),
    (Phase::Dispatch, "dispatch"),
    (Phase::Expert, "experts"),
    (Phase::Combine, "combine"),
    (Phase::TpReduce, "TP reduce-scatter"),
];

/// Writes the three charts of `sim` into `dir`, returning every path written.
pub fn write(sim: &SimResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = step_breakdown(sim, dir)?;
    written.extend(link_heatmap(sim, dir)?);
    written.extend(timeline_excerpt(sim, dir)?);
    Ok(written)
}

/// The critical path of a layer's `phase`, ns.
fn phase_ns(layer: &LayerTimes, phase: Phase) -> u64 {
    match phase {
        Phase::Attention => layer.attention_ns,
        Phase::Dispatch => layer.dispatch_ns,
        Phase::Expert => layer.expert_ns,
        Phase::Combine => layer.combine_ns,
        Phase::TpReduce => layer.tp_reduce_ns,
        Phase::Sync => 0,
    }
}

/// One stacked bar per (placement, overlap): the mean step's critical path by phase, ms.
fn step_breakdown(sim: &SimResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let categories: Vec<String> = sim
        .strategies
        .iter()
        .map(|s| format!("{} / {}", s.placement, s.strategy))
        .collect();
    let steps = sim.steps.max(1) as f64;
    let values: Vec<Vec<f64>> = PARTS
        .iter()
        .map(|&(phase, _)| {
            sim.strategies
                .iter()
                .map(|s| {
                    let ns: u64 = s.layers.iter().map(|l| phase_ns(l, phase)).sum();
                    ns as f64 / steps / 1e6
                })
                .collect()
        })
        .collect();
    // Parts that never show (TP reduce-scatter without TP) stay out of the legend.
    let parts: Vec<Series> = PARTS
        .iter()
        .zip(&values)
        .filter(|(_, values)| values.iter().any(|&v| v > 0.0))
        .map(|(&(_, name), values)| Series { name, values })
        .collect();
    let title = format!(
        "{}: simulated step (mean of {} steps)",
        sim.scenario, sim.steps
    );
    let labels = ChartLabels {
        title: &title,
        x: "critical path per step (ms)",
        y: "placement / overlap",
    };
    charts::stacked_bars(&dir.join("sim_step_breakdown"), labels, &categories, &parts)
}

/// Per placement (under the first overlap strategy), each link's utilisation per MoE layer:
/// its bytes over (bandwidth x the layer's span), summed over steps.
fn link_heatmap(sim: &SimResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let first_overlap = sim.strategies.first().map(|s| s.strategy.clone());
    let shown: Vec<_> = sim
        .strategies
        .iter()
        .filter(|s| Some(&s.strategy) == first_overlap.as_ref())
        .collect();
    let matrices: Vec<(String, Vec<Vec<f64>>)> = shown
        .iter()
        .map(|s| {
            let rows = s
                .layers
                .iter()
                .map(|layer| {
                    s.links
                        .iter()
                        .map(|link| {
                            let bytes = link.layer_bytes.get(layer.layer).copied().unwrap_or(0);
                            let capacity = link.bandwidth_gbps * layer.span_ns as f64;
                            if capacity > 0.0 {
                                bytes as f64 / capacity
                            } else {
                                0.0
                            }
                        })
                        .collect()
                })
                .collect();
            (s.placement.clone(), rows)
        })
        .collect();
    let panels: Vec<HeatmapPanel> = matrices
        .iter()
        .map(|(title, rows)| HeatmapPanel { title, rows })
        .collect();
    let title = format!(
        "{}: link utilisation per layer ({})",
        sim.scenario,
        first_overlap.as_deref().unwrap_or("-")
    );
    let labels = ChartLabels {
        title: &title,
        x: "link (index in summary links)",
        y: "MoE layer",
    };
    charts::heatmap(&dir.join("sim_link_heatmap"), labels, &panels)
}

/// The first placement's kernels and sends of one MoE layer in the first step, one panel per
/// overlap strategy; time in microseconds.
fn timeline_excerpt(sim: &SimResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let Some(first) = sim.strategies.first() else {
        return Ok(Vec::new());
    };
    let shown: Vec<_> = sim
        .strategies
        .iter()
        .filter(|s| s.placement == first.placement)
        .collect();
    let rows: Vec<String> = (0..sim.gpus)
        .flat_map(|gpu| [format!("gpu{gpu} compute"), format!("gpu{gpu} sends")])
        .collect();
    let bars: Vec<Vec<GanttBar>> = shown
        .iter()
        .map(|s| {
            s.timeline_excerpt
                .iter()
                .filter_map(|bar| {
                    let kind = PARTS.iter().position(|&(phase, _)| phase == bar.phase)?;
                    let row = 2 * bar.gpu + usize::from(bar.row == ExcerptRow::Send);
                    Some(GanttBar {
                        row,
                        kind,
                        start: bar.start_ns as f64 / 1e3,
                        end: bar.end_ns as f64 / 1e3,
                    })
                })
                .collect()
        })
        .collect();
    let titles: Vec<String> = shown
        .iter()
        .map(|s| format!("{} / {}", s.placement, s.strategy))
        .collect();
    let panels: Vec<GanttPanel> = titles
        .iter()
        .zip(&bars)
        .map(|(title, bars)| GanttPanel {
            title,
            rows: &rows,
            bars,
        })
        .collect();
    let layers = first.layers.len();
    let title = format!(
        "{}: timeline of MoE layer {} in step 0",
        sim.scenario,
        excerpt_layer(layers)
    );
    let labels = ChartLabels {
        title: &title,
        x: "time since the step started (us)",
        y: "GPU stream",
    };
    let kinds: Vec<&str> = PARTS.iter().map(|&(_, name)| name).collect();
    charts::gantt(&dir.join("sim_timeline"), labels, &kinds, &panels)
}
