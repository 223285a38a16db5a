//! The report of a plan (`moesim plan`): `summary.json`, `points.parquet` (every point run),
//! `pareto.parquet` (the points on the front of cost against E2E p99), `report.md` with the
//! verdict first, the layouts' best points, the Pareto chart, a heatmap of the objective when
//! the space has two axes, and `index.html`.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::sweep::{Headline, HeatmapAxes, headlines, points_table, write_charts};
use crate::error::Result;
use crate::output;
use crate::plan::{PlanResult, PlanSpec};
use crate::sweep::{PointRow, SweepTable, describe};

/// Writes the plan's report as the folder `dir` (replaced whole, like every report),
/// returning the paths written.
pub fn write_plan_report(spec: &PlanSpec, result: &PlanResult, dir: &Path) -> Result<Vec<PathBuf>> {
    super::check_replaceable(dir)?;
    output::replace_dir(dir, |tmp| {
        let table = &result.evaluated;
        let heads = headlines(table);
        let mut written = vec![super::write_summary(&summary(spec, result), tmp)?];
        let points = tmp.join("points.parquet");
        table.write(&points)?;
        let front = SweepTable {
            rows: result
                .pareto()
                .iter()
                .map(|&i| table.rows[i].clone())
                .collect(),
            ..table.clone()
        };
        let pareto = tmp.join("pareto.parquet");
        front.write(&pareto)?;
        written.extend([points, pareto]);
        let mut md = format!(
            "# Plan: {}\n\n{}\n\n{}\n\n",
            spec.plan.objective.superlative(),
            result.verdict,
            evaluated_line(spec, result)
        );
        md.push_str("## Best size of each layout\n\n");
        layouts_table(&mut md, spec, result, &heads);
        // The sizes across, the layouts up.
        let scale = spec.scale_column;
        let axes = HeatmapAxes {
            x: Box::new(move |row: &PointRow| row.values[scale].clone()),
            x_name: spec.plan.scale.clone(),
            y: Box::new(move |row: &PointRow| describe(&table.axes, &row.values, Some(scale))),
            y_name: "layout".to_string(),
        };
        written.extend(write_charts(table, &heads, Some(axes), tmp, &mut md)?);
        md.push_str("## Points run\n\n");
        points_table(&mut md, table, &heads);
        written.extend(super::write_markdown(&md, tmp)?);
        Ok(super::relocate(written, tmp, dir))
    })
}

/// "Ran 9 of 24 points: ...".
pub fn evaluated_line(spec: &PlanSpec, result: &PlanResult) -> String {
    format!(
        "Ran {} of the {} points of the grid: per layout, a bisection over `{}` for the \
         smallest size meeting the constraints.",
        result.evaluated.rows.len(),
        spec.sweep.points.len(),
        spec.plan.scale
    )
}

/// Each layout's smallest size meeting the constraints and its headline metrics.
fn layouts_table(md: &mut String, spec: &PlanSpec, result: &PlanResult, heads: &[Headline]) {
    let names: Vec<String> = heads
        .iter()
        .map(|h| format!("{} ({})", h.name, h.unit))
        .collect();
    let _ = writeln!(
        md,
        "| rank | layout | `{}` | {} |",
        spec.plan.scale,
        names.join(" | ")
    );
    let _ = writeln!(md, "|---:|---|---:|{}", "---:|".repeat(heads.len()));
    let rank = |point: usize| result.ranking.iter().position(|&p| p == point);
    let mut layouts: Vec<_> = result.layouts.iter().collect();
    layouts.sort_by_key(|l| l.best.and_then(rank).unwrap_or(usize::MAX));
    for layout in layouts {
        let row = layout.best.and_then(|p| result.row(p));
        let (place, size, values) = match (layout.best, row) {
            (Some(point), Some(row)) => (
                rank(point).map_or(String::new(), |r| (r + 1).to_string()),
                spec.sweep.points[point][spec.scale_column].to_string(),
                heads
                    .iter()
                    .map(|h| h.value(row).map_or(String::new(), |v| format!("{v:.3}")))
                    .collect::<Vec<_>>(),
            ),
            _ => (
                String::new(),
                "none meets them".to_string(),
                vec![String::new(); heads.len()],
            ),
        };
        let _ = writeln!(
            md,
            "| {place} | {} | {size} | {} |",
            layout.name,
            values.join(" | ")
        );
    }
    md.push('\n');
}

/// `summary.json`: the verdict, the settings, the counts and the ranked best points.
fn summary(spec: &PlanSpec, result: &PlanResult) -> serde_json::Value {
    let limits = &spec.plan.constraints;
    let ranking: Vec<serde_json::Value> = result
        .ranking
        .iter()
        .filter_map(|&point| {
            let row = result.row(point)?;
            let layout = result.layouts.iter().find(|l| l.best == Some(point))?;
            Some(json!({
                "point": point,
                "layout": layout.name,
                "size": spec.sweep.points[point][spec.scale_column].to_string(),
                "metrics": row.outcome.as_ref().ok(),
            }))
        })
        .collect();
    json!({
        "verdict": result.verdict,
        "objective": spec.plan.objective,
        "scale": spec.plan.scale,
        "constraints": limits.describe(),
        "grid_points": spec.sweep.points.len(),
        "evaluated_points": result.evaluated.rows.len(),
        "layouts": result.layouts.len(),
        "ranking": ranking,
    })
}
