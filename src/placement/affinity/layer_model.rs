//! One layer of the affinity placement as a generalised assignment problem, solved with HiGHS:
//! binary `x[e][g]` (expert `e` on GPU `g`, exactly one GPU each), minimise
//! `sum cost[e][g] x[e][g]` subject to slots per GPU and the token-load bound per GPU. The
//! incumbent is HiGHS's starting solution and is kept unless HiGHS returns something cheaper.

use good_lp::solvers::highs::highs;
use good_lp::{Expression, ProblemVariables, Solution, SolverModel, Variable, variable};

/// One layer's assignment problem.
pub(super) struct LayerProblem<'a> {
    /// Per expert, its token load.
    pub loads: &'a [f64],
    /// `cost[e][g]`: the weighted hops expert `e`'s transitions cost if it sits on GPU `g`.
    pub cost: Vec<Vec<f64>>,
    /// Slots per GPU.
    pub slots: usize,
    /// The largest token load a GPU may take.
    pub load_cap: f64,
}

impl LayerProblem<'_> {
    /// The cost of putting each expert `e` on GPU `gpu_of[e]`.
    pub fn objective(&self, gpu_of: &[usize]) -> f64 {
        gpu_of
            .iter()
            .enumerate()
            .map(|(e, &g)| self.cost[e][g])
            .sum()
    }
}

/// The cheaper of `incumbent` (expert -> GPU, feasible) and what HiGHS finds within
/// `time_limit_s` seconds and relative gap `mip_rel_gap`.
pub(super) fn improve(
    problem: &LayerProblem,
    incumbent: Vec<usize>,
    time_limit_s: f64,
    mip_rel_gap: f64,
) -> Vec<usize> {
    match solve(problem, &incumbent, time_limit_s, mip_rel_gap) {
        Some(found) if problem.objective(&found) < problem.objective(&incumbent) => found,
        _ => incumbent,
    }
}

/// Solves the assignment problem from `incumbent`; `None` when HiGHS returns nothing.
fn solve(
    problem: &LayerProblem,
    incumbent: &[usize],
    time_limit_s: f64,
    mip_rel_gap: f64,
) -> Option<Vec<usize>> {
    let experts = problem.loads.len();
    let gpus = problem.cost.first().map_or(0, Vec::len);
    let mut vars = ProblemVariables::new();
    let x: Vec<Vec<Variable>> = (0..experts)
        .map(|e| {
            (0..gpus)
                .map(|g| {
                    let on = if incumbent[e] == g { 1.0 } else { 0.0 };
                    vars.add(variable().binary().initial(on))
                })
                .collect()
        })
        .collect();
    let objective: Expression = (0..experts)
        .flat_map(|e| (0..gpus).map(move |g| (e, g)))
        .map(|(e, g)| problem.cost[e][g] * x[e][g])
        .sum();
    let mut model = highs(vars.minimise(objective))
        .set_time_limit(time_limit_s.max(0.0))
        .set_option("output_flag", false)
        .set_mip_rel_gap(mip_rel_gap as f32)
        .ok()?;
    for row in &x {
        let placed: Expression = row.iter().sum();
        model.add_constraint(placed.eq(1.0));
    }
    for g in 0..gpus {
        let held: Expression = x.iter().map(|row| row[g]).sum();
        model.add_constraint(held.leq(problem.slots as f64));
        let load: Expression = x
            .iter()
            .zip(problem.loads)
            .map(|(row, &w)| w * row[g])
            .sum();
        model.add_constraint(load.leq(problem.load_cap));
    }
    let solution = model.solve().ok()?;
    x.iter()
        .map(|row| row.iter().position(|&v| solution.value(v) > 0.5))
        .collect()
}
