//! Handing spare slots to experts: every expert starts with one replica, and each further slot
//! goes to the expert with the most load per replica (lowest index among equals, as DeepSeek's
//! EPLB reference breaks ties). EPLB places the replicas it hands out; `ilp-balance` bounds its
//! solutions with the same apportionment, capped at one replica per GPU.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Replicas of each expert after apportioning `slots` slots over `weights.len()` experts, no
/// expert taking more than `max_replicas`. Returns the expert of every slot handed out (slot
/// `i < E` is expert `i`, then the extra replicas in the order they were given) and each
/// expert's replica count. Slots stop early once every expert is at its cap. The experts wait in
/// a heap: `slots x log(experts)`.
pub(super) fn apportion(
    weights: &[f64],
    slots: usize,
    max_replicas: usize,
) -> (Vec<usize>, Vec<usize>) {
    let mut slot_expert: Vec<usize> = (0..weights.len()).collect();
    let mut counts = vec![1usize; weights.len()];
    let mut heaviest: BinaryHeap<Ranked> = weights
        .iter()
        .enumerate()
        .map(|(expert, &weight)| Ranked::new(weight, expert))
        .collect();
    while slot_expert.len() < slots {
        let Some(best) = heaviest.pop() else {
            break;
        };
        if counts[best.index] >= max_replicas {
            continue;
        }
        slot_expert.push(best.index);
        counts[best.index] += 1;
        let per_replica = weights[best.index] / counts[best.index] as f64;
        heaviest.push(Ranked::new(per_replica, best.index));
    }
    (slot_expert, counts)
}

/// A value and the index it belongs to, ordered by value and then by *lower* index first: a
/// max-heap's top is the highest value, the lowest index among equals, as the reference's
/// scans break ties.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ranked {
    pub value: f64,
    pub index: usize,
}

impl Ranked {
    /// `value` (a `-0.0` taken as `0.0`, as the reference's comparisons do) at `index`.
    pub fn new(value: f64, index: usize) -> Ranked {
        Ranked {
            value: value + 0.0,
            index,
        }
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Ranked) -> Ordering {
        self.value
            .total_cmp(&other.value)
            .then(other.index.cmp(&self.index))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Ranked) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Ranked) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}
