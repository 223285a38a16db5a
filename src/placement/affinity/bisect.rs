//! Recursive bisection of a weighted graph whose nodes come in classes (the layered transition
//! graph's classes are its layers): the GPUs are split in two halves, every class's nodes in two
//! sets sized by the halves' quotas, and the cut (edge weight between the two sets) is
//! minimised by Kernighan-Lin passes; each half is then split the same way until one GPU is
//! left. Swapping two nodes of one class keeps every class's split sizes; nodes of one class
//! share no edge (a layer's experts share no transitions), so a swap's gain is the two nodes'
//! external minus internal weights. A pass swaps the best pair again and again, each node once,
//! taking worsening swaps too, and keeps the best prefix: that climbs out of the local optima
//! where single improving swaps stop.

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::TransitionCounts;

/// Kernighan-Lin passes per bisection at most (a pass that gains nothing ends it).
const MAX_PASSES: usize = 16;

/// Per GPU, how many experts of each layer it takes: `experts / gpus`, one more on the first
/// `experts % gpus` GPUs (equal counts, as ExFlow places them).
pub(super) fn quotas(experts: usize, gpus: usize) -> Vec<usize> {
    (0..gpus)
        .map(|g| experts / gpus + usize::from(g < experts % gpus))
        .collect()
}

/// Partitions the (layer, expert) transition graph into `gpus` parts with the [`quotas`] in
/// every layer, by [`bisect`]: per layer, per expert, its GPU.
pub(super) fn partition_layers(
    transitions: &TransitionCounts,
    layers: usize,
    experts: usize,
    gpus: usize,
    tries: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<usize>> {
    let graph = Graph::layered(transitions, layers, experts);
    bisect(&graph, &quotas(experts, gpus), tries, rng)
        .chunks(experts.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// An undirected weighted graph whose nodes each belong to one class; no edge joins two nodes
/// of one class.
struct Graph {
    /// Per node, its class.
    class: Vec<usize>,
    /// Number of classes.
    classes: usize,
    /// Per node, its neighbours and the edge weights (each edge listed at both ends).
    adjacency: Vec<Vec<(usize, f64)>>,
}

/// Splits `graph` into `quota.len()` parts, part `p` taking `quota[p]` nodes of every class
/// (the quotas must add up to each class's size): per node, its part. Each bisection keeps the
/// best of `tries` random splits refined by Kernighan-Lin passes; `rng` draws them.
fn bisect(graph: &Graph, quota: &[usize], tries: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut part = vec![0; graph.class.len()];
    let mut stack = vec![(0..quota.len(), (0..graph.class.len()).collect::<Vec<_>>())];
    while let Some((range, members)) = stack.pop() {
        if range.len() <= 1 {
            for v in members {
                part[v] = range.start;
            }
            continue;
        }
        let middle = range.start + range.len() / 2;
        let left_size: usize = quota[range.start..middle].iter().sum();
        let (left, right) = graph.split(&members, left_size, tries.max(1), rng);
        stack.push((range.start..middle, left));
        stack.push((middle..range.end, right));
    }
    part
}

impl Graph {
    /// The (layer, expert) transition graph: node `layer * experts + e`, class `layer`, an edge
    /// per pair of experts of consecutive layers that tokens go between.
    fn layered(transitions: &TransitionCounts, layers: usize, experts: usize) -> Graph {
        let mut adjacency = vec![Vec::new(); layers * experts];
        for pair in 0..layers.saturating_sub(1) {
            for a in 0..experts {
                for b in 0..experts {
                    let w = transitions.count(pair, a, b);
                    if w > 0.0 {
                        let (u, v) = (pair * experts + a, (pair + 1) * experts + b);
                        adjacency[u].push((v, w));
                        adjacency[v].push((u, w));
                    }
                }
            }
        }
        Graph {
            class: (0..layers * experts).map(|v| v / experts).collect(),
            classes: layers,
            adjacency,
        }
    }

    /// Splits `members` into `left_size` nodes of every class and the rest, minimising the
    /// weight between the two: the best of `tries` random splits after Kernighan-Lin passes.
    fn split(
        &self,
        members: &[usize],
        left_size: usize,
        tries: usize,
        rng: &mut ChaCha8Rng,
    ) -> (Vec<usize>, Vec<usize>) {
        let mut by_class = vec![Vec::new(); self.classes];
        for &v in members {
            by_class[self.class[v]].push(v);
        }
        let mut best: Option<(f64, Vec<Option<bool>>)> = None;
        for _ in 0..tries {
            // `side[v]`: node `v` is on the right; `None` outside the part being split.
            let mut side = vec![None; self.class.len()];
            for nodes in &mut by_class {
                nodes.shuffle(rng);
                for (rank, &v) in nodes.iter().enumerate() {
                    side[v] = Some(rank >= left_size);
                }
            }
            for _ in 0..MAX_PASSES {
                if self.pass(members, &mut side) <= 1e-9 {
                    break;
                }
            }
            let cut = self.cut(members, &side);
            if best.as_ref().is_none_or(|(c, _)| cut < *c) {
                best = Some((cut, side));
            }
        }
        let side = best.map(|(_, side)| side).unwrap_or_default();
        let (right, left) = members.iter().partition(|&&v| side[v] == Some(true));
        (left, right)
    }

    /// Weight between the two sides of the part `members`.
    fn cut(&self, members: &[usize], side: &[Option<bool>]) -> f64 {
        let mut twice = 0.0;
        for &v in members {
            for &(u, w) in &self.adjacency[v] {
                if side[v].is_some() && side[u].is_some() && side[v] != side[u] {
                    twice += w;
                }
            }
        }
        twice / 2.0
    }

    /// Per node of the part `members`, its weight to the other side minus that to its own.
    fn external_minus_internal(&self, members: &[usize], side: &[Option<bool>]) -> Vec<f64> {
        let mut gain = vec![0.0; side.len()];
        for &v in members {
            let Some(s) = side[v] else { continue };
            for &(u, w) in &self.adjacency[v] {
                if let Some(t) = side[u] {
                    gain[v] += if s == t { -w } else { w };
                }
            }
        }
        gain
    }

    /// One Kernighan-Lin pass over the part `members` (ascending): swaps the best unlocked
    /// same-class pair until none is left, keeps the best prefix of the swaps and returns its
    /// gain (0 when no prefix gains).
    fn pass(&self, members: &[usize], side: &mut [Option<bool>]) -> f64 {
        let mut gain = self.external_minus_internal(members, side);
        let mut locked = vec![false; side.len()];
        let mut swaps = Vec::new();
        let (mut total, mut best_total, mut best_len) = (0.0, 0.0, 0);
        loop {
            // Per class and side, the unlocked node of highest gain; then the best class's pair.
            let mut top = vec![[None::<usize>; 2]; self.classes];
            for &v in members {
                let Some(s) = side[v] else { continue };
                let slot = &mut top[self.class[v]][usize::from(s)];
                if !locked[v] && slot.is_none_or(|t| gain[v] > gain[t]) {
                    *slot = Some(v);
                }
            }
            let pick = top
                .iter()
                .filter_map(|pair| match *pair {
                    [Some(a), Some(b)] => Some((a, b)),
                    _ => None,
                })
                .max_by(|x, y| (gain[x.0] + gain[x.1]).total_cmp(&(gain[y.0] + gain[y.1])));
            let Some((a, b)) = pick else { break };
            let g = gain[a] + gain[b];
            for v in [a, b] {
                let from = side[v];
                for &(u, w) in &self.adjacency[v] {
                    if side[u].is_some() {
                        // `v` leaves `u`'s side (their edge turns external) or joins it.
                        gain[u] += if side[u] == from { 2.0 * w } else { -2.0 * w };
                    }
                }
                side[v] = from.map(|s| !s);
                locked[v] = true;
            }
            swaps.push((a, b));
            total += g;
            if total > best_total + 1e-9 {
                (best_total, best_len) = (total, swaps.len());
            }
        }
        for &(a, b) in &swaps[best_len..] {
            for v in [a, b] {
                side[v] = side[v].map(|s| !s);
            }
        }
        best_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::RoutingTrace;
    use rand::SeedableRng;

    #[test]
    fn quotas_give_the_first_gpus_the_remainder() {
        assert_eq!(quotas(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(quotas(8, 8), vec![1; 8]);
    }

    #[test]
    fn bisection_keeps_each_chain_of_experts_on_one_gpu() {
        // 3 layers, 4 experts, 2 GPUs; tokens follow four chains, 0 -> 2 -> 3, 1 -> 3 -> 0,
        // 2 -> 1 -> 1 and 3 -> 0 -> 2, chains 0 and 1 three tokens each, 2 and 3 two, plus one
        // token 0 -> 1 -> 1 tying chains 0 and 2. The cheapest split with two experts per GPU and
        // layer puts chains 0 and 2 on one GPU and 1 and 3 on the other: no transition crosses.
        let mut ids = Vec::new();
        for (chain, tokens) in [
            ([0, 2, 3], 3),
            ([1, 3, 0], 3),
            ([2, 1, 1], 2),
            ([3, 0, 2], 2),
        ] {
            for _ in 0..tokens {
                ids.extend_from_slice(&chain);
            }
        }
        ids.extend_from_slice(&[0, 1, 1]);
        let trace = RoutingTrace::from_dense(4, 3, 1, &ids).unwrap();
        let transitions = TransitionCounts::from_trace(&trace, 3, 4).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let gpu_of = partition_layers(&transitions, 3, 4, 2, 4, &mut rng);
        for layer in &gpu_of {
            assert_eq!(layer.iter().filter(|&&g| g == 0).count(), 2, "{gpu_of:?}");
        }
        let together = |a: [usize; 3], b: [usize; 3]| {
            (0..3).all(|l| gpu_of[l][a[l]] == gpu_of[0][a[0]] && gpu_of[l][b[l]] == gpu_of[0][a[0]])
        };
        assert!(together([0, 2, 3], [2, 1, 1]), "{gpu_of:?}");
        assert!(together([1, 3, 0], [3, 0, 2]), "{gpu_of:?}");
    }
}
