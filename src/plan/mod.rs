//! `moesim plan`: the cheapest (or smallest, or most efficient) configuration of a sweep space
//! that serves a scenario's traffic within its constraints.
//!
//! The space is a sweep's ([`crate::sweep`]); one numeric axis (`plan.scale`, GPUs by default)
//! is the size of the deployment and every other axis together is a *layout*. More GPUs never
//! make a layout miss a latency or memory limit it met with fewer, so per layout the planner
//! bisects the scale axis for the smallest size meeting the constraints instead of running
//! every size; that size is also the layout's best on every objective (cost and GPUs grow with
//! size at a fixed arrival rate, tokens per GPU shrink). The layouts' best points are ranked by
//! the objective.

mod pareto;
mod spec;

use std::collections::BTreeMap;

use rayon::prelude::*;

pub use pareto::front;
pub use spec::{Constraints, Objective, PlanSpec, PlanTable, metric, plain};

use crate::error::{Error, Result};
use crate::sweep::{self, PointRow, SweepSpec, SweepTable};

/// A layout: one value of every axis but the scale axis, and its points by growing size.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Its axis values in words ("hgx-h200", "tokens_per_gpu 256").
    pub name: String,
    /// Its points' indices, smallest size first.
    pub points: Vec<usize>,
    /// The smallest point meeting the constraints, if any (after [`plan`]).
    pub best: Option<usize>,
}

/// What the planner found.
pub struct PlanResult {
    /// The points it ran, by index, as a sweep table of the whole space.
    pub evaluated: SweepTable,
    /// Every layout, in the order of its first point, with its best point.
    pub layouts: Vec<Layout>,
    /// The layouts' best points, best first.
    pub ranking: Vec<usize>,
    /// The verdict: one sentence naming the best configuration and the runner-up.
    pub verdict: String,
}

impl PlanResult {
    /// The evaluated row of point `index`.
    pub fn row(&self, index: usize) -> Option<&PointRow> {
        self.evaluated
            .rows
            .iter()
            .find(|r| r.point as usize == index)
    }

    /// Indices (into `evaluated.rows`) of the points that ran on the Pareto front of cost per
    /// million output tokens against E2E p99 (s), both smaller is better.
    pub fn pareto(&self) -> Vec<usize> {
        front(&cost_latency(&self.evaluated.rows))
    }
}

/// Each row's (cost per million output tokens, E2E p99 in s); NaN where it failed.
pub fn cost_latency(rows: &[PointRow]) -> Vec<(f64, f64)> {
    rows.iter()
        .map(|row| {
            let get = |m: &str| {
                row.outcome
                    .as_ref()
                    .ok()
                    .and_then(|metrics| metrics.get(m).copied())
                    .unwrap_or(f64::NAN)
            };
            (get(metric::COST), get(metric::E2E_P99))
        })
        .collect()
}

/// Runs the plan: bisects every layout on all cores (`progress` hears each point run), ranks
/// the layouts' best points, and words the verdict. An error when no point meets the
/// constraints names the closest.
pub fn plan(spec: &PlanSpec, progress: impl Fn() + Sync) -> Result<PlanResult> {
    let mut layouts = layouts(spec)?;
    let runs: Vec<(Option<usize>, Vec<PointRow>)> = layouts
        .par_iter()
        .map(|layout| {
            let mut rows = Vec::new();
            let best = smallest_feasible(&layout.points, |index| {
                let row = sweep::run_point(&spec.sweep, index);
                progress();
                let ok = judge(&spec.plan.constraints, &row).is_ok();
                rows.push(row);
                ok
            });
            (best, rows)
        })
        .collect();
    let mut rows = Vec::new();
    for (layout, (best, run)) in layouts.iter_mut().zip(runs) {
        layout.best = best;
        rows.extend(run);
    }
    rows.sort_by_key(|r| r.point);
    let evaluated = SweepTable {
        sweep: sweep::identity(&spec.sweep),
        total: spec.sweep.points.len() as u32,
        axes: spec.sweep.axes.clone(),
        rows,
    };
    let mut result = PlanResult {
        evaluated,
        layouts,
        ranking: Vec::new(),
        verdict: String::new(),
    };
    result.ranking = rank(spec.plan.objective, &result);
    result.verdict = verdict(spec, &result)?;
    Ok(result)
}

/// The sweep's points grouped into layouts (every axis but the scale axis), each sorted by
/// size; a layout listing one size twice is an error.
pub fn layouts(spec: &PlanSpec) -> Result<Vec<Layout>> {
    let sweep = &spec.sweep;
    let size = |index: usize| number(&sweep.points[index][spec.scale_column]);
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for index in 0..sweep.points.len() {
        let name = layout_name(sweep, spec.scale_column, index);
        if !groups.contains_key(&name) {
            order.push(name.clone());
        }
        groups.entry(name).or_default().push(index);
    }
    order
        .into_iter()
        .map(|name| {
            let mut points = groups.remove(&name).unwrap_or_default();
            points.sort_by(|&a, &b| size(a).total_cmp(&size(b)));
            if let Some(pair) = points.windows(2).find(|w| size(w[0]) == size(w[1])) {
                return Err(Error::invalid(format!(
                    "points {} and {} both run layout `{name}` at {} = {}",
                    pair[0],
                    pair[1],
                    spec.plan.scale,
                    size(pair[0])
                )));
            }
            Ok(Layout {
                name,
                points,
                best: None,
            })
        })
        .collect()
}

/// A TOML number as f64 (the plan file checked that the scale axis holds numbers).
fn number(value: &toml::Value) -> f64 {
    value
        .as_float()
        .or_else(|| value.as_integer().map(|i| i as f64))
        .unwrap_or(f64::NAN)
}

/// Point `index`'s values of every axis but the scale axis, in words ([`sweep::describe`]).
fn layout_name(sweep: &SweepSpec, skip: usize, index: usize) -> String {
    let values: Vec<String> = sweep.points[index]
        .iter()
        .map(ToString::to_string)
        .collect();
    sweep::describe(&sweep.axes, &values, Some(skip))
}

/// The first of `points` (sorted by size) for which `feasible` holds, found by bisection:
/// `feasible` is asked about ceil(log2(n + 1)) points at most, assuming that once it holds it
/// holds for every larger point.
pub fn smallest_feasible(
    points: &[usize],
    mut feasible: impl FnMut(usize) -> bool,
) -> Option<usize> {
    let (mut lo, mut hi) = (0, points.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if feasible(points[mid]) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    points.get(lo).copied()
}

/// Whether `row` meets the constraints; if not, how far it is (the sum of each missed limit's
/// relative miss and the share of requests rejected; infinite for a point that failed).
pub fn judge(constraints: &Constraints, row: &PointRow) -> std::result::Result<(), f64> {
    let Ok(metrics) = &row.outcome else {
        return Err(f64::INFINITY);
    };
    let get = |m: &str| metrics.get(m).copied().unwrap_or(f64::NAN);
    let mut miss = get(metric::REJECTED) / get("summary.requests").max(1.0);
    for limit in constraints.limits() {
        let value = get(limit.metric) * limit.scale;
        let over = if limit.floor {
            (limit.bound - value) / limit.bound.max(f64::MIN_POSITIVE)
        } else {
            (value - limit.bound) / limit.bound
        };
        miss += over.max(0.0);
    }
    match miss {
        m if m.is_nan() => Err(f64::INFINITY),
        m if m > 0.0 => Err(m),
        _ => Ok(()),
    }
}

/// The layouts' best points, best first by the objective (then cost, then index).
fn rank(objective: Objective, result: &PlanResult) -> Vec<usize> {
    let value = |index: usize, m: &str| {
        result
            .row(index)
            .and_then(|r| r.outcome.as_ref().ok())
            .and_then(|metrics| metrics.get(m).copied())
            .unwrap_or(f64::NAN)
    };
    let mut best: Vec<usize> = result.layouts.iter().filter_map(|l| l.best).collect();
    best.sort_by(|&a, &b| {
        let (va, vb) = (value(a, objective.metric()), value(b, objective.metric()));
        let by_objective = if objective.maximise() {
            vb.total_cmp(&va)
        } else {
            va.total_cmp(&vb)
        };
        by_objective
            .then(value(a, metric::COST).total_cmp(&value(b, metric::COST)))
            .then(a.cmp(&b))
    });
    best
}

/// Point `index` in words: "hgx-h200 with 8 GPUs (1 node)".
fn describe_point(spec: &PlanSpec, result: &PlanResult, index: usize) -> String {
    let layout = layout_name(&spec.sweep, spec.scale_column, index);
    let metrics = result.row(index).and_then(|r| r.outcome.as_ref().ok());
    match metrics.and_then(|m| Some((m.get(metric::GPUS)?, m.get(metric::NODES)?))) {
        Some((gpus, nodes)) => {
            let plural = |n: f64| if n == 1.0 { "" } else { "s" };
            format!(
                "{layout} with {gpus} GPU{} ({nodes} node{})",
                plural(*gpus),
                plural(*nodes)
            )
        }
        None => {
            let size = &spec.sweep.points[index][spec.scale_column];
            format!("{layout} at {} = {size}", spec.plan.scale)
        }
    }
}

/// The verdict sentence, or the error naming the closest point when none meets the limits.
fn verdict(spec: &PlanSpec, result: &PlanResult) -> Result<String> {
    let plan = &spec.plan;
    let model = spec.sweep.scenario(0).map(|s| s.model).unwrap_or_default();
    let rate = match spec.sweep.axes.iter().any(|a| a == RATE) {
        true => None,
        false => spec.sweep.value(0, RATE).map(|r| number(&r)),
    };
    let at = rate.map_or(String::new(), |r| format!(" at {} req/s", plain(r)));
    let limits = plan.constraints.describe();
    let Some(&winner) = result.ranking.first() else {
        return Err(Error::invalid(no_fit(
            spec,
            result,
            &format!("{limits}{at}"),
        )));
    };
    let value = |index: usize| {
        result
            .row(index)
            .and_then(|r| r.outcome.as_ref().ok())
            .and_then(|m| m.get(plan.objective.metric()).copied())
            .unwrap_or(f64::NAN)
    };
    let best = value(winner);
    let runner_up = match result.ranking.get(1) {
        Some(&second) => {
            let change = (value(second) - best) / best * 100.0;
            format!(
                "runner-up {} at {} ({change:+.0}%)",
                describe_point(spec, result, second),
                plan.objective.short(value(second))
            )
        }
        None => "no other layout meets them".to_string(),
    };
    Ok(format!(
        "{} meeting {limits}{at}: {model} on {}, {}; {runner_up}.",
        plan.objective.superlative(),
        describe_point(spec, result, winner),
        plan.objective.describe(best),
    ))
}

/// Dotted path of the arrival rate, named in the verdict when it is not an axis.
const RATE: &str = "workload.arrival.rate";

/// Why no configuration fits, naming the evaluated point closest to the limits.
fn no_fit(spec: &PlanSpec, result: &PlanResult, limits: &str) -> String {
    let closest = result
        .evaluated
        .rows
        .iter()
        .map(|row| (judge(&spec.plan.constraints, row).err().unwrap_or(0.0), row))
        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.point.cmp(&b.1.point)));
    let Some((_, row)) = closest else {
        return format!("no configuration meets {limits}: the space has no points");
    };
    let measured = match &row.outcome {
        Err(error) => format!("failed: {error}"),
        Ok(metrics) => {
            let mut parts: Vec<String> = spec
                .plan
                .constraints
                .limits()
                .iter()
                .map(|l| {
                    let value = metrics.get(l.metric).copied().unwrap_or(f64::NAN) * l.scale;
                    format!("{} {value:.1}{}", l.name, l.unit)
                })
                .collect();
            let rejected = metrics.get(metric::REJECTED).copied().unwrap_or(0.0);
            if rejected > 0.0 {
                parts.push(format!("{rejected} requests rejected"));
            }
            parts.join(", ")
        }
    };
    format!(
        "no configuration meets {limits}: the closest is {} ({measured})",
        describe_point(spec, result, row.point as usize)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bisection_asks_log2_points_and_finds_the_first_feasible() {
        let points: Vec<usize> = (0..8).collect();
        for first in 0..=8 {
            let mut asked = Vec::new();
            let found = smallest_feasible(&points, |p| {
                asked.push(p);
                p >= first
            });
            assert_eq!(found, (first < 8).then_some(first));
            // 8 sizes: at most ceil(log2(9)) = 4 questions, never the same point twice.
            assert!(asked.len() <= 4, "{first}: {asked:?}");
            let mut unique = asked.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), asked.len());
        }
        assert_eq!(smallest_feasible(&[], |_| true), None);
    }

    #[test]
    fn layouts_best_points_rank_by_the_objective() {
        let row = |point: u32, throughput: f64, cost: f64| PointRow {
            point,
            values: Vec::new(),
            outcome: Ok([(metric::THROUGHPUT, throughput), (metric::COST, cost)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()),
        };
        let layout = |best: usize| Layout {
            name: String::new(),
            points: vec![best],
            best: Some(best),
        };
        let result = PlanResult {
            evaluated: SweepTable {
                sweep: String::new(),
                total: 4,
                axes: Vec::new(),
                rows: vec![row(1, 100.0, 1.0), row(3, 200.0, 2.0)],
            },
            layouts: vec![
                layout(1),
                layout(3),
                Layout {
                    best: None,
                    ..layout(0)
                },
            ],
            ranking: Vec::new(),
            verdict: String::new(),
        };
        // Point 3 serves more tokens per GPU; point 1 is cheaper.
        assert_eq!(rank(Objective::Throughput, &result), [3, 1]);
        assert_eq!(rank(Objective::CostPerMillionTokens, &result), [1, 3]);
    }

    #[test]
    fn a_point_is_judged_by_its_worst_misses() {
        let row = |pairs: &[(&str, f64)]| PointRow {
            point: 0,
            values: Vec::new(),
            outcome: Ok(pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
        };
        let limits = Constraints {
            slo_attainment: Some(0.9),
            ttft_p99_ms: Some(200.0),
            tpot_p99_ms: None,
        };
        let good = row(&[
            (metric::SLO, 0.95),
            (metric::TTFT_P99, 0.150),
            (metric::REJECTED, 0.0),
            ("summary.requests", 100.0),
        ]);
        assert_eq!(judge(&limits, &good), Ok(()));
        // TTFT 300 ms is 50% over 200 ms; 10 of 100 requests rejected adds 0.1.
        let slow = row(&[
            (metric::SLO, 0.95),
            (metric::TTFT_P99, 0.300),
            (metric::REJECTED, 10.0),
            ("summary.requests", 100.0),
        ]);
        let miss = judge(&limits, &slow).unwrap_err();
        assert!((miss - 0.6).abs() < 1e-12, "{miss}");
        let failed = PointRow {
            point: 0,
            values: Vec::new(),
            outcome: Err("does not fit".into()),
        };
        assert_eq!(judge(&limits, &failed), Err(f64::INFINITY));
        assert_eq!(
            limits.describe(),
            "SLO attainment >= 90% and TTFT p99 <= 200 ms"
        );
    }
}
