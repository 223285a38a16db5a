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

pub mod cache;

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

/// A decode run's fixed inputs, checked against each other.
pub struct Offload<'a> {
    model: &'a MoeModel,
    trace: &'a RoutingTrace,
    kernels: KernelCosts,
    /// Link ids of the host-to-GPU path, their capacities, and its latency.
    links: Vec<u32>,
    capacities: Vec<f64>,
    latency_ns: u64,
    expert_bytes: u64,
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
    /// Time the expert kernels waited for copies.
    pub stall_ns: u64,
    pub stall_share: f64,
    pub tokens_per_s: f64,
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
        let route = cluster.host_route(0);
        Ok(Offload {
            model,
            trace,
            kernels: KernelCosts::new(model, cluster.gpu_spec(0)),
            links: (0..route.links.len() as u32).collect(),
            capacities: route
                .links
                .iter()
                .map(|&l| cluster.link(l).bandwidth_gbps)
                .collect(),
            latency_ns: route.latency_ns,
            expert_bytes: model.expert_weight_bytes(),
            gpu_memory_bytes: cluster.gpu_spec(0).memory_bytes,
            batch,
            context,
            first_token,
            steps,
        })
    }

    /// Checks a cache size: at least one expert, at most the layer's experts.
    pub fn check_cache(&self, cache: usize) -> Result<()> {
        if cache == 0 || cache > self.model.num_experts {
            return Err(Error::invalid(format!(
                "`cache` = {cache}: must be 1 to {} (model `{}` has {} experts per MoE layer; a \
                 larger cache would be larger than the model)",
                self.model.num_experts, self.model.name, self.model.num_experts
            )));
        }
        Ok(())
    }

    /// The experts cached per layer that a GPU memory budget of `bytes` holds beside every
    /// non-expert weight; the error says when it holds none, or more than the model.
    pub fn cache_for_budget(&self, bytes: u64) -> Result<usize> {
        let free = bytes as f64 - self.model.non_expert_weight_bytes();
        let per_expert = (self.expert_bytes * self.model.num_moe_layers() as u64) as f64;
        let cache = (free / per_expert).floor().max(0.0) as usize;
        self.check_cache(cache).map_err(|e| {
            Error::invalid(format!(
                "memory budget of {bytes} bytes holds {cache} experts per layer: {e}"
            ))
        })?;
        Ok(cache)
    }

    /// The `cache` experts of each layer most used by the rows before the decode ones (by
    /// id among equals): what the cache holds when decode starts.
    fn warm(&self, cache: usize) -> Vec<Vec<ExpertId>> {
        (0..self.trace.num_layers())
            .map(|layer| {
                let mut uses = vec![0u64; self.model.num_experts];
                for token in 0..self.first_token {
                    for &e in self.trace.layer(layer).experts_of(token) {
                        uses[e as usize] += 1;
                    }
                }
                let mut experts: Vec<ExpertId> = (0..uses.len() as ExpertId).collect();
                experts.sort_by_key(|&e| std::cmp::Reverse(uses[e as usize]));
                experts.truncate(cache);
                experts
            })
            .collect()
    }

    /// The distinct experts `rows` pick at `layer`, by id, with their token counts.
    fn picks(&self, layer: usize, rows: std::ops::Range<usize>) -> Vec<(ExpertId, f64)> {
        let mut counts = vec![0.0; self.model.num_experts];
        for token in rows {
            for &e in self.trace.layer(layer).experts_of(token) {
                counts[e as usize] += 1.0;
            }
        }
        (0..counts.len())
            .filter(|&e| counts[e] > 0.0)
            .map(|e| (e as ExpertId, counts[e]))
            .collect()
    }

    /// The predictor's experts for `rows` at `layer`: every token's top-k guesses, most
    /// votes first (then first named), at most `cache` of them.
    fn predicted(
        &self,
        predictor: &mut dyn ExpertPredictor,
        layer: usize,
        rows: std::ops::Range<usize>,
        cache: usize,
    ) -> Vec<ExpertId> {
        let mut votes: Vec<(ExpertId, usize)> = Vec::new();
        for token in rows {
            let ask = Ask {
                layer,
                token,
                k: self.model.top_k,
            };
            for e in predictor.predict(self.trace, ask).unwrap_or_default() {
                match votes.iter_mut().find(|(v, _)| *v == e) {
                    Some((_, n)) => *n += 1,
                    None => votes.push((e, 1)),
                }
            }
        }
        votes.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        votes.into_iter().take(cache).map(|(e, _)| e).collect()
    }

    /// Decodes every step with `cache` experts per layer (checked by
    /// [`Offload::check_cache`]) in `mode`, evicting by `eviction` and predicting with
    /// `predictor` (fitted on the rows before the decode ones).
    pub fn run(
        &self,
        cache_size: usize,
        mode: Mode,
        eviction: &dyn EvictionPolicy,
        predictor: &mut dyn ExpertPredictor,
    ) -> Result<OffloadRun> {
        self.check_cache(cache_size)?;
        let layers = self.trace.num_layers();
        let mut cache =
            ExpertCache::new(self.model.num_experts, cache_size, &self.warm(cache_size));
        let mut pcie = Pcie {
            network: FlowNetwork::new(self.capacities.iter().copied()),
            links: self.links.clone(),
            latency_ns: self.latency_ns,
            bytes: self.expert_bytes,
            flows: Vec::new(),
            drained: Vec::new(),
            transients: 0,
            transient_ns: 0,
        };
        let mut tally = Tally {
            picks: vec![0; layers],
            hits: vec![0; layers],
            ..Tally::default()
        };
        let tokens = self.batch as f64;
        let span = AttentionSpan {
            prefill_keys: 0.0,
            decode_keys: self.context as f64,
        };
        let attention_ns = self.kernels.attention_ns(tokens, &span);
        let shared_ns = self.kernels.shared_ns(tokens);
        let rows_of = |step: usize| {
            let first = self.first_token + step * self.batch;
            first..first + self.batch
        };
        let mut now = 0u64;
        for step in 0..self.steps {
            for layer in 0..layers {
                let gate = now + attention_ns;
                pcie.advance(gate, &mut cache);
                let picks = self.picks(layer, rows_of(step));
                let keep: Vec<ExpertId> = picks.iter().map(|&(e, _)| e).collect();
                for &e in &keep {
                    tally.picks[layer] += 1;
                    if cache.lookup(layer, e) != Lookup::Absent {
                        tally.hits[layer] += 1;
                        continue;
                    }
                    tally.demand_copies += 1;
                    let copy = match cache.reserve(layer, e, &keep, false, eviction) {
                        Some(wasted) => {
                            tally.wasted_copies += u64::from(wasted);
                            Copy::Cached(layer, e)
                        }
                        None => Copy::Transient,
                    };
                    pcie.start(gate, copy);
                }
                pcie.network.settle(gate);
                // The expert kernels start once every picked expert is on the GPU.
                pcie.transient_ns = 0;
                while pcie.transients > 0
                    || keep
                        .iter()
                        .any(|&e| cache.lookup(layer, e) == Lookup::InFlight)
                {
                    pcie.drain_next(&mut cache);
                }
                let ready = keep
                    .iter()
                    .filter_map(|&e| match cache.lookup(layer, e) {
                        Lookup::Ready(ns) => Some(ns),
                        _ => None,
                    })
                    .chain([pcie.transient_ns])
                    .max()
                    .unwrap_or(0);
                let start = gate.max(ready);
                tally.stall_ns += start - gate;
                for &e in &keep {
                    cache.touch(layer, e);
                }
                // What the next layer (or the next step's first layer) will want.
                let next = if layer + 1 < layers {
                    Some((layer + 1, rows_of(step)))
                } else {
                    (step + 1 < self.steps).then(|| (0, rows_of(step + 1)))
                };
                if let Some((next_layer, rows)) = next {
                    let predicted = self.predicted(predictor, next_layer, rows, cache_size);
                    cache.set_predicted(next_layer, &predicted);
                    if mode == Mode::Prefetch {
                        pcie.advance(start, &mut cache);
                        for &e in &predicted {
                            if cache.lookup(next_layer, e) != Lookup::Absent {
                                continue;
                            }
                            if let Some(wasted) =
                                cache.reserve(next_layer, e, &predicted, true, eviction)
                            {
                                tally.wasted_copies += u64::from(wasted);
                                tally.prefetch_copies += 1;
                                pcie.start(start, Copy::Cached(next_layer, e));
                            }
                        }
                        pcie.network.settle(start);
                    }
                }
                let expert_ns = self.kernels.routed_ns(picks.iter().map(|&(_, n)| n)) + shared_ns;
                now = start + expert_ns;
            }
            now += self.kernels.lm_head_ns(tokens);
        }
        Ok(self.result(cache_size, mode, now, &tally))
    }

    /// The report of `runs` of `cluster` with these names of the eviction and the predictor.
    pub fn report(
        &self,
        cluster: &str,
        eviction: &str,
        predictor: &str,
        runs: Vec<OffloadRun>,
    ) -> OffloadReport {
        let pcie_gbps = self
            .capacities
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        OffloadReport {
            model: self.model.name.clone(),
            cluster: cluster.to_string(),
            eviction: eviction.to_string(),
            predictor: predictor.to_string(),
            batch: self.batch,
            context: self.context,
            fit_tokens: self.first_token,
            expert_bytes: self.expert_bytes,
            pcie_gbps,
            pcie_latency_ns: self.latency_ns,
            copy_ns: (self.expert_bytes as f64 / pcie_gbps).ceil() as u64 + self.latency_ns,
            runs,
        }
    }

    fn result(&self, cache: usize, mode: Mode, time_ns: u64, tally: &Tally) -> OffloadRun {
        let share = |part: u64, whole: u64| {
            if whole == 0 {
                0.0
            } else {
                part as f64 / whole as f64
            }
        };
        let gpu_bytes = (self.model.non_expert_weight_bytes()
            + (cache * self.model.num_moe_layers()) as f64 * self.expert_bytes as f64)
            as u64;
        let tokens = self.steps * self.batch;
        OffloadRun {
            mode,
            cache,
            gpu_bytes,
            fits_memory: gpu_bytes <= self.gpu_memory_bytes,
            steps: self.steps,
            tokens,
            time_ns,
            stall_ns: tally.stall_ns,
            stall_share: share(tally.stall_ns, time_ns),
            tokens_per_s: tokens as f64 / (time_ns as f64 * 1e-9),
            hit_rate: share(tally.hits.iter().sum(), tally.picks.iter().sum()),
            layer_hit_rates: tally
                .hits
                .iter()
                .zip(&tally.picks)
                .map(|(&h, &p)| share(h, p))
                .collect(),
            demand_bytes: tally.demand_copies * self.expert_bytes,
            prefetch_bytes: tally.prefetch_copies * self.expert_bytes,
            wasted_prefetch_bytes: tally.wasted_copies * self.expert_bytes,
        }
    }
}

#[cfg(test)]
mod tests;
