//! A sweep's results as one table: a row per point with its axis values, its error (failed
//! points stay in the table) and its metrics; written as Parquet, read back, and merged from
//! shards into exactly the table an unsharded run writes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::guard::decode_guarded;
use crate::output;
use crate::trace::parquet::check_parquet;

/// Column of the sweep's identity (a hash of its base scenario and points).
const SWEEP: &str = "sweep";
/// Column of the sweep's point count.
const POINTS: &str = "sweep_points";
/// Column of the point's index.
const POINT: &str = "point";
/// Column of a failed point's error (null for points that ran).
const ERROR: &str = "error";
/// Prefix of axis columns: `scenario.<dotted path>`, the value as TOML.
const AXIS: &str = "scenario.";

/// One point's row.
#[derive(Debug, Clone, PartialEq)]
pub struct PointRow {
    /// Index of the point in the sweep.
    pub point: u32,
    /// The value of every axis, as TOML.
    pub values: Vec<String>,
    /// The point's metrics by dotted summary path, or why it failed.
    pub outcome: std::result::Result<BTreeMap<String, f64>, String>,
}

/// The results of a sweep, or of a shard of one.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepTable {
    /// The sweep's identity: slices of different sweeps do not merge.
    pub sweep: String,
    /// How many points the whole sweep has.
    pub total: u32,
    /// Axis paths, in column order.
    pub axes: Vec<String>,
    /// Rows, by point.
    pub rows: Vec<PointRow>,
}

impl SweepTable {
    /// Writes the table to `path` as Parquet, atomically: identity, point, axes, error, then
    /// the metrics in name order (null where a point lacks one).
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut frame = self
            .frame()
            .map_err(|e| Error::bad_file(path, format!("cannot build the table: {e}")))?;
        output::write_parquet_frame(path, &mut frame)
    }

    fn frame(&self) -> PolarsResult<DataFrame> {
        let height = self.rows.len();
        let mut columns = vec![
            StringChunked::from_iter_values(
                SWEEP.into(),
                self.rows.iter().map(|_| self.sweep.as_str()),
            )
            .into_column(),
            UInt32Chunked::from_vec(POINTS.into(), vec![self.total; height]).into_column(),
            UInt32Chunked::from_vec(POINT.into(), self.rows.iter().map(|r| r.point).collect())
                .into_column(),
        ];
        for (index, axis) in self.axes.iter().enumerate() {
            let values = self.rows.iter().map(|r| r.values[index].as_str());
            columns.push(
                StringChunked::from_iter_values(format!("{AXIS}{axis}").into(), values)
                    .into_column(),
            );
        }
        let errors = self
            .rows
            .iter()
            .map(|r| r.outcome.as_ref().err().map(String::as_str));
        columns.push(StringChunked::from_iter_options(ERROR.into(), errors).into_column());
        let metrics: BTreeSet<&String> = self
            .rows
            .iter()
            .filter_map(|r| r.outcome.as_ref().ok())
            .flat_map(|m| m.keys())
            .collect();
        for metric in metrics {
            let values = self
                .rows
                .iter()
                .map(|r| r.outcome.as_ref().ok().and_then(|m| m.get(metric).copied()));
            columns.push(Float64Chunked::from_iter_options(metric.into(), values).into_column());
        }
        DataFrame::new(height, columns)
    }

    /// Reads a table [`SweepTable::write`] wrote; anything else is an error naming the file.
    pub fn read(path: &Path) -> Result<Self> {
        check_parquet(path)?;
        let frame = decode_guarded(path, "reading the sweep table", || {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            ParquetReader::new(file)
                .finish()
                .map_err(|e| Error::bad_file(path, format!("not a Parquet table: {e}")))
        })?;
        from_frame(&frame).map_err(|message| Error::bad_file(path, message))
    }

    /// Combines the slices of one sweep (its shards) into the whole table: every point exactly
    /// once, from slices of the same sweep. The error names the file at fault.
    pub fn merge(slices: Vec<(String, SweepTable)>) -> Result<Self> {
        // A shard with no points (more shards than points) carries no identity to check.
        let mut slices = slices
            .into_iter()
            .filter(|(_, slice)| !slice.rows.is_empty());
        let Some((first_name, mut merged)) = slices.next() else {
            return Err(Error::invalid("the slices hold no points"));
        };
        for (name, slice) in slices {
            if (&slice.sweep, slice.total, &slice.axes)
                != (&merged.sweep, merged.total, &merged.axes)
            {
                return Err(Error::bad_file(
                    &name,
                    format!(
                        "a slice of another sweep than {first_name} (sweep {} of {} points, \
                         not {} of {})",
                        slice.sweep, slice.total, merged.sweep, merged.total
                    ),
                ));
            }
            merged.rows.extend(slice.rows);
        }
        merged.rows.sort_by_key(|r| r.point);
        let mut expected = 0..merged.total;
        for row in &merged.rows {
            match expected.next() {
                Some(point) if point == row.point => {}
                Some(point) if point < row.point => {
                    return Err(Error::invalid(format!("point {point} is in no slice")));
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "point {} is in two slices",
                        row.point
                    )));
                }
            }
        }
        if let Some(point) = expected.next() {
            return Err(Error::invalid(format!("point {point} is in no slice")));
        }
        Ok(merged)
    }
}

/// The table in `frame`, or what is wrong with it.
fn from_frame(frame: &DataFrame) -> std::result::Result<SweepTable, String> {
    let missing = |name: &str| format!("not a moesim sweep table: no column `{name}` of its type");
    let strings = |name: &str| -> std::result::Result<Vec<Option<String>>, String> {
        let column = frame.column(name).map_err(|_| missing(name))?;
        let values = column.str().map_err(|_| missing(name))?;
        Ok(values.iter().map(|v| v.map(str::to_string)).collect())
    };
    let numbers = |name: &str| -> std::result::Result<Vec<Option<u32>>, String> {
        let column = frame.column(name).map_err(|_| missing(name))?;
        Ok(column.u32().map_err(|_| missing(name))?.iter().collect())
    };
    let sweep = strings(SWEEP)?;
    let total = numbers(POINTS)?;
    let points = numbers(POINT)?;
    let errors = strings(ERROR)?;
    let names: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let axes: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_prefix(AXIS).map(str::to_string))
        .collect();
    let axis_values: Vec<Vec<Option<String>>> = axes
        .iter()
        .map(|axis| strings(&format!("{AXIS}{axis}")))
        .collect::<std::result::Result<_, _>>()?;
    let fixed = [SWEEP, POINTS, POINT, ERROR];
    let mut metrics = Vec::new();
    for name in names
        .iter()
        .filter(|n| !n.starts_with(AXIS) && !fixed.contains(&n.as_str()))
    {
        let column = frame.column(name).map_err(|_| missing(name))?;
        let values: Vec<Option<f64>> = column.f64().map_err(|_| missing(name))?.iter().collect();
        metrics.push((name.clone(), values));
    }
    let broken = |row: usize, what: &str| format!("row {row}: `{what}` is null");
    let first = |row: usize| -> std::result::Result<(String, u32), String> {
        Ok((
            sweep[row].clone().ok_or_else(|| broken(row, SWEEP))?,
            total[row].ok_or_else(|| broken(row, POINTS))?,
        ))
    };
    let (id, count) = if frame.height() == 0 {
        (String::new(), 0)
    } else {
        first(0)?
    };
    let mut rows = Vec::with_capacity(frame.height());
    for row in 0..frame.height() {
        if first(row)? != (id.clone(), count) {
            return Err(format!("row {row}: another sweep than row 0's"));
        }
        let values = axis_values
            .iter()
            .zip(&axes)
            .map(|(column, axis)| column[row].clone().ok_or_else(|| broken(row, axis)))
            .collect::<std::result::Result<_, _>>()?;
        let outcome = match &errors[row] {
            Some(error) => Err(error.clone()),
            None => Ok(metrics
                .iter()
                .filter_map(|(name, values)| Some((name.clone(), values[row]?)))
                .collect()),
        };
        rows.push(PointRow {
            point: points[row].ok_or_else(|| broken(row, POINT))?,
            values,
            outcome,
        });
    }
    Ok(SweepTable {
        sweep: id,
        total: count,
        axes,
        rows,
    })
}
