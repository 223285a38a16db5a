//! Simulated annealing over expert swaps: the greedy swap search stops at the first partition
//! no single swap improves; annealing also takes worsening swaps with probability
//! `exp(-delta / temperature)`, the temperature falling geometrically, so it can leave such
//! local optima. A swap exchanges two experts of one layer on different GPUs (counts stay
//! equal) and is only taken when both GPUs stay under the layer's load cap. Its score is the
//! transition change plus the load weight times the change of the layer's peak GPU load. The
//! first expert is uniform, the GPU it moves to is drawn by its transitions with that GPU's
//! neighbours, its partner is the best placed to move back of a few drawn on that GPU: random
//! pairs mostly propose useless swaps once experts outnumber GPUs. Each expert keeps
//! its transitions from and to every GPU of the neighbouring layers, so a swap's cost change
//! takes `O(gpus)` and applying it `O(experts)`.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::Problem;

/// Experts of the target GPU drawn per swap, the best-placed to move kept.
const PARTNER_DRAWS: usize = 4;

/// Per (layer, expert), transitions from each GPU of the layer before and to each GPU of the
/// layer after, flattened as `[(layer * experts + expert) * gpus + gpu]`.
struct Neighbours {
    experts: usize,
    gpus: usize,
    from_gpu: Vec<f64>,
    to_gpu: Vec<f64>,
}

impl Neighbours {
    fn new(problem: &Problem, gpu_of: &[Vec<usize>]) -> Neighbours {
        let (layers, experts, gpus) = (
            gpu_of.len(),
            problem.loads.num_experts(),
            problem.hop_costs.len(),
        );
        let mut n = Neighbours {
            experts,
            gpus,
            from_gpu: vec![0.0; layers * experts * gpus],
            to_gpu: vec![0.0; layers * experts * gpus],
        };
        for layer in 1..layers {
            for (prev, &g) in gpu_of[layer - 1].iter().enumerate() {
                for (e, &h) in gpu_of[layer].iter().enumerate() {
                    let count = problem.transitions.count(layer - 1, prev, e);
                    let i = n.at(layer, e, g);
                    n.from_gpu[i] += count;
                    let i = n.at(layer - 1, prev, h);
                    n.to_gpu[i] += count;
                }
            }
        }
        n
    }

    fn at(&self, layer: usize, expert: usize, gpu: usize) -> usize {
        (layer * self.experts + expert) * self.gpus + gpu
    }

    /// The cost of expert `e` of `layer` sitting on GPU `g`.
    fn cost(&self, hop_costs: &[Vec<f64>], layer: usize, e: usize, g: usize) -> f64 {
        let base = self.at(layer, e, 0);
        (0..self.gpus)
            .map(|h| {
                self.from_gpu[base + h] * hop_costs[h][g] + self.to_gpu[base + h] * hop_costs[g][h]
            })
            .sum()
    }

    /// A GPU other than `own` to move expert `e` of `layer` towards, drawn with probability
    /// proportional to its transitions with the neighbouring layers' experts there (uniformly
    /// when it has none): most swaps worth trying move an expert towards its neighbours.
    fn draw_gpu(&self, layer: usize, e: usize, own: usize, rng: &mut ChaCha8Rng) -> usize {
        let base = self.at(layer, e, 0);
        let weight = |g: usize| {
            if g == own {
                0.0
            } else {
                self.from_gpu[base + g] + self.to_gpu[base + g]
            }
        };
        let total: f64 = (0..self.gpus).map(weight).sum();
        if total <= 0.0 {
            return (own + rng.random_range(1..self.gpus)) % self.gpus;
        }
        let mut left = rng.random::<f64>() * total;
        for g in 0..self.gpus {
            left -= weight(g);
            if left < 0.0 && g != own {
                return g;
            }
        }
        (own + 1) % self.gpus
    }

    /// How much cheaper expert `e` of `layer` is on GPU `to` than on GPU `from` (one pass for
    /// the difference of two [`Neighbours::cost`]s).
    fn gain(&self, hop_costs: &[Vec<f64>], layer: usize, e: usize, from: usize, to: usize) -> f64 {
        let base = self.at(layer, e, 0);
        (0..self.gpus)
            .map(|h| {
                self.from_gpu[base + h] * (hop_costs[h][from] - hop_costs[h][to])
                    + self.to_gpu[base + h] * (hop_costs[from][h] - hop_costs[to][h])
            })
            .sum()
    }

    /// Records that expert `e` of `layer` moved from GPU `old` to `new`.
    fn moved(
        &mut self,
        problem: &Problem,
        layers: usize,
        layer: usize,
        e: usize,
        old: usize,
        new: usize,
    ) {
        if layer + 1 < layers {
            for next in 0..self.experts {
                let count = problem.transitions.count(layer, e, next);
                let i = self.at(layer + 1, next, old);
                self.from_gpu[i] -= count;
                let i = self.at(layer + 1, next, new);
                self.from_gpu[i] += count;
            }
        }
        if layer > 0 {
            for prev in 0..self.experts {
                let count = problem.transitions.count(layer - 1, prev, e);
                let i = self.at(layer - 1, prev, old);
                self.to_gpu[i] -= count;
                let i = self.at(layer - 1, prev, new);
                self.to_gpu[i] += count;
            }
        }
    }
}

/// The annealing schedule.
pub(super) struct Schedule {
    /// Swaps drawn.
    pub moves: usize,
    /// Starting temperature, in transitions.
    pub start_temperature: f64,
    /// Final temperature, in transitions.
    pub end_temperature: f64,
    /// Transitions one token of a layer's peak GPU load is worth.
    pub load_weight: f64,
}

/// Anneals `gpu_of` (feasible: every GPU under its layer's cap) in place with swaps drawn from
/// `rng`; it stays feasible.
pub(super) fn anneal(
    problem: &Problem,
    gpu_of: &mut [Vec<usize>],
    schedule: &Schedule,
    rng: &mut ChaCha8Rng,
) {
    let layers = gpu_of.len();
    let experts = problem.loads.num_experts();
    let gpus = problem.hop_costs.len();
    if layers == 0 || experts < 2 || gpus < 2 || schedule.moves == 0 {
        return;
    }
    let mut neighbours = Neighbours::new(problem, gpu_of);
    let mut gpu_loads: Vec<Vec<f64>> = (0..layers)
        .map(|l| problem.gpu_loads(l, &gpu_of[l]))
        .collect();
    // Experts per GPU and layer (swaps keep them).
    let held: Vec<Vec<usize>> = gpu_of
        .iter()
        .map(|assignment| {
            let mut held = vec![0; gpus];
            for &g in assignment {
                held[g] += 1;
            }
            held
        })
        .collect();
    let mut peaks: Vec<f64> = gpu_loads
        .iter()
        .map(|loads| loads.iter().copied().fold(0.0, f64::max))
        .collect();
    let cooling =
        (schedule.end_temperature / schedule.start_temperature).powf(1.0 / schedule.moves as f64);
    let mut temperature = schedule.start_temperature;
    let hop = problem.hop_costs;
    for _ in 0..schedule.moves {
        temperature *= cooling;
        let layer = rng.random_range(0..layers);
        let a = rng.random_range(0..experts);
        let ga = gpu_of[layer][a];
        let gb = neighbours.draw_gpu(layer, a, ga, rng);
        if held[layer][gb] == 0 {
            continue;
        }
        // Of a few experts of GPU `gb` (each by rejection, about `gpus` draws), the one that
        // gains most by moving to `ga`.
        let mut draw = || loop {
            let b = rng.random_range(0..experts);
            if gpu_of[layer][b] == gb {
                break b;
            }
        };
        let gain = |b: usize| neighbours.gain(problem.hop_costs, layer, b, gb, ga);
        let mut b = draw();
        for _ in 1..PARTNER_DRAWS {
            let other = draw();
            if gain(other) > gain(b) {
                b = other;
            }
        }
        let loads = problem.loads.layer(layer);
        let moved = loads[a] - loads[b];
        let cap = problem.caps[layer] + 1e-9;
        if gpu_loads[layer][ga] - moved > cap || gpu_loads[layer][gb] + moved > cap {
            continue;
        }
        let (load_a, load_b) = (gpu_loads[layer][ga] - moved, gpu_loads[layer][gb] + moved);
        let peak = (0..gpu_loads[layer].len())
            .filter(|&g| g != ga && g != gb)
            .map(|g| gpu_loads[layer][g])
            .fold(load_a.max(load_b), f64::max);
        let delta = schedule.load_weight * (peak - peaks[layer])
            + neighbours.cost(hop, layer, a, gb)
            + neighbours.cost(hop, layer, b, ga)
            - neighbours.cost(hop, layer, a, ga)
            - neighbours.cost(hop, layer, b, gb);
        if delta > 0.0 && rng.random::<f64>() >= (-delta / temperature).exp() {
            continue;
        }
        gpu_loads[layer][ga] = load_a;
        gpu_loads[layer][gb] = load_b;
        peaks[layer] = peak;
        gpu_of[layer].swap(a, b);
        neighbours.moved(problem, layers, layer, a, ga, gb);
        neighbours.moved(problem, layers, layer, b, gb, ga);
    }
}
