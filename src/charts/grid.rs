//! Charts of a sweep: a heatmap of one metric over two labelled axes, and a scatter of points
//! on two measures with their Pareto front drawn through them.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    AXIS_FONT, ChartLabels, DrawResult, PALETTE, TICK_FONT, category_rows, draw_color_scale,
    heat_color, heatmap_mesh, label_width, segment_name,
};

/// A metric over two labelled axes: `cells[row][column]`, `None` where there is no value (a
/// failed or skipped point).
pub struct LabelledGrid<'a> {
    /// Column names, left to right.
    pub columns: &'a [String],
    /// Row names, bottom to top.
    pub rows: &'a [String],
    /// One value per row and column.
    pub cells: &'a [Vec<Option<f64>>],
    /// What the colour bar measures, with its unit.
    pub measure: &'a str,
}

/// A point of a scatter chart.
pub struct ScatterPoint {
    /// Horizontal value.
    pub x: f64,
    /// Vertical value.
    pub y: f64,
    /// Name printed beside it when it is on the front.
    pub label: String,
}

/// Grey of a cell without a value.
const NO_VALUE: RGBColor = RGBColor(221, 221, 221);

pub(super) fn draw_grid<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    labels: &ChartLabels,
    grid: &LabelledGrid,
) -> DrawResult<DB> {
    area.fill(&WHITE)?;
    let area = area.titled(labels.title, ("sans-serif", 24))?;
    let (body, legend) = area.split_horizontally(area.dim_in_pixel().0 - 130);
    let values: Vec<f64> = grid.cells.iter().flatten().flatten().copied().collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = match (lo.is_finite(), hi > lo) {
        (false, _) => (0.0, 1.0),
        (true, true) => (lo, hi),
        (true, false) => (lo - 0.5 * lo.abs().max(1.0), hi + 0.5 * hi.abs().max(1.0)),
    };
    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .x_label_area_size(56)
        .y_label_area_size(label_width(grid.rows) + 28)
        .build_cartesian_2d(
            category_rows(grid.columns.len()).into_segmented(),
            category_rows(grid.rows.len()).into_segmented(),
        )?;
    heatmap_mesh(&mut chart, labels)
        .x_labels(grid.columns.len() + 1)
        .y_labels(grid.rows.len() + 1)
        .x_label_formatter(&|v| segment_name(grid.columns, v))
        .y_label_formatter(&|v| segment_name(grid.rows, v))
        .draw()?;
    let cells = grid
        .cells
        .iter()
        .enumerate()
        .flat_map(|(y, row)| row.iter().enumerate().map(move |(x, &value)| (x, y, value)));
    for (x, y, value) in cells {
        let color = value.map_or(NO_VALUE, |v| heat_color((v - lo) / (hi - lo)));
        let corners = [
            (SegmentValue::Exact(x), SegmentValue::Exact(y)),
            (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
        ];
        chart.draw_series([Rectangle::new(corners.clone(), color.filled())])?;
        chart.draw_series([Rectangle::new(corners, WHITE.stroke_width(2))])?;
        let text = value.map_or("n/a".to_string(), significant);
        // Dark text on the light end of the ramp, white on the dark end.
        let ink = match value {
            Some(v) if (v - lo) / (hi - lo) < 0.6 => WHITE,
            _ => BLACK,
        };
        let style = ("sans-serif", 18)
            .into_font()
            .color(&ink)
            .pos(Pos::new(HPos::Center, VPos::Center));
        let center = (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y));
        chart.draw_series([Text::new(text, center, style)])?;
    }
    draw_color_scale(&legend, lo, hi, grid.measure)
}

/// `value` with three significant digits (1.23, 45.6, 789, 12345).
pub(super) fn significant(value: f64) -> String {
    let digits = if value == 0.0 {
        0
    } else {
        (2 - value.abs().log10().floor() as i32).max(0) as usize
    };
    format!("{value:.digits$}")
}

pub(super) fn draw_scatter<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    labels: &ChartLabels,
    points: &[ScatterPoint],
    front: &[usize],
) -> DrawResult<DB> {
    area.fill(&WHITE)?;
    let finite: Vec<&ScatterPoint> = points
        .iter()
        .filter(|p| p.x.is_finite() && p.y.is_finite())
        .collect();
    let span = |values: Vec<f64>| {
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            return 0.0..1.0;
        }
        let pad = ((hi - lo) * 0.12).max(hi.abs() * 0.05).max(1e-9);
        (lo - pad).max(0.0)..hi + pad
    };
    let xs = span(finite.iter().map(|p| p.x).collect());
    let ys = span(finite.iter().map(|p| p.y).collect());
    let mut chart = ChartBuilder::on(area)
        .caption(labels.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(80)
        .build_cartesian_2d(xs, ys)?;
    chart
        .configure_mesh()
        .label_style(TICK_FONT)
        .axis_desc_style(AXIS_FONT)
        .light_line_style(WHITE)
        .x_desc(labels.x)
        .y_desc(labels.y)
        .draw()?;
    let (others, on_front) = (PALETTE[0], PALETTE[3]);
    chart
        .draw_series(
            finite
                .iter()
                .map(|p| Circle::new((p.x, p.y), 6, others.stroke_width(2))),
        )?
        .label("point")
        .legend(move |(x, y)| Circle::new((x + 8, y), 6, others.stroke_width(2)));
    let line: Vec<(f64, f64)> = front.iter().map(|&i| (points[i].x, points[i].y)).collect();
    chart.draw_series(LineSeries::new(line.clone(), on_front.stroke_width(2)))?;
    chart
        .draw_series(line.iter().map(|&p| Circle::new(p, 7, on_front.filled())))?
        .label("Pareto front, numbered by cost:")
        .legend(move |(x, y)| Circle::new((x + 8, y), 7, on_front.filled()));
    // Each front point numbered beside it and named in the legend: names beside the points
    // overprint each other where the front is dense.
    for (k, &i) in front.iter().enumerate() {
        let p = &points[i];
        let number = (k + 1).to_string();
        let mark = number.clone();
        chart
            .draw_series([EmptyElement::at((p.x, p.y))
                + Text::new(number, (8, -24), ("sans-serif", 15).into_font())])?
            .label(p.label.as_str())
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + Text::new(mark.clone(), (2, -8), ("sans-serif", 15).into_font())
            });
    }
    super::draw_legend(&mut chart)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_values_keep_three_significant_digits() {
        assert_eq!(significant(1.2345), "1.23");
        assert_eq!(significant(45.67), "45.7");
        assert_eq!(significant(789.4), "789");
        assert_eq!(significant(12345.0), "12345");
        assert_eq!(significant(0.0), "0");
    }
}
