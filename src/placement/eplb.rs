//! DeepSeek's expert-parallel load balancer (EPLB), hierarchical and global.
//!
//! Per layer, with `E` experts in `G` groups, `N` nodes, `P` GPUs and `R = P * slots_per_gpu`
//! physical slots: when `N` divides `G` (hierarchical), (1) pack the groups onto the nodes,
//! heaviest group first onto the lightest node with room (`G / N` groups each); (2) inside each
//! node, start every expert with one replica and hand each remaining slot to the expert with the
//! highest load per replica; (3) pack the replicas (load / replica count each) onto the node's
//! GPUs, heaviest first onto the lightest GPU with room (`R / P` each). Otherwise the same with
//! `G = N = 1` (global).
//!
//! Tie-breaking follows DeepSeek's published reference implementation: items are taken in a
//! stable descending sort (equal loads: lower index first), the lightest pack is the lowest-index
//! one among equals, and the expert that receives a replica is the lowest-index one among equal
//! loads per replica. Like the reference, a packing with exactly one item per pack keeps items in
//! index order instead of sorting them. Arithmetic is `f64` where the reference uses `f32`: on
//! all six shared DeepSeek-V3 workloads, both deployment shapes and all 61 layers, an `f32`
//! numpy transcription of the reference gives the very same physical-to-logical maps.
//! GPU `g`'s slots list its replicas in the order they were packed, so slot `g * R / P + s` is
//! the reference's physical expert of the same index.

use std::collections::BinaryHeap;

use super::apportion::{Ranked, apportion};
use super::{LayerPlacement, Placement, PlacementRequest, PlacementStrategy};
use crate::error::Result;
use crate::registry::{NoSettings, Plugin};
use crate::trace::ExpertId;

/// DeepSeek's EPLB: replicate the heaviest experts into every spare slot and balance the GPUs'
/// loads, keeping expert groups on one node when the group count allows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Eplb;

impl PlacementStrategy for Eplb {
    fn place(&self, request: &PlacementRequest) -> Result<Placement> {
        request.check_replicated(Self::NAME)?;
        let shape = Shape::of(request);
        let layers = (0..request.loads.num_layers())
            .map(|layer| shape.place_layer(request.loads.layer(layer)))
            .collect();
        Placement::new(
            request.num_gpus,
            request.loads.num_experts(),
            request.slots_per_gpu,
            layers,
        )
    }
}

impl Plugin for Eplb {
    const NAME: &'static str = "eplb";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(Eplb)
    }
}

/// The counts one layer is balanced with, after choosing hierarchical or global.
#[derive(Debug, Clone, Copy)]
struct Shape {
    experts: usize,
    groups: usize,
    nodes: usize,
    gpus: usize,
    slots_per_gpu: usize,
}

impl Shape {
    /// Hierarchical when the node count divides the group count, else global (one group, one
    /// node).
    fn of(request: &PlacementRequest) -> Shape {
        let hierarchical = request.num_groups.is_multiple_of(request.num_nodes);
        let (groups, nodes) = if hierarchical {
            (request.num_groups, request.num_nodes)
        } else {
            (1, 1)
        };
        Shape {
            experts: request.loads.num_experts(),
            groups,
            nodes,
            gpus: request.num_gpus,
            slots_per_gpu: request.slots_per_gpu,
        }
    }

    /// One layer's placement from its expert loads.
    fn place_layer(&self, loads: &[f64]) -> LayerPlacement {
        let group_size = self.experts / self.groups;
        let groups_per_node = self.groups / self.nodes;
        let experts_per_node = self.experts / self.nodes;
        let gpus_per_node = self.gpus / self.nodes;
        let slots_per_node = self.slots_per_gpu * gpus_per_node;

        // Step 1: groups onto nodes; node-major order of the logical experts ("mlog").
        let group_loads: Vec<f64> = loads.chunks(group_size).map(|g| g.iter().sum()).collect();
        let mut node_major = vec![0usize; self.experts];
        for (group, (node, rank)) in balanced_packing(&group_loads, self.nodes)
            .into_iter()
            .enumerate()
        {
            let first = (node * groups_per_node + rank) * group_size;
            for offset in 0..group_size {
                node_major[first + offset] = group * group_size + offset;
            }
        }

        let mut gpu_experts = vec![Vec::with_capacity(self.slots_per_gpu); self.gpus];
        for (node, experts) in node_major.chunks(experts_per_node).enumerate() {
            // Step 2: replicas inside the node.
            let node_loads: Vec<f64> = experts.iter().map(|&e| loads[e]).collect();
            let (replica_expert, counts) = apportion(&node_loads, slots_per_node, usize::MAX);
            // Step 3: replicas onto the node's GPUs.
            let replica_loads: Vec<f64> = replica_expert
                .iter()
                .map(|&local| node_loads[local] / counts[local] as f64)
                .collect();
            let packed = balanced_packing(&replica_loads, gpus_per_node);
            let mut slots = vec![vec![0 as ExpertId; self.slots_per_gpu]; gpus_per_node];
            for (replica, (gpu, rank)) in packed.into_iter().enumerate() {
                // Ids fit in an ExpertId: `PlacementRequest::check` caps experts at 65536.
                slots[gpu][rank] = experts[replica_expert[replica]] as ExpertId;
            }
            for (gpu, experts) in slots.into_iter().enumerate() {
                gpu_experts[node * gpus_per_node + gpu] = experts;
            }
        }
        LayerPlacement { gpu_experts }
    }
}

/// Packs `weights.len()` items into `packs` packs of equal item count (which must divide the
/// item count), heaviest item first onto the lightest pack that still has room (the lowest
/// index among equals). Returns each item's `(pack, rank inside the pack)`. With one item per
/// pack, item `i` goes to pack `i`. The packs wait in a heap, so a million GPUs cost
/// `items x log(packs)`, not `items x packs`.
fn balanced_packing(weights: &[f64], packs: usize) -> Vec<(usize, usize)> {
    let per_pack = weights.len() / packs;
    if per_pack == 1 {
        return (0..weights.len()).map(|item| (item, 0)).collect();
    }
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Stable: equal weights keep ascending index order.
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]));
    // A pack's heap value is its weight negated, so the heap's greatest is the lightest pack.
    let mut lightest: BinaryHeap<Ranked> = (0..packs).map(|pack| Ranked::new(0.0, pack)).collect();
    let mut pack_items = vec![0usize; packs];
    let mut assignment = vec![(0, 0); weights.len()];
    for item in order {
        // Total room equals the item count, so some pack always has room.
        let Some(pack) = lightest.pop() else {
            break;
        };
        assignment[item] = (pack.index, pack_items[pack.index]);
        pack_items[pack.index] += 1;
        if pack_items[pack.index] < per_pack {
            lightest.push(Ranked::new(pack.value - weights[item], pack.index));
        }
    }
    assignment
}

#[cfg(test)]
mod tests;
