//! Swap moves on a multi-layer partition: exchanging two experts of one layer that sit on
//! different GPUs keeps every GPU's expert count, and (with the neighbouring layers fixed) its
//! effect on the transition cost is exact from the layer's cost table, since experts of one
//! layer share no transitions. [`repair_loads`] swaps until every GPU is under the layer's
//! token-load cap; [`refine`] then takes every swap that lowers the cost and keeps the caps
//! (Kernighan-Lin style pair exchanges, first improvement, until none is left), alternating
//! with [`relabel_suffixes`], which exchanges two GPUs' whole expert sets in every layer from
//! some layer on: that keeps every GPU's loads and counts and moves many experts at once,
//! which no single-layer step can do.

use super::Problem;

/// Slack on load comparisons, so that rounding never makes a cap unreachable.
const LOAD_SLACK: f64 = 1e-9;

/// The cost change of swapping experts `a` and `b` of a layer whose cost table is `cost`.
fn swap_delta(cost: &[Vec<f64>], gpu_of: &[usize], a: usize, b: usize) -> f64 {
    let (ga, gb) = (gpu_of[a], gpu_of[b]);
    cost[a][gb] + cost[b][ga] - cost[a][ga] - cost[b][gb]
}

/// Swaps experts of each layer until no GPU exceeds the layer's load cap, each time taking the
/// cheapest swap that moves load off the fullest GPU and leaves both GPUs below its old load.
/// Returns whether every layer ends under its cap.
pub(super) fn repair_loads(problem: &Problem, gpu_of: &mut [Vec<usize>]) -> bool {
    (0..gpu_of.len()).all(|layer| {
        let loads = problem.loads.layer(layer);
        let cost = problem.layer_costs(gpu_of, layer);
        let assignment = &mut gpu_of[layer];
        let mut gpu_loads = problem.gpu_loads(layer, assignment);
        loop {
            let Some(full) =
                (0..gpu_loads.len()).max_by(|&x, &y| gpu_loads[x].total_cmp(&gpu_loads[y]))
            else {
                return true;
            };
            let peak = gpu_loads[full];
            if peak <= problem.caps[layer] + LOAD_SLACK {
                return true;
            }
            let mut best: Option<(f64, usize, usize)> = None;
            for a in (0..assignment.len()).filter(|&a| assignment[a] == full) {
                for b in (0..assignment.len()).filter(|&b| assignment[b] != full) {
                    let moved = loads[a] - loads[b];
                    if moved <= LOAD_SLACK || gpu_loads[assignment[b]] + moved >= peak - LOAD_SLACK
                    {
                        continue;
                    }
                    let delta = swap_delta(&cost, assignment, a, b);
                    if best.is_none_or(|(d, _, _)| delta < d) {
                        best = Some((delta, a, b));
                    }
                }
            }
            let Some((_, a, b)) = best else {
                return false;
            };
            let moved = loads[a] - loads[b];
            gpu_loads[assignment[a]] -= moved;
            gpu_loads[assignment[b]] += moved;
            assignment.swap(a, b);
        }
    })
}

/// Alternates [`swap_experts`] and [`relabel_suffixes`] until neither lowers the cost.
pub(super) fn refine(problem: &Problem, gpu_of: &mut [Vec<usize>]) {
    while swap_experts(problem, gpu_of) | relabel_suffixes(problem, gpu_of) {}
}

/// For every layer `l > 0` and pair of GPUs, exchanges the two GPUs' experts in layers `l..`
/// when that lowers the cost; returns whether anything changed.
fn relabel_suffixes(problem: &Problem, gpu_of: &mut [Vec<usize>]) -> bool {
    let gpus = problem.hop_costs.len();
    let mut cost = problem.total_cost(gpu_of);
    let mut changed = false;
    let exchange = |gpu_of: &mut [Vec<usize>], from: usize, g: usize, h: usize| {
        for assignment in &mut gpu_of[from..] {
            for gpu in assignment.iter_mut() {
                if *gpu == g {
                    *gpu = h;
                } else if *gpu == h {
                    *gpu = g;
                }
            }
        }
    };
    for from in 1..gpu_of.len() {
        for g in 0..gpus {
            for h in g + 1..gpus {
                exchange(gpu_of, from, g, h);
                let exchanged = problem.total_cost(gpu_of);
                if exchanged < cost - 1e-9 {
                    cost = exchanged;
                    changed = true;
                } else {
                    exchange(gpu_of, from, g, h);
                }
            }
        }
    }
    changed
}

/// Takes every expert swap that lowers the transition cost and keeps both GPUs under the
/// layer's load cap, layer after layer, until a pass over all layers finds none; returns
/// whether anything changed.
fn swap_experts(problem: &Problem, gpu_of: &mut [Vec<usize>]) -> bool {
    let mut changed = false;
    let mut improved = true;
    while improved {
        improved = false;
        for layer in 0..gpu_of.len() {
            let loads = problem.loads.layer(layer);
            let cap = problem.caps[layer] + LOAD_SLACK;
            let cost = problem.layer_costs(gpu_of, layer);
            let assignment = &mut gpu_of[layer];
            let mut gpu_loads = problem.gpu_loads(layer, assignment);
            for a in 0..assignment.len() {
                for b in a + 1..assignment.len() {
                    let (ga, gb) = (assignment[a], assignment[b]);
                    let moved = loads[a] - loads[b];
                    if ga == gb
                        || gpu_loads[ga] - moved > cap
                        || gpu_loads[gb] + moved > cap
                        || swap_delta(&cost, assignment, a, b) >= -1e-9
                    {
                        continue;
                    }
                    gpu_loads[ga] -= moved;
                    gpu_loads[gb] += moved;
                    assignment.swap(a, b);
                    improved = true;
                    changed = true;
                }
            }
        }
    }
    changed
}
