//! Where the nanoseconds of a simulated step went: the critical path split by layer and phase,
//! per-GPU busy and idle time, per-link bytes per layer, and a timeline excerpt for charts.
//!
//! Every task on the critical path starts the instant its critical predecessor ends, so the
//! durations of the path's tasks add up to the step time exactly. Communication on the critical
//! path is, by definition, communication no computation hid: the exposed communication.

use serde::Serialize;

use super::engine::{PairTransfer, TaskGraph, Timeline, Work, transfer_routes};
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
    /// Tensor-parallel reduce-scatter on the critical path (0 without TP).
    pub tp_reduce_ns: u64,
    /// `dispatch_ns + tp_reduce_ns + combine_ns`: communication nothing overlapped.
    pub exposed_comm_ns: u64,
    /// From the layer's first task start to its last task end (it may overlap neighbouring
    /// layers under dual-batch overlap).
    pub span_ns: u64,
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
    /// Nominal bandwidth, GB/s (bytes per ns).
    pub bandwidth_gbps: f64,
    /// Bytes carried during the simulated steps.
    pub bytes: u64,
    /// `bytes / (bandwidth x simulated time)`.
    pub utilization: f64,
    /// Bytes carried per MoE layer.
    pub layer_bytes: Vec<u64>,
}

/// Which row of a timeline excerpt a bar sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExcerptRow {
    /// The GPU's compute stream.
    Compute,
    /// The all-to-all transfers the GPU sends.
    Send,
}

/// One kernel or transfer of a timeline excerpt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExcerptBar {
    /// GPU the kernel runs on, or that sends the transfer.
    pub gpu: usize,
    /// Compute stream or sends.
    pub row: ExcerptRow,
    /// Part of the layer.
    pub phase: Phase,
    /// Start, ns from the step's start.
    pub start_ns: u64,
    /// End, ns from the step's start.
    pub end_ns: u64,
}

/// Per-layer breakdown of `timeline` for `graph` of `num_layers` layers on `num_gpus` GPUs.
pub fn layer_times(
    graph: &TaskGraph<'_, Label>,
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
            tp_reduce_ns: 0,
            exposed_comm_ns: 0,
            span_ns: 0,
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
            Phase::TpReduce => layer.tp_reduce_ns += ns,
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
        layer.exposed_comm_ns = layer.dispatch_ns + layer.tp_reduce_ns + layer.combine_ns;
        layer.span_ns = end.saturating_sub(start);
        for gpu in &mut layer.gpus {
            gpu.idle_ns = layer.span_ns.saturating_sub(gpu.busy_ns);
        }
    }
    layers
}

/// Adds `step`'s layer times into `total`'s, field by field (both of the same layers and GPUs).
pub fn add_layer_times(total: &mut [LayerTimes], step: &[LayerTimes]) {
    for (sum, layer) in total.iter_mut().zip(step) {
        sum.attention_ns += layer.attention_ns;
        sum.dispatch_ns += layer.dispatch_ns;
        sum.expert_ns += layer.expert_ns;
        sum.combine_ns += layer.combine_ns;
        sum.tp_reduce_ns += layer.tp_reduce_ns;
        sum.exposed_comm_ns += layer.exposed_comm_ns;
        sum.span_ns += layer.span_ns;
        for (gpu_sum, gpu) in sum.gpus.iter_mut().zip(&layer.gpus) {
            gpu_sum.busy_ns += gpu.busy_ns;
            gpu_sum.idle_ns += gpu.idle_ns;
        }
    }
}

/// Per link (by link index), the bytes `graph`'s transfers put on it per MoE layer.
pub fn link_layer_bytes(
    graph: &TaskGraph<'_, Label>,
    cluster: &Cluster,
    num_layers: usize,
) -> Vec<Vec<u64>> {
    let mut bytes = vec![vec![0; num_layers]; cluster.num_links()];
    for id in 0..graph.len() as u32 {
        let layer = graph.task(id).label.layer as usize;
        for transfer in graph.transfers(id, cluster) {
            let PairTransfer {
                src, dst, relay, ..
            } = transfer;
            for route in transfer_routes(cluster, src, dst, relay) {
                for link in &route.links {
                    bytes[link.index()][layer] += transfer.bytes;
                }
            }
        }
    }
    bytes
}

/// The links that carried bytes, in link order, from their per-layer bytes
/// ([`link_layer_bytes`], summed over steps), with their utilisation over `total_ns`.
pub fn link_use(cluster: &Cluster, layer_bytes: &[Vec<u64>], total_ns: u64) -> Vec<LinkUse> {
    cluster
        .links()
        .filter_map(|(id, link)| {
            let per_layer = &layer_bytes[id.index()];
            let bytes: u64 = per_layer.iter().sum();
            (bytes > 0).then(|| LinkUse {
                link: link.name.clone(),
                bandwidth_gbps: link.bandwidth_gbps,
                bytes,
                utilization: bytes as f64 / (link.bandwidth_gbps * total_ns.max(1) as f64),
                layer_bytes: per_layer.clone(),
            })
        })
        .collect()
}

/// The kernels and transfers of MoE layer `layer` in `timeline`, for a Gantt chart.
pub fn timeline_excerpt(
    graph: &TaskGraph<'_, Label>,
    timeline: &Timeline,
    layer: u32,
) -> Vec<ExcerptBar> {
    (0..graph.len() as u32)
        .filter_map(|id| {
            let task = graph.task(id);
            let start_ns = timeline.start_ns[id as usize];
            let (gpu, row, end_ns) = match task.work {
                Work::Compute { gpu, .. } => {
                    (gpu, ExcerptRow::Compute, timeline.end_ns[id as usize])
                }
                Work::Transfer { src, bytes, .. } if bytes > 0 => {
                    (src, ExcerptRow::Send, timeline.end_ns[id as usize])
                }
                Work::Send { src, .. } => {
                    (src, ExcerptRow::Send, timeline.sends_done_ns[id as usize])
                }
                _ => return None,
            };
            (task.label.layer == layer && end_ns > start_ns).then_some(ExcerptBar {
                gpu: gpu as usize,
                row,
                phase: task.label.phase,
                start_ns,
                end_ns,
            })
        })
        .collect()
}
