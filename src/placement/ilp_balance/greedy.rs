//! The greedy incumbent for `ilp-balance`: replica counts by highest load per replica, packed
//! heaviest replica first onto the lightest GPU (longest processing time first) and polished by
//! local search, trying every number of extra replicas so that spare slots are left empty when
//! filling them does not help.

use crate::trace::ExpertId;

/// Per GPU, the experts it holds (ascending), and the largest GPU load under an even split.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::placement) struct Packing {
    /// Per GPU, the experts it holds, ascending.
    pub gpu_experts: Vec<Vec<ExpertId>>,
    /// The largest per-GPU load, each expert's load split evenly across its replicas.
    pub max_load: f64,
}

/// The best packing over every budget of extra replicas from 0 to `gpus * slots - experts`
/// (fewest extra replicas on ties). Needs `loads.len() <= gpus * slots` and fewer than 65536
/// experts (the caller checks both).
pub(super) fn best_packing(loads: &[f64], gpus: usize, slots: usize) -> Option<Packing> {
    let spare = (gpus * slots).checked_sub(loads.len())?;
    let mut counts = vec![1usize; loads.len()];
    let mut best = pack(loads, &counts, gpus, slots);
    for _ in 0..spare {
        if !add_replica(loads, &mut counts, gpus) {
            break;
        }
        if let Some(packing) = pack(loads, &counts, gpus, slots)
            && best.as_ref().is_none_or(|b| packing.max_load < b.max_load)
        {
            best = Some(packing);
        }
    }
    best
}

/// Gives one more replica to the expert with the highest load per replica that has fewer than
/// `gpus` replicas (lowest id on ties); false when every expert is on every GPU.
fn add_replica(loads: &[f64], counts: &mut [usize], gpus: usize) -> bool {
    let mut chosen: Option<usize> = None;
    for expert in 0..loads.len() {
        if counts[expert] >= gpus {
            continue;
        }
        let share = loads[expert] / counts[expert] as f64;
        if chosen.is_none_or(|c| share > loads[c] / counts[c] as f64) {
            chosen = Some(expert);
        }
    }
    match chosen {
        Some(expert) => {
            counts[expert] += 1;
            true
        }
        None => false,
    }
}

/// Packs `counts[e]` replicas of each expert `e` (load `loads[e] / counts[e]` each), heaviest
/// expert first (lowest id on ties), each replica onto the least loaded GPU (lowest index on
/// ties) that has a free slot and does not hold the expert yet, then polishes the result with
/// `local_search`; `None` when a replica finds no such GPU.
pub(in crate::placement) fn pack(
    loads: &[f64],
    counts: &[usize],
    gpus: usize,
    slots: usize,
) -> Option<Packing> {
    let share = |e: usize| loads[e] / counts[e] as f64;
    let mut order: Vec<usize> = (0..loads.len()).collect();
    order.sort_by(|&a, &b| share(b).total_cmp(&share(a)).then(a.cmp(&b)));
    let mut gpu_experts: Vec<Vec<ExpertId>> = vec![Vec::with_capacity(slots); gpus];
    let mut gpu_loads = vec![0.0f64; gpus];
    for expert in order {
        let id = ExpertId::try_from(expert).ok()?;
        for _ in 0..counts[expert] {
            let gpu = (0..gpus)
                .filter(|&g| gpu_experts[g].len() < slots && !gpu_experts[g].contains(&id))
                .min_by(|&a, &b| gpu_loads[a].total_cmp(&gpu_loads[b]))?;
            gpu_experts[gpu].push(id);
            gpu_loads[gpu] += share(expert);
        }
    }
    let shares: Vec<f64> = (0..loads.len()).map(share).collect();
    super::local_search::improve(&shares, &mut gpu_experts, slots);
    let max_load = max_gpu_load(loads, &gpu_experts);
    Some(Packing {
        gpu_experts,
        max_load,
    })
}

/// The largest per-GPU load of a layer whose ids are below `loads.len()`, each expert's load
/// split evenly across the GPUs holding it.
pub(super) fn max_gpu_load(loads: &[f64], gpu_experts: &[Vec<ExpertId>]) -> f64 {
    let counts = replica_counts(loads.len(), gpu_experts);
    gpu_experts
        .iter()
        .map(|experts| {
            experts
                .iter()
                .map(|&e| loads[e as usize] / counts[e as usize] as f64)
                .sum::<f64>()
        })
        .fold(0.0, f64::max)
}

/// How many GPUs hold each of `num_experts` experts.
pub(super) fn replica_counts(num_experts: usize, gpu_experts: &[Vec<ExpertId>]) -> Vec<usize> {
    let mut counts = vec![0usize; num_experts];
    for &e in gpu_experts.iter().flatten() {
        counts[e as usize] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_extra_replica_of_the_hot_expert_balances_two_gpus() {
        // 8 experts, 2 GPUs x 5 slots, total 16. With one extra replica of expert 0 (5 + 5 on
        // the two GPUs) the 1s alternate, 5 + 1 + 1 + 1 = 8 on each GPU, and expert 7 (load 0)
        // takes GPU 0's fifth slot. More replicas only split 1s and cannot beat 16 / 2 = 8.
        let loads = [10.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        let best = best_packing(&loads, 2, 5).unwrap();
        assert_eq!(best.max_load, 8.0);
        assert_eq!(
            best.gpu_experts,
            vec![vec![0, 1, 3, 5, 7], vec![0, 2, 4, 6]]
        );
    }

    #[test]
    fn without_replicas_the_hot_expert_dominates() {
        let loads = [10.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        let packing = pack(&loads, &[1; 8], 2, 5).unwrap();
        // 10 on GPU 0; the 1s go to GPU 1 (lighter) until its 5 slots are full; the last 1 and
        // the 0 land on GPU 0: 10 + 1 + 0 = 11.
        assert_eq!(
            packing.gpu_experts,
            vec![vec![0, 6, 7], vec![1, 2, 3, 4, 5]]
        );
        assert_eq!(packing.max_load, 11.0);
    }

    #[test]
    fn a_replica_with_no_distinct_gpu_left_fails() {
        // Expert 1 (heavier, placed first) fills GPU 0's only slot; expert 0's second replica
        // then has no GPU left that lacks it.
        assert_eq!(pack(&[1.0, 5.0], &[2, 1], 2, 1), None);
        assert_eq!(max_gpu_load(&[6.0, 2.0], &[vec![0, 1], vec![0]]), 5.0);
    }
}
