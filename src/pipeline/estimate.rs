//! The analytical estimate of a placement over the setup's steps: every MoE layer of every step
//! priced by [`crate::cost::AnalyticalCost`] (dispatch, slowest GPU's experts, combine, no
//! overlap), then averaged over the steps.

use serde::Serialize;

use super::Setup;
use crate::analysis::imbalance::max_mean;
use crate::cost::LayerEstimate;
use crate::error::Result;
use crate::placement::Placement;
use crate::trace::ExpertLoads;

/// How one placement strategy fared in the analytical estimate.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyResult {
    /// Strategy name.
    pub name: String,
    /// Estimated time of one step through all MoE layers (mean over steps), in ns.
    pub step_ns: u64,
    /// Mean over layers of the GPU max/mean token load.
    pub mean_gpu_max_mean: f64,
    /// Per MoE layer.
    pub layers: Vec<LayerResult>,
}

/// One MoE layer under one placement.
#[derive(Debug, Clone, Serialize)]
pub struct LayerResult {
    /// MoE layer index.
    pub layer: usize,
    /// Expert-token entries per GPU over the whole trace, in GPU order.
    pub gpu_loads: Vec<f64>,
    /// Max over GPUs of load / mean load.
    pub max_mean: f64,
    /// Slowest GPU's expert compute per step (mean over steps), ns.
    pub compute_ns: u64,
    /// Dispatch all-to-all per step (mean over steps), ns.
    pub dispatch_ns: u64,
    /// Combine all-to-all per step (mean over steps), ns.
    pub combine_ns: u64,
    /// Dispatch + slowest compute + combine per step (mean over steps), ns.
    pub step_ns: u64,
    /// Dispatch + combine bytes that stay inside a node, per step (mean).
    pub intra_node_bytes: u64,
    /// Dispatch + combine bytes that cross nodes, per step (mean).
    pub inter_node_bytes: u64,
}

/// Per MoE layer, the estimate of every step of `setup` under `placement`.
pub fn estimate_steps(setup: &Setup, placement: &Placement) -> Result<Vec<Vec<LayerEstimate>>> {
    let cost = setup.analytical_cost();
    let mut per_layer: Vec<Vec<LayerEstimate>> = vec![Vec::new(); placement.num_layers()];
    for step in &setup.steps {
        for (layer, plan) in setup.plans(placement, step)?.iter().enumerate() {
            per_layer[layer].push(cost.estimate(layer, plan)?);
        }
    }
    Ok(per_layer)
}

/// Mean over steps of `field`, rounded up (0 without steps).
pub fn mean_over_steps(steps: &[LayerEstimate], field: impl Fn(&LayerEstimate) -> u64) -> u64 {
    steps
        .iter()
        .map(field)
        .sum::<u64>()
        .div_ceil(steps.len().max(1) as u64)
}

/// Summarises strategy `name`: GPU loads over the whole trace and step-averaged estimates.
pub fn strategy_result(
    name: &str,
    placement: &Placement,
    loads: &ExpertLoads,
    estimates: &[Vec<LayerEstimate>],
) -> Result<StrategyResult> {
    let gpu_loads = placement.gpu_loads(loads)?;
    let layers: Vec<LayerResult> = gpu_loads
        .into_iter()
        .zip(estimates)
        .enumerate()
        .map(|(layer, (gpu_loads, steps))| {
            let mean = |f: fn(&LayerEstimate) -> u64| mean_over_steps(steps, f);
            LayerResult {
                layer,
                max_mean: max_mean(&gpu_loads),
                gpu_loads,
                compute_ns: mean(|e| e.compute_ns.iter().copied().max().unwrap_or(0)),
                dispatch_ns: mean(|e| e.dispatch_ns),
                combine_ns: mean(|e| e.combine_ns),
                step_ns: mean(|e| e.step_ns),
                intra_node_bytes: mean(|e| e.intra_node_bytes),
                inter_node_bytes: mean(|e| e.inter_node_bytes),
            }
        })
        .collect();
    let mean_gpu_max_mean =
        layers.iter().map(|l| l.max_mean).sum::<f64>() / layers.len().max(1) as f64;
    Ok(StrategyResult {
        name: name.to_string(),
        step_ns: layers.iter().map(|l| l.step_ns).sum(),
        mean_gpu_max_mean,
        layers,
    })
}
