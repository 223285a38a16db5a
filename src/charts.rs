//! Charts drawn with plotters, each written as both PNG and SVG.
//!
//! The functions take plain numbers (series and matrices) so any result can be charted; they know
//! nothing of scenarios or strategies.

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::output::temp_sibling;

mod grid;

pub use grid::{LabelledGrid, ScatterPoint};

/// Pixel size of every chart but Gantt charts.
const CHART_SIZE: (u32, u32) = (960, 540);
/// Most row labels a Gantt panel prints; with more rows (two per GPU on big clusters) every
/// few rows is labelled so that the labels do not overprint each other.
const MAX_ROW_LABELS: usize = 24;

/// Tick labels and axis descriptions: larger than plotters' 12 px default, readable when a
/// page scales the chart down.
const TICK_FONT: (&str, u32) = ("sans-serif", 14);
const AXIS_FONT: (&str, u32) = ("sans-serif", 16);

/// Width of a Gantt chart, and the height of each of its panels.
const GANTT_PANEL_SIZE: (u32, u32) = (1200, 320);

/// Series colours: the Okabe-Ito palette (Okabe and Ito, "Color Universal Design", 2008), whose
/// eight colours stay apart under every common colour-vision deficiency. Yellow and black come
/// last: yellow is faint on white, and black reads as an axis.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(230, 159, 0),   // orange
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(240, 228, 66),  // yellow
    RGBColor(0, 0, 0),       // black
];

/// A named line of values, one per x position.
pub struct Series<'a> {
    /// Legend text.
    pub name: &'a str,
    /// One value per x position (layer).
    pub values: &'a [f64],
}

/// A named line through `(x, y)` points.
pub struct XySeries<'a> {
    /// Legend text.
    pub name: &'a str,
    /// Points in drawing order.
    pub points: &'a [(f64, f64)],
}

/// A named matrix for a heatmap panel: `rows[y][x]`.
pub struct HeatmapPanel<'a> {
    /// Panel title.
    pub title: &'a str,
    /// Rows of cells; all rows have the same length.
    pub rows: &'a [Vec<f64>],
}

/// One bar of a Gantt chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GanttBar {
    /// Row index (0 at the top).
    pub row: usize,
    /// Index into the chart's kinds: picks the colour and legend entry.
    pub kind: usize,
    /// Start on the x axis.
    pub start: f64,
    /// End on the x axis.
    pub end: f64,
}

/// One panel of a Gantt chart: named rows and the bars on them.
pub struct GanttPanel<'a> {
    /// Panel title.
    pub title: &'a str,
    /// Row names, top to bottom.
    pub rows: &'a [String],
    /// Bars, drawn in order (later on top).
    pub bars: &'a [GanttBar],
}

/// Writes `<stem>.png` and `<stem>.svg` with one line per series against the layer index.
/// Returns the two paths written.
pub fn line_chart(stem: &Path, labels: ChartLabels, series: &[Series]) -> Result<Vec<PathBuf>> {
    let chart = Chart::Lines {
        labels,
        series,
        x_names: None,
    };
    render_both(stem, &chart, CHART_SIZE)
}

/// Like [`line_chart`], with x position `i` labelled `x_names[i]` (a cache size, a setting)
/// instead of its index.
pub fn line_chart_named_x(
    stem: &Path,
    labels: ChartLabels,
    x_names: &[String],
    series: &[Series],
) -> Result<Vec<PathBuf>> {
    let chart = Chart::Lines {
        labels,
        series,
        x_names: Some(x_names),
    };
    render_both(stem, &chart, CHART_SIZE)
}

/// Writes `<stem>.png` and `<stem>.svg` with one line per series over a numeric x axis. Both axes
/// span the data (y with a 5% margin, not from zero, so that small differences show), with a
/// dashed black horizontal line at `reference` (legend text, value) when given; the legend sits
/// in the corner holding the fewest points. Returns the two paths written.
pub fn xy_lines(
    stem: &Path,
    labels: ChartLabels,
    series: &[XySeries],
    reference: Option<(&str, f64)>,
) -> Result<Vec<PathBuf>> {
    let chart = Chart::XyLines {
        labels,
        series,
        reference,
    };
    render_both(stem, &chart, CHART_SIZE)
}

/// Writes `<stem>.png` and `<stem>.svg` with one heatmap panel per matrix, side by side, sharing
/// one colour scale from 0 to the largest cell. Returns the two paths written.
pub fn heatmap(stem: &Path, labels: ChartLabels, panels: &[HeatmapPanel]) -> Result<Vec<PathBuf>> {
    render_both(stem, &Chart::Heatmap { labels, panels }, CHART_SIZE)
}

/// Writes `<stem>.png` and `<stem>.svg` with one metric over two labelled axes, each cell
/// coloured and printed with its value, and a colour bar of `grid.measure`. Returns the two
/// paths written.
pub fn labelled_heatmap(
    stem: &Path,
    labels: ChartLabels,
    grid: &LabelledGrid,
) -> Result<Vec<PathBuf>> {
    render_both(stem, &Chart::Grid { labels, grid }, CHART_SIZE)
}

/// Writes `<stem>.png` and `<stem>.svg` with every point as a circle and the points `front`
/// (indices, in drawing order) joined by a line and named. Returns the two paths written.
pub fn pareto(
    stem: &Path,
    labels: ChartLabels,
    points: &[ScatterPoint],
    front: &[usize],
) -> Result<Vec<PathBuf>> {
    let chart = Chart::Scatter {
        labels,
        points,
        front,
    };
    render_both(stem, &chart, CHART_SIZE)
}

/// Writes `<stem>.png` and `<stem>.svg` with one horizontal bar per category, stacked from the
/// parts: `parts[p].values[c]` is part `p` of category `c`. Returns the two paths written.
pub fn stacked_bars(
    stem: &Path,
    labels: ChartLabels,
    categories: &[String],
    parts: &[Series],
) -> Result<Vec<PathBuf>> {
    let chart = Chart::StackedBars {
        labels,
        categories,
        parts,
    };
    render_both(stem, &chart, CHART_SIZE)
}

/// Writes `<stem>.png` and `<stem>.svg` with the panels stacked top to bottom, bars coloured by
/// `kinds` (the legend, listing the kinds a panel has bars of). Returns the two paths written.
pub fn gantt(
    stem: &Path,
    labels: ChartLabels,
    kinds: &[&str],
    panels: &[GanttPanel],
) -> Result<Vec<PathBuf>> {
    let (width, panel_height) = GANTT_PANEL_SIZE;
    let height = 60 + panel_height * panels.len().max(1) as u32;
    let chart = Chart::Gantt {
        labels,
        kinds,
        panels,
    };
    render_both(stem, &chart, (width, height))
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
        /// Names of the x positions; `None`: their indices.
        x_names: Option<&'a [String]>,
    },
    XyLines {
        labels: ChartLabels<'a>,
        series: &'a [XySeries<'a>],
        reference: Option<(&'a str, f64)>,
    },
    Heatmap {
        labels: ChartLabels<'a>,
        panels: &'a [HeatmapPanel<'a>],
    },
    StackedBars {
        labels: ChartLabels<'a>,
        categories: &'a [String],
        parts: &'a [Series<'a>],
    },
    Gantt {
        labels: ChartLabels<'a>,
        kinds: &'a [&'a str],
        panels: &'a [GanttPanel<'a>],
    },
    Grid {
        labels: ChartLabels<'a>,
        grid: &'a LabelledGrid<'a>,
    },
    Scatter {
        labels: ChartLabels<'a>,
        points: &'a [ScatterPoint],
        front: &'a [usize],
    },
}

impl Chart<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let drawn = match self {
            Chart::Lines {
                labels,
                series,
                x_names,
            } => draw_lines(area, labels, series, *x_names),
            Chart::XyLines {
                labels,
                series,
                reference,
            } => draw_xy_lines(area, labels, series, *reference),
            Chart::Heatmap { labels, panels } => draw_heatmaps(area, labels, panels),
            Chart::StackedBars {
                labels,
                categories,
                parts,
            } => draw_stacked_bars(area, labels, categories, parts),
            Chart::Gantt {
                labels,
                kinds,
                panels,
            } => draw_gantt(area, labels, kinds, panels),
            Chart::Grid { labels, grid } => grid::draw_grid(area, labels, grid),
            Chart::Scatter {
                labels,
                points,
                front,
            } => grid::draw_scatter(area, labels, points, front),
        };
        drawn
            .and_then(|()| area.present())
            .map_err(|e| e.to_string())
    }
}

/// Renders the chart to PNG and SVG of `size` pixels, each through a temporary file renamed into
/// place only when both are drawn.
fn render_both(stem: &Path, chart: &Chart, size: (u32, u32)) -> Result<Vec<PathBuf>> {
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let png_tmp = temp_sibling(&png).with_extension("png");
    let svg_tmp = temp_sibling(&svg).with_extension("svg");
    let drawn = chart
        .draw(&BitMapBackend::new(&png_tmp, size).into_drawing_area())
        .and_then(|()| chart.draw(&SVGBackend::new(&svg_tmp, size).into_drawing_area()))
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
    x_names: Option<&[String]>,
) -> DrawResult<DB> {
    area.fill(&WHITE)?;
    let points = series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let data_max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(1.0_f64, f64::max);
    // Room above the data for the legend in the upper right corner: about 20 px per entry
    // and 30 px of frame, of a plot about 430 px high.
    let legend_share = ((series.len() as f64 * 20.0 + 30.0) / 430.0).min(0.6);
    let y_max = data_max * 1.05 / (1.0 - legend_share);
    let mut chart = ChartBuilder::on(area)
        .caption(labels.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(-0.5..(points as f64 - 0.5), 0.0..y_max)?;
    chart
        .configure_mesh()
        .label_style(TICK_FONT)
        .axis_desc_style(AXIS_FONT)
        .x_desc(labels.x)
        .y_desc(labels.y)
        .x_labels(points.min(24))
        .x_label_formatter(&|x| match x_names {
            Some(names) => names.get(x.round() as usize).cloned().unwrap_or_default(),
            None => format!("{:.0}", x),
        })
        .draw()?;
    for (index, s) in series.iter().enumerate() {
        let color = series_color(index);
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
    draw_legend(&mut chart)
}

fn draw_xy_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    labels: &ChartLabels,
    series: &[XySeries],
    reference: Option<(&str, f64)>,
) -> DrawResult<DB> {
    area.fill(&WHITE)?;
    let points = || {
        series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let x = padded_span(points().map(|p| p.0), 0.02);
    let y = padded_span(points().map(|p| p.1).chain(reference.map(|r| r.1)), 0.05);
    let ends = reference
        .into_iter()
        .flat_map(|r| [(x.start, r.1), (x.end, r.1)]);
    let corner = emptiest_corner(points().chain(ends), x.clone(), y.clone());
    let mut chart = ChartBuilder::on(area)
        .caption(labels.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x.clone(), y)?;
    chart
        .configure_mesh()
        .label_style(TICK_FONT)
        .axis_desc_style(AXIS_FONT)
        .x_desc(labels.x)
        .y_desc(labels.y)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .draw()?;
    if let Some((name, level)) = reference {
        let style = BLACK.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                [(x.start, level), (x.end, level)],
                10,
                6,
                style,
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    for (index, s) in series.iter().enumerate() {
        let color = series_color(index);
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    draw_legend_at(&mut chart, corner)
}

/// A tick label: at most three decimals, trailing zeros dropped (10, -2.5, 0.125).
fn tick(value: f64) -> String {
    if value.abs() < 5e-4 {
        return "0".into();
    }
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The range of `values` widened by `margin` of its length on each side (by 1 when all are
/// equal; 0..1 without values).
fn padded_span(values: impl Iterator<Item = f64>, margin: f64) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return 0.0..1.0;
    }
    let pad = if hi > lo { (hi - lo) * margin } else { 1.0 };
    lo - pad..hi + pad
}

/// The legend corner whose quarter-and-a-bit of the plot (45% of each axis) holds the fewest
/// `points` (a reference line counts by its ends); upper right first on a tie.
fn emptiest_corner(
    points: impl Iterator<Item = (f64, f64)>,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> SeriesLabelPosition {
    // Per corner: whether it is at the right and at the top, and the points inside it.
    let mut corners = [
        (true, true, 0),
        (false, true, 0),
        (true, false, 0),
        (false, false, 0),
    ];
    for (px, py) in points {
        let fx = (px - x.start) / (x.end - x.start);
        let fy = (py - y.start) / (y.end - y.start);
        for (right, top, count) in &mut corners {
            let in_x = if *right { fx >= 0.55 } else { fx <= 0.45 };
            let in_y = if *top { fy >= 0.55 } else { fy <= 0.45 };
            *count += usize::from(in_x && in_y);
        }
    }
    let (right, top, _) = corners
        .iter()
        .copied()
        .min_by_key(|c| c.2)
        .expect("four corners");
    match (right, top) {
        (true, true) => SeriesLabelPosition::UpperRight,
        (false, true) => SeriesLabelPosition::UpperLeft,
        (true, false) => SeriesLabelPosition::LowerRight,
        (false, false) => SeriesLabelPosition::LowerLeft,
    }
}

/// The legend of a chart's labelled series, in its upper right corner.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> DrawResult<DB> {
    draw_legend_at(chart, SeriesLabelPosition::UpperRight)
}

/// The legend of a chart's labelled series, at `position`.
fn draw_legend_at<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> DrawResult<DB> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .draw()
}

/// How many tick labels of up to two digits fit side by side on an axis `pixels` wide in
/// [`TICK_FONT`] (about 28 px each, gap included), at least 2 and at most 16.
fn fitting_labels(pixels: u32) -> usize {
    (pixels / 28).clamp(2, 16) as usize
}

/// Pixels for a category axis whose labels are `names`, in [`TICK_FONT`].
fn label_width(names: &[String]) -> u32 {
    names.iter().map(String::len).max().unwrap_or(0) as u32 * 9 + 16
}

/// The colour of series `index`, cycling through [`PALETTE`].
fn series_color(index: usize) -> RGBAColor {
    PALETTE[index % PALETTE.len()].to_rgba()
}

/// A legend entry: a filled square of `color`.
fn legend_swatch(color: RGBAColor) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
}

/// The values of a category axis of `count` rows, to be segmented one row per value. Plotters
/// maps every value of a range that holds a single value to one pixel (a lone bar would have
/// no height), so a single row gets a second, unlabelled one beside it.
fn category_rows(count: usize) -> std::ops::Range<usize> {
    0..count.max(2) - 1
}

/// The name of the segment `value` points into, for row and category axes.
fn segment_name(names: &[String], value: &SegmentValue<usize>) -> String {
    match value {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            names.get(*i).cloned().unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    }
}

fn draw_stacked_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    labels: &ChartLabels,
    categories: &[String],
    parts: &[Series],
) -> DrawResult<DB> {
    area.fill(&WHITE)?;
    let count = categories.len().max(1);
    let total = |c: usize| {
        parts
            .iter()
            .map(|p| p.values.get(c).copied().unwrap_or(0.0))
            .sum()
    };
    let x_max = (0..count)
        .map(total)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE)
        * 1.25;
    let label_width = label_width(categories);
    let mut chart = ChartBuilder::on(area)
        .caption(labels.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(label_width)
        .build_cartesian_2d(0.0..x_max, category_rows(count).into_segmented())?;
    chart
        .configure_mesh()
        .label_style(TICK_FONT)
        .axis_desc_style(AXIS_FONT)
        .disable_y_mesh()
        .x_desc(labels.x)
        .y_desc(labels.y)
        .y_labels(count + 1)
        .y_label_formatter(&|v| segment_name(categories, v))
        .draw()?;
    let mut offsets = vec![0.0; count];
    for (index, part) in parts.iter().enumerate() {
        let color = series_color(index);
        let bars: Vec<Rectangle<_>> = (0..count)
            .map(|c| {
                let value = part.values.get(c).copied().unwrap_or(0.0);
                let (start, end) = (offsets[c], offsets[c] + value);
                offsets[c] = end;
                let mut bar = Rectangle::new(
                    [
                        (start, SegmentValue::Exact(c)),
                        (end, SegmentValue::Exact(c + 1)),
                    ],
                    color.filled(),
                );
                bar.set_margin(3, 3, 0, 0);
                bar
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(part.name)
            .legend(legend_swatch(color));
    }
    draw_legend(&mut chart)
}

fn draw_gantt<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    labels: &ChartLabels,
    kinds: &[&str],
    panels: &[GanttPanel],
) -> DrawResult<DB> {
    area.fill(&WHITE)?;
    let area = area.titled(labels.title, ("sans-serif", 24))?;
    let x_max = panels
        .iter()
        .flat_map(|p| p.bars.iter().map(|b| b.end))
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let x_min = panels
        .iter()
        .flat_map(|p| p.bars.iter().map(|b| b.start))
        .fold(x_max, f64::min);
    for (panel, cell) in panels
        .iter()
        .zip(area.split_evenly((panels.len().max(1), 1)))
    {
        let rows = panel.rows.len().max(1);
        let label_width = label_width(panel.rows);
        let mut chart = ChartBuilder::on(&cell)
            .caption(panel.title, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(44)
            .y_label_area_size(label_width)
            .build_cartesian_2d(x_min..x_max * 1.15, category_rows(rows).into_segmented())?;
        chart
            .configure_mesh()
            .label_style(TICK_FONT)
            .axis_desc_style(AXIS_FONT)
            .disable_y_mesh()
            .x_desc(labels.x)
            .y_labels((rows + 1).min(MAX_ROW_LABELS))
            .y_label_formatter(&|v| segment_name(panel.rows, v))
            .draw()?;
        for (kind, name) in kinds.iter().enumerate() {
            let color = series_color(kind);
            let bars: Vec<Rectangle<_>> = panel
                .bars
                .iter()
                .filter(|b| b.kind == kind)
                .map(|b| {
                    let (top, bottom) =
                        (SegmentValue::Exact(b.row), SegmentValue::Exact(b.row + 1));
                    let mut bar = Rectangle::new([(b.start, top), (b.end, bottom)], color.filled());
                    bar.set_margin(2, 2, 0, 0);
                    bar
                })
                .collect();
            if bars.is_empty() {
                continue;
            }
            chart
                .draw_series(bars)?
                .label(*name)
                .legend(legend_swatch(color));
        }
        draw_legend(&mut chart)?;
    }
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
            .x_label_area_size(44)
            .y_label_area_size(44)
            .build_cartesian_2d(
                (0..cols - 1).into_segmented(),
                (0..rows - 1).into_segmented(),
            )?;
        let x_labels = cols.min(fitting_labels(chart.plotting_area().dim_in_pixel().0));
        heatmap_mesh(&mut chart, labels)
            .x_labels(x_labels + 1)
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
    draw_color_scale(&legend, 0.0, max, "")
}

/// The mesh of a heatmap: readable fonts, the axes described, no grid lines over the cells.
fn heatmap_mesh<'a, 'b, DB, X, Y>(
    chart: &'b mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    labels: &ChartLabels,
) -> plotters::chart::MeshStyle<'a, 'b, X, Y, DB>
where
    DB: DrawingBackend,
    X: Ranged + ValueFormatter<X::ValueType>,
    Y: Ranged + ValueFormatter<Y::ValueType>,
{
    let mut mesh = chart.configure_mesh();
    mesh.label_style(TICK_FONT)
        .axis_desc_style(AXIS_FONT)
        .disable_mesh()
        .x_desc(labels.x)
        .y_desc(labels.y);
    mesh
}

/// A vertical colour bar from `lo` (bottom) to `hi` (top), described by `measure`.
fn draw_color_scale<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lo: f64,
    hi: f64,
    measure: &str,
) -> DrawResult<DB> {
    const STEPS: usize = 50;
    let mut chart = ChartBuilder::on(area)
        .margin_top(40)
        .margin_bottom(40)
        .margin_right(8)
        .y_label_area_size(if measure.is_empty() { 60 } else { 84 })
        .build_cartesian_2d(0.0..1.0, lo..hi)?;
    chart
        .configure_mesh()
        .label_style(TICK_FONT)
        .axis_desc_style(AXIS_FONT)
        .disable_mesh()
        .disable_x_axis()
        .y_desc(measure)
        .y_labels(6)
        .y_label_formatter(&|v| grid::significant(*v))
        .draw()?;
    let step = (hi - lo) / STEPS as f64;
    chart.draw_series((0..STEPS).map(|i| {
        let (a, b) = (lo + step * i as f64, lo + step * (i + 1) as f64);
        Rectangle::new(
            [(0.0, a), (1.0, b)],
            heat_color(((a + b) / 2.0 - lo) / (hi - lo)).filled(),
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

    #[test]
    fn xy_axes_span_the_data_and_the_legend_avoids_it() {
        // y from -6 to 2 (and the reference 0), 25% of 8 either side: not from zero.
        let y = padded_span([-6.0, 2.0, 0.0].into_iter(), 0.25);
        assert_eq!(y, -8.0..4.0);
        assert_eq!(padded_span([3.0].into_iter(), 0.05), 2.0..4.0);
        let ticks: Vec<String> = [10.0, -2.5, 0.125, -1e-9].into_iter().map(tick).collect();
        assert_eq!(ticks, ["10", "-2.5", "0.125", "0"]);
        // Lines falling from the top left to the bottom right, and a reference line at 0 across
        // the top, leave the lower left empty.
        let points = [(0.0, 2.0), (10.0, 1.5), (90.0, -5.0), (100.0, -6.0)];
        let ends = [(0.0, 0.0), (100.0, 0.0)];
        let corner = emptiest_corner(points.into_iter().chain(ends), 0.0..100.0, y.clone());
        assert!(matches!(corner, SeriesLabelPosition::LowerLeft));
        // Without the reference the upper right is empty too, and wins the tie.
        let corner = emptiest_corner(points.into_iter(), 0.0..100.0, y);
        assert!(matches!(corner, SeriesLabelPosition::UpperRight));
        let dir = tempfile::tempdir().unwrap();
        let labels = ChartLabels {
            title: "t",
            x: "accuracy %",
            y: "change %",
        };
        let line = XySeries {
            name: "a",
            points: &points,
        };
        let written = xy_lines(
            &dir.path().join("xy"),
            labels,
            &[line],
            Some(("plain", 0.0)),
        );
        assert_eq!(written.unwrap().len(), 2);
    }

    #[test]
    fn a_single_stacked_bar_is_drawn_with_height() {
        let dir = tempfile::tempdir().unwrap();
        let labels = ChartLabels {
            title: "t",
            x: "ms",
            y: "strategy",
        };
        let written = stacked_bars(
            &dir.path().join("bars"),
            labels,
            &["contiguous / none".to_string()],
            &[Series {
                name: "compute",
                values: &[2.0],
            }],
        )
        .unwrap();
        // The bar is the first palette colour (Okabe-Ito blue, #0072B2); the plot is about 430 px high, so its
        // one row of two is about 215 px less the 3 px margins.
        let svg = std::fs::read_to_string(&written[1]).unwrap();
        let tallest = svg
            .split("<rect")
            .filter(|r| r.contains("fill=\"#0072B2\""))
            .filter_map(|r| {
                r.split("height=\"")
                    .nth(1)?
                    .split('"')
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
            .fold(0.0, f64::max);
        assert!(tallest > 150.0, "tallest bar {tallest} px");
        assert!(svg.contains("contiguous / none"));
    }
}
