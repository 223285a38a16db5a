//! Expert placement: which GPU holds which experts, layer by layer, and the strategies that
//! decide it.
//!
//! A [`Placement`] gives every GPU `slots_per_gpu` expert slots per MoE layer and lists the
//! logical expert in each used slot. An expert may sit in several slots on different GPUs
//! (replicas); traffic to it is then assumed to split evenly across them. One GPU may even hold
//! an expert in two slots (EPLB's reference algorithm does this when loads tie, e.g. on an
//! all-zero layer); the expert's share is then counted once per slot. Strategies implement
//! [`PlacementStrategy`] and are registered by name in [`STRATEGIES`], each built from its own
//! settings table (its knobs: `time_limit_s`, `max_load_ratio`, ...).
//!
//! A library: it never simulates; [`dispatch`] turns a placement and a step's routing into the
//! dispatch plan the cost models and the simulator read.

mod affinity;
mod apportion;
mod baseline;
pub mod dispatch;
mod eplb;
pub mod evaluate;
pub mod export;
pub mod holdout;
mod ilp_balance;
pub mod replacement;
mod tensor_parallel;
mod topology_aware;

use serde::{Deserialize, Serialize};

pub use affinity::{AffinitySettings, IlpAffinity, TransitionCounts};
pub use baseline::{Contiguous, RoundRobin};
pub use eplb::Eplb;
pub use ilp_balance::{IlpBalance, LayerSolve, SolveOutcome, SolveReport, cross_node_tokens};
pub use tensor_parallel::tp_expand;
pub use topology_aware::{TopologyAware, hop_costs};

use crate::error::{Error, Result};
use crate::plugin_entry;
use crate::registry::{Named, Registry, Settings};
use crate::topology::Cluster;
use crate::trace::{ExpertId, ExpertLoads, RoutingTrace};

/// One MoE layer's placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerPlacement {
    /// Per GPU, the logical expert in each used physical slot (at most `slots_per_gpu`).
    pub gpu_experts: Vec<Vec<ExpertId>>,
}

/// Where every expert of every MoE layer lives. Valid by construction: every expert has at least
/// one replica, ids are in range, no GPU holds more experts than it has slots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PlacementFile", into = "PlacementFile")]
pub struct Placement {
    num_gpus: usize,
    num_experts: usize,
    slots_per_gpu: usize,
    layers: Vec<LayerPlacement>,
    /// Per layer, the GPUs holding each expert.
    replicas: Vec<ReplicaIndex>,
}

/// The serialized form of a [`Placement`] (its index is rebuilt on load).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlacementFile {
    num_gpus: usize,
    num_experts: usize,
    slots_per_gpu: usize,
    layers: Vec<LayerPlacement>,
}

/// The GPUs holding each expert of one layer, CSR: expert `e`'s GPUs are
/// `gpus[offsets[e]..offsets[e + 1]]`, in ascending order.
#[derive(Debug, Clone, PartialEq)]
struct ReplicaIndex {
    offsets: Vec<usize>,
    gpus: Vec<usize>,
}

impl ReplicaIndex {
    /// Indexes one layer whose ids are already checked to be below `num_experts`.
    fn new(layer: &LayerPlacement, num_experts: usize) -> ReplicaIndex {
        let mut counts = vec![0usize; num_experts + 1];
        for &expert in layer.gpu_experts.iter().flatten() {
            counts[expert as usize + 1] += 1;
        }
        let mut offsets = counts;
        for e in 0..num_experts {
            offsets[e + 1] += offsets[e];
        }
        let mut next = offsets.clone();
        let mut gpus = vec![0; offsets[num_experts]];
        for (gpu, experts) in layer.gpu_experts.iter().enumerate() {
            for &expert in experts {
                gpus[next[expert as usize]] = gpu;
                next[expert as usize] += 1;
            }
        }
        ReplicaIndex { offsets, gpus }
    }

    /// The GPUs holding `expert`.
    fn of(&self, expert: usize) -> &[usize] {
        &self.gpus[self.offsets[expert]..self.offsets[expert + 1]]
    }
}

impl Placement {
    /// Builds a placement, checking it (see [`Placement::validate`]).
    pub fn new(
        num_gpus: usize,
        num_experts: usize,
        slots_per_gpu: usize,
        layers: Vec<LayerPlacement>,
    ) -> Result<Placement> {
        let mut placement = Placement {
            num_gpus,
            num_experts,
            slots_per_gpu,
            layers,
            replicas: Vec::new(),
        };
        placement.validate()?;
        placement.replicas = placement
            .layers
            .iter()
            .map(|l| ReplicaIndex::new(l, num_experts))
            .collect();
        Ok(placement)
    }

    /// Checks every layer lists `num_gpus` GPUs, no GPU holds more than `slots_per_gpu` experts,
    /// every id is below `num_experts` and every expert has a replica.
    /// The error names the layer, GPU and expert at fault.
    pub fn validate(&self) -> Result<()> {
        if self.num_experts == 0 || self.num_experts > ExpertId::MAX as usize + 1 {
            return Err(Error::invalid(format!(
                "placement: num_experts must be between 1 and 65536, got {}",
                self.num_experts
            )));
        }
        for (index, layer) in self.layers.iter().enumerate() {
            self.validate_layer(layer)
                .map_err(|msg| Error::invalid(format!("placement layer {index}: {msg}")))?;
        }
        Ok(())
    }

    /// The first problem with one layer, as a message.
    fn validate_layer(&self, layer: &LayerPlacement) -> Result<(), String> {
        if layer.gpu_experts.len() != self.num_gpus {
            return Err(format!(
                "lists {} GPUs, expected {}",
                layer.gpu_experts.len(),
                self.num_gpus
            ));
        }
        let mut replicas = vec![0usize; self.num_experts];
        for (gpu, experts) in layer.gpu_experts.iter().enumerate() {
            if experts.len() > self.slots_per_gpu {
                return Err(format!(
                    "GPU {gpu} holds {} experts but has {} slots",
                    experts.len(),
                    self.slots_per_gpu
                ));
            }
            for (slot, &expert) in experts.iter().enumerate() {
                let count = replicas.get_mut(expert as usize).ok_or_else(|| {
                    format!(
                        "GPU {gpu} slot {slot}: expert {expert} is out of range ({} experts)",
                        self.num_experts
                    )
                })?;
                *count += 1;
            }
        }
        match replicas.iter().position(|&count| count == 0) {
            Some(expert) => Err(format!("expert {expert} has no replica")),
            None => Ok(()),
        }
    }

    /// Number of MoE layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Number of GPUs.
    pub fn num_gpus(&self) -> usize {
        self.num_gpus
    }

    /// Logical experts per layer.
    pub fn num_experts(&self) -> usize {
        self.num_experts
    }

    /// Expert slots each GPU has per layer.
    pub fn slots_per_gpu(&self) -> usize {
        self.slots_per_gpu
    }

    /// Layer `layer`'s placement.
    pub fn layer(&self, layer: usize) -> &LayerPlacement {
        &self.layers[layer]
    }

    /// All layers.
    pub fn layers(&self) -> &[LayerPlacement] {
        &self.layers
    }

    /// The experts GPU `gpu` holds at `layer`, slot by slot.
    pub fn experts_on(&self, layer: usize, gpu: usize) -> &[ExpertId] {
        &self.layers[layer].gpu_experts[gpu]
    }

    /// The GPUs holding a replica of `expert` at `layer`, ascending, a GPU listed once per slot
    /// it gives the expert (precomputed).
    pub fn replicas_of(&self, layer: usize, expert: usize) -> &[usize] {
        self.replicas[layer].of(expert)
    }

    /// The same placement without the layers listed in `dropped` (ascending indices).
    pub fn without_layers(&self, dropped: &[usize]) -> Result<Placement> {
        let layers = (0..self.num_layers())
            .filter(|layer| !dropped.contains(layer))
            .map(|layer| self.layers[layer].clone())
            .collect();
        Placement::new(self.num_gpus, self.num_experts, self.slots_per_gpu, layers)
    }

    /// Per layer, per GPU, the load its experts receive, each expert's load split evenly across
    /// its replicas.
    pub fn gpu_loads(&self, loads: &ExpertLoads) -> Result<Vec<Vec<f64>>> {
        if loads.num_layers() != self.num_layers() || loads.num_experts() != self.num_experts {
            return Err(Error::invalid(format!(
                "loads cover {} layers x {} experts but the placement {} x {}",
                loads.num_layers(),
                loads.num_experts(),
                self.num_layers(),
                self.num_experts
            )));
        }
        let per_layer = (0..self.num_layers())
            .map(|layer| {
                let expert_loads = loads.layer(layer);
                (0..self.num_gpus)
                    .map(|gpu| {
                        self.experts_on(layer, gpu)
                            .iter()
                            .map(|&e| {
                                let e = e as usize;
                                expert_loads[e] / self.replicas_of(layer, e).len() as f64
                            })
                            .sum()
                    })
                    .collect()
            })
            .collect();
        Ok(per_layer)
    }
}

impl TryFrom<PlacementFile> for Placement {
    type Error = Error;

    fn try_from(file: PlacementFile) -> Result<Placement> {
        Placement::new(
            file.num_gpus,
            file.num_experts,
            file.slots_per_gpu,
            file.layers,
        )
    }
}

impl From<Placement> for PlacementFile {
    fn from(placement: Placement) -> PlacementFile {
        PlacementFile {
            num_gpus: placement.num_gpus,
            num_experts: placement.num_experts,
            slots_per_gpu: placement.slots_per_gpu,
            layers: placement.layers,
        }
    }
}

/// Most GPUs a request may place onto (a million: far past any cluster, small enough that a
/// placement of every layer fits in memory).
pub const MAX_GPUS: usize = 1 << 20;

/// Most physical expert slots a request may have over all its GPUs.
pub const MAX_SLOTS: usize = 1 << 24;

/// What a strategy is asked to place.
#[derive(Debug, Clone, Copy)]
pub struct PlacementRequest<'a> {
    /// Per-layer expert loads; the placement gets one layer per loads layer.
    pub loads: &'a ExpertLoads,
    /// GPUs to place onto.
    pub num_gpus: usize,
    /// Expert slots per GPU per layer.
    pub slots_per_gpu: usize,
    /// Machines the GPUs are spread over, consecutively (`num_gpus / num_nodes` each).
    pub num_nodes: usize,
    /// Expert groups of the model (1 when routing is not group-limited).
    pub num_groups: usize,
    /// Per-GPU memory available for expert weights, when it limits the slot count.
    pub memory: Option<ExpertMemory>,
    /// Token-level routing whose consecutive-layer transitions affinity strategies minimise
    /// across GPUs; `None` for strategies that only need loads.
    pub transitions: Option<&'a RoutingTrace>,
    /// The cluster whose links weight each transition (topology-aware strategies); `None` when
    /// not given.
    pub cluster: Option<&'a Cluster>,
}

/// The memory side of a request: what one expert replica costs and what a GPU can give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpertMemory {
    /// Weight bytes of one routed expert (one slot).
    pub expert_weight_bytes: u64,
    /// Bytes each GPU can devote to routed-expert weights.
    pub gpu_capacity_bytes: u64,
}

/// Slots per GPU for `total_slots` physical slots spread evenly over `num_gpus` GPUs; the error
/// says by how much the count misses a multiple of the GPU count.
pub fn slots_per_gpu_for(total_slots: usize, num_gpus: usize) -> Result<usize> {
    if num_gpus == 0 || total_slots == 0 {
        return Err(Error::invalid(
            "placement request: the slot and GPU counts must be at least 1",
        ));
    }
    let over = total_slots % num_gpus;
    if over != 0 {
        return Err(Error::invalid(format!(
            "placement request: {total_slots} slots is not a multiple of {num_gpus} GPUs \
             ({over} over, {} short of the next multiple)",
            num_gpus - over
        )));
    }
    Ok(total_slots / num_gpus)
}

impl<'a> PlacementRequest<'a> {
    /// A request with `ceil(num_experts / num_gpus)` slots per GPU (room for each expert once),
    /// one machine, one expert group, no memory limit, no token-level transitions and no
    /// cluster.
    pub fn new(loads: &'a ExpertLoads, num_gpus: usize) -> Self {
        PlacementRequest {
            loads,
            num_gpus,
            slots_per_gpu: loads.num_experts().div_ceil(num_gpus.max(1)),
            num_nodes: 1,
            num_groups: 1,
            memory: None,
            transitions: None,
            cluster: None,
        }
    }

    /// Checks the request's counts are usable; names the one at fault.
    pub fn check(&self) -> Result<()> {
        let experts = self.loads.num_experts();
        let fail = |msg: String| Err(Error::invalid(format!("placement request: {msg}")));
        if self.loads.num_layers() == 0 {
            return fail("the loads have no layers".into());
        }
        if experts == 0 || experts > ExpertId::MAX as usize + 1 {
            return fail(format!("{experts} experts; expected 1 to 65536"));
        }
        if self.num_gpus == 0 || self.slots_per_gpu == 0 {
            return fail("num_gpus and slots_per_gpu must be at least 1".into());
        }
        if self.num_gpus > MAX_GPUS {
            return fail(format!(
                "{} GPUs is more than the {MAX_GPUS} a placement may have",
                self.num_gpus
            ));
        }
        if self.num_gpus.saturating_mul(self.slots_per_gpu) > MAX_SLOTS {
            return fail(format!(
                "{} GPUs x {} slots is more than the {MAX_SLOTS} slots a placement may have",
                self.num_gpus, self.slots_per_gpu
            ));
        }
        if self.num_nodes == 0 || !self.num_gpus.is_multiple_of(self.num_nodes) {
            return fail(format!(
                "num_nodes ({}) must divide num_gpus ({})",
                self.num_nodes, self.num_gpus
            ));
        }
        if self.num_groups == 0 || !experts.is_multiple_of(self.num_groups) {
            return fail(format!(
                "num_groups ({}) must divide the {experts} experts",
                self.num_groups
            ));
        }
        if let Some(memory) = self.memory {
            let needed = memory.expert_weight_bytes * self.slots_per_gpu as u64;
            if needed > memory.gpu_capacity_bytes {
                return fail(format!(
                    "{} slots x {} expert weight bytes need {needed} bytes per GPU but only {} \
                     are available ({} bytes short)",
                    self.slots_per_gpu,
                    memory.expert_weight_bytes,
                    memory.gpu_capacity_bytes,
                    needed - memory.gpu_capacity_bytes
                ));
            }
        }
        Ok(())
    }

    /// [`check`](Self::check) plus what strategies that fill every slot with replicas need:
    /// at least one slot per expert.
    pub fn check_replicated(&self, strategy: &str) -> Result<()> {
        self.check()?;
        let experts = self.loads.num_experts();
        let slots = self.num_gpus * self.slots_per_gpu;
        if experts > slots {
            return Err(Error::invalid(format!(
                "placement request: {strategy} needs a slot for every expert: {experts} experts \
                 but {} GPUs x {} slots = {slots} slots ({} short)",
                self.num_gpus,
                self.slots_per_gpu,
                experts - slots
            )));
        }
        Ok(())
    }
}

/// A way of placing experts, registered by name in [`STRATEGIES`].
pub trait PlacementStrategy: Send + Sync {
    /// Places the experts of every layer of `request.loads`; an infeasible request is an error
    /// naming the constraint and by how much it is missed.
    fn place(&self, request: &PlacementRequest) -> Result<Placement>;
}

/// Every placement strategy, by name.
pub static STRATEGIES: Registry<dyn PlacementStrategy> = Registry {
    kind: "placement strategy",
    entries: &[
        plugin_entry!(PlacementStrategy, Contiguous),
        plugin_entry!(PlacementStrategy, RoundRobin),
        plugin_entry!(PlacementStrategy, Eplb),
        plugin_entry!(PlacementStrategy, IlpBalance),
        plugin_entry!(PlacementStrategy, IlpAffinity),
        plugin_entry!(PlacementStrategy, TopologyAware),
    ],
};

/// The strategy called `name` with its default settings; the error lists the known names.
pub fn strategy(name: &str) -> Result<Named<dyn PlacementStrategy>> {
    STRATEGIES
        .build(name, &Settings::new())
        .map_err(Error::invalid)
}

#[cfg(test)]
mod tests;
