//! `topology-aware`: the `ilp-affinity` objective with each transition weighted by the links its
//! hop crosses in the cluster graph, instead of a flat intra/inter-machine cost.
//!
//! The cost of a hop from GPU `a` to GPU `b` is the time one byte spends on the links of
//! `Cluster::route(a, b)`, summed over the links (`1 / bandwidth_gbps` each), divided by the
//! cheapest such cost between two distinct GPUs. So a hop on the same GPU costs 0, one over
//! NVLink (through the NVSwitch) 1 on an NVLink machine, and network hops cost more the more
//! and the slower the links: a same-rail hop (one leaf switch) less than a cross-rail one
//! (through the spine).

use super::affinity::{AffinitySettings, place_by_affinity};
use super::{Placement, PlacementRequest, PlacementStrategy};
use crate::error::{Error, Result};
use crate::registry::Plugin;
use crate::topology::Cluster;

/// The `topology-aware` strategy; needs `request.cluster` and `request.transitions`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopologyAware {
    /// Solver settings.
    pub settings: AffinitySettings,
}

impl Plugin for TopologyAware {
    const NAME: &'static str = "topology-aware";
    type Settings = AffinitySettings;

    fn with_settings(settings: AffinitySettings) -> Result<Self, String> {
        settings.check()?;
        Ok(TopologyAware { settings })
    }
}

impl PlacementStrategy for TopologyAware {
    fn place(&self, request: &PlacementRequest) -> Result<Placement> {
        let cluster = request.cluster.ok_or_else(|| {
            Error::invalid(format!(
                "{} needs a cluster (its links weight each hop); none given",
                Self::NAME
            ))
        })?;
        if cluster.num_gpus() != request.num_gpus {
            return Err(Error::invalid(format!(
                "{}: the cluster `{}` has {} GPUs but the request places onto {}",
                Self::NAME,
                cluster.name(),
                cluster.num_gpus(),
                request.num_gpus
            )));
        }
        place_by_affinity(Self::NAME, request, &hop_costs(cluster), &self.settings)
    }
}

/// Per (source, destination) GPU, the relative cost of a hop (see the module docs).
pub fn hop_costs(cluster: &Cluster) -> Vec<Vec<f64>> {
    let gpus = cluster.num_gpus();
    let seconds_per_byte = |a: usize, b: usize| -> f64 {
        cluster
            .route(a, b)
            .links
            .iter()
            .map(|&id| 1.0 / cluster.link(id).bandwidth_gbps)
            .sum()
    };
    let raw: Vec<Vec<f64>> = (0..gpus)
        .map(|a| (0..gpus).map(|b| seconds_per_byte(a, b)).collect())
        .collect();
    let cheapest = raw
        .iter()
        .flatten()
        .copied()
        .filter(|&c| c > 0.0)
        .fold(f64::INFINITY, f64::min);
    if !cheapest.is_finite() {
        return raw;
    }
    raw.into_iter()
        .map(|row| row.into_iter().map(|c| c / cheapest).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::RoutingTrace;

    #[test]
    fn hop_costs_follow_the_links_crossed() {
        // Two DGX H100s. GPU 0 -> 1: two NVLink hops of 450 GB/s, 2 / 450 (the cheapest, 1).
        // GPU 0 -> 8 (same rail): 4 PCIe links of 64 and 2 NIC links of 50:
        // (4 / 64 + 2 / 50) * 450 / 2 = 23.0625. GPU 0 -> 9 adds leaf-spine-leaf, 2 links of
        // 100: (4 / 64 + 2 / 50 + 2 / 100) * 225 = 27.5625.
        let cluster = Cluster::preset_with_nodes("dgx-h100", 2).unwrap();
        let costs = hop_costs(&cluster);
        assert_eq!(costs[0][0], 0.0);
        assert!((costs[0][1] - 1.0).abs() < 1e-9);
        assert!((costs[0][8] - 23.0625).abs() < 1e-9, "{}", costs[0][8]);
        assert!((costs[0][9] - 27.5625).abs() < 1e-9, "{}", costs[0][9]);
    }

    #[test]
    fn followers_land_on_their_predecessors_gpu() {
        // 16 experts, 2 layers, 8 GPUs x 2 slots; two tokens go from expert e to e + 1 (mod 16).
        // All loads are 2, so the bound allows two experts per GPU, and placing e + 1 of layer
        // 1 where e of layer 0 is makes every hop free.
        let ids: Vec<u16> = (0..16u16)
            .flat_map(|e| [e, (e + 1) % 16, e, (e + 1) % 16])
            .collect();
        let trace = RoutingTrace::from_dense(16, 2, 1, &ids).unwrap();
        let loads = trace.expert_loads();
        let cluster = Cluster::preset("dgx-h100").unwrap();
        let request = PlacementRequest {
            transitions: Some(&trace),
            cluster: Some(&cluster),
            ..PlacementRequest::new(&loads, 8)
        };
        let placement = TopologyAware::default().place(&request).unwrap();
        for e in 0..16 {
            assert_eq!(
                placement.replicas_of(0, e),
                placement.replicas_of(1, (e + 1) % 16),
                "expert {e}"
            );
        }
        let err = TopologyAware::default()
            .place(&PlacementRequest {
                cluster: None,
                ..request
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("topology-aware needs a cluster"), "{err}");
        let err = TopologyAware::default()
            .place(&PlacementRequest {
                slots_per_gpu: 4,
                cluster: Some(&cluster),
                ..PlacementRequest::new(&loads, 4)
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has 8 GPUs but the request places onto 4"),
            "{err}"
        );
    }
}
