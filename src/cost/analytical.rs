//! The fast analytical estimate of one MoE layer's step time from its dispatch plan:
//! dispatch all-to-all, then the slowest GPU's expert compute, then the combine all-to-all,
//! without overlap. The discrete-event simulator refines it; this tier stays for quick sweeps.

use serde::{Deserialize, Serialize};

use super::comm::all_to_all;
use super::compute::ComputeCost;
use super::traffic::DispatchPlan;
use crate::error::Result;
use crate::model::MoeModel;
use crate::topology::Cluster;

/// Precision of the activations the all-to-alls move.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostOptions {
    /// Bytes per hidden element sent in dispatch (DeepEP: FP8, 1; its per-128-element scales,
    /// under 4% more, are left out).
    pub dispatch_bytes_per_elem: f64,
    /// Bytes per hidden element returned in combine (DeepEP: BF16, 2).
    pub combine_bytes_per_elem: f64,
}

impl Default for CostOptions {
    fn default() -> Self {
        CostOptions {
            dispatch_bytes_per_elem: 1.0,
            combine_bytes_per_elem: 2.0,
        }
    }
}

/// The estimate for one MoE layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerEstimate {
    /// Placement layer index.
    pub layer: usize,
    /// Per GPU: routed experts (roofline each) plus shared experts over its own tokens.
    pub compute_ns: Vec<u64>,
    /// Dispatch all-to-all.
    pub dispatch_ns: u64,
    /// Combine all-to-all.
    pub combine_ns: u64,
    /// `dispatch_ns + max(compute_ns) + combine_ns`.
    pub step_ns: u64,
    /// Per GPU, (token, expert) pairs computed (rounded up when expected from loads).
    pub gpu_tokens: Vec<u64>,
    /// Dispatch plus combine bytes between GPUs of one machine.
    pub intra_node_bytes: u64,
    /// Dispatch plus combine bytes between machines.
    pub inter_node_bytes: u64,
    /// Dispatch plus combine bytes crossing each link of the cluster, by link index.
    pub link_bytes: Vec<u64>,
}

/// Everything a layer estimate needs besides the placement and routing.
pub struct AnalyticalCost<'a> {
    model: &'a MoeModel,
    cluster: &'a Cluster,
    compute: &'a dyn ComputeCost,
    options: CostOptions,
}

impl<'a> AnalyticalCost<'a> {
    /// An estimator for `model` on `cluster`, pricing expert GEMMs with `compute`.
    pub fn new(
        model: &'a MoeModel,
        cluster: &'a Cluster,
        compute: &'a dyn ComputeCost,
        options: CostOptions,
    ) -> Self {
        AnalyticalCost {
            model,
            cluster,
            compute,
            options,
        }
    }

    /// Estimates MoE layer `layer` from its dispatch plan (the plan's GPUs must be the
    /// cluster's).
    pub fn estimate(&self, layer: usize, plan: &DispatchPlan) -> Result<LayerEstimate> {
        let hidden = self.model.hidden_size as f64;
        let dispatch = all_to_all(
            self.cluster,
            &plan.dispatch_traffic(hidden * self.options.dispatch_bytes_per_elem),
        )?;
        let combine = all_to_all(
            self.cluster,
            &plan.combine_traffic(hidden * self.options.combine_bytes_per_elem),
        )?;
        let compute_ns: Vec<u64> = (0..plan.num_gpus())
            .map(|gpu| self.gpu_compute_ns(plan, gpu))
            .collect();
        let slowest = compute_ns.iter().copied().max().unwrap_or(0);
        Ok(LayerEstimate {
            layer,
            dispatch_ns: dispatch.time_ns,
            combine_ns: combine.time_ns,
            step_ns: dispatch.time_ns + slowest + combine.time_ns,
            compute_ns,
            gpu_tokens: plan.gpu_tokens().iter().map(|t| t.ceil() as u64).collect(),
            intra_node_bytes: dispatch.intra_node_bytes + combine.intra_node_bytes,
            inter_node_bytes: dispatch.inter_node_bytes + combine.inter_node_bytes,
            link_bytes: dispatch
                .link_bytes
                .iter()
                .zip(&combine.link_bytes)
                .map(|(d, c)| d + c)
                .collect(),
        })
    }

    /// GPU `gpu`'s routed experts (one grouped kernel per matrix), then its shared experts over the tokens
    /// that start on it.
    fn gpu_compute_ns(&self, plan: &DispatchPlan, gpu: usize) -> u64 {
        let spec = self.cluster.gpu_spec(gpu);
        let routed = self.compute.grouped_ffn_time_ns(
            spec,
            &self.model.routed_expert(),
            &plan.expert_tokens[gpu],
        );
        let shared = self.model.shared_experts().map_or(0, |ffn| {
            self.compute
                .ffn_time_ns(spec, &ffn, plan.source_tokens[gpu])
        });
        routed + shared
    }
}
