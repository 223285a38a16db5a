//! `moesim serve`: a scenario's request traffic through the serving engine ([`crate::serve`]),
//! every step priced by the step simulator on routing drawn from the scenario's trace.
//!
//! Each pool (one colocated pool, or a prefill and a decode pool) is its own expert-parallel
//! group ([`Setup`] with that many GPUs, its own all-to-all), placed with the scenario's first
//! placement strategy (or the one asked for). A step of the pool takes the next tokens of the
//! trace in order (wrapping around; a trace of aggregate loads, or a step larger than the trace,
//! is priced from the trace's expert loads rescaled to the step), spreads each data-parallel
//! rank's tokens over its GPUs, and runs every MoE layer through the event simulator. Layers the
//! trace lacks are priced like the simulated ones; dense layers add their attention and FFN.
//!
//! `fidelity = "cached"` (the default) keeps up to [`SAMPLES_PER_SHAPE`] simulated steps per
//! batch shape (token counts and attention spans in ~9% and ~19% buckets) and reuses them in
//! turn; a sample of steps is priced both ways to state the cached tier's error.

use std::collections::HashMap;

use serde::Serialize;

use super::Setup;
use super::failure_impact::{NetworkFailureImpact, network_failure_impacts};
use super::kv_transfer::NetworkTransport;
use super::offload::{OffloadSummary, ServeOffload};
use super::replacement::{Failures, ReplacementEvent, Replacer, StepSample, initial_placement};
use super::request_routing::RequestRouting;
use super::steps::Step;
use crate::cost::DispatchTally;
use crate::cost::attention::{AttentionSpan, KV_BYTES};
use crate::error::{Error, Result};
use crate::placement::Placement;
use crate::scenario::Scenario;
use crate::serve::config::{Fidelity, RoutingOrder, ServingConfig};
use crate::serve::metrics::{Collector, PoolTotals, SecondRow, ServingSummary};
use crate::serve::{
    Engine, Handoff, Observer, Pool, PoolConfig, RankBatch, RequestRecord, Role, StepCost,
    StepPricer, StepRecord, TokenRun,
};
use crate::sim::kernels::{KERNEL_LAUNCH_NS, KernelCosts};
use crate::sim::simulate_step;
use crate::sim::step::{LayerWork, StepSpec};
use crate::topology::Cluster;
use crate::trace::Trace;

/// Simulated steps kept per batch shape in the cached tier.
pub const SAMPLES_PER_SHAPE: usize = 2;

/// Steps between two error samples of the cached tier (a prime, so samples fall on all
/// phases of periodic traffic).
const ERROR_SAMPLE_STRIDE: u64 = 101;

/// Activation memory one batched token takes while a step runs, in units of its hidden vector
/// (residual, normed input, attention and FFN intermediates, all-to-all buffers).
const ACTIVATION_HIDDEN_COPIES: f64 = 16.0;

/// What a serving run produced.
#[derive(Debug, Clone, Serialize)]
pub struct ServeResult {
    /// Scenario name.
    pub scenario: String,
    /// Model name.
    pub model: String,
    /// Cluster name.
    pub cluster: String,
    /// Placement strategy the pools' experts were placed with.
    pub placement: String,
    /// Overlap strategy the steps were simulated with.
    pub overlap: String,
    /// How steps were priced.
    pub fidelity: Fidelity,
    /// The `[replacement]` policy, when the scenario has one.
    pub replacement: Option<String>,
    /// The pools, entry pool first.
    pub pools: Vec<PoolReport>,
    /// Latencies, throughput, SLO attainment, goodput and cost.
    pub summary: ServingSummary,
    /// The cached tier against full simulation on a sample of steps (`None` under full
    /// fidelity or without samples).
    pub cached_error: Option<CachedError>,
    /// Elastic scaling and failures (`[scaling]`, `[[failures]]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elastic: Option<super::elastic::ElasticReport>,
    /// What each network failure (`[[failures]] kind = "network"`) did to serving.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_failures: Vec<NetworkFailureImpact>,
    /// One row per second of simulated time.
    #[serde(skip)]
    pub seconds: Vec<SecondRow>,
    /// TTFT, TPOT and E2E of every finished request, sorted, s (for the charts).
    #[serde(skip)]
    pub latencies: [Vec<f64>; 3],
}

/// One pool as it was set up.
#[derive(Debug, Clone, Serialize)]
pub struct PoolReport {
    /// Its settings (ranks, budget, KV blocks per rank).
    #[serde(flatten)]
    pub config: PoolConfig,
    /// Its all-to-all algorithm.
    pub all_to_all: String,
    /// KV-cache tokens of one rank.
    pub kv_tokens_per_rank: u64,
    /// KV-cache bytes one token takes on one GPU, all layers.
    pub kv_bytes_per_token: f64,
    /// Weight bytes on each GPU.
    pub weight_bytes_per_gpu: f64,
    /// Distinct batch shapes simulated (cached tier).
    pub shapes_simulated: usize,
    /// Steps simulated in the event simulator.
    pub steps_simulated: u64,
    /// The dispatch policy's pairs over the simulated steps (`[dispatch]`).
    pub dispatch: DispatchTally,
    /// Share of the simulated steps' routed pairs dropped over capacity (the quality proxy).
    pub dropped_share: f64,
    /// Its re-placements (`[replacement]`), in time order.
    pub replacements: Vec<ReplacementEvent>,
    /// What its expert copies from host memory did (`[offload]`), stalls in its step times.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offload: Option<OffloadSummary>,
    /// Its steps over time (`[replacement]`), for the charts.
    #[serde(skip)]
    pub timeline: Vec<StepSample>,
    /// What its steps did.
    pub totals: PoolTotals,
    /// Prompt tokens per second per node while the pool was stepping (its saturated rate when
    /// it never idled).
    pub busy_input_tokens_per_s_per_node: f64,
    /// Decode tokens per second per node while the pool was stepping.
    pub busy_output_tokens_per_s_per_node: f64,
    /// Decode tokens per second per node over the steps in which every rank ran `max_running`
    /// requests (0 when it never did): the pool's throughput at full batch.
    pub saturated_output_tokens_per_s_per_node: f64,
}

/// The cached tier's step times against full simulation of the same steps.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CachedError {
    /// Steps priced both ways.
    pub samples: usize,
    /// Mean of |cached - full| / full.
    pub mean_abs: f64,
    /// Largest |cached - full| / full.
    pub max_abs: f64,
    /// Mean of (cached - full) / full: the bias.
    pub mean: f64,
}

/// Serves `scenario`'s `[workload]` with its `[serving]` engine, experts placed by `placement`
/// (the scenario's first strategy when `None`); every finished or rejected request goes to
/// `records` as it leaves, and `progress` hears the simulated time now and then.
pub fn serve(
    scenario: &Scenario,
    placement: Option<&str>,
    records: &mut dyn FnMut(&RequestRecord) -> Result<()>,
    progress: &mut dyn FnMut(f64),
) -> Result<ServeResult> {
    let (serving, workload) = match (&scenario.serving, &scenario.workload) {
        (Some(serving), Some(workload)) => (serving, workload),
        _ => {
            return Err(Error::invalid(
                "`moesim serve` needs a `[serving]` table and a `[workload]` table in the scenario",
            ));
        }
    };
    let placement = placement.unwrap_or(&scenario.placements[0]).to_string();
    let (trace, source) = super::load_trace(scenario)?;
    let layout = pool_layout(scenario, serving)?;
    let elastic = super::elastic::ElasticPlan::of(scenario, serving)?;
    let mut configs = Vec::new();
    let mut reports = Vec::new();
    let mut pricers = Vec::new();
    for (role, gpus, settings) in &layout {
        let gpus = elastic.as_ref().map_or(*gpus, |e| e.base_gpus);
        let (pricer, mut config, report) = pool_pricer(
            scenario,
            &trace,
            &source,
            &placement,
            (*role, gpus, settings),
        )?;
        if let Some(elastic) = &elastic {
            // Ranks for the most units; the scaler says how many serve.
            config.ranks = elastic.max_ranks(config.gpus / config.ranks);
            config.gpus = elastic.max_gpus();
        }
        configs.push(config);
        reports.push(report);
        pricers.push(pricer);
    }
    let handoff = match layout.len() {
        2 => Some(handoff(scenario, &pricers[1].setup, &reports)?),
        _ => None,
    };
    let gpus: usize = match &elastic {
        Some(plan) => plan.max_gpus(),
        None => layout.iter().map(|(_, gpus, _)| gpus).sum(),
    };
    let per_node = pricers[0].setup.cluster.gpus_per_node();
    let mut collector = Collector::new(serving.slo);
    let mut controller = match &elastic {
        Some(plan) => Some(plan.controller(scenario, serving, &pricers[0].setup, &reports[0])?),
        None => None,
    };
    {
        let mut pools = Vec::new();
        for (config, pricer) in configs.into_iter().zip(pricers.iter_mut()) {
            let per_rank = config.gpus / config.ranks;
            let pricer: Box<dyn StepPricer> = match &elastic {
                Some(plan) => Box::new(plan.pricer(pricer, per_rank, |gpus| {
                    let pool = (Role::Colocated, gpus, &layout[0].2);
                    Ok(pool_pricer(scenario, &trace, &source, &placement, pool)?.0)
                })),
                None => Box::new(pricer),
            };
            pools.push(Pool::new(config, pricer, &serving.policy, &serving.assign)?);
        }
        let mut engine = match handoff {
            Some(handoff) => {
                let decode = pools.pop().expect("two pools");
                let prefill = pools.pop().expect("two pools");
                Engine::disaggregated(prefill, decode, handoff)
            }
            None => Engine::colocated(pools.pop().expect("one pool")),
        };
        if let Some(controller) = &mut controller {
            engine = engine.with_scaler(controller);
        }
        let mut tee = Tee {
            collector: &mut collector,
            records,
        };
        engine.run(workload.open()?, &mut tee, &mut |ns| {
            progress(ns as f64 / 1e9)
        })?;
    }
    let mut summary = collector.summary(
        gpus as u64,
        gpus.div_ceil(per_node) as u64,
        serving.price_per_gpu_hour,
    );
    let elastic = match (&elastic, &controller) {
        (Some(plan), Some(controller)) => {
            Some(plan.report(controller, &mut summary, collector.seconds()))
        }
        _ => None,
    };
    for (report, pricer) in reports.iter_mut().zip(&pricers) {
        report.shapes_simulated = pricer.cache.len();
        report.steps_simulated = pricer.simulated;
        report.dispatch = pricer.tally;
        report.dropped_share = pricer.tally.dropped_share();
        if let Some(replacer) = &pricer.replacer {
            report.replacements = replacer.events.clone();
            report.timeline = replacer.timeline.clone();
        }
        report.offload = pricer.offload.as_ref().map(|o| o.summary(&pricer.setup));
        report.totals = collector.pool_totals(report.config.role);
        let nodes = report.config.gpus.div_ceil(per_node) as f64;
        let per_busy_node = |tokens: u64| match report.totals.busy_s {
            0.0 => 0.0,
            busy => tokens as f64 / busy / nodes,
        };
        report.busy_input_tokens_per_s_per_node = per_busy_node(report.totals.prefill_tokens);
        report.busy_output_tokens_per_s_per_node = per_busy_node(report.totals.decode_tokens);
        report.saturated_output_tokens_per_s_per_node = match report.totals.saturated_s {
            0.0 => 0.0,
            busy => report.totals.saturated_decode_tokens as f64 / busy / nodes,
        };
    }
    let errors: Vec<(u64, u64)> = pricers
        .iter()
        .flat_map(|p| p.error_samples.iter().copied())
        .collect();
    let first = &pricers[0].setup;
    Ok(ServeResult {
        scenario: scenario.name.clone(),
        model: first.model.name.clone(),
        cluster: scenario.cluster.clone(),
        placement,
        overlap: first.sim.overlaps[0].name.to_string(),
        fidelity: serving.fidelity,
        replacement: scenario.replacement.as_ref().map(|r| r.policy.clone()),
        pools: reports,
        summary,
        cached_error: cached_error(&errors),
        elastic,
        network_failures: network_failure_impacts(&scenario.failures, collector.seconds()),
        seconds: collector.seconds().to_vec(),
        latencies: collector.latencies(),
    })
}

/// The pricer of one pool of (role, GPUs, settings), its resolved settings and its report.
fn pool_pricer(
    scenario: &Scenario,
    trace: &Trace,
    source: &str,
    placement: &str,
    (role, gpus, settings): (Role, usize, &PoolSettings),
) -> Result<(SimPricer, PoolConfig, PoolReport)> {
    let serving = scenario
        .serving
        .as_ref()
        .expect("serve checked `[serving]`");
    let mut pool_scenario = scenario.clone();
    pool_scenario.gpus = Some(gpus);
    if let Some(all_to_all) = &settings.all_to_all {
        pool_scenario.sim.all_to_all = all_to_all.clone();
    }
    let setup = Setup::new(&pool_scenario, trace.clone(), source.to_string())?;
    let placed = initial_placement(scenario.replacement.as_ref(), &setup, placement)?;
    let (config, report) = pool_config(&setup, serving, settings, role)?;
    let by_request = match (serving.routing, &setup.trace) {
        (RoutingOrder::InOrder, _) => None,
        (RoutingOrder::ByRequest, Trace::Tokens(routing)) => {
            Some(RequestRouting::new(routing, scenario.seed))
        }
        (RoutingOrder::ByRequest, Trace::Loads(_)) => {
            return Err(Error::invalid(
                "`serving.routing` = \"by-request\" needs a trace of tokens; the scenario's trace holds expert loads only",
            ));
        }
    };
    let failures = Failures::new(&scenario.failures, &setup.cluster)?;
    let replacer = scenario
        .replacement
        .as_ref()
        .map(|config| Replacer::new(config, &setup, &placed));
    let mut pricer = SimPricer::new(setup, placed, serving, by_request);
    pricer.failures = failures;
    pricer.replacer = replacer;
    pricer.offload = ServeOffload::of(&pricer.setup)?;
    Ok((pricer, config, report))
}

/// A pool's own knobs over the `[serving]` table's.
struct PoolSettings {
    all_to_all: Option<String>,
    max_batch_tokens: u64,
    max_running: usize,
    dp: Option<usize>,
}

/// The pools of `serving`: (role, GPUs, settings), entry pool first. Disaggregated pools must
/// fit the cluster together.
fn pool_layout(
    scenario: &Scenario,
    serving: &ServingConfig,
) -> Result<Vec<(Role, usize, PoolSettings)>> {
    let base = |overrides: Option<&crate::serve::config::PoolOverrides>| {
        let o = overrides.cloned().unwrap_or_default();
        PoolSettings {
            all_to_all: o.all_to_all,
            max_batch_tokens: o.max_batch_tokens.unwrap_or(serving.max_batch_tokens),
            max_running: o.max_running.unwrap_or(serving.max_running),
            dp: o.dp.or(serving.dp),
        }
    };
    let cluster_gpus = crate::topology::Cluster::resolve(&scenario.cluster)?.num_gpus();
    Ok(match &serving.disaggregation {
        None => vec![(
            Role::Colocated,
            scenario.gpus.unwrap_or(cluster_gpus),
            base(None),
        )],
        Some(split) => {
            if split.prefill_gpus + split.decode_gpus > cluster_gpus {
                return Err(Error::invalid(format!(
                    "`serving.disaggregation`: {} prefill + {} decode GPUs exceed the {cluster_gpus} GPUs of cluster `{}`",
                    split.prefill_gpus, split.decode_gpus, scenario.cluster
                )));
            }
            vec![
                (
                    Role::Prefill,
                    split.prefill_gpus,
                    base(Some(&split.prefill)),
                ),
                (Role::Decode, split.decode_gpus, base(Some(&split.decode))),
            ]
        }
    })
}

/// A pool's resolved settings: its ranks and the KV blocks left on each after the weights and
/// the activations, and what it reports.
fn pool_config(
    setup: &Setup,
    serving: &ServingConfig,
    settings: &PoolSettings,
    role: Role,
) -> Result<(PoolConfig, PoolReport)> {
    let gpus = setup.gpus();
    let ranks = settings.dp.unwrap_or(gpus / setup.tp);
    if ranks == 0 || !gpus.is_multiple_of(ranks) {
        return Err(Error::invalid(format!(
            "`serving.dp` = {ranks} must divide the pool's {gpus} GPUs"
        )));
    }
    let model = &setup.model;
    let gpu = setup.cluster.gpu_spec(0);
    let gpus_per_rank = (gpus / ranks) as f64;
    // Experts are spread over the expert-parallel ranks; every other weight is held whole by
    // each attention rank, split over its GPUs.
    // With `[offload]` only the cached experts are on the GPU.
    let experts_per_gpu = model.num_experts.div_ceil(gpus / setup.tp) as f64 / setup.tp as f64;
    let expert_bytes = match &setup.offload {
        Some(plan) => plan.cached_expert_bytes(model),
        None => {
            model.num_moe_layers() as f64 * experts_per_gpu * model.expert_weight_bytes() as f64
        }
    };
    let weights = expert_bytes + model.non_expert_weight_bytes() / gpus_per_rank;
    let activations = settings.max_batch_tokens as f64
        * model.hidden_size as f64
        * ACTIVATION_HIDDEN_COPIES
        * model.dense_bytes_per_param.max(2.0)
        + settings.max_running as f64 * model.vocab_size as f64 * 4.0;
    let usable = gpu.memory_bytes as f64 * serving.gpu_memory_utilization;
    let free = usable - weights - activations;
    // MLA's latent is kept whole by every GPU of a rank; GQA's heads are split over them.
    let per_token =
        (model.attention.kv_elems_per_token() as f64 * KV_BYTES * model.num_layers as f64)
            / match model.attention {
                crate::model::Attention::Mla { .. } => 1.0,
                crate::model::Attention::Gqa { .. } => gpus_per_rank,
            };
    let kv_tokens = if free > 0.0 {
        (free / per_token) as u64
    } else {
        0
    };
    let kv_blocks = kv_tokens / serving.block_size;
    if kv_blocks == 0 {
        return Err(Error::invalid(format!(
            "`serving`: on {gpus} x {} ({:.1} GiB usable each) the weights ({:.1} GiB per GPU) and activations ({:.1} GiB) leave no memory for the KV cache of the {role:?} pool",
            gpu.name,
            usable / GIB,
            weights / GIB,
            activations / GIB
        )));
    }
    let config = PoolConfig {
        role,
        ranks,
        gpus,
        max_batch_tokens: settings.max_batch_tokens,
        max_running: settings.max_running,
        chunked_prefill: serving.chunked_prefill,
        block_size: serving.block_size,
        kv_blocks,
        prefix_caching: serving.prefix_caching,
    };
    let report = PoolReport {
        config: config.clone(),
        all_to_all: setup.sim.all_to_all.name.to_string(),
        kv_tokens_per_rank: kv_blocks * serving.block_size,
        kv_bytes_per_token: per_token,
        weight_bytes_per_gpu: weights,
        shapes_simulated: 0,
        steps_simulated: 0,
        dispatch: DispatchTally::default(),
        dropped_share: 0.0,
        replacements: Vec::new(),
        offload: None,
        timeline: Vec::new(),
        totals: PoolTotals::default(),
        busy_input_tokens_per_s_per_node: 0.0,
        busy_output_tokens_per_s_per_node: 0.0,
        saturated_output_tokens_per_s_per_node: 0.0,
    };
    Ok((config, report))
}

const GIB: f64 = (1u64 << 30) as f64;

/// How the decode pool receives KV caches: as flows from the prefill ranks' GPUs (the
/// scenario cluster's first GPUs) to the decode ranks' GPUs (the next ones) on the cluster's
/// network, RDMA over the NICs as Mooncake's and NIXL's transfer engines send them.
fn handoff(
    scenario: &Scenario,
    decode: &Setup,
    reports: &[PoolReport],
) -> Result<Handoff<'static>> {
    let per_rank = |report: &PoolReport| report.config.gpus / report.config.ranks;
    let (prefill, decode_report) = (&reports[0], &reports[1]);
    let cluster = Cluster::resolve(&scenario.cluster)?;
    let transport = NetworkTransport::new(
        cluster.clone(),
        Failures::new(&scenario.failures, &cluster)?,
        &decode.sim.links,
        prefill.config.gpus,
        per_rank(prefill),
        per_rank(decode_report),
    );
    Ok(Handoff {
        transport: Box::new(transport),
        kv_bytes_per_token: decode_report.kv_bytes_per_token * per_rank(decode_report) as f64,
    })
}

/// The engine's records to the collector and to the caller.
struct Tee<'a> {
    collector: &'a mut Collector,
    records: &'a mut dyn FnMut(&RequestRecord) -> Result<()>,
}

impl Observer for Tee<'_> {
    fn arrival(&mut self, arrival_ns: u64) {
        self.collector.arrival(arrival_ns);
    }
    fn request(&mut self, record: &RequestRecord) -> Result<()> {
        (self.records)(record)?;
        self.collector.request(record)
    }
    fn step(&mut self, record: &StepRecord) {
        self.collector.step(record);
    }
}

/// The error statistics of (cached, full) step-time pairs.
fn cached_error(pairs: &[(u64, u64)]) -> Option<CachedError> {
    if pairs.is_empty() {
        return None;
    }
    let errors: Vec<f64> = pairs
        .iter()
        .map(|&(cached, full)| (cached as f64 - full as f64) / full.max(1) as f64)
        .collect();
    let n = errors.len() as f64;
    Some(CachedError {
        samples: errors.len(),
        mean_abs: errors.iter().map(|e| e.abs()).sum::<f64>() / n,
        max_abs: errors.iter().fold(0.0, |m, e| m.max(e.abs())),
        mean: errors.iter().sum::<f64>() / n,
    })
}

/// A batch shape, bucketed: tokens and prefill tokens in steps of 2^(1/8), the attention spans
/// and the busiest rank's share in steps of 2^(1/4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ShapeKey([u32; 5]);

fn bucket(x: f64, per_doubling: f64) -> u32 {
    if x < 1.0 {
        0
    } else {
        (x.log2() * per_doubling) as u32 + 1
    }
}

impl ShapeKey {
    fn of(ranks: &[RankBatch]) -> ShapeKey {
        let tokens: u64 = ranks.iter().map(RankBatch::tokens).sum();
        let prefill: u64 = ranks.iter().map(|r| r.prefill_tokens).sum();
        let span = span_of(ranks);
        let busiest = ranks.iter().map(RankBatch::tokens).max().unwrap_or(0);
        let share = 64.0 * busiest as f64 * ranks.len() as f64 / tokens.max(1) as f64;
        ShapeKey([
            bucket(tokens as f64, 8.0),
            bucket(prefill as f64, 8.0),
            bucket(span.prefill_keys, 4.0),
            bucket(span.decode_keys, 4.0),
            bucket(share, 4.0),
        ])
    }
}

/// What the step's tokens attend over, as means over all its tokens.
fn span_of(ranks: &[RankBatch]) -> AttentionSpan {
    let tokens = ranks.iter().map(RankBatch::tokens).sum::<u64>().max(1) as f64;
    AttentionSpan {
        prefill_keys: ranks.iter().map(|r| r.prefill_keys).sum::<f64>() / tokens,
        decode_keys: ranks.iter().map(|r| r.decode_keys).sum::<f64>() / tokens,
    }
}

/// Prices a pool's steps with the event simulator.
pub(super) struct SimPricer {
    pub(super) setup: Setup,
    placement: Placement,
    costs: KernelCosts,
    /// The trace's expert loads, for steps it has no tokens for.
    loads: Trace,
    /// Next token of the trace to route (in trace order).
    cursor: usize,
    /// Each request's own rows of the trace (by request).
    by_request: Option<RequestRouting>,
    fidelity: Fidelity,
    /// `[serving] engine_efficiency`: steps take their simulated time over it.
    engine_efficiency: f64,
    cache: HashMap<ShapeKey, (Vec<StepCost>, usize)>,
    error_samples: Vec<(u64, u64)>,
    max_error_samples: usize,
    priced: u64,
    simulated: u64,
    /// The dispatch policy's pairs over the simulated steps.
    tally: DispatchTally,
    /// When the step being priced starts.
    now_ns: u64,
    /// Network failures still to come.
    failures: Failures,
    /// Re-placement state (`[replacement]`).
    replacer: Option<Replacer>,
    /// The GPU's expert cache and copies (`[offload]`).
    offload: Option<ServeOffload>,
}

impl SimPricer {
    fn new(
        setup: Setup,
        placement: Placement,
        serving: &ServingConfig,
        by_request: Option<RequestRouting>,
    ) -> SimPricer {
        let loads = Trace::Loads(setup.trace.expert_loads());
        SimPricer {
            by_request,
            costs: setup.kernel_costs(),
            setup,
            placement,
            loads,
            cursor: 0,
            fidelity: serving.fidelity,
            engine_efficiency: serving.engine_efficiency,
            cache: HashMap::new(),
            error_samples: Vec::new(),
            max_error_samples: serving.error_samples,
            priced: 0,
            simulated: 0,
            tally: DispatchTally::default(),
            now_ns: 0,
            failures: Failures::none(),
            replacer: None,
            offload: None,
        }
    }

    /// The next `tokens` tokens of routing as a step: the trace's tokens in order when it has
    /// that many, else its loads rescaled.
    fn next_step(&mut self, tokens: usize) -> (Step, bool) {
        let whole = Step {
            phase: None,
            first_token: 0,
            tokens,
        };
        match &self.setup.trace {
            Trace::Tokens(routing) if tokens <= routing.num_tokens() => {
                if self.cursor + tokens > routing.num_tokens() {
                    self.cursor = 0;
                }
                let step = Step {
                    first_token: self.cursor,
                    ..whole
                };
                self.cursor += tokens;
                (step, true)
            }
            _ => (whole, false),
        }
    }

    /// Simulates one step of `ranks` (made of `runs`) through every layer of the model.
    fn simulate(&mut self, ranks: &[RankBatch], runs: &[TokenRun]) -> Result<StepCost> {
        self.simulated += 1;
        let tokens: u64 = ranks.iter().map(RankBatch::tokens).sum();
        let mut layers = match (&self.by_request, &self.setup.trace) {
            (Some(by_request), Trace::Tokens(routing)) => {
                let rows = runs.iter().flat_map(|run| by_request.rows(run));
                let own = Trace::Tokens(routing.gather_tokens(rows));
                let step = Step {
                    phase: None,
                    first_token: 0,
                    tokens: tokens as usize,
                };
                self.setup.layer_work_from(&own, &self.placement, &step)?
            }
            _ => {
                let (step, from_tokens) = self.next_step(tokens as usize);
                let trace = if from_tokens {
                    &self.setup.trace
                } else {
                    &self.loads
                };
                self.setup.layer_work_from(trace, &self.placement, &step)?
            }
        };
        layers.iter().for_each(|layer| self.tally.add(&layer.tally));
        if let Some(replacer) = &mut self.replacer {
            replacer.observe(&layers, &self.placement);
        }
        let setup = &self.setup;
        // Each rank's tokens start on its own GPUs (the plan spread the step's evenly).
        let gpus = setup.gpus();
        let per_rank = gpus / ranks.len();
        for layer in &mut layers {
            for (gpu, source) in layer.source_tokens.iter_mut().enumerate() {
                *source = ranks[gpu / per_rank].tokens() as f64 / per_rank as f64;
            }
        }
        let span = span_of(ranks);
        let spec = StepSpec {
            cluster: &setup.cluster,
            costs: &self.costs,
            attention: span,
            layers: &layers,
            all_to_all: &*setup.sim.all_to_all,
            links: setup.sim.links,
        };
        let simulated = simulate_step(&spec, &setup.sim.overlaps[0], "serve");
        let model = &setup.model;
        let moe_ns =
            simulated.step_ns as f64 * model.num_moe_layers() as f64 / layers.len().max(1) as f64;
        let busiest =
            ranks.iter().map(RankBatch::tokens).max().unwrap_or(0) as f64 / per_rank as f64;
        let dense_layers = (model.num_layers - model.num_moe_layers()) as f64;
        let dense_ffn = model.dense_ffn().map_or(0, |ffn| {
            setup
                .compute
                .ffn_time_ns(setup.cluster.gpu_spec(0), &ffn, busiest)
                + KERNEL_LAUNCH_NS
        });
        let dense_ns = dense_layers * (self.costs.attention_ns(busiest, &span) + dense_ffn) as f64;
        // The busiest-sampling rank's logits (each rank computes its own, DP like attention).
        let samples = ranks.iter().map(|r| r.samples).max().unwrap_or(0) as f64;
        let lm_head_ns = self.costs.lm_head_ns(samples / per_rank as f64) as f64;
        Ok(StepCost {
            ns: ((moe_ns + dense_ns + lm_head_ns) / self.engine_efficiency)
                .ceil()
                .max(1.0) as u64,
            imbalance: imbalance(&layers),
        })
    }
}

/// Busiest GPU's routed tokens over the mean, averaged over the layers.
fn imbalance(layers: &[LayerWork]) -> f64 {
    let per_layer: Vec<f64> = layers
        .iter()
        .filter_map(|layer| {
            let loads: Vec<f64> = layer.expert_tokens.iter().map(|e| e.iter().sum()).collect();
            let mean = loads.iter().sum::<f64>() / loads.len() as f64;
            (mean > 0.0).then(|| loads.iter().fold(0.0_f64, |m, &l| m.max(l)) / mean)
        })
        .collect();
    if per_layer.is_empty() {
        1.0
    } else {
        per_layer.iter().sum::<f64>() / per_layer.len() as f64
    }
}

impl StepPricer for SimPricer {
    /// Installs, before the step, a failure due by then (the cluster rerouted) and a placement
    /// an asynchronous migration landed; either empties the cache of step costs.
    fn starts_at(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
        if let Some(cluster) = self.failures.due(now_ns) {
            self.setup.cluster = cluster;
            self.cache.clear();
        }
        if let Some(placement) = self.replacer.as_mut().and_then(|r| r.landed(now_ns)) {
            self.placement = placement;
            self.cache.clear();
        }
    }

    /// The step's cost, plus its wait for experts copied from host memory and the stall of a
    /// synchronous re-placement it triggers.
    fn price(&mut self, ranks: &[RankBatch], runs: &[TokenRun]) -> Result<StepCost> {
        let mut cost = self.price_step(ranks, runs)?;
        if let Some(offload) = &mut self.offload {
            let tokens = ranks.iter().map(RankBatch::tokens).sum::<u64>() as usize;
            let span = span_of(ranks);
            cost.ns += offload.stall(
                &self.setup,
                &self.costs,
                self.now_ns,
                tokens,
                &span,
                cost.ns,
            )?;
        }
        if let Some(replacer) = &mut self.replacer
            && let Some((placement, stall_ns)) =
                replacer.step_done(&self.setup, &self.placement, self.now_ns, cost)?
        {
            self.placement = placement;
            self.cache.clear();
            cost.ns += stall_ns;
        }
        Ok(cost)
    }
}

impl SimPricer {
    /// The step's cost under the current cluster and placement.
    fn price_step(&mut self, ranks: &[RankBatch], runs: &[TokenRun]) -> Result<StepCost> {
        self.priced += 1;
        if self.fidelity == Fidelity::Full {
            return self.simulate(ranks, runs);
        }
        let key = ShapeKey::of(ranks);
        let cached = match self.cache.get_mut(&key) {
            Some((samples, next)) if samples.len() >= SAMPLES_PER_SHAPE => {
                let cost = samples[*next % samples.len()];
                *next += 1;
                Some(cost)
            }
            _ => None,
        };
        let cost = match cached {
            Some(cost) => {
                if self.priced.is_multiple_of(ERROR_SAMPLE_STRIDE)
                    && self.error_samples.len() < self.max_error_samples
                {
                    let full = self.simulate(ranks, runs)?;
                    self.error_samples.push((cost.ns, full.ns));
                }
                cost
            }
            None => {
                let cost = self.simulate(ranks, runs)?;
                self.cache.entry(key).or_default().0.push(cost);
                cost
            }
        };
        Ok(cost)
    }
}
