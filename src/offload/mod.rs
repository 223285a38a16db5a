//! Expert offloading (issue 19): one GPU keeps `cache` experts per MoE layer in its memory
//! ([`cache::ExpertCache`]), the rest in host memory; decode walks the trace's tokens layer by
//! layer, and an expert that is not on the GPU when the layer's gate picks it is copied over
//! the host's PCIe path (flows on [`FlowNetwork`], so copies in flight share the links), the
//! layer's expert kernels waiting for it (a stall).
//!
//! Two modes: **on-demand** copies the missing experts once the gate has picked them;
//! **prefetch** (Pre-gated MoE / ProMoE / HybriMoE style) also asks the predictor, when a layer's
//! experts start computing, which experts the next layer will want, and starts copying those
//! at once, so that they land while the layer's experts and the next layer's attention run.
//!
//! The decode time of a step is, per MoE layer, attention and gate, then the wait for missing
//! experts, then the routed and shared experts (times from [`KernelCosts`]), plus the LM head;
//! dense layers and the host CPU are not modelled (see the README).
//!
//! [`OffloadGpu::step`] is the one walk of a step's layers: `moesim offload` runs it over its
//! decode steps, the pipeline over a scenario's steps and served batches (`[offload]`).

pub mod cache;
pub mod spec;

use serde::Serialize;

use crate::cost::attention::AttentionSpan;
use crate::error::{Error, Result};
use crate::model::MoeModel;
use crate::predict::{Ask, ExpertPredictor};
use crate::sim::kernels::KernelCosts;
use crate::sim::network::{FlowId, FlowNetwork};
use crate::topology::Cluster;
use crate::trace::{ExpertId, RoutingTrace};

use cache::{EvictionPolicy, ExpertCache, Lookup};

/// How experts get to the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Copied when the gate picks them.
    OnDemand,
    /// Also copied ahead, as predicted, one layer early.
    Prefetch,
}

impl Mode {
    /// The name in outputs.
    pub fn name(self) -> &'static str {
        match self {
            Mode::OnDemand => "on-demand",
            Mode::Prefetch => "prefetch",
        }
    }
}

/// GPU 0's path from host memory: its link ids, their capacities, and its latency.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPath {
    links: Vec<u32>,
    capacities: Vec<f64>,
    latency_ns: u64,
}

impl HostPath {
    /// GPU 0's PCIe path from host memory in `cluster` (its PCIe link, and the host-to-switch
    /// link where the machine has one); the error says the cluster has none.
    pub fn of(cluster: &Cluster) -> Result<HostPath> {
        let route = cluster.host_route(0);
        if route.links.is_empty() {
            return Err(Error::invalid(format!(
                "cluster `{}` has no PCIe path from host memory to GPU 0 to copy experts over \
                 (use a `-host` preset such as rtx4090-host, l40s-host or h100-host)",
                cluster.name()
            )));
        }
        Ok(HostPath {
            links: (0..route.links.len() as u32).collect(),
            capacities: route
                .links
                .iter()
                .map(|&l| cluster.link(l).bandwidth_gbps)
                .collect(),
            latency_ns: route.latency_ns,
        })
    }

    /// Its narrowest link, GB/s.
    pub fn gbps(&self) -> f64 {
        self.capacities
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
    }

    /// Its latency.
    pub fn latency_ns(&self) -> u64 {
        self.latency_ns
    }

    /// `bytes` copied alone over it: `ceil(bytes / gbps) + latency`.
    pub fn copy_ns(&self, bytes: u64) -> u64 {
        (bytes as f64 / self.gbps()).ceil() as u64 + self.latency_ns
    }
}

/// Checks a cache size, `key` in the error: at least one expert, at most the layer's experts.
pub fn check_cache(model: &MoeModel, cache: usize, key: &str) -> Result<()> {
    if cache == 0 || cache > model.num_experts {
        return Err(Error::invalid(format!(
            "`{key}` = {cache}: must be 1 to {} (model `{}` has {} experts per MoE layer; a \
             larger cache would be larger than the model)",
            model.num_experts, model.name, model.num_experts
        )));
    }
    Ok(())
}

/// The experts cached per layer that a GPU memory budget of `bytes` holds beside every
/// non-expert weight of `model`; the error (naming `key`) says when it holds none, or more
/// than the model.
pub fn cache_for_budget(model: &MoeModel, bytes: u64, key: &str) -> Result<usize> {
    let free = bytes as f64 - model.non_expert_weight_bytes();
    let per_expert = (model.expert_weight_bytes() * model.num_moe_layers() as u64) as f64;
    let cache = (free / per_expert).floor().max(0.0) as usize;
    check_cache(model, cache, key).map_err(|e| {
        Error::invalid(format!(
            "memory budget of {bytes} bytes holds {cache} experts per layer: {e}"
        ))
    })?;
    Ok(cache)
}

/// Checks that `trace` routes to `model`'s experts over its MoE layers.
pub fn check_trace(model: &MoeModel, trace: &RoutingTrace) -> Result<()> {
    if trace.num_experts() != model.num_experts {
        return Err(Error::invalid(format!(
            "the trace routes to {} experts per layer but model `{}` has {}: a predictor \
             and cache fitted on it would index other experts",
            trace.num_experts(),
            model.name,
            model.num_experts
        )));
    }
    if trace.num_layers() != model.num_moe_layers() {
        return Err(Error::invalid(format!(
            "the trace has {} MoE layers but model `{}` has {}",
            trace.num_layers(),
            model.name,
            model.num_moe_layers()
        )));
    }
    Ok(())
}

/// How experts reach a GPU's cache: when they are copied, which one leaves, and what predicts
/// the next layer's experts (for prefetch and predicted eviction).
pub struct Strategy {
    pub mode: Mode,
    pub eviction: Box<dyn EvictionPolicy>,
    pub predictor: Box<dyn ExpertPredictor>,
}

/// A decode run's fixed inputs, checked against each other.
pub struct Offload<'a> {
    model: &'a MoeModel,
    trace: &'a RoutingTrace,
    kernels: KernelCosts,
    path: HostPath,
    gpu_memory_bytes: u64,
    /// Sequences decoded together: each step takes the next `batch` rows of the trace.
    batch: usize,
    /// Keys each decode token attends over.
    context: u64,
    /// Rows before this one fit the predictor and warm the cache; decode starts here.
    first_token: usize,
    /// Steps to decode.
    steps: usize,
}

/// What an offloading GPU's copies did over its steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CopyStats {
    /// Time the expert kernels waited for copies.
    pub stall_ns: u64,
    /// Experts found in the cache (on the GPU or on their way) when a gate picked them, over
    /// all picks (a batch's distinct experts per layer and step).
    pub hit_rate: f64,
    pub layer_hit_rates: Vec<f64>,
    /// Bytes copied because a gate picked an absent expert.
    pub demand_bytes: u64,
    /// Bytes copied ahead on a prediction.
    pub prefetch_bytes: u64,
    /// Prefetched bytes evicted before any use.
    pub wasted_prefetch_bytes: u64,
}

/// One run's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OffloadRun {
    pub mode: Mode,
    /// Experts cached per MoE layer.
    pub cache: usize,
    /// Cache bytes on the GPU plus every non-expert weight: whether it fits the GPU's memory.
    pub gpu_bytes: u64,
    pub fits_memory: bool,
    pub steps: usize,
    pub tokens: usize,
    pub time_ns: u64,
    /// `copies.stall_ns / time_ns`.
    pub stall_share: f64,
    pub tokens_per_s: f64,
    #[serde(flatten)]
    pub copies: CopyStats,
}

/// The runs of a sweep of cache sizes and modes, with what they ran on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OffloadReport {
    pub model: String,
    pub cluster: String,
    pub eviction: String,
    pub predictor: String,
    pub batch: usize,
    pub context: u64,
    /// Rows the predictor was fitted on and the cache warmed with.
    pub fit_tokens: usize,
    pub expert_bytes: u64,
    /// The host-to-GPU path: its narrowest link and its latency.
    pub pcie_gbps: f64,
    pub pcie_latency_ns: u64,
    /// One expert copied alone over that path: `ceil(expert_bytes / pcie_gbps) + latency`.
    pub copy_ns: u64,
    pub runs: Vec<OffloadRun>,
}

/// What a copy in flight is for.
#[derive(Debug, Clone, Copy)]
enum Copy {
    /// A cache slot of (layer, expert).
    Cached(usize, ExpertId),
    /// An expert used once without a slot (every slot held the layer's other experts); its
    /// landing instant goes to `transient`.
    Transient,
}

/// The host-to-GPU copies as flows on the PCIe path.
struct Pcie {
    network: FlowNetwork,
    links: Vec<u32>,
    latency_ns: u64,
    bytes: u64,
    /// Per flow id, what it carries.
    flows: Vec<Copy>,
    drained: Vec<FlowId>,
    /// Transient copies in flight, and the latest landing instant of those of this layer.
    transients: usize,
    transient_ns: u64,
}

impl Pcie {
    fn start(&mut self, now_ns: u64, copy: Copy) {
        self.transients += usize::from(matches!(copy, Copy::Transient));
        let flow = self.network.start(now_ns, &self.links, self.bytes) as usize;
        if flow == self.flows.len() {
            self.flows.push(copy);
        } else {
            self.flows[flow] = copy;
        }
    }

    /// Drains every flow due by `until_ns`, landing its expert one path latency later.
    fn advance(&mut self, until_ns: u64, cache: &mut ExpertCache) {
        while let Some(ns) = self.network.next_drain_ns().filter(|&ns| ns <= until_ns) {
            self.drain(ns, cache);
        }
    }

    /// Drains the flows of the next drain instant (one must be in flight).
    fn drain_next(&mut self, cache: &mut ExpertCache) {
        let ns = self
            .network
            .next_drain_ns()
            .expect("a copy waited for is in flight");
        self.drain(ns, cache);
    }

    fn drain(&mut self, ns: u64, cache: &mut ExpertCache) {
        self.drained.clear();
        self.network.drain_at(ns, &mut self.drained);
        for &flow in &self.drained {
            let landed = ns + self.latency_ns;
            match self.flows[flow as usize] {
                Copy::Cached(layer, expert) => {
                    cache.landed(layer, expert, landed);
                }
                Copy::Transient => {
                    self.transients -= 1;
                    self.transient_ns = self.transient_ns.max(landed);
                }
            }
        }
        self.network.settle(ns);
    }
}

/// Tallies of a run.
#[derive(Default)]
struct Tally {
    picks: Vec<u64>,
    hits: Vec<u64>,
    stall_ns: u64,
    demand_copies: u64,
    prefetch_copies: u64,
    wasted_copies: u64,
}

/// A step walked by [`OffloadGpu::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepWalk {
    /// When its last MoE layer's experts end.
    pub end_ns: u64,
    /// Time its expert kernels waited for copies.
    pub stall_ns: u64,
}

/// One GPU with its experts in host memory: its expert cache, the copies in flight on its PCIe
/// path and what they did, walked step by step.
pub struct OffloadGpu {
    mode: Mode,
    capacity: usize,
    experts: usize,
    top_k: usize,
    expert_bytes: u64,
    eviction: Box<dyn EvictionPolicy>,
    /// Fitted on the rows that warmed the cache.
    predictor: Box<dyn ExpertPredictor>,
    cache: ExpertCache,
    pcie: Pcie,
    tally: Tally,
}

impl OffloadGpu {
    /// `model` on a GPU caching `capacity` experts per layer (checked by [`check_cache`]),
    /// copying over `path` in `mode`, evicting by `eviction` and predicting with `predictor`
    /// (fitted on `trace`'s rows `warm`, whose most used experts per layer the cache starts
    /// with, by id among equals).
    pub fn new(
        model: &MoeModel,
        path: &HostPath,
        trace: &RoutingTrace,
        warm: std::ops::Range<usize>,
        capacity: usize,
        strategy: Strategy,
    ) -> OffloadGpu {
        let Strategy {
            mode,
            eviction,
            predictor,
        } = strategy;
        let layers = trace.num_layers();
        let warm: Vec<Vec<ExpertId>> = (0..layers)
            .map(|layer| {
                let mut uses = vec![0u64; model.num_experts];
                for token in warm.clone() {
                    for &e in trace.layer(layer).experts_of(token) {
                        uses[e as usize] += 1;
                    }
                }
                let mut experts: Vec<ExpertId> = (0..uses.len() as ExpertId).collect();
                experts.sort_by_key(|&e| std::cmp::Reverse(uses[e as usize]));
                experts.truncate(capacity);
                experts
            })
            .collect();
        OffloadGpu {
            mode,
            capacity,
            experts: model.num_experts,
            top_k: model.top_k,
            expert_bytes: model.expert_weight_bytes(),
            eviction,
            predictor,
            cache: ExpertCache::new(model.num_experts, capacity, &warm),
            pcie: Pcie {
                network: FlowNetwork::new(path.capacities.iter().copied()),
                links: path.links.clone(),
                latency_ns: path.latency_ns,
                bytes: model.expert_weight_bytes(),
                flows: Vec::new(),
                drained: Vec::new(),
                transients: 0,
                transient_ns: 0,
            },
            tally: Tally {
                picks: vec![0; layers],
                hits: vec![0; layers],
                ..Tally::default()
            },
        }
    }

    /// The distinct experts `rows` pick at `layer`, by id, with their token counts.
    fn picks(&self, trace: &RoutingTrace, layer: usize, rows: &[usize]) -> Vec<(ExpertId, f64)> {
        let mut counts = vec![0.0; self.experts];
        for &token in rows {
            for &e in trace.layer(layer).experts_of(token) {
                counts[e as usize] += 1.0;
            }
        }
        (0..counts.len())
            .filter(|&e| counts[e] > 0.0)
            .map(|e| (e as ExpertId, counts[e]))
            .collect()
    }

    /// The predictor's experts for `rows` at `layer`: every token's top-k guesses, most
    /// votes first (then first named), at most the cache's size of them.
    fn predicted(&mut self, trace: &RoutingTrace, layer: usize, rows: &[usize]) -> Vec<ExpertId> {
        let mut votes: Vec<(ExpertId, usize)> = Vec::new();
        for &token in rows {
            let ask = Ask {
                layer,
                token,
                k: self.top_k,
            };
            for e in self.predictor.predict(trace, ask).unwrap_or_default() {
                match votes.iter_mut().find(|(v, _)| *v == e) {
                    Some((_, n)) => *n += 1,
                    None => votes.push((e, 1)),
                }
            }
        }
        votes.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        votes
            .into_iter()
            .take(self.capacity)
            .map(|(e, _)| e)
            .collect()
    }

    /// Walks the step of `trace`'s `rows` (one token each) from `start_ns` through every MoE
    /// layer: attention and gate over `span`, the wait for any picked expert not on the GPU
    /// (copied on demand), the routed and shared experts, times from `kernels`. When a layer's
    /// experts start, the predictor names the next layer's experts (or, after the last layer,
    /// the first layer's of the `next` rows, when given): the predicted eviction reads them,
    /// and in prefetch mode those absent are copied at once.
    pub fn step(
        &mut self,
        trace: &RoutingTrace,
        kernels: &KernelCosts,
        start_ns: u64,
        rows: &[usize],
        span: &AttentionSpan,
        next: Option<&[usize]>,
    ) -> StepWalk {
        let layers = trace.num_layers();
        let tokens = rows.len() as f64;
        let attention_ns = kernels.attention_ns(tokens, span);
        let shared_ns = kernels.shared_ns(tokens);
        let stall_before = self.tally.stall_ns;
        let mut now = start_ns;
        for layer in 0..layers {
            let gate = now + attention_ns;
            self.pcie.advance(gate, &mut self.cache);
            let picks = self.picks(trace, layer, rows);
            let keep: Vec<ExpertId> = picks.iter().map(|&(e, _)| e).collect();
            for &e in &keep {
                self.tally.picks[layer] += 1;
                if self.cache.lookup(layer, e) != Lookup::Absent {
                    self.tally.hits[layer] += 1;
                    continue;
                }
                self.tally.demand_copies += 1;
                let copy = match self.cache.reserve(layer, e, &keep, false, &*self.eviction) {
                    Some(wasted) => {
                        self.tally.wasted_copies += u64::from(wasted);
                        Copy::Cached(layer, e)
                    }
                    None => Copy::Transient,
                };
                self.pcie.start(gate, copy);
            }
            self.pcie.network.settle(gate);
            // The expert kernels start once every picked expert is on the GPU.
            self.pcie.transient_ns = 0;
            while self.pcie.transients > 0
                || keep
                    .iter()
                    .any(|&e| self.cache.lookup(layer, e) == Lookup::InFlight)
            {
                self.pcie.drain_next(&mut self.cache);
            }
            let ready = keep
                .iter()
                .filter_map(|&e| match self.cache.lookup(layer, e) {
                    Lookup::Ready(ns) => Some(ns),
                    _ => None,
                })
                .chain([self.pcie.transient_ns])
                .max()
                .unwrap_or(0);
            let start = gate.max(ready);
            self.tally.stall_ns += start - gate;
            for &e in &keep {
                self.cache.touch(layer, e);
            }
            // What the next layer (or the next step's first layer) will want.
            let ahead = if layer + 1 < layers {
                Some((layer + 1, rows))
            } else {
                next.map(|rows| (0, rows))
            };
            if let Some((next_layer, rows)) = ahead {
                let predicted = self.predicted(trace, next_layer, rows);
                self.cache.set_predicted(next_layer, &predicted);
                if self.mode == Mode::Prefetch {
                    self.prefetch(start, next_layer, &predicted);
                }
            }
            let expert_ns = kernels.routed_ns(picks.iter().map(|&(_, n)| n)) + shared_ns;
            now = start + expert_ns;
        }
        StepWalk {
            end_ns: now,
            stall_ns: self.tally.stall_ns - stall_before,
        }
    }

    /// Starts at `now_ns` the copies of the `predicted` experts of `layer` not on the GPU.
    fn prefetch(&mut self, now_ns: u64, layer: usize, predicted: &[ExpertId]) {
        self.pcie.advance(now_ns, &mut self.cache);
        for &e in predicted {
            if self.cache.lookup(layer, e) != Lookup::Absent {
                continue;
            }
            if let Some(wasted) = self
                .cache
                .reserve(layer, e, predicted, true, &*self.eviction)
            {
                self.tally.wasted_copies += u64::from(wasted);
                self.tally.prefetch_copies += 1;
                self.pcie.start(now_ns, Copy::Cached(layer, e));
            }
        }
        self.pcie.network.settle(now_ns);
    }

    /// What the copies did over the steps walked so far.
    pub fn stats(&self) -> CopyStats {
        let t = &self.tally;
        CopyStats {
            stall_ns: t.stall_ns,
            hit_rate: share(t.hits.iter().sum(), t.picks.iter().sum()),
            layer_hit_rates: t
                .hits
                .iter()
                .zip(&t.picks)
                .map(|(&h, &p)| share(h, p))
                .collect(),
            demand_bytes: t.demand_copies * self.expert_bytes,
            prefetch_bytes: t.prefetch_copies * self.expert_bytes,
            wasted_prefetch_bytes: t.wasted_copies * self.expert_bytes,
        }
    }
}

/// `part / whole`, 0 when `whole` is 0.
fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl<'a> Offload<'a> {
    /// Decoding `trace` (rows from `first_token` on, `batch` per step, at most `steps` steps)
    /// with `model` on GPU 0 of `cluster`, attending over `context` keys. The error names the
    /// input that does not fit the others.
    pub fn new(
        model: &'a MoeModel,
        cluster: &Cluster,
        trace: &'a RoutingTrace,
        batch: usize,
        context: u64,
        first_token: usize,
        steps: Option<usize>,
    ) -> Result<Offload<'a>> {
        check_trace(model, trace)?;
        if batch == 0 {
            return Err(Error::invalid("`batch` must be at least 1"));
        }
        let available = trace.num_tokens().saturating_sub(first_token) / batch;
        let steps = steps.map_or(available, |s| s.min(available));
        if steps == 0 {
            return Err(Error::invalid(format!(
                "the trace's {} tokens leave no decode step of batch {batch} after the {first_token} fitted ones",
                trace.num_tokens()
            )));
        }
        Ok(Offload {
            model,
            trace,
            kernels: KernelCosts::new(model, cluster.gpu_spec(0)),
            path: HostPath::of(cluster)?,
            gpu_memory_bytes: cluster.gpu_spec(0).memory_bytes,
            batch,
            context,
            first_token,
            steps,
        })
    }

    /// Decodes every step with `cache` experts per layer (checked by [`check_cache`]) in
    /// `mode`, evicting by `eviction` and predicting with `predictor` (fitted on the rows
    /// before the decode ones), the LM head after each step.
    pub fn run(
        &self,
        cache_size: usize,
        mode: Mode,
        eviction: Box<dyn EvictionPolicy>,
        predictor: Box<dyn ExpertPredictor>,
    ) -> Result<OffloadRun> {
        check_cache(self.model, cache_size, "cache")?;
        let mut gpu = OffloadGpu::new(
            self.model,
            &self.path,
            self.trace,
            0..self.first_token,
            cache_size,
            Strategy {
                mode,
                eviction,
                predictor,
            },
        );
        let span = AttentionSpan {
            prefill_keys: 0.0,
            decode_keys: self.context as f64,
        };
        let rows_of = |step: usize| -> Vec<usize> {
            let first = self.first_token + step * self.batch;
            (first..first + self.batch).collect()
        };
        let mut now = 0u64;
        for step in 0..self.steps {
            let next = (step + 1 < self.steps).then(|| rows_of(step + 1));
            let walk = gpu.step(
                self.trace,
                &self.kernels,
                now,
                &rows_of(step),
                &span,
                next.as_deref(),
            );
            now = walk.end_ns + self.kernels.lm_head_ns(self.batch as f64);
        }
        Ok(self.result(cache_size, mode, now, gpu.stats()))
    }

    /// The report of `runs` of `cluster` with these names of the eviction and the predictor.
    pub fn report(
        &self,
        cluster: &str,
        eviction: &str,
        predictor: &str,
        runs: Vec<OffloadRun>,
    ) -> OffloadReport {
        let expert_bytes = self.model.expert_weight_bytes();
        OffloadReport {
            model: self.model.name.clone(),
            cluster: cluster.to_string(),
            eviction: eviction.to_string(),
            predictor: predictor.to_string(),
            batch: self.batch,
            context: self.context,
            fit_tokens: self.first_token,
            expert_bytes,
            pcie_gbps: self.path.gbps(),
            pcie_latency_ns: self.path.latency_ns,
            copy_ns: self.path.copy_ns(expert_bytes),
            runs,
        }
    }

    fn result(&self, cache: usize, mode: Mode, time_ns: u64, copies: CopyStats) -> OffloadRun {
        let gpu_bytes = (self.model.non_expert_weight_bytes()
            + (cache * self.model.num_moe_layers()) as f64
                * self.model.expert_weight_bytes() as f64) as u64;
        let tokens = self.steps * self.batch;
        OffloadRun {
            mode,
            cache,
            gpu_bytes,
            fits_memory: gpu_bytes <= self.gpu_memory_bytes,
            steps: self.steps,
            tokens,
            time_ns,
            stall_share: share(copies.stall_ns, time_ns),
            tokens_per_s: tokens as f64 / (time_ns as f64 * 1e-9),
            copies,
        }
    }
}

#[cfg(test)]
mod tests;
