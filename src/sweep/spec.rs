//! A sweep file: a base scenario and the points to run it at, each point a set of scenario
//! fields (by dotted path) and their values.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result, parse_toml};
use crate::scenario::Scenario;

/// Most points a sweep may have.
pub const MAX_POINTS: usize = 1 << 20;

/// A sweep, resolved: the base scenario's TOML and every point, in order.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    /// The base scenario as a TOML table.
    base: toml::Table,
    /// The folder relative scenario paths are taken from (the base scenario's).
    base_dir: PathBuf,
    /// Axis paths, the columns of every point.
    pub axes: Vec<String>,
    /// One value per axis per point.
    pub points: Vec<Vec<toml::Value>>,
}

/// The sweep file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    /// The base scenario, relative to the sweep file.
    scenario: PathBuf,
    /// Axis path -> values: every combination, the first axis (in name order) slowest.
    grid: Option<toml::Table>,
    /// Explicit points: each a table of axis path -> value, all naming the same axes.
    points: Option<Vec<toml::Table>>,
    /// The planner's objective and constraints (`moesim plan` reads them; a sweep of the same
    /// file runs every point).
    #[serde(rename = "plan")]
    _plan: Option<toml::Table>,
}

impl SweepSpec {
    /// Reads the sweep file at `path` and its base scenario; every error names the file and key.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let file: SweepFile = parse_toml(&text).map_err(|m| Error::bad_file(path, m))?;
        let (axes, points) = match (file.grid, file.points) {
            (Some(grid), None) => grid_points(grid),
            (None, Some(points)) => list_points(points),
            _ => Err("give exactly one of `grid` and `points`".to_string()),
        }
        .map_err(|m| Error::bad_file(path, m))?;
        let scenario = path.parent().unwrap_or(Path::new("")).join(&file.scenario);
        let base_text = std::fs::read_to_string(&scenario).map_err(|e| Error::io(&scenario, e))?;
        let base: toml::Table =
            parse_toml(&base_text).map_err(|m| Error::bad_file(&scenario, m))?;
        let base_dir = scenario.parent().unwrap_or(Path::new("")).to_path_buf();
        let spec = SweepSpec {
            base,
            base_dir,
            axes,
            points,
        };
        spec.check_axes().map_err(|m| Error::bad_file(path, m))?;
        Ok(spec)
    }

    /// The scenario of point `index`, or why it is not one.
    pub fn scenario(&self, index: usize) -> std::result::Result<Scenario, String> {
        let text = toml::to_string(&self.table(index)?).map_err(|e| e.to_string())?;
        Scenario::parse(&text, &self.base_dir)
    }

    /// The value at dotted `path` of point `index`'s scenario TOML (the base's where no axis
    /// sets it), if it has one.
    pub fn value(&self, index: usize, path: &str) -> Option<toml::Value> {
        let mut value = toml::Value::Table(self.table(index).ok()?);
        for segment in path.split('.') {
            value = value.as_table_mut()?.remove(segment)?;
        }
        Some(value)
    }

    /// Point `index`'s scenario as a TOML table: the base with every axis set.
    fn table(&self, index: usize) -> std::result::Result<toml::Table, String> {
        let mut table = self.base.clone();
        for (axis, value) in self.axes.iter().zip(&self.points[index]) {
            set(&mut table, axis, value.clone())?;
        }
        Ok(table)
    }

    /// The base scenario, axes and points as one text: what identifies the sweep.
    pub fn fingerprint(&self) -> String {
        let points: Vec<String> = self
            .points
            .iter()
            .map(|p| {
                p.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect();
        format!("{}\n{:?}\n{}", self.base, self.axes, points.join("\n"))
    }

    /// Refuses an axis that names no scenario field: the first point's scenario with only that
    /// axis set must not fail on an unknown field or key (serde's and the `[sim]` table's
    /// words for it).
    fn check_axes(&self) -> std::result::Result<(), String> {
        for (column, axis) in self.axes.iter().enumerate() {
            let mut table = self.base.clone();
            set(&mut table, axis, self.points[0][column].clone())?;
            let text = toml::to_string(&table).map_err(|e| e.to_string())?;
            if let Err(message) = Scenario::parse(&text, &self.base_dir)
                && (message.contains("unknown field") || message.contains("unknown key"))
            {
                return Err(format!("axis `{axis}` names no scenario field ({message})"));
            }
        }
        Ok(())
    }
}

/// Every combination of the grid's values, the first axis slowest.
fn grid_points(
    grid: toml::Table,
) -> std::result::Result<(Vec<String>, Vec<Vec<toml::Value>>), String> {
    let mut axes = Vec::new();
    let mut points: Vec<Vec<toml::Value>> = vec![Vec::new()];
    for (axis, values) in grid {
        let toml::Value::Array(values) = values else {
            return Err(format!("`grid.\"{axis}\"`: expected an array of values"));
        };
        if values.is_empty() {
            return Err(format!("`grid.\"{axis}\"`: the grid is empty (no values)"));
        }
        if points.len().saturating_mul(values.len()) > MAX_POINTS {
            return Err(format!("`grid`: more than {MAX_POINTS} points"));
        }
        points = points
            .iter()
            .flat_map(|point| {
                values.iter().map(move |value| {
                    let mut point = point.clone();
                    point.push(value.clone());
                    point
                })
            })
            .collect();
        axes.push(axis);
    }
    if axes.is_empty() {
        return Err("`grid`: the grid is empty (no axes)".to_string());
    }
    Ok((axes, points))
}

/// Explicit points; every point names the same axes.
fn list_points(
    list: Vec<toml::Table>,
) -> std::result::Result<(Vec<String>, Vec<Vec<toml::Value>>), String> {
    let Some(first) = list.first() else {
        return Err("`points`: the list is empty".to_string());
    };
    if list.len() > MAX_POINTS {
        return Err(format!("`points`: more than {MAX_POINTS} points"));
    }
    let axes: Vec<String> = first.keys().cloned().collect();
    if axes.is_empty() {
        return Err("`points[0]`: a point sets no field".to_string());
    }
    let mut points = Vec::with_capacity(list.len());
    for (index, point) in list.into_iter().enumerate() {
        let keys: Vec<&String> = point.keys().collect();
        if keys != axes.iter().collect::<Vec<_>>() {
            return Err(format!(
                "`points[{index}]`: sets {keys:?}, but the first point sets {axes:?}"
            ));
        }
        points.push(point.into_iter().map(|(_, value)| value).collect());
    }
    Ok((axes, points))
}

/// Sets the field at dotted `path` of `table` to `value`, making tables on the way.
fn set(table: &mut toml::Table, path: &str, value: toml::Value) -> std::result::Result<(), String> {
    let mut segments: Vec<&str> = path.split('.').collect();
    let last = segments.pop().unwrap_or_default();
    let mut current = table;
    for segment in segments {
        let entry = current
            .entry(segment.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("axis `{path}`: `{segment}` is not a table"))?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_is_every_combination_first_axis_slowest() {
        let grid: toml::Table = toml::from_str("a = [1, 2]\nb = [\"x\", \"y\", \"z\"]\n").unwrap();
        let (axes, points) = grid_points(grid).unwrap();
        assert_eq!(axes, ["a", "b"]);
        let shown: Vec<String> = points.iter().map(|p| format!("{}{}", p[0], p[1])).collect();
        assert_eq!(
            shown,
            ["1\"x\"", "1\"y\"", "1\"z\"", "2\"x\"", "2\"y\"", "2\"z\""]
        );
        let empty: toml::Table = toml::from_str("a = []\n").unwrap();
        assert!(grid_points(empty).unwrap_err().contains("empty"));
    }

    #[test]
    fn listed_points_name_the_same_axes() {
        let parse = |text: &str| {
            let file: toml::Table = toml::from_str(text).unwrap();
            let points = file["points"].as_array().unwrap();
            list_points(
                points
                    .iter()
                    .map(|p| p.as_table().unwrap().clone())
                    .collect(),
            )
        };
        let (axes, points) =
            parse("[[points]]\nx = 1\ncluster = \"a\"\n[[points]]\nx = 2\ncluster = \"b\"\n")
                .unwrap();
        assert_eq!(axes.len(), 2);
        assert_eq!(points.len(), 2);
        let err = parse("[[points]]\nx = 1\n[[points]]\ny = 2\n").unwrap_err();
        assert!(err.contains("`points[1]`"), "{err}");
    }

    #[test]
    fn dotted_paths_reach_into_tables() {
        let mut table: toml::Table =
            toml::from_str("x = 1\n[sim]\nall_to_all = \"direct\"\n").unwrap();
        set(&mut table, "sim.overlap", toml::Value::from("none")).unwrap();
        set(&mut table, "workload.arrival.rate", toml::Value::from(2.0)).unwrap();
        assert_eq!(table["sim"]["overlap"].as_str(), Some("none"));
        assert_eq!(table["workload"]["arrival"]["rate"].as_float(), Some(2.0));
        assert!(
            set(&mut table, "x.y", toml::Value::from(1))
                .unwrap_err()
                .contains("`x`")
        );
    }
}
