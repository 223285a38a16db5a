//! The `ilp-balance` mixed-integer model of one layer, solved with HiGHS through good_lp.
//!
//! Variables: `x[e][g]` (binary) when GPU `g` holds a replica of expert `e`; `y[e][k]` (binary)
//! when expert `e` has `k` replicas, `k` in a window of the incumbent's count `r`
//! (`max(1, r - 1) ..= min(P, r + 1)`); `L[e][g] >= 0` the load `e` puts on `g`; `T` the largest
//! GPU load. Minimise `T` subject to: one count per expert (`sum_k y = 1`), as many replicas as
//! the count (`sum_g x = sum_k k y`), even split (`L[e][g] >= w_e / k * (x[e][g] + y[e][k] - 1)`
//! for every `k`: the tightest is the chosen count, and minimisation keeps `L` at it), slots per
//! GPU (`sum_e x <= S`), `sum_e L[e][g] <= T`, and `T >= lower_bound` (a valid bound that lets
//! HiGHS stop as soon as the incumbent reaches it). At most one replica per GPU holds by `x`
//! being binary. The incumbent is handed to HiGHS as its starting solution.
//!
//! With a communication weight `c > 0` and more than one machine: `z[e][n]` (in `[0, 1]`) when
//! machine `n` holds a replica of `e`, `z[e][n] <= sum_{g on n} x[e][g]`, and the objective
//! becomes `T + c sum_e w_e (1 - sum_n z[e][n] / N)` (the expected cross-node tokens of the
//! parent module); maximising drives each `z` to 1 exactly where a replica is.

use good_lp::solvers::highs::highs;
use good_lp::{
    Expression, ProblemVariables, Solution, SolutionStatus, SolverModel, Variable, variable,
};

use super::greedy::replica_counts;
use crate::trace::ExpertId;

/// One layer's model input.
pub(super) struct LayerModel<'a> {
    /// Per expert, its load.
    pub loads: &'a [f64],
    /// GPUs.
    pub gpus: usize,
    /// Usable slots per GPU.
    pub slots: usize,
    /// A valid lower bound on the largest GPU load.
    pub lower_bound: f64,
    /// Weight of the expected cross-node tokens in the objective (0: balance only).
    pub comm_weight: f64,
    /// GPUs per machine (consecutive).
    pub gpus_per_node: usize,
}

/// What HiGHS returned.
pub(super) struct MipResult {
    /// Per GPU, the experts it holds, ascending.
    pub gpu_experts: Vec<Vec<ExpertId>>,
    /// True when HiGHS proved it optimal within the MIP gap; false when it stopped at a limit.
    pub proven: bool,
}

/// Solves the model from `incumbent` within `time_limit_s` seconds and relative gap
/// `mip_rel_gap`; the error is HiGHS's message when it returns no solution.
pub(super) fn solve(
    model: &LayerModel,
    incumbent: &[Vec<ExpertId>],
    time_limit_s: f64,
    mip_rel_gap: f64,
) -> Result<MipResult, String> {
    let (experts, gpus) = (model.loads.len(), model.gpus);
    let counts = replica_counts(experts, incumbent);
    let mut vars = ProblemVariables::new();
    let incumbent_max = super::greedy::max_gpu_load(model.loads, incumbent);
    let t = vars.add(variable().min(0.0).initial(incumbent_max));
    let x: Vec<Vec<Variable>> = (0..experts)
        .map(|e| {
            (0..gpus)
                .map(|g| {
                    let held = incumbent[g].contains(&(e as ExpertId));
                    vars.add(variable().binary().initial(if held { 1.0 } else { 0.0 }))
                })
                .collect()
        })
        .collect();
    let windows: Vec<(usize, usize)> = counts
        .iter()
        .map(|&r| (r.saturating_sub(1).max(1), (r + 1).min(gpus)))
        .collect();
    let y: Vec<Vec<Variable>> = (0..experts)
        .map(|e| {
            let (low, high) = windows[e];
            (low..=high)
                .map(|k| {
                    vars.add(
                        variable()
                            .binary()
                            .initial(if k == counts[e] { 1.0 } else { 0.0 }),
                    )
                })
                .collect()
        })
        .collect();
    let load: Vec<Vec<Variable>> = (0..experts)
        .map(|e| {
            (0..gpus)
                .map(|g| {
                    let held = incumbent[g].contains(&(e as ExpertId));
                    let value = if held {
                        model.loads[e] / counts[e] as f64
                    } else {
                        0.0
                    };
                    vars.add(variable().min(0.0).initial(value))
                })
                .collect()
        })
        .collect();

    let per_node = model.gpus_per_node.max(1);
    let nodes = gpus.div_ceil(per_node);
    let communicates = model.comm_weight > 0.0 && nodes > 1;
    // `z[e][n]`: machine `n` holds a replica of `e` (only with a communication term).
    let z: Vec<Vec<Variable>> = if communicates {
        (0..experts)
            .map(|_| {
                (0..nodes)
                    .map(|_| vars.add(variable().min(0.0).max(1.0)))
                    .collect()
            })
            .collect()
    } else {
        Vec::new()
    };
    let covered: Expression = z
        .iter()
        .zip(model.loads)
        .flat_map(|(row, &w)| row.iter().map(move |&zn| w * zn))
        .sum();
    let total: f64 = model.loads.iter().sum();
    let scale = model.comm_weight / nodes as f64;
    let objective = if communicates {
        t + model.comm_weight * total - scale * covered
    } else {
        Expression::from(t)
    };
    let mut problem = highs(vars.minimise(objective))
        .set_time_limit(time_limit_s.max(0.0))
        .set_option("output_flag", false)
        .set_mip_rel_gap(mip_rel_gap as f32)
        .map_err(|e| format!("mip_rel_gap {mip_rel_gap}: {e}"))?;
    problem.add_constraint(Expression::from(t).geq(model.lower_bound));
    for e in 0..experts {
        let (low, _) = windows[e];
        let chosen: Expression = y[e].iter().sum();
        problem.add_constraint(chosen.eq(1.0));
        let replicas: Expression = x[e].iter().sum();
        let count: Expression = y[e]
            .iter()
            .enumerate()
            .map(|(i, &yk)| (low + i) as f64 * yk)
            .sum();
        problem.add_constraint(replicas.eq(count));
        if model.loads[e] <= 0.0 {
            continue;
        }
        for g in 0..gpus {
            for (i, &yk) in y[e].iter().enumerate() {
                let share = model.loads[e] / (low + i) as f64;
                problem.add_constraint(
                    Expression::from(load[e][g]).geq(share * x[e][g] + share * yk - share),
                );
            }
        }
    }
    for (e, row) in z.iter().enumerate() {
        for (n, &zn) in row.iter().enumerate() {
            let on_node: Expression = x[e][n * per_node..((n + 1) * per_node).min(gpus)]
                .iter()
                .sum();
            problem.add_constraint(Expression::from(zn).leq(on_node));
        }
    }
    for g in 0..gpus {
        let held: Expression = (0..experts).map(|e| x[e][g]).sum();
        problem.add_constraint(held.leq(model.slots as f64));
        let gpu_load: Expression = (0..experts).map(|e| load[e][g]).sum();
        problem.add_constraint(gpu_load.leq(t));
    }

    let solution = problem.solve().map_err(|e| e.to_string())?;
    let gpu_experts = (0..gpus)
        .map(|g| {
            (0..experts)
                .filter(|&e| solution.value(x[e][g]) > 0.5)
                .map(|e| e as ExpertId)
                .collect()
        })
        .collect();
    Ok(MipResult {
        gpu_experts,
        proven: matches!(
            solution.status(),
            SolutionStatus::Optimal | SolutionStatus::GapLimit
        ),
    })
}
