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
/// when that lowers the cost; returns whether anything changed. Each candidate's cost change
/// comes from the GPU-to-GPU transition flows of every layer pair ([`gpu_flows`]): only flows
/// into, out of or between the two GPUs change, so a candidate costs `O(layers x gpus)`.
fn relabel_suffixes(problem: &Problem, gpu_of: &mut [Vec<usize>]) -> bool {
    let gpus = problem.hop_costs.len();
    let hop = problem.hop_costs;
    let mut flows = gpu_flows(problem, gpu_of);
    let mut changed = false;
    for from in 1..gpu_of.len() {
        for g in 0..gpus {
            for h in g + 1..gpus {
                let swap = |x: usize| match x {
                    _ if x == g => h,
                    _ if x == h => g,
                    _ => x,
                };
                // Layer pair `from - 1 -> from`: only the destination GPUs move.
                let boundary = &flows[from - 1];
                let mut delta: f64 = (0..gpus)
                    .map(|a| {
                        boundary[a][g] * (hop[a][h] - hop[a][g])
                            + boundary[a][h] * (hop[a][g] - hop[a][h])
                    })
                    .sum();
                // Pairs inside the suffix: both ends move; only flows touching g or h change.
                for flow in &flows[from..] {
                    for a in 0..gpus {
                        for b in [g, h] {
                            delta += flow[a][b] * (hop[swap(a)][swap(b)] - hop[a][b]);
                            if a != g && a != h {
                                delta += flow[b][a] * (hop[swap(b)][a] - hop[b][a]);
                            }
                        }
                    }
                }
                if delta >= -1e-9 {
                    continue;
                }
                changed = true;
                for assignment in &mut gpu_of[from..] {
                    for gpu in assignment.iter_mut() {
                        *gpu = swap(*gpu);
                    }
                }
                for row in &mut flows[from - 1] {
                    row.swap(g, h);
                }
                for flow in &mut flows[from..] {
                    flow.swap(g, h);
                    for row in flow.iter_mut() {
                        row.swap(g, h);
                    }
                }
            }
        }
    }
    changed
}

/// Per layer pair `l -> l + 1`, the transitions from each GPU's experts at `l` to each GPU's
/// experts at `l + 1`.
fn gpu_flows(problem: &Problem, gpu_of: &[Vec<usize>]) -> Vec<Vec<Vec<f64>>> {
    let gpus = problem.hop_costs.len();
    gpu_of
        .windows(2)
        .enumerate()
        .map(|(pair, w)| {
            let mut flow = vec![vec![0.0; gpus]; gpus];
            for (from, &a) in w[0].iter().enumerate() {
                for (to, &b) in w[1].iter().enumerate() {
                    flow[a][b] += problem.transitions.count(pair, from, to);
                }
            }
            flow
        })
        .collect()
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
