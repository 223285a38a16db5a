//! Builds the task graph of one model step: for every MoE layer and micro-batch, attention and
//! gate on each GPU (data-parallel attention), the dispatch all-to-all, the routed experts'
//! grouped GEMM beside the shared experts, the tensor-parallel reduce-scatter of the experts'
//! partial outputs (with TP inside experts), and the combine all-to-all, shaped by the overlap
//! strategy and the all-to-all algorithm.
//!
//! Splitting (micro-batches, chunks, tiles) divides every token count and every pair's bytes
//! evenly (bytes rounded up per pair), as the per-layer plan only knows totals.

use super::all_to_all::{AllToAllAlgorithm, Direct};
use super::config::LinkSettings;
use super::engine::{TaskGraph, TaskId, Work};
use super::kernels::KernelCosts;
use super::overlap::OverlapStrategy;
use crate::cost::attention::AttentionSpan;
use crate::cost::{DispatchPlan, DispatchTally, TrafficMatrix};
use crate::topology::Cluster;

/// The GPU stream communication kernels run on (0 is the compute stream).
pub const COMMUNICATION_STREAM: u8 = 1;

/// How borrowed expert weights travel: each copy straight from holder to borrower over the
/// cluster's route, whatever the all-to-all algorithm.
static WEIGHT_COPY: Direct = Direct { comm_sms: 0 };

/// Which part of a layer a task belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Attention and gate.
    Attention,
    /// Dispatch all-to-all.
    Dispatch,
    /// Routed and shared experts.
    Expert,
    /// Reduce-scatter of partial expert outputs inside tensor-parallel groups.
    TpReduce,
    /// Combine all-to-all.
    Combine,
    /// Zero-time synchronisation points.
    Sync,
}

/// The label of every task: its MoE layer (index among the simulated layers) and phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    /// MoE layer index.
    pub layer: u32,
    /// Part of the layer.
    pub phase: Phase,
}

/// What one MoE layer of one step moves and computes.
#[derive(Debug, Clone)]
pub struct LayerWork {
    /// Dispatch bytes per GPU pair.
    pub dispatch: TrafficMatrix,
    /// Combine bytes per GPU pair (expert holder to token owner).
    pub combine: TrafficMatrix,
    /// Reduce-scatter bytes per GPU pair inside each tensor-parallel group (none without TP).
    pub tp_reduce: TrafficMatrix,
    /// Per GPU, tokens of each expert it holds.
    pub expert_tokens: Vec<Vec<f64>>,
    /// Per GPU, the tokens that start there.
    pub source_tokens: Vec<f64>,
    /// Dispatch and combine bytes when each token crosses to a machine once and fans out over
    /// its NVLink there (DeepEP's normal kernels): the pairs between machines scaled by the
    /// plan's [`DispatchPlan::node_share`]; none within one machine, with tensor parallelism,
    /// when the plan does not count tokens per machine, or when the all-to-all algorithm does not
    /// deduplicate per machine (the builder was told so and skipped them).
    pub per_node: Option<(TrafficMatrix, TrafficMatrix)>,
    /// Expert weight bytes sent to GPUs that borrow experts (least-loaded EP): sent once per
    /// layer, after the holder's first attention, received before the borrower's routed GEMMs.
    pub weights: TrafficMatrix,
    /// The plan's routed, dropped and moved pairs.
    pub tally: DispatchTally,
    /// Speculative pre-scheduling: bytes each GPU sends towards its tokens' predicted
    /// destinations ahead of the gate, on the communication stream while the layer's attention
    /// runs; [`LayerWork::dispatch`] then holds only the corrective transfer of the pairs the
    /// prediction missed. `None` without speculation.
    pub speculative: Option<TrafficMatrix>,
}

impl LayerWork {
    /// The work of `plan` with `dispatch_bytes_per_token` and `combine_bytes_per_token` per
    /// token and destination GPU, without tensor parallelism.
    pub fn from_plan(
        plan: &DispatchPlan,
        dispatch_bytes_per_token: f64,
        combine_bytes_per_token: f64,
    ) -> LayerWork {
        LayerWork::from_plan_tp(
            plan,
            dispatch_bytes_per_token,
            combine_bytes_per_token,
            1,
            true,
        )
    }

    /// [`LayerWork::from_plan_tp`] of every layer's plan.
    pub fn from_plans(
        plans: &[DispatchPlan],
        dispatch_bytes_per_token: f64,
        combine_bytes_per_token: f64,
        tp: usize,
        per_machine: bool,
    ) -> Vec<LayerWork> {
        plans
            .iter()
            .map(|plan| {
                let (dispatch, combine) = (dispatch_bytes_per_token, combine_bytes_per_token);
                LayerWork::from_plan_tp(plan, dispatch, combine, tp, per_machine)
            })
            .collect()
    }

    /// The work of `plan` (over a tensor-parallel expanded placement: every GPU of a rank
    /// of `tp` consecutive GPUs lists the rank's experts, and the plan sends each token to one
    /// of them) with each expert's FFN split over its rank's `tp` GPUs:
    /// - dispatch: a token goes to every GPU of each rank it needs, whole;
    /// - experts: every GPU of a rank computes all the rank's tokens at `1 / tp` of the FFN;
    /// - reduce-scatter: each GPU sends every other GPU of its rank `1 / tp` of its partial
    ///   outputs (the rank's tokens x `combine_bytes_per_token / tp`);
    /// - combine: each GPU of the rank returns its `1 / tp` slice of every token's output.
    ///
    /// Byte counts are rounded up per pair. With `tp` = 1 this is the plan's own traffic. The
    /// per-machine traffic ([`LayerWork::per_node`]) is built only when `per_machine` asks for it
    /// (the all-to-all algorithm deduplicates per machine), as it costs a pass over every pair.
    pub fn from_plan_tp(
        plan: &DispatchPlan,
        dispatch_bytes_per_token: f64,
        combine_bytes_per_token: f64,
        tp: usize,
        per_machine: bool,
    ) -> LayerWork {
        let gpus = plan.source_tokens.len();
        let ranks = gpus / tp;
        let rank_gpus = |rank: usize| rank * tp..(rank + 1) * tp;
        // Tokens each GPU sends to each rank, and each rank's tokens per expert slot.
        let to_rank =
            |src: usize, rank: usize| -> f64 { rank_gpus(rank).map(|g| plan.flow(src, g)).sum() };
        let bytes = |tokens: f64, per_token: f64| (tokens * per_token).ceil() as u64;
        let slice = combine_bytes_per_token / tp as f64;
        let mut dispatch = TrafficMatrix::zeros(gpus);
        let mut combine = TrafficMatrix::zeros(gpus);
        let mut tp_reduce = TrafficMatrix::zeros(gpus);
        let mut expert_tokens = plan.expert_tokens.clone();
        for rank in 0..ranks {
            let mut rank_slots = vec![0.0; plan.expert_tokens[rank * tp].len()];
            for gpu in rank_gpus(rank) {
                for (sum, tokens) in rank_slots.iter_mut().zip(&plan.expert_tokens[gpu]) {
                    *sum += tokens;
                }
            }
            let rank_tokens: f64 = (0..gpus).map(|src| to_rank(src, rank)).sum();
            for gpu in rank_gpus(rank) {
                expert_tokens[gpu].clone_from(&rank_slots);
                for src in 0..gpus {
                    let tokens = to_rank(src, rank);
                    dispatch.add(src, gpu, bytes(tokens, dispatch_bytes_per_token));
                    combine.add(gpu, src, bytes(tokens, slice));
                }
                for peer in rank_gpus(rank).filter(|&peer| peer != gpu) {
                    tp_reduce.add(gpu, peer, bytes(rank_tokens, slice));
                }
            }
        }
        let per_node = (per_machine && tp == 1 && plan.nodes() > 1).then(|| {
            let mut dispatch = TrafficMatrix::zeros(gpus);
            let mut combine = TrafficMatrix::zeros(gpus);
            for src in 0..gpus {
                for dst in 0..gpus {
                    let tokens = plan.flow(src, dst) * plan.node_share(src, dst);
                    dispatch.add(src, dst, bytes(tokens, dispatch_bytes_per_token));
                    combine.add(dst, src, bytes(tokens, slice));
                }
            }
            (dispatch, combine)
        });
        LayerWork {
            dispatch,
            combine,
            tp_reduce,
            expert_tokens,
            source_tokens: plan.source_tokens.clone(),
            per_node,
            weights: plan.weight_traffic(),
            tally: plan.tally,
            speculative: None,
        }
    }

    /// The dispatch and combine bytes `algorithm` moves: once per destination machine for a
    /// token when it deduplicates per machine, else once per destination GPU.
    pub fn traffic(&self, algorithm: &dyn AllToAllAlgorithm) -> (&TrafficMatrix, &TrafficMatrix) {
        match &self.per_node {
            Some((dispatch, combine)) if algorithm.per_machine() => (dispatch, combine),
            _ => (&self.dispatch, &self.combine),
        }
    }
}

/// Everything a step graph is built from.
pub struct StepSpec<'a> {
    /// Where it runs.
    pub cluster: &'a Cluster,
    /// Kernel durations.
    pub costs: &'a KernelCosts,
    /// What the step's tokens attend over (the same in every layer).
    pub attention: AttentionSpan,
    /// Per MoE layer, in order.
    pub layers: &'a [LayerWork],
    /// How the all-to-alls move their bytes.
    pub all_to_all: &'a dyn AllToAllAlgorithm,
    /// How the links behave.
    pub links: LinkSettings,
}

/// The task graph of one step under `overlap`.
pub fn build<'a>(spec: &StepSpec<'a>, overlap: &dyn OverlapStrategy) -> TaskGraph<'a, Label> {
    Builder::new(spec, overlap).build()
}

struct Builder<'s, 'a> {
    spec: &'s StepSpec<'a>,
    /// Whether the pieces are tiles of one fused kernel ([`OverlapStrategy::fused`]).
    fused: bool,
    graph: TaskGraph<'a, Label>,
    /// Micro-batches.
    batches: usize,
    /// Pieces each micro-batch's all-to-all and experts are cut into.
    pieces: usize,
    /// Compute slowdown while communication kernels hold SMs.
    sm_slowdown: f64,
}

impl<'s, 'a> Builder<'s, 'a> {
    fn new(spec: &'s StepSpec<'a>, overlap: &dyn OverlapStrategy) -> Self {
        let sms = f64::from(spec.costs.sm_count());
        let taken = f64::from(spec.all_to_all.sms_taken()).min(sms - 1.0);
        let sm_slowdown = if overlap.overlaps_compute() {
            sms / (sms - taken)
        } else {
            1.0
        };
        Builder {
            spec,
            fused: overlap.fused(),
            graph: TaskGraph::default(),
            batches: overlap.micro_batches(),
            pieces: overlap.pieces(),
            sm_slowdown,
        }
    }

    fn build(mut self) -> TaskGraph<'a, Label> {
        let gpus = self.spec.cluster.num_gpus();
        let mut ready: Vec<Vec<TaskId>> = vec![Vec::new(); self.batches * gpus];
        for (layer, work) in self.spec.layers.iter().enumerate() {
            let mut weights = None;
            for batch in 0..self.batches {
                let deps = &mut ready[batch * gpus..(batch + 1) * gpus];
                let ends = self.layer(layer as u32, work, deps, &mut weights);
                for (gpu, end) in ends.into_iter().enumerate() {
                    deps[gpu] = vec![end];
                }
            }
        }
        self.graph
    }

    /// One micro-batch of one layer; `deps[gpu]` are the tasks GPU `gpu` waits for first;
    /// `weights` holds each GPU's receive of borrowed expert weights once the layer's first
    /// micro-batch has sent them. Returns each GPU's end-of-layer join.
    fn layer(
        &mut self,
        layer: u32,
        work: &'a LayerWork,
        deps: &[Vec<TaskId>],
        weights: &mut Option<Vec<TaskId>>,
    ) -> Vec<TaskId> {
        let gpus = deps.len();
        let costs = self.spec.costs;
        let batch_share = 1.0 / self.batches as f64;
        let piece_share = batch_share / self.pieces as f64;
        let label = |phase| Label { layer, phase };
        let (dispatch, combine) = work.traffic(self.spec.all_to_all);
        let gate: Vec<TaskId> = (0..gpus)
            .map(|gpu| {
                let ns =
                    costs.attention_ns(work.source_tokens[gpu] * batch_share, &self.spec.attention);
                self.compute(gpu, ns, label(Phase::Attention), &deps[gpu])
            })
            .collect();
        // Speculative sends leave as soon as the layer may start, beside its attention; every
        // GPU's experts wait for what was sent to it.
        let speculated: Option<Vec<TaskId>> = work.speculative.as_ref().map(|matrix| {
            let starts: Vec<TaskId> = deps
                .iter()
                .map(|d| self.graph.add(Work::Join, label(Phase::Sync), d))
                .collect();
            let sends = self.comm_kernels(&starts, None, label(Phase::Dispatch));
            self.all_to_all(matrix, batch_share, label(Phase::Dispatch), &sends)
        });
        let mut ends: Vec<Vec<TaskId>> = (0..gpus)
            .map(|gpu| {
                let ns = costs.shared_ns(work.source_tokens[gpu] * batch_share);
                vec![self.compute(gpu, ns, label(Phase::Expert), &[gate[gpu]])]
            })
            .collect();
        if weights.is_none() && work.weights.pairs().next().is_some() {
            let copy = (&work.weights, &WEIGHT_COPY as &dyn AllToAllAlgorithm);
            *weights = Some(self.collective(copy, 1.0, label(Phase::Dispatch), &gate));
        }
        // A fused kernel runs each all-to-all over all its tiles: the kernel starts (and pays its
        // fixed cost) once, with the first tile.
        let mut launched: Option<(Vec<TaskId>, Vec<TaskId>)> = None;
        for _ in 0..self.pieces {
            let fused_starts = launched.as_ref().map(|l| &l.0[..]);
            let sends = self.comm_kernels(&gate, fused_starts, label(Phase::Dispatch));
            let arrived = self.all_to_all(dispatch, piece_share, label(Phase::Dispatch), &sends);
            let experts: Vec<TaskId> = (0..gpus)
                .map(|gpu| {
                    let ns = self.expert_ns(&work.expert_tokens[gpu], batch_share);
                    let mut ready = vec![arrived[gpu]];
                    ready.extend(weights.as_ref().map(|w| w[gpu]));
                    ready.extend(speculated.as_ref().map(|s| s[gpu]));
                    self.compute(gpu, ns, label(Phase::Expert), &ready)
                })
                .collect();
            // With TP, a GPU's output slices are whole once its peers' partials have arrived.
            let outputs = if work.tp_reduce.pairs().next().is_some() {
                self.all_to_all(
                    &work.tp_reduce,
                    piece_share,
                    label(Phase::TpReduce),
                    &experts,
                )
            } else {
                experts
            };
            let fused_starts = launched.as_ref().map(|l| &l.1[..]);
            let returns = self.comm_kernels(&outputs, fused_starts, label(Phase::Combine));
            let returned = self.all_to_all(combine, piece_share, label(Phase::Combine), &returns);
            for (gpu, end) in ends.iter_mut().enumerate() {
                end.push(returned[gpu]);
            }
            if self.fused && launched.is_none() {
                launched = Some((sends, returns));
            }
        }
        ends.iter()
            .map(|deps| self.graph.add(Work::Join, label(Phase::Sync), deps))
            .collect()
    }

    /// One piece of a GPU's routed experts for a micro-batch holding `batch_share` of the tokens.
    fn expert_ns(&self, expert_tokens: &[f64], batch_share: f64) -> u64 {
        let costs = self.spec.costs;
        let pieces = self.pieces as f64;
        if self.fused {
            // One fused kernel cut into equal tiles: weights read once in all.
            let whole = costs.routed_ns(expert_tokens.iter().map(|t| t * batch_share));
            (whole as f64 / pieces).ceil() as u64
        } else {
            // A separate grouped GEMM per piece.
            costs.routed_ns(expert_tokens.iter().map(|t| t * batch_share / pieces))
        }
    }

    /// [`Builder::comm_kernel`] on every GPU, after its task in `after` (and its fused start).
    fn comm_kernels(
        &mut self,
        after: &[TaskId],
        fused_starts: Option<&[TaskId]>,
        label: Label,
    ) -> Vec<TaskId> {
        after
            .iter()
            .enumerate()
            .map(|(gpu, &a)| self.comm_kernel(gpu, a, fused_starts.map(|s| s[gpu]), label))
            .collect()
    }

    /// Where GPU `gpu`'s part of an all-to-all starts once `after` is done: at once, or, for
    /// low-latency kernels, after their fixed cost (launch, doorbells, completion signalling) on
    /// the communication stream, where it holds no SMs the GEMMs need; a later tile of a fused
    /// kernel started at `fused_start` only waits for that start.
    fn comm_kernel(
        &mut self,
        gpu: usize,
        after: TaskId,
        fused_start: Option<TaskId>,
        label: Label,
    ) -> TaskId {
        let fixed_ns = self.spec.all_to_all.kernel_fixed_ns();
        if fixed_ns == 0 {
            return after;
        }
        if let Some(start) = fused_start {
            return self.graph.add(Work::Join, label, &[after, start]);
        }
        let work = Work::Compute {
            gpu: gpu as u32,
            stream: COMMUNICATION_STREAM,
            duration_ns: fixed_ns,
        };
        self.graph.add(work, label, &[after])
    }

    /// A kernel on GPU `gpu`'s compute stream, slowed while communication holds SMs.
    fn compute(&mut self, gpu: usize, ns: u64, label: Label, deps: &[TaskId]) -> TaskId {
        let duration_ns = (ns as f64 * self.sm_slowdown).ceil() as u64;
        let work = Work::Compute {
            gpu: gpu as u32,
            stream: 0,
            duration_ns,
        };
        self.graph.add(work, label, deps)
    }

    /// An all-to-all of `share` of `matrix`'s bytes: each GPU sends once its `ready` task is
    /// done; returns each GPU's receive, done once its own `ready` task is and all its bytes
    /// have arrived.
    fn all_to_all(
        &mut self,
        matrix: &'a TrafficMatrix,
        share: f64,
        label: Label,
        ready: &[TaskId],
    ) -> Vec<TaskId> {
        self.collective((matrix, self.spec.all_to_all), share, label, ready)
    }

    /// [`Builder::all_to_all`] of a matrix moved by a given algorithm.
    fn collective(
        &mut self,
        (matrix, algorithm): (&'a TrafficMatrix, &'a dyn AllToAllAlgorithm),
        share: f64,
        label: Label,
        ready: &[TaskId],
    ) -> Vec<TaskId> {
        let collective = self.graph.add_collective(matrix, share, algorithm);
        for (src, &after) in ready.iter().enumerate() {
            let send = Work::Send {
                collective,
                src: src as u32,
            };
            self.graph.add(send, label, &[after]);
        }
        ready
            .iter()
            .enumerate()
            .map(|(dst, &after)| {
                let receive = Work::Receive {
                    collective,
                    dst: dst as u32,
                };
                self.graph.add(receive, label, &[after])
            })
            .collect()
    }
}
