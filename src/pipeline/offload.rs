//! `[offload]`: the scenario's one GPU keeps a cache of experts per MoE layer, the rest in host
//! memory ([`crate::offload`]). Every simulated step (`moesim simulate`) and every served batch
//! (`moesim serve`) is walked through that cache by [`OffloadGpu::step`], the walk `moesim
//! offload` runs: the time the step's expert kernels wait for copies over PCIe (on demand, or
//! prefetched a layer early on a prediction) is added to the step's simulated time.
//!
//! The walk times its layers by the same kernel costs as the simulator (attention and gate
//! before the pick, routed and shared experts after); copies overlap those, not the step
//! graph's other tasks, which on one GPU run one after another anyway.

use serde::Serialize;

use super::Setup;
use super::steps::Step;
use crate::cost::attention::AttentionSpan;
use crate::error::{Error, Result};
use crate::model::MoeModel;
use crate::offload::cache::EVICTIONS;
use crate::offload::spec::{GIB, OffloadSpec};
use crate::offload::{
    CopyStats, HostPath, Mode, OffloadGpu, Strategy, cache_for_budget, check_cache, check_trace,
};
use crate::predict::PREDICTORS;
use crate::registry::Settings;
use crate::sim::kernels::KernelCosts;
use crate::topology::Cluster;
use crate::trace::{RoutingTrace, Trace};

/// An `[offload]` table checked against the model, the cluster and the trace.
#[derive(Debug, Clone)]
pub struct OffloadPlan {
    spec: OffloadSpec,
    /// Experts cached per MoE layer.
    pub cache: usize,
    path: HostPath,
    /// The trace's first tokens, which fit the predictor and warm the cache.
    pub fit_tokens: usize,
}

/// What the copies of an offloading run did.
#[derive(Debug, Clone, Serialize)]
pub struct OffloadSummary {
    pub mode: Mode,
    pub cache_experts: usize,
    pub eviction: String,
    pub predictor: String,
    pub expert_bytes: u64,
    /// The host-to-GPU path's narrowest link.
    pub pcie_gbps: f64,
    /// One expert copied alone over it.
    pub copy_ns: u64,
    /// Bytes copied from host memory, on demand and ahead.
    pub pcie_bytes: u64,
    /// The stall over the steps' time (with the stall).
    pub stall_share: f64,
    #[serde(flatten)]
    pub copies: CopyStats,
}

impl std::fmt::Display for OffloadSummary {
    /// One line: the mode and cache, hit rate, bytes copied and stall share.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "offload {} ({} experts cached per layer, {} eviction, {} predictor): hit rate {:.1}%, \
             {:.2} GB over PCIe ({:.1} GB/s, {:.2} ms a copy), stall {:.1}% of the time",
            self.mode.name(),
            self.cache_experts,
            self.eviction,
            self.predictor,
            100.0 * self.copies.hit_rate,
            self.pcie_bytes as f64 / 1e9,
            self.pcie_gbps,
            self.copy_ns as f64 / 1e6,
            100.0 * self.stall_share
        )
    }
}

impl OffloadPlan {
    /// Checks `spec` against `model`, `cluster` (one GPU with a PCIe path from host memory) and
    /// `trace` (token-level, the model's experts and MoE layers), and keeps the `steps` after
    /// the fitted tokens. Errors name `offload` or its key at fault.
    pub fn resolve(
        spec: &OffloadSpec,
        model: &MoeModel,
        cluster: &Cluster,
        trace: &Trace,
        steps: &mut Vec<Step>,
    ) -> Result<OffloadPlan> {
        let bad = |e: Error| Error::invalid(format!("`offload`: {e}"));
        if cluster.num_gpus() != 1 {
            return Err(Error::invalid(format!(
                "`offload` models one GPU with its experts in host memory; the expert-parallel \
                 group has {} GPUs (set `gpus = 1`)",
                cluster.num_gpus()
            )));
        }
        let path = HostPath::of(cluster).map_err(bad)?;
        let routing = token_routing(trace)?;
        check_trace(model, routing).map_err(bad)?;
        let cache = match (spec.cache_experts, spec.memory_gib) {
            (Some(cache), _) => {
                check_cache(model, cache, "offload.cache_experts")?;
                cache
            }
            (None, Some(gib)) => cache_for_budget(model, (gib * GIB) as u64, "offload.memory_gib")?,
            (None, None) => {
                return Err(Error::invalid(
                    "`offload` needs `cache_experts` or `memory_gib`",
                ));
            }
        };
        let fit_tokens = (routing.num_tokens() as f64 * spec.fit_fraction).floor() as usize;
        steps.retain(|s| s.first_token >= fit_tokens);
        if steps.is_empty() {
            return Err(Error::invalid(format!(
                "`offload.fit_fraction` leaves no step after the {fit_tokens} fitted tokens"
            )));
        }
        let plan = OffloadPlan {
            spec: spec.clone(),
            cache,
            path,
            fit_tokens,
        };
        // Fitted once here, so that a predictor the trace cannot feed fails before any step.
        plan.gpu(model, routing)?;
        Ok(plan)
    }

    /// A GPU with the plan's cache warmed and its predictor fitted on the first tokens.
    fn gpu(&self, model: &MoeModel, routing: &RoutingTrace) -> Result<OffloadGpu> {
        let spec = &self.spec;
        let settings = spec.predictor_settings().map_err(Error::invalid)?;
        let mut predictor = PREDICTORS
            .build(&spec.predictor, &settings)
            .map_err(|e| Error::invalid(format!("`offload.predictor`: {e}")))?
            .strategy;
        predictor.fit(routing, 0..self.fit_tokens).map_err(|e| {
            Error::invalid(format!("`offload.predictor` = {}: {e}", spec.predictor))
        })?;
        let eviction = EVICTIONS
            .build(&spec.eviction, &Settings::new())
            .map_err(|e| Error::invalid(format!("`offload.eviction`: {e}")))?
            .strategy;
        Ok(OffloadGpu::new(
            model,
            &self.path,
            routing,
            0..self.fit_tokens,
            self.cache,
            Strategy {
                mode: spec.mode(),
                eviction,
                predictor,
            },
        ))
    }

    /// GPU bytes the cached experts take, all MoE layers of `model`.
    pub fn cached_expert_bytes(&self, model: &MoeModel) -> f64 {
        (self.cache * model.num_moe_layers()) as f64 * model.expert_weight_bytes() as f64
    }

    /// What `copies` did over steps that took `time_ns` in all.
    fn summary(&self, model: &MoeModel, copies: CopyStats, time_ns: u64) -> OffloadSummary {
        let expert_bytes = model.expert_weight_bytes();
        OffloadSummary {
            mode: self.spec.mode(),
            cache_experts: self.cache,
            eviction: self.spec.eviction.clone(),
            predictor: self.spec.predictor.clone(),
            expert_bytes,
            pcie_gbps: self.path.gbps(),
            copy_ns: self.path.copy_ns(expert_bytes),
            pcie_bytes: copies.demand_bytes + copies.prefetch_bytes,
            stall_share: copies.stall_ns as f64 / time_ns.max(1) as f64,
            copies,
        }
    }
}

/// The token-level routing the cache walks; an error naming `offload` for a load trace.
fn token_routing(trace: &Trace) -> Result<&RoutingTrace> {
    match trace {
        Trace::Tokens(routing) => Ok(routing),
        Trace::Loads(_) => Err(Error::invalid(
            "`offload` needs a token-level trace (which experts each token picks); this one \
             holds only expert loads",
        )),
    }
}

/// The simulated steps' offloading, walked back to back (each followed by its LM head): each
/// step's stall, in step order, and what the copies did.
pub struct StepStalls {
    pub stalls: Vec<u64>,
    copies: CopyStats,
}

impl StepStalls {
    /// Walks `setup`'s steps through a fresh GPU of `plan`.
    pub fn walk(setup: &Setup, plan: &OffloadPlan) -> Result<StepStalls> {
        let routing = token_routing(&setup.trace)?;
        let costs = setup.kernel_costs();
        let mut gpu = plan.gpu(&setup.model, routing)?;
        let rows = |s: &Step| -> Vec<usize> { (s.first_token..s.first_token + s.tokens).collect() };
        let mut now = 0;
        let mut stalls = Vec::with_capacity(setup.steps.len());
        for (i, step) in setup.steps.iter().enumerate() {
            let next = setup.steps.get(i + 1).map(rows);
            let span = setup.attention_span(step);
            let walk = gpu.step(routing, &costs, now, &rows(step), &span, next.as_deref());
            now = walk.end_ns + costs.lm_head_ns(step.tokens as f64);
            stalls.push(walk.stall_ns);
        }
        Ok(StepStalls {
            stalls,
            copies: gpu.stats(),
        })
    }

    /// The summary against steps that took `time_ns` in all (their stalls included).
    pub fn summary(&self, setup: &Setup, plan: &OffloadPlan, time_ns: u64) -> OffloadSummary {
        plan.summary(&setup.model, self.copies.clone(), time_ns)
    }
}

/// A serving pool's offloading GPU: each priced batch takes the trace's next tokens after the
/// fitted ones (wrapping around), the last layer predicting nothing (the next batch is not
/// formed yet).
pub(super) struct ServeOffload {
    plan: OffloadPlan,
    gpu: OffloadGpu,
    /// Next row among the unfitted ones, counted from `plan.fit_tokens`.
    cursor: usize,
    /// When the GPU's last walked step ended (copies are timed from here when the engine's
    /// clock is behind it).
    clock_ns: u64,
    /// The priced steps' time, stalls included.
    busy_ns: u64,
}

impl ServeOffload {
    /// The offloading GPU of `setup`'s `[offload]`, if it has one.
    pub(super) fn of(setup: &Setup) -> Result<Option<ServeOffload>> {
        let Some(plan) = &setup.offload else {
            return Ok(None);
        };
        let gpu = plan.gpu(&setup.model, token_routing(&setup.trace)?)?;
        Ok(Some(ServeOffload {
            plan: plan.clone(),
            gpu,
            cursor: 0,
            clock_ns: 0,
            busy_ns: 0,
        }))
    }

    /// The stall of a step of `tokens` attending over `span`, starting at `now_ns` and taking
    /// `plain_ns` without copies.
    pub(super) fn stall(
        &mut self,
        setup: &Setup,
        costs: &KernelCosts,
        now_ns: u64,
        tokens: usize,
        span: &AttentionSpan,
        plain_ns: u64,
    ) -> Result<u64> {
        let routing = token_routing(&setup.trace)?;
        let first = self.plan.fit_tokens;
        let unfitted = routing.num_tokens() - first;
        let rows: Vec<usize> = (0..tokens)
            .map(|i| first + (self.cursor + i) % unfitted)
            .collect();
        self.cursor = (self.cursor + tokens) % unfitted;
        let start = now_ns.max(self.clock_ns);
        let walk = self.gpu.step(routing, costs, start, &rows, span, None);
        self.clock_ns = walk.end_ns;
        self.busy_ns += plain_ns + walk.stall_ns;
        Ok(walk.stall_ns)
    }

    /// What the copies did over the priced steps.
    pub(super) fn summary(&self, setup: &Setup) -> OffloadSummary {
        self.plan
            .summary(&setup.model, self.gpu.stats(), self.busy_ns)
    }
}
