//! Charts drawn with plotters, each written as both PNG and SVG.
//!
//! The functions take plain numbers (series and matrices) so any result can be charted; they know
//! nothing of scenarios or strategies.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::output::temp_sibling;

/// Pixel size of every chart.
const CHART_SIZE: (u32, u32) = (960, 540);

/// A named line of values, one per x position.
pub struct Series<'a> {
    /// Legend text.
    pub name: &'a str,
    /// One value per x position (layer).
    pub values: &'a [f64],
}

/// A named matrix for a heatmap panel: `rows[y][x]`.
pub struct HeatmapPanel<'a> {
    /// Panel title.
    pub title: &'a str,
    /// Rows of cells; all rows have the same length.
    pub rows: &'a [Vec<f64>],
}

/// Writes `<stem>.png` and `<stem>.svg` with one line per series against the layer index.
/// Returns the two paths written.
pub fn line_chart(stem: &Path, labels: ChartLabels, series: &[Series]) -> Result<Vec<PathBuf>> {
    render_both(stem, &Chart::Lines { labels, series })
}

/// Writes `<stem>.png` and `<stem>.svg` with one heatmap panel per matrix, side by side, sharing
/// one colour scale from 0 to the largest cell. Returns the two paths written.
pub fn heatmap(stem: &Path, labels: ChartLabels, panels: &[HeatmapPanel]) -> Result<Vec<PathBuf>> {
    render_both(stem, &Chart::Heatmap { labels, panels })
}

/// Title and axis descriptions of a chart.
#[derive(Clone, Copy)]
pub struct ChartLabels<'a> {
    /// Caption above the chart.
    pub title: &'a str,
    /// Horizontal axis description.
    pub x: &'a str,
    /// Vertical axis description.
    pub y: &'a str,
}

/// What to draw, independent of the backend it is drawn on.
enum Chart<'a> {
    Lines {
        labels: ChartLabels<'a>,
        series: &'a [Series<'a>],
    },
    Heatmap {
        labels: ChartLabels<'a>,
        panels: &'a [HeatmapPanel<'a>],
    },
}

impl Chart<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let drawn = match self {
            Chart::Lines { labels, series } => draw_lines(area, labels, series),
            Chart::Heatmap { labels, panels } => draw_heatmaps(area, labels, panels),
        };
        drawn
            .and_then(|()| area.present())
            .map_err(|e| e.to_string())
    }
}

/// Renders the chart to PNG and SVG, each through a temporary file renamed into place only when
/// both are drawn.
fn render_both(stem: &Path, chart: &Chart) -> Result<Vec<PathBuf>> {
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let png_tmp = temp_sibling(&png).with_extension("png");
    let svg_tmp = temp_sibling(&svg).with_extension("svg");
    let drawn = chart
        .draw(&BitMapBackend::new(&png_tmp, CHART_SIZE).into_drawing_area())
        .and_then(|()| chart.draw(&SVGBackend::new(&svg_tmp, CHART_SIZE).into_drawing_area()))
        .and_then(|()| {
            std::fs::rename(&png_tmp, &png).map_err(|e| e.to_string())?;
            std::fs::rename(&svg_tmp, &svg).map_err(|e| e.to_string())
        });
    if let Err(message) = drawn {
        for file in [&png_tmp, &svg_tmp, &png] {
            let _ = std::fs::remove_file(file);
        }
        return Err(Error::bad_file(
            stem,
            format!("cannot draw chart: {message}"),
        ));
    }
    Ok(vec![png, svg])
}

type DrawResult<DB> =
    std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    labels: &ChartLabels,
    series: &[Series],
) -> DrawResult<DB> {
    area.fill(&WHITE)?;
    let points = series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let y_max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(1.0_f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(labels.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5..(points as f64 - 0.5), 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc(labels.x)
        .y_desc(labels.y)
        .x_labels(points.min(24))
        .x_label_formatter(&|x| format!("{:.0}", x))
        .draw()?;
    for (index, s) in series.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.values.iter().enumerate().map(|(x, &y)| (x as f64, y)),
                color.stroke_width(2),
            ))?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            s.values
                .iter()
                .enumerate()
                .map(|(x, &y)| Circle::new((x as f64, y), 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

fn draw_heatmaps<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    labels: &ChartLabels,
    panels: &[HeatmapPanel],
) -> DrawResult<DB> {
    area.fill(&WHITE)?;
    let area = area.titled(labels.title, ("sans-serif", 24))?;
    let (body, legend) = area.split_horizontally(area.dim_in_pixel().0 - 100);
    let max = panels
        .iter()
        .flat_map(|p| p.rows.iter().flatten().copied())
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    for (panel, cell) in panels
        .iter()
        .zip(body.split_evenly((1, panels.len().max(1))))
    {
        let rows = panel.rows.len().max(1);
        let cols = panel.rows.first().map_or(1, Vec::len).max(1);
        let mut chart = ChartBuilder::on(&cell)
            .caption(panel.title, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(
                (0..cols - 1).into_segmented(),
                (0..rows - 1).into_segmented(),
            )?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(labels.x)
            .y_desc(labels.y)
            .x_labels(cols.min(16) + 1)
            .y_labels(rows.min(24) + 1)
            .draw()?;
        chart.draw_series(panel.rows.iter().enumerate().flat_map(|(y, row)| {
            row.iter().enumerate().map(move |(x, &v)| {
                let (x0, y0) = (SegmentValue::Exact(x), SegmentValue::Exact(y));
                let (x1, y1) = (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1));
                Rectangle::new([(x0, y0), (x1, y1)], heat_color(v / max).filled())
            })
        }))?;
    }
    draw_color_scale(&legend, max)
}

/// A vertical colour bar from 0 (bottom) to `max` (top).
fn draw_color_scale<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, max: f64) -> DrawResult<DB> {
    const STEPS: usize = 50;
    let mut chart = ChartBuilder::on(area)
        .margin_top(40)
        .margin_bottom(40)
        .margin_right(8)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..1.0, 0.0..max)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(6)
        .y_label_style(("sans-serif", 14))
        .y_label_formatter(&|v| format!("{v:.2}"))
        .draw()?;
    chart.draw_series((0..STEPS).map(|i| {
        let lo = max * i as f64 / STEPS as f64;
        let hi = max * (i + 1) as f64 / STEPS as f64;
        Rectangle::new(
            [(0.0, lo), (1.0, hi)],
            heat_color((lo + hi) / 2.0 / max).filled(),
        )
    }))?;
    Ok(())
}

/// Maps 0..=1 to a perceptually ordered ramp (dark blue -> teal -> yellow).
fn heat_color(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let stops = [
        (68.0, 1.0, 84.0),
        (33.0, 145.0, 140.0),
        (253.0, 231.0, 37.0),
    ];
    let scaled = t * (stops.len() - 1) as f64;
    let i = (scaled.floor() as usize).min(stops.len() - 2);
    let f = scaled - i as f64;
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    RGBColor(
        mix(stops[i].0, stops[i + 1].0),
        mix(stops[i].1, stops[i + 1].1),
        mix(stops[i].2, stops[i + 1].2),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_ramp_ends_at_its_stops() {
        assert_eq!(heat_color(0.0), RGBColor(68, 1, 84));
        assert_eq!(heat_color(1.0), RGBColor(253, 231, 37));
        assert_eq!(heat_color(0.5), RGBColor(33, 145, 140));
    }

    #[test]
    fn charts_land_as_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("imbalance");
        let labels = ChartLabels {
            title: "t",
            x: "layer",
            y: "max/mean",
        };
        let written = line_chart(
            &stem,
            labels,
            &[Series {
                name: "a",
                values: &[1.0, 2.0, 1.5],
            }],
        )
        .unwrap();
        assert_eq!(written.len(), 2);
        let png = std::fs::read(&written[0]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(&written[1]).unwrap();
        assert!(svg.contains("<svg"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
