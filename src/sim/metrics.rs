//! Where the nanoseconds of a simulated step went: the critical path split by layer and phase,
//! per-GPU busy and idle time, per-link bytes and utilisation.
//!
//! Every task on the critical path starts the instant its critical predecessor ends, so the
//! durations of the path's tasks add up to the step time exactly. Communication on the critical
//! path is, by definition, communication no computation hid: the exposed communication.

use serde::Serialize;

use super::engine::{TaskGraph, Timeline, Work};
use super::step::{Label, Phase};
use crate::topology::Cluster;

/// One MoE layer's share of the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerTimes {
    /// MoE layer index (among the simulated layers).
    pub layer: usize,
    /// Attention and gate on the critical path.
    pub attention_ns: u64,
    /// Dispatch on the critical path.
    pub dispatch_ns: u64,
    /// Routed and shared experts on the critical path.
    pub expert_ns: u64,
    /// Combine on the critical path.
    pub combine_ns: u64,
    /// `dispatch_ns + combine_ns`: communication nothing overlapped.
    pub exposed_comm_ns: u64,
    /// Per GPU, time spent computing this layer and the rest of the layer's span.
    pub gpus: Vec<GpuTime>,
}

/// One GPU's time in one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuTime {
    /// GPU index.
    pub gpu: usize,
    /// Kernels of this layer running on it.
    pub busy_ns: u64,
    /// The layer's span (first start to last end over all GPUs) minus `busy_ns`.
    pub idle_ns: u64,
}

/// Bytes and utilisation of one link that carried traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkUse {
    /// Link name, `from->to`.
    pub link: String,
    /// Bytes carried during the step.
    pub bytes: u64,
    /// `bytes / (bandwidth x step time)`.
    pub utilization: f64,
}

/// Per-layer breakdown of `timeline` for `graph` of `num_layers` layers on `num_gpus` GPUs.
pub fn layer_times(
    graph: &TaskGraph<Label>,
    timeline: &Timeline,
    num_layers: usize,
    num_gpus: usize,
) -> Vec<LayerTimes> {
    let mut layers: Vec<LayerTimes> = (0..num_layers)
        .map(|layer| LayerTimes {
            layer,
            attention_ns: 0,
            dispatch_ns: 0,
            expert_ns: 0,
            combine_ns: 0,
            exposed_comm_ns: 0,
            gpus: (0..num_gpus)
                .map(|gpu| GpuTime {
                    gpu,
                    busy_ns: 0,
                    idle_ns: 0,
                })
                .collect(),
        })
        .collect();
    for task in timeline.critical_path() {
        let label = graph.task(task).label;
        let ns = timeline.end_ns[task as usize] - timeline.start_ns[task as usize];
        let layer = &mut layers[label.layer as usize];
        match label.phase {
            Phase::Attention => layer.attention_ns += ns,
            Phase::Dispatch => layer.dispatch_ns += ns,
            Phase::Expert => layer.expert_ns += ns,
            Phase::Combine => layer.combine_ns += ns,
            Phase::Sync => {}
        }
    }
    let mut span = vec![(u64::MAX, 0u64); num_layers];
    for id in 0..graph.len() as u32 {
        let task = graph.task(id);
        let (start, end) = (timeline.start_ns[id as usize], timeline.end_ns[id as usize]);
        let layer = task.label.layer as usize;
        span[layer] = (span[layer].0.min(start), span[layer].1.max(end));
        if let Work::Compute { gpu, stream: 0, .. } = task.work {
            layers[layer].gpus[gpu as usize].busy_ns += end - start;
        }
    }
    for (layer, (start, end)) in layers.iter_mut().zip(span) {
        layer.exposed_comm_ns = layer.dispatch_ns + layer.combine_ns;
        let span_ns = end.saturating_sub(start);
        for gpu in &mut layer.gpus {
            gpu.idle_ns = span_ns.saturating_sub(gpu.busy_ns);
        }
    }
    layers
}

/// The links that carried bytes, in link order, with their utilisation over `step_ns`.
pub fn link_use(cluster: &Cluster, timeline: &Timeline, step_ns: u64) -> Vec<LinkUse> {
    cluster
        .links()
        .filter(|(id, _)| timeline.link_bytes[id.index()] > 0)
        .map(|(id, link)| {
            let bytes = timeline.link_bytes[id.index()];
            LinkUse {
                link: link.name.clone(),
                bytes,
                utilization: bytes as f64 / (link.bandwidth_gbps * step_ns.max(1) as f64),
            }
        })
        .collect()
}
