//! Comparing two runs metric by metric: every number of two summaries (`summary.json`),
//! judged better or worse by the metric's direction, and flagged as a regression when it gets
//! worse by more than its threshold. `moesim compare` and the CI regression gate use it.

mod direction;
mod flatten;
mod render;
mod thresholds;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Number;

pub use direction::{Direction, direction};
pub use flatten::{Metric, flatten};
pub use render::{render_json, render_markdown};
pub use thresholds::{DEFAULT_THRESHOLD_PCT, Thresholds};

use crate::error::{Error, Result};

/// The summary a path names: the file itself, or `summary.json` in a results folder.
fn summary_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_path_buf()
    }
}

/// Reads the numeric metrics of the summary at `path` (see [`summary_path`]); an error names
/// the file and, for malformed JSON, the line and column.
pub fn load_metrics(path: &Path) -> Result<Vec<Metric>> {
    let file = summary_path(path);
    let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(&file, format!("not valid JSON: {e}")))?;
    let metrics = flatten(&value);
    if metrics.is_empty() {
        return Err(Error::bad_file(&file, "holds no numeric metrics"));
    }
    Ok(metrics)
}

/// What happened to one metric between the baseline and the current run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Worse by more than the metric's threshold.
    Regression,
    /// Worse, within the threshold.
    Worse,
    /// Better.
    Better,
    /// Changed, in a metric whose direction is unknown.
    Changed,
    /// In the current run only.
    Added,
    /// In the baseline only.
    Removed,
    /// Equal.
    Same,
}

/// One metric of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Dotted path of the metric.
    pub metric: String,
    /// Value in the baseline (absent when added).
    pub baseline: Option<Number>,
    /// Value in the current run (absent when removed).
    pub current: Option<Number>,
    /// `(current - baseline) / |baseline|` in percent; absent when either value is, or when the
    /// baseline is 0 and the current value is not.
    pub change_pct: Option<f64>,
    /// Which way is better.
    pub direction: Direction,
    /// How much worse, in percent, the metric may get before it regresses.
    pub threshold_pct: f64,
    /// The judgement.
    pub verdict: Verdict,
}

/// Every metric of two summaries, baseline order first, then those only the current run has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// One row per metric.
    pub rows: Vec<Row>,
}

impl Comparison {
    /// How many rows have `verdict`.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.rows.iter().filter(|r| r.verdict == verdict).count()
    }

    /// Whether any metric regressed past its threshold.
    pub fn regressed(&self) -> bool {
        self.count(Verdict::Regression) > 0
    }
}

/// Compares every metric of `current` with the same path in `baseline`.
pub fn compare(baseline: &[Metric], current: &[Metric], thresholds: &Thresholds) -> Comparison {
    let in_current: HashMap<&str, &Metric> = current.iter().map(|m| (m.path.as_str(), m)).collect();
    let in_baseline: HashMap<&str, &Metric> =
        baseline.iter().map(|m| (m.path.as_str(), m)).collect();
    let mut rows: Vec<Row> = baseline
        .iter()
        .map(|b| {
            row(
                Some(b),
                in_current.get(b.path.as_str()).copied(),
                thresholds,
            )
        })
        .collect();
    rows.extend(
        current
            .iter()
            .filter(|c| !in_baseline.contains_key(c.path.as_str()))
            .map(|c| row(None, Some(c), thresholds)),
    );
    Comparison { rows }
}

/// The row of one metric; at least one of `baseline` and `current` is present.
fn row(baseline: Option<&Metric>, current: Option<&Metric>, thresholds: &Thresholds) -> Row {
    let metric = baseline
        .or(current)
        .expect("a metric on one side")
        .path
        .clone();
    let direction = direction(&metric);
    let threshold_pct = thresholds.for_metric(&metric);
    let (change_pct, verdict) = match (baseline, current) {
        (Some(b), Some(c)) => judge(b.value(), c.value(), direction, threshold_pct),
        (None, _) => (None, Verdict::Added),
        (_, None) => (None, Verdict::Removed),
    };
    Row {
        baseline: baseline.map(|m| m.number.clone()),
        current: current.map(|m| m.number.clone()),
        metric,
        change_pct,
        direction,
        threshold_pct,
        verdict,
    }
}

/// The change in percent and the verdict for a metric going from `base` to `current`.
fn judge(
    base: f64,
    current: f64,
    direction: Direction,
    threshold_pct: f64,
) -> (Option<f64>, Verdict) {
    let delta = current - base;
    let change_pct = if base != 0.0 {
        Some(delta * 100.0 / base.abs())
    } else if delta == 0.0 {
        Some(0.0)
    } else {
        None
    };
    let worse = match direction {
        _ if delta == 0.0 => return (change_pct, Verdict::Same),
        Direction::Unknown => return (change_pct, Verdict::Changed),
        Direction::LowerIsBetter => delta > 0.0,
        Direction::HigherIsBetter => delta < 0.0,
    };
    let verdict = if !worse {
        Verdict::Better
    } else if change_pct.is_none_or(|pct| pct.abs() > threshold_pct) {
        Verdict::Regression
    } else {
        Verdict::Worse
    };
    (change_pct, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_direction_and_threshold() {
        use Direction::*;
        // 100 -> 110 is +10%: past a 5% threshold, within a 20% one.
        assert_eq!(
            judge(100.0, 110.0, LowerIsBetter, 5.0),
            (Some(10.0), Verdict::Regression)
        );
        assert_eq!(
            judge(100.0, 110.0, LowerIsBetter, 20.0),
            (Some(10.0), Verdict::Worse)
        );
        assert_eq!(
            judge(100.0, 110.0, HigherIsBetter, 5.0),
            (Some(10.0), Verdict::Better)
        );
        assert_eq!(
            judge(200.0, 150.0, HigherIsBetter, 5.0),
            (Some(-25.0), Verdict::Regression)
        );
        assert_eq!(
            judge(100.0, 110.0, Unknown, 0.0),
            (Some(10.0), Verdict::Changed)
        );
        assert_eq!(
            judge(3.0, 3.0, LowerIsBetter, 0.0),
            (Some(0.0), Verdict::Same)
        );
        // Exactly at the threshold is not past it.
        assert_eq!(
            judge(100.0, 105.0, LowerIsBetter, 5.0),
            (Some(5.0), Verdict::Worse)
        );
        // From zero the change has no percentage, and getting worse from zero regresses.
        assert_eq!(
            judge(0.0, 1.0, LowerIsBetter, 50.0),
            (None, Verdict::Regression)
        );
        assert_eq!(
            judge(-4.0, -2.0, LowerIsBetter, 5.0),
            (Some(50.0), Verdict::Regression)
        );
    }

    #[test]
    fn metrics_on_one_side_are_added_or_removed() {
        let metric = |path: &str, n: u64| Metric {
            path: path.to_string(),
            number: n.into(),
        };
        let comparison = compare(
            &[metric("a_ns", 10), metric("gone", 1)],
            &[metric("new", 2), metric("a_ns", 9)],
            &Thresholds::default(),
        );
        let verdicts: Vec<(&str, Verdict)> = comparison
            .rows
            .iter()
            .map(|r| (r.metric.as_str(), r.verdict))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("a_ns", Verdict::Better),
                ("gone", Verdict::Removed),
                ("new", Verdict::Added)
            ]
        );
        assert!(!comparison.regressed());
    }
}
