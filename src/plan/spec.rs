//! A plan file: a sweep file (base scenario, grid or points) with a `[plan]` table naming the
//! objective, the axis whose count is bisected, and the constraints a configuration must meet.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, parse_toml};
use crate::sweep::SweepSpec;

/// Metric paths of a served point's summary (`pipeline::serve`'s result, flattened).
pub mod metric {
    /// Dollars per million output tokens.
    pub const COST: &str = "summary.cost_per_million_output_tokens";
    /// GPUs serving.
    pub const GPUS: &str = "summary.gpus";
    /// Nodes those GPUs fill.
    pub const NODES: &str = "summary.nodes";
    /// Output tokens per second per GPU.
    pub const THROUGHPUT: &str = "summary.output_tokens_per_s_per_gpu";
    /// Share of requests meeting every objective.
    pub const SLO: &str = "summary.slo_attainment";
    /// Time to first token, p99, s.
    pub const TTFT_P99: &str = "summary.ttft.p99";
    /// Time per output token, p99, s.
    pub const TPOT_P99: &str = "summary.tpot.p99";
    /// End-to-end latency, p99, s.
    pub const E2E_P99: &str = "summary.e2e.p99";
    /// Requests rejected on arrival (they did not fit in memory).
    pub const REJECTED: &str = "summary.rejected";
}

/// What the planner optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Least dollars per million output tokens.
    CostPerMillionTokens,
    /// Fewest GPUs.
    Gpus,
    /// Most output tokens per second per GPU.
    Throughput,
}

impl Objective {
    /// The metric judged.
    pub fn metric(self) -> &'static str {
        match self {
            Objective::CostPerMillionTokens => metric::COST,
            Objective::Gpus => metric::GPUS,
            Objective::Throughput => metric::THROUGHPUT,
        }
    }

    /// Whether a larger value is better.
    pub fn maximise(self) -> bool {
        self == Objective::Throughput
    }

    /// The superlative that opens the verdict.
    pub fn superlative(self) -> &'static str {
        match self {
            Objective::CostPerMillionTokens => "Cheapest",
            Objective::Gpus => "Fewest GPUs",
            Objective::Throughput => "Most output tokens/s per GPU",
        }
    }

    /// `value` of the metric in words.
    pub fn describe(self, value: f64) -> String {
        match self {
            Objective::CostPerMillionTokens => format!("${value:.2} per million output tokens"),
            Objective::Gpus => format!("{value:.0} GPUs"),
            Objective::Throughput => format!("{value:.0} output tokens/s per GPU"),
        }
    }

    /// `value` of the metric, short (for the runner-up).
    pub fn short(self, value: f64) -> String {
        match self {
            Objective::CostPerMillionTokens => format!("${value:.2}"),
            Objective::Gpus => format!("{value:.0} GPUs"),
            Objective::Throughput => format!("{value:.0} tokens/s per GPU"),
        }
    }
}

/// Limits a configuration must meet, beyond serving every request (none rejected for want of
/// memory, the point ran).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Least share of requests meeting the scenario's SLO (0 to 1).
    pub slo_attainment: Option<f64>,
    /// Most TTFT p99, ms.
    pub ttft_p99_ms: Option<f64>,
    /// Most TPOT p99, ms.
    pub tpot_p99_ms: Option<f64>,
}

/// One limit: the metric, its scale to the limit's unit, the limit, whether it is a floor, and
/// its name in words.
pub struct Limit {
    pub metric: &'static str,
    pub scale: f64,
    pub bound: f64,
    pub floor: bool,
    pub name: &'static str,
    pub unit: &'static str,
}

impl Constraints {
    /// The limits set, in a fixed order.
    pub fn limits(&self) -> Vec<Limit> {
        let limit = |bound: Option<f64>, metric, scale, floor, name, unit| {
            bound.map(|bound| Limit {
                metric,
                scale,
                bound,
                floor,
                name,
                unit,
            })
        };
        [
            limit(
                self.slo_attainment.map(|s| s * 100.0),
                metric::SLO,
                100.0,
                true,
                "SLO attainment",
                "%",
            ),
            limit(
                self.ttft_p99_ms,
                metric::TTFT_P99,
                1e3,
                false,
                "TTFT p99",
                " ms",
            ),
            limit(
                self.tpot_p99_ms,
                metric::TPOT_P99,
                1e3,
                false,
                "TPOT p99",
                " ms",
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The limits in words: "SLO attainment >= 99% and TTFT p99 <= 2000 ms".
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .limits()
            .iter()
            .map(|l| {
                let op = if l.floor { ">=" } else { "<=" };
                format!("{} {op} {}{}", l.name, plain(l.bound), l.unit)
            })
            .collect();
        match parts.split_last() {
            None => "every request served".to_string(),
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        }
    }

    fn check(&self) -> std::result::Result<(), String> {
        if let Some(s) = self.slo_attainment
            && !(0.0..=1.0).contains(&s)
        {
            return Err(format!(
                "`plan.constraints.slo_attainment`: {s} is not a share from 0 to 1"
            ));
        }
        for (name, value) in [
            ("ttft_p99_ms", self.ttft_p99_ms),
            ("tpot_p99_ms", self.tpot_p99_ms),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0)
            {
                return Err(format!(
                    "`plan.constraints.{name}`: {v} is not a positive number of ms"
                ));
            }
        }
        Ok(())
    }
}

/// `value` with at most four decimals and no trailing zeros (90, 0.5, 2000).
pub fn plain(value: f64) -> String {
    let text = format!("{value:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The `[plan]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanTable {
    /// What to optimise.
    pub objective: Objective,
    /// The axis bisected per layout: a number (GPUs, nodes) that only helps as it grows.
    #[serde(default = "default_scale")]
    pub scale: String,
    /// What a configuration must meet.
    #[serde(default)]
    pub constraints: Constraints,
}

fn default_scale() -> String {
    "gpus".to_string()
}

/// Only the `[plan]` table of the file; the rest is the sweep's ([`SweepSpec::load`]).
#[derive(Deserialize)]
struct PlanFile {
    plan: PlanTable,
}

/// A plan, resolved: the sweep space and the planner's settings.
pub struct PlanSpec {
    /// The space searched.
    pub sweep: SweepSpec,
    /// Objective, scale axis and constraints.
    pub plan: PlanTable,
    /// Column of the scale axis in the sweep's points.
    pub scale_column: usize,
}

impl PlanSpec {
    /// Reads the plan file at `path`; every error names the file and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let sweep = SweepSpec::load(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let bad = |m: String| Error::bad_file(path, m);
        let PlanFile { plan } = parse_toml(&text).map_err(bad)?;
        plan.constraints.check().map_err(bad)?;
        let scale_column = sweep
            .axes
            .iter()
            .position(|a| *a == plan.scale)
            .ok_or_else(|| {
                bad(format!(
                    "`plan.scale`: `{}` is not an axis of the sweep (axes: {})",
                    plan.scale,
                    sweep.axes.join(", ")
                ))
            })?;
        if let Some(value) = sweep
            .points
            .iter()
            .map(|p| &p[scale_column])
            .find(|v| v.as_integer().is_none() && v.as_float().is_none())
        {
            return Err(bad(format!(
                "`plan.scale`: axis `{}` has the value {value}, not a number to bisect",
                plan.scale
            )));
        }
        match sweep.scenario(0) {
            Ok(scenario) if scenario.serving.is_none() => {
                return Err(bad(
                    "`scenario`: the base scenario has no `[serving]` table, and a plan judges \
                     serving metrics (SLO attainment, TTFT, TPOT, cost)"
                        .to_string(),
                ));
            }
            _ => {}
        }
        Ok(PlanSpec {
            sweep,
            plan,
            scale_column,
        })
    }
}
