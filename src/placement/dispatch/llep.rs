//! Least-loaded expert parallelism (LLEP, Nguyen et al. 2026, arXiv 2601.17111): when a layer's
//! busiest GPU computes more than `threshold` times the mean (token, expert) pairs, every GPU
//! above the mean sheds pairs of its hottest experts to the least-loaded GPUs below the mean,
//! which first receive those experts' weights from the holder, within a per-GPU budget of
//! borrowed weight bytes. The routing itself is unchanged: the same pairs are computed,
//! elsewhere.

use super::super::Placement;

/// Least-loaded EP, resolved with the model's expert size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llep {
    /// Busiest GPU's pairs over the mean above which a layer is rebalanced (the paper's λ).
    pub threshold: f64,
    /// Bytes of borrowed expert weights each GPU may hold.
    pub memory_budget_bytes: f64,
    /// Bytes of one expert's weights.
    pub expert_bytes: u64,
}

/// Pairs moved off one expert slot to another GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Move {
    /// The overloaded GPU and its expert slot.
    pub from: (usize, usize),
    /// The GPU computing them and its slot of the expert (a borrowed slot is numbered after the
    /// GPU's own slots, in the order it was borrowed).
    pub to: (usize, usize),
    /// Pairs moved.
    pub pairs: f64,
}

/// What LLEP does to one layer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rebalance {
    /// Moves, busiest GPU first, its hottest expert first.
    pub moves: Vec<Move>,
    /// Borrowed experts: (holder GPU, borrowing GPU), in slot order per borrowing GPU.
    pub borrowed: Vec<(usize, usize)>,
}

impl Llep {
    /// The moves that bring every GPU of `expert_tokens` (pairs per GPU and slot of `placement`'s
    /// layer `layer`) down towards the mean, whole pairs only when `integral`.
    pub fn rebalance(
        &self,
        placement: &Placement,
        layer: usize,
        expert_tokens: &[Vec<f64>],
        integral: bool,
    ) -> Rebalance {
        let whole = |x: f64| if integral { x.floor() } else { x };
        let gpus = expert_tokens.len();
        let mut load: Vec<f64> = expert_tokens.iter().map(|s| s.iter().sum()).collect();
        let mean = load.iter().sum::<f64>() / gpus.max(1) as f64;
        let busiest = load.iter().fold(0.0_f64, |m, &l| m.max(l));
        let mut out = Rebalance::default();
        if mean <= 0.0 || busiest <= self.threshold * mean {
            return out;
        }
        // Borrowed experts per GPU: (expert, slot).
        let mut borrowed: Vec<Vec<(usize, usize)>> = vec![Vec::new(); gpus];
        let mut over: Vec<usize> = (0..gpus).filter(|&g| load[g] > mean).collect();
        over.sort_by(|&a, &b| load[b].total_cmp(&load[a]).then(a.cmp(&b)));
        for from in over {
            let experts = placement.experts_on(layer, from);
            let mut slots: Vec<usize> = (0..experts.len()).collect();
            let tokens = &expert_tokens[from];
            slots.sort_by(|&a, &b| tokens[b].total_cmp(&tokens[a]).then(a.cmp(&b)));
            'slots: for slot in slots {
                let expert = experts[slot] as usize;
                let mut left = tokens[slot];
                while left > 0.0 {
                    let excess = whole(load[from] - mean);
                    if excess <= 0.0 {
                        break 'slots;
                    }
                    let budget_fits = |to: usize| {
                        (borrowed[to].len() + 1) as f64 * self.expert_bytes as f64
                            <= self.memory_budget_bytes
                    };
                    let host = |to: usize| {
                        if let Some(native) = placement
                            .experts_on(layer, to)
                            .iter()
                            .position(|&e| e as usize == expert)
                        {
                            return Some(native);
                        }
                        if let Some(&(_, slot)) = borrowed[to].iter().find(|(e, _)| *e == expert) {
                            return Some(slot);
                        }
                        budget_fits(to).then(|| expert_tokens[to].len() + borrowed[to].len())
                    };
                    let Some((to, to_slot)) = (0..gpus)
                        .filter(|&to| to != from && whole(mean - load[to]) > 0.0)
                        .filter_map(|to| host(to).map(|slot| (to, slot)))
                        .min_by(|a, b| load[a.0].total_cmp(&load[b.0]).then(a.0.cmp(&b.0)))
                    else {
                        continue 'slots;
                    };
                    let pairs = whole(left.min(excess).min(mean - load[to]));
                    if pairs <= 0.0 {
                        break;
                    }
                    if to_slot >= expert_tokens[to].len() + borrowed[to].len() {
                        borrowed[to].push((expert, to_slot));
                        out.borrowed.push((from, to));
                    }
                    out.moves.push(Move {
                        from: (from, slot),
                        to: (to, to_slot),
                        pairs,
                    });
                    load[from] -= pairs;
                    load[to] += pairs;
                    left -= pairs;
                }
            }
        }
        out
    }
}
