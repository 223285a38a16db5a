//! The report of a sweep (`moesim sweep --report DIR`): `summary.json`, `report.md` with the
//! verdict first and a table of the points, a heatmap per headline metric when the sweep has
//! two axes, a Pareto chart of cost against latency when the points were served, and
//! `index.html`. The charts and the points table serve the plan report too.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::charts::{self, ChartLabels, LabelledGrid, ScatterPoint};
use crate::error::Result;
use crate::output;
use crate::plan::{self, metric};
use crate::sweep::{PointRow, SweepTable, bare, describe};

/// A metric a report leads with: its summary path, name, unit, the factor from the summary's
/// unit to it, and whether larger is better.
pub struct Headline {
    pub metric: String,
    pub name: String,
    pub unit: &'static str,
    pub scale: f64,
    pub larger_is_better: bool,
}

impl Headline {
    /// Its value in `row`, in its unit, if the row ran and has it.
    pub fn value(&self, row: &PointRow) -> Option<f64> {
        let metrics = row.outcome.as_ref().ok()?;
        metrics.get(&self.metric).map(|v| v * self.scale)
    }
}

/// The headline metrics of `table`: cost, TTFT and TPOT p99 and SLO attainment for served
/// points; else the simulated step time of up to four strategies, those without overlap first.
pub fn headlines(table: &SweepTable) -> Vec<Headline> {
    let has = |m: &str| {
        table
            .rows
            .iter()
            .any(|r| r.outcome.as_ref().is_ok_and(|x| x.contains_key(m)))
    };
    let headline = |metric: &str, name: &str, unit, scale, larger_is_better| Headline {
        metric: metric.to_string(),
        name: name.to_string(),
        unit,
        scale,
        larger_is_better,
    };
    if has(metric::COST) {
        return vec![
            headline(
                metric::COST,
                "cost",
                "$ per million output tokens",
                1.0,
                false,
            ),
            headline(metric::TTFT_P99, "TTFT p99", "ms", 1e3, false),
            headline(metric::TPOT_P99, "TPOT p99", "ms", 1e3, false),
            headline(metric::SLO, "SLO attainment", "%", 100.0, true),
        ];
    }
    let mut steps: Vec<&String> = table
        .rows
        .iter()
        .filter_map(|r| r.outcome.as_ref().ok())
        .flat_map(|m| m.keys())
        .filter(|k| k.starts_with("simulated.strategies.") && k.ends_with(".step_ns"))
        .collect();
    // Without overlap first: one per placement, the placements compared.
    steps.sort_by_key(|m| (!m.ends_with("/none.step_ns"), m.as_str()));
    steps.dedup();
    steps
        .into_iter()
        .take(4)
        .map(|m| {
            let strategy = &m["simulated.strategies.".len()..m.len() - ".step_ns".len()];
            headline(m, &format!("step time ({strategy})"), "ms", 1e-6, false)
        })
        .collect()
}

/// Writes the sweep's report as the folder `dir` (replaced whole, like every report),
/// returning the paths written.
pub fn write_sweep_report(table: &SweepTable, dir: &Path) -> Result<Vec<PathBuf>> {
    super::check_replaceable(dir)?;
    output::replace_dir(dir, |tmp| {
        let heads = headlines(table);
        let failed = table.rows.iter().filter(|r| r.outcome.is_err()).count();
        let verdict = sweep_verdict(table, heads.first(), failed);
        let mut md = format!("# Sweep of {} points\n\n{verdict}\n\n", table.total);
        let summary = json!({
            "sweep": table.sweep,
            "points": table.rows.len(),
            "failed": failed,
            "verdict": verdict,
        });
        let mut written = vec![super::write_summary(&summary, tmp)?];
        let axes = (table.axes.len() == 2).then(|| HeatmapAxes::of_axes(table, 1, 0));
        written.extend(write_charts(table, &heads, axes, tmp, &mut md)?);
        md.push_str("## Points\n\n");
        points_table(&mut md, table, &heads);
        written.extend(super::write_markdown(&md, tmp)?);
        Ok(super::relocate(written, tmp, dir))
    })
}

/// The sweep's verdict: the best and worst point on the first headline metric.
fn sweep_verdict(table: &SweepTable, head: Option<&Headline>, failed: usize) -> String {
    let ran = format!("Across {} points ({failed} failed)", table.rows.len());
    let Some(head) = head else {
        return format!("{ran}, no point has a metric to compare.");
    };
    let mut valued: Vec<(f64, &PointRow)> = table
        .rows
        .iter()
        .filter_map(|r| Some((head.value(r)?, r)))
        .collect();
    valued.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.point.cmp(&b.1.point)));
    if head.larger_is_better {
        valued.reverse();
    }
    let (Some(best), Some(worst)) = (valued.first(), valued.last()) else {
        return format!("{ran}, none has a {}.", head.name);
    };
    let name = |row: &PointRow| describe(&table.axes, &row.values, None);
    format!(
        "{ran}, the best {} is {:.3} {} at {}, against {:.3} {} at {}.",
        head.name,
        best.0,
        head.unit,
        name(best.1),
        worst.0,
        head.unit,
        name(worst.1)
    )
}

/// How a heatmap lays the points out: the name of each point's column and row, and what the
/// columns and rows are.
pub struct HeatmapAxes<'a> {
    /// A point's column (its value on the horizontal axis).
    pub x: Box<dyn Fn(&PointRow) -> String + 'a>,
    /// What the columns are.
    pub x_name: String,
    /// A point's row.
    pub y: Box<dyn Fn(&PointRow) -> String + 'a>,
    /// What the rows are.
    pub y_name: String,
}

impl<'a> HeatmapAxes<'a> {
    /// Axis `x` of `table` across and axis `y` up, each value as written (strings bare).
    pub fn of_axes(table: &'a SweepTable, x: usize, y: usize) -> Self {
        let value = move |column: usize| {
            move |row: &PointRow| {
                let v = &row.values[column];
                bare(v).unwrap_or(v).to_string()
            }
        };
        HeatmapAxes {
            x: Box::new(value(x)),
            x_name: table.axes[x].clone(),
            y: Box::new(value(y)),
            y_name: table.axes[y].clone(),
        }
    }
}

/// Writes a heatmap per headline metric laid out by `axes` (when given) and the Pareto chart
/// (served points) into `dir`, adding them to `md`; returns the paths written.
pub fn write_charts(
    table: &SweepTable,
    heads: &[Headline],
    axes: Option<HeatmapAxes>,
    dir: &Path,
    md: &mut String,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    if let Some(axes) = axes {
        let _ = writeln!(md, "## Heatmaps\n");
        for (index, head) in heads.iter().enumerate() {
            let file = format!("heatmap_{index}");
            written.extend(heatmap(table, head, &axes, &dir.join(&file))?);
            let _ = writeln!(
                md,
                "![{} by {} and {}]({file}.png)\n",
                head.name, axes.x_name, axes.y_name
            );
        }
    }
    if heads.first().is_some_and(|h| h.metric == metric::COST) {
        let points = plan::cost_latency(&table.rows);
        let front = plan::front(&points);
        let scatter: Vec<ScatterPoint> = points
            .iter()
            .zip(&table.rows)
            .map(|(&(x, y), row)| ScatterPoint {
                x,
                y,
                label: describe(&table.axes, &row.values, None),
            })
            .collect();
        let labels = ChartLabels {
            title: "Cost against E2E latency p99, Pareto front numbered",
            x: "cost, $ per million output tokens",
            y: "E2E latency p99, s",
        };
        written.extend(charts::pareto(
            &dir.join("pareto"),
            labels,
            &scatter,
            &front,
        )?);
        let _ = writeln!(
            md,
            "## Pareto front\n\n{} of {} points are on the front of cost against E2E p99 \
             (no other point is cheaper and faster).\n\n![Pareto front of cost against E2E \
             p99](pareto.png)\n",
            front.len(),
            table.rows.len()
        );
    }
    Ok(written)
}

/// One headline metric over the columns and rows of `axes`, in the order they first appear.
fn heatmap(
    table: &SweepTable,
    head: &Headline,
    axes: &HeatmapAxes,
    stem: &Path,
) -> Result<Vec<PathBuf>> {
    let distinct = |key: &dyn Fn(&PointRow) -> String| {
        let mut seen: Vec<String> = Vec::new();
        for row in &table.rows {
            let value = key(row);
            if !seen.contains(&value) {
                seen.push(value);
            }
        }
        seen
    };
    let (columns, rows) = (distinct(&axes.x), distinct(&axes.y));
    let cells: Vec<Vec<Option<f64>>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| {
                    table
                        .rows
                        .iter()
                        .find(|row| (axes.x)(row) == *c && (axes.y)(row) == *r)
                        .and_then(|row| head.value(row))
                })
                .collect()
        })
        .collect();
    let title = format!("{} ({}); grey: failed or not run", head.name, head.unit);
    let measure = format!("{}, {}", head.name, head.unit);
    let grid = LabelledGrid {
        columns: &columns,
        rows: &rows,
        cells: &cells,
        measure: &measure,
    };
    let labels = ChartLabels {
        title: &title,
        x: &axes.x_name,
        y: &axes.y_name,
    };
    charts::labelled_heatmap(stem, labels, &grid)
}

/// A Markdown table of the rows: their axis values, headline metrics and errors.
pub fn points_table(md: &mut String, table: &SweepTable, heads: &[Headline]) {
    let mut header: Vec<String> = table.axes.iter().map(|a| format!("`{a}`")).collect();
    header.extend(heads.iter().map(|h| format!("{} ({})", h.name, h.unit)));
    header.push("error".to_string());
    let _ = writeln!(md, "| point | {} |", header.join(" | "));
    let _ = writeln!(md, "|---:|{}", "---|".repeat(header.len()));
    for row in &table.rows {
        let mut cells: Vec<String> = row
            .values
            .iter()
            .map(|v| bare(v).unwrap_or(v).to_string())
            .collect();
        cells.extend(
            heads
                .iter()
                .map(|h| h.value(row).map_or(String::new(), |v| format!("{v:.3}"))),
        );
        cells.push(row.outcome.as_ref().err().cloned().unwrap_or_default());
        let _ = writeln!(md, "| {} | {} |", row.point, cells.join(" | "));
    }
    md.push('\n');
}
