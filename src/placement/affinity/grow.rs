//! Greedy growing of a multi-layer partition: the graph's nodes are (layer, expert), its edges
//! the token transitions between consecutive layers. GPU by GPU, a part starts from a random
//! node and repeatedly takes the unplaced node with the most transitions into the part, while
//! taking exactly its quota of experts from every layer. All layers are grown together, so a
//! chain of experts that tokens follow through the layers lands on one GPU, which a
//! layer-by-layer method only finds by luck.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::TransitionCounts;

/// Per GPU, how many experts of each layer it takes: `experts / gpus`, one more on the first
/// `experts % gpus` GPUs (equal counts, as ExFlow places them).
pub(super) fn quotas(experts: usize, gpus: usize) -> Vec<usize> {
    (0..gpus)
        .map(|g| experts / gpus + usize::from(g < experts % gpus))
        .collect()
}

/// Grows one partition of `layers` x `experts` nodes into `gpus` parts; returns per layer, per
/// expert, its GPU. `rng` picks the node each part starts from (and restarts from, when no
/// unplaced node has a transition into the part).
pub(super) fn grow(
    transitions: &TransitionCounts,
    layers: usize,
    experts: usize,
    gpus: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Vec<usize>> {
    let quota = quotas(experts, gpus);
    let mut gpu_of = vec![vec![None; experts]; layers];
    for (gpu, &quota) in quota.iter().enumerate() {
        let mut taken = vec![0; layers];
        // Transitions between each node and the part grown so far.
        let mut links = vec![vec![0.0; experts]; layers];
        for _ in 0..quota * layers {
            let open = |l: usize, e: usize| taken[l] < quota && gpu_of[l][e].is_none();
            let mut best: Option<(usize, usize)> = None;
            for (l, row) in links.iter().enumerate() {
                for (e, &w) in row.iter().enumerate() {
                    if open(l, e) && w > best.map_or(0.0, |(bl, be)| links[bl][be]) {
                        best = Some((l, e));
                    }
                }
            }
            let (layer, expert) = match best {
                Some(node) => node,
                None => {
                    let candidates: Vec<(usize, usize)> = (0..layers)
                        .flat_map(|l| (0..experts).map(move |e| (l, e)))
                        .filter(|&(l, e)| open(l, e))
                        .collect();
                    candidates[rng.random_range(0..candidates.len())]
                }
            };
            gpu_of[layer][expert] = Some(gpu);
            taken[layer] += 1;
            if layer > 0 {
                for (from, w) in links[layer - 1].iter_mut().enumerate() {
                    *w += transitions.count(layer - 1, from, expert);
                }
            }
            if layer + 1 < layers {
                for (to, w) in links[layer + 1].iter_mut().enumerate() {
                    *w += transitions.count(layer, expert, to);
                }
            }
        }
    }
    // Every node is placed: the quotas sum to `experts` in every layer.
    gpu_of
        .into_iter()
        .map(|row| row.into_iter().map(|g| g.unwrap_or(0)).collect())
        .collect()
}
