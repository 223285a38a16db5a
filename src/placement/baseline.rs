//! Baseline placements without replication: contiguous blocks and round-robin.

use super::{LayerPlacement, Placement, PlacementRequest, PlacementStrategy};
use crate::error::{Error, Result};
use crate::registry::{NoSettings, Plugin};

/// Expert `e` of `E` on GPU `e * P / E`: consecutive blocks, `E / P` experts each when `P`
/// divides `E` (then GPU `e / (E / P)`), block sizes differing by at most one otherwise.
/// Every layer gets the same placement; loads only fix the layer count.
#[derive(Debug, Clone, Copy, Default)]
pub struct Contiguous;

/// Expert `e` on GPU `e % P`. Every layer gets the same placement.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobin;

impl PlacementStrategy for Contiguous {
    fn place(&self, request: &PlacementRequest) -> Result<Placement> {
        place_each_once(Self::NAME, request, |expert, experts, gpus| {
            expert * gpus / experts
        })
    }
}

impl Plugin for Contiguous {
    const NAME: &'static str = "contiguous";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(Contiguous)
    }
}

impl PlacementStrategy for RoundRobin {
    fn place(&self, request: &PlacementRequest) -> Result<Placement> {
        place_each_once(Self::NAME, request, |expert, _, gpus| expert % gpus)
    }
}

impl Plugin for RoundRobin {
    const NAME: &'static str = "round-robin";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(RoundRobin)
    }
}

/// Places each expert exactly once, on GPU `gpu_of(expert, num_experts, num_gpus)`, identically
/// in every layer. Slots left over stay empty.
fn place_each_once(
    strategy: &str,
    request: &PlacementRequest,
    gpu_of: impl Fn(usize, usize, usize) -> usize,
) -> Result<Placement> {
    request.check()?;
    let experts = request.loads.num_experts();
    let gpus = request.num_gpus;
    let mut gpu_experts = vec![Vec::new(); gpus];
    for expert in 0..experts {
        // Ids fit in an ExpertId: `check` caps experts at 65536.
        gpu_experts[gpu_of(expert, experts, gpus)].push(expert as u16);
    }
    let fullest = gpu_experts.iter().map(Vec::len).max().unwrap_or(0);
    if fullest > request.slots_per_gpu {
        return Err(Error::invalid(format!(
            "{strategy} places each of {experts} experts once on {gpus} GPUs: the fullest GPU needs \
             {fullest} slots but has {} ({} short)",
            request.slots_per_gpu,
            fullest - request.slots_per_gpu
        )));
    }
    let layers = vec![LayerPlacement { gpu_experts }; request.loads.num_layers()];
    Placement::new(gpus, experts, request.slots_per_gpu, layers)
}
