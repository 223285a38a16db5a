//! Polishes an even-split packing without changing replica counts: while the most loaded GPU can
//! hand one replica to another GPU, or trade it for a lighter replica there, so that both end
//! below its current load, apply the best such move.
//!
//! Every move shifts load from a heavier GPU to a lighter one without overshooting, so the sum
//! of squared GPU loads strictly falls and the search ends.

use crate::trace::ExpertId;

/// A move off the most loaded GPU.
#[derive(Debug, Clone, Copy)]
enum Move {
    /// Expert at `slot` of the hot GPU moves to `to`.
    Shift { slot: usize, to: usize },
    /// Expert at `slot` of the hot GPU swaps with the one at `other_slot` of `to`.
    Swap {
        slot: usize,
        to: usize,
        other_slot: usize,
    },
}

/// Improves `gpu_experts` in place (each GPU keeps at most `slots` experts and no expert twice);
/// `shares[e]` is the load one replica of expert `e` carries.
pub(super) fn improve(shares: &[f64], gpu_experts: &mut [Vec<ExpertId>], slots: usize) {
    let mut gpu_loads: Vec<f64> = gpu_experts
        .iter()
        .map(|experts| experts.iter().map(|&e| shares[e as usize]).sum())
        .collect();
    while let Some((hot, chosen)) = best_move(shares, gpu_experts, &gpu_loads, slots) {
        let expert = gpu_experts[hot][match chosen {
            Move::Shift { slot, .. } | Move::Swap { slot, .. } => slot,
        }];
        match chosen {
            Move::Shift { slot, to } => {
                gpu_experts[hot].swap_remove(slot);
                gpu_experts[to].push(expert);
                gpu_loads[hot] -= shares[expert as usize];
                gpu_loads[to] += shares[expert as usize];
            }
            Move::Swap {
                slot,
                to,
                other_slot,
            } => {
                let other = gpu_experts[to][other_slot];
                gpu_experts[hot][slot] = other;
                gpu_experts[to][other_slot] = expert;
                let delta = shares[expert as usize] - shares[other as usize];
                gpu_loads[hot] -= delta;
                gpu_loads[to] += delta;
            }
        }
    }
    for experts in gpu_experts.iter_mut() {
        experts.sort_unstable();
    }
}

/// The move off the most loaded GPU (lowest index on ties) that leaves the larger of the two
/// GPUs it touches lowest, if that is below the hot GPU's load (first found on ties).
fn best_move(
    shares: &[f64],
    gpu_experts: &[Vec<ExpertId>],
    gpu_loads: &[f64],
    slots: usize,
) -> Option<(usize, Move)> {
    let hot = (0..gpu_loads.len())
        .max_by(|&a, &b| gpu_loads[a].total_cmp(&gpu_loads[b]).then(b.cmp(&a)))?;
    let peak = gpu_loads[hot];
    // Moves must beat the peak by more than rounding noise, so the search cannot cycle.
    let mut best: Option<(f64, Move)> = None;
    let mut consider = |pair_max: f64, candidate: Move| {
        if pair_max < peak * (1.0 - 1e-12) && best.is_none_or(|(b, _)| pair_max < b) {
            best = Some((pair_max, candidate));
        }
    };
    for (slot, &expert) in gpu_experts[hot].iter().enumerate() {
        let share = shares[expert as usize];
        for to in (0..gpu_loads.len()).filter(|&g| g != hot) {
            if gpu_experts[to].contains(&expert) {
                continue;
            }
            if gpu_experts[to].len() < slots {
                let pair_max = (peak - share).max(gpu_loads[to] + share);
                consider(pair_max, Move::Shift { slot, to });
            }
            for (other_slot, &other) in gpu_experts[to].iter().enumerate() {
                let delta = share - shares[other as usize];
                if delta <= 0.0 || gpu_experts[hot].contains(&other) {
                    continue;
                }
                let pair_max = (peak - delta).max(gpu_loads[to] + delta);
                consider(
                    pair_max,
                    Move::Swap {
                        slot,
                        to,
                        other_slot,
                    },
                );
            }
        }
    }
    best.map(|(_, chosen)| (hot, chosen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swap_evens_out_two_gpus() {
        // GPU 0: 4 + 3 = 7, GPU 1: 2 + 1 = 3. Swapping 3 for 1 gives 5 and 5 (4 + 1, 2 + 3);
        // swapping 4 for 2 also gives 5 and 5 and is found first (slot 0); shifts need a free
        // slot and there is none.
        let shares = [4.0, 3.0, 2.0, 1.0];
        let mut gpus = vec![vec![0, 1], vec![2, 3]];
        improve(&shares, &mut gpus, 2);
        assert_eq!(gpus, vec![vec![1, 2], vec![0, 3]]);
    }

    #[test]
    fn a_shift_uses_a_free_slot_but_never_a_gpu_holding_the_expert() {
        // Expert 0 (share 2) is on both GPUs; GPU 0 also holds 1 (share 3): 5 vs 2. Moving
        // expert 1 to GPU 1 (free slot) gives 2 vs 5: no better. Nothing else can move.
        let shares = [2.0, 3.0];
        let mut gpus = vec![vec![0, 1], vec![0]];
        improve(&shares, &mut gpus, 3);
        assert_eq!(gpus, vec![vec![0, 1], vec![0]]);
        // With an empty third GPU either expert can shift there (pair maximum 3 both ways);
        // expert 0, in the first slot, is found first: 3, 2, 2.
        let mut gpus = vec![vec![0, 1], vec![0], vec![]];
        improve(&shares, &mut gpus, 3);
        assert_eq!(gpus, vec![vec![1], vec![0], vec![0]]);
    }
}
