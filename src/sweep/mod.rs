//! Sweeps: one base scenario run at many points (scenario fields set by dotted path, as a grid
//! or an explicit list), in parallel, into one table of results. A sweep can be cut into
//! deterministic shards (`--shard i/n`, point `p` in shard `p mod n`) run on different
//! machines, whose tables merge into exactly the unsharded table.
//!
//! A point of a scenario with a `[serving]` table is served (`pipeline::serve`, in memory: no
//! report folder) and records the serving summary; any other point runs the step-level
//! pipeline (`pipeline::run`) and records its summary.

mod spec;
mod table;

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::str::FromStr;

use rayon::prelude::*;

pub use spec::{MAX_POINTS, SweepSpec};
pub use table::{PointRow, SweepTable};

use crate::compare::flatten;
use crate::pipeline;

/// Which slice of the points to run: those whose index mod `count` is `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based shard index, below `count`.
    pub index: usize,
    /// How many shards the sweep is cut into.
    pub count: usize,
}

impl Shard {
    /// The whole sweep.
    pub const ALL: Shard = Shard { index: 0, count: 1 };
}

impl FromStr for Shard {
    type Err = String;

    /// Parses `i/n`.
    fn from_str(text: &str) -> Result<Self, String> {
        let parsed = text
            .split_once('/')
            .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
        match parsed {
            Some((index, count)) if index < count => Ok(Shard { index, count }),
            Some((index, count)) => Err(format!(
                "shard {index} of {count} is out of range: shards are numbered 0 to {}",
                count.saturating_sub(1)
            )),
            None => Err(format!("`{text}` is not `i/n` (shard i of n, 0-based)")),
        }
    }
}

/// Runs the points of `spec` in `shard` on all cores; a point that fails is recorded with its
/// error. `progress` is called once per finished point.
pub fn run(spec: &SweepSpec, shard: Shard, progress: impl Fn() + Sync) -> SweepTable {
    let indices: Vec<usize> = (shard.index..spec.points.len())
        .step_by(shard.count)
        .collect();
    let rows = run_points(spec, &indices, progress);
    SweepTable {
        sweep: identity(spec),
        total: spec.points.len() as u32,
        axes: spec.axes.clone(),
        rows,
    }
}

/// Runs the points `indices` of `spec` on all cores, in that order; `progress` is called once
/// per finished point.
pub fn run_points(
    spec: &SweepSpec,
    indices: &[usize],
    progress: impl Fn() + Sync,
) -> Vec<PointRow> {
    indices
        .par_iter()
        .map(|&index| {
            let row = run_point(spec, index);
            progress();
            row
        })
        .collect()
}

/// Runs point `index` of `spec`: its row, with its metrics or its error.
pub fn run_point(spec: &SweepSpec, index: usize) -> PointRow {
    let outcome = spec.scenario(index).and_then(|scenario| {
        let summary = if scenario.serving.is_some() {
            let result = pipeline::serve::serve(&scenario, None, &mut |_| Ok(()), &mut |_| {})
                .map_err(|e| e.to_string())?;
            serde_json::to_value(&result)
        } else {
            serde_json::to_value(&pipeline::run(&scenario).map_err(|e| e.to_string())?)
        };
        Ok(summary_metrics(&summary.map_err(|e| e.to_string())?))
    });
    PointRow {
        point: index as u32,
        values: spec.points[index].iter().map(ToString::to_string).collect(),
        outcome,
    }
}

/// A run's metrics as a sweep records them: every number of the summary but the per-layer,
/// per-step, per-link and per-kernel detail (paths through an array index or through
/// `layers`, `links` or `kernels`).
fn summary_metrics(summary: &serde_json::Value) -> BTreeMap<String, f64> {
    flatten(summary)
        .into_iter()
        .filter(|m| {
            m.path.split('.').all(|segment| {
                !segment.bytes().all(|b| b.is_ascii_digit())
                    && !matches!(segment, "layers" | "links" | "kernels")
            })
        })
        .map(|m| {
            let value = m.value();
            (m.path, value)
        })
        .collect()
}

/// A point's axis values (as TOML text) in words, leaving out column `skip`: a string as
/// itself (`hgx-h200`), anything else after its field's name (`tokens_per_gpu 256`).
pub fn describe(axes: &[String], values: &[String], skip: Option<usize>) -> String {
    let parts: Vec<String> = axes
        .iter()
        .zip(values)
        .enumerate()
        .filter(|(column, _)| Some(*column) != skip)
        .map(|(_, (axis, value))| match bare(value) {
            Some(text) => text.to_string(),
            None => format!("{} {value}", axis.rsplit('.').next().unwrap_or(axis)),
        })
        .collect();
    if parts.is_empty() {
        "the base scenario".to_string()
    } else {
        parts.join(", ")
    }
}

/// A TOML string's text without its quotes; `None` for any other value.
pub fn bare(value: &str) -> Option<&str> {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|v| !v.contains('"'))
}

/// The sweep's identity: a hash of its base scenario, axes and points, so that slices of
/// different sweeps are told apart.
pub fn identity(spec: &SweepSpec) -> String {
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(spec.fingerprint().as_bytes());
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_stay_in_range() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
        assert!("3/3".parse::<Shard>().unwrap_err().contains("0 to 2"));
        assert!("0/0".parse::<Shard>().unwrap_err().contains("out of range"));
        assert!("1-3".parse::<Shard>().unwrap_err().contains("not `i/n`"));
    }

    #[test]
    fn points_are_described_in_words() {
        let axes = ["cluster".to_string(), "sim.tokens_per_gpu".to_string()];
        let values = ["\"hgx-h200\"".to_string(), "256".to_string()];
        assert_eq!(
            describe(&axes, &values, None),
            "hgx-h200, tokens_per_gpu 256"
        );
        assert_eq!(describe(&axes, &values, Some(0)), "tokens_per_gpu 256");
        assert_eq!(
            describe(&axes[..0], &values[..0], None),
            "the base scenario"
        );
    }

    #[test]
    fn per_layer_detail_is_left_out() {
        let summary: serde_json::Value = serde_json::from_str(
            r#"{"steps": 2, "strategies": [{"name": "eplb", "step_ns": 5, "layers": [{"x": 1}]}],
                "simulated": {"kernels": [{"kernel": "k", "ns": 3}], "gpus": [1, 2]}}"#,
        )
        .unwrap();
        let metrics: Vec<String> = summary_metrics(&summary).into_keys().collect();
        assert_eq!(metrics, ["steps", "strategies.eplb.step_ns"]);
    }
}
