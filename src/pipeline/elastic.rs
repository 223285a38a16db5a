//! Elastic scaling for `moesim serve`: the scale unit in GPUs, the pricer of whatever capacity
//! serves (a replica per unit, or one expert-parallel group of the active GPUs), the timing of
//! each mechanism from the model's weight bytes, storage and the cluster's links, and the report.
//!
//! Timings (weights per GPU `w(g)` = the routed experts over the `g` GPUs of the group plus the
//! non-expert weights, which every data-parallel attention rank holds whole):
//! - horizontal up: `provision_s + w(u) / storage_gbps` (a replica of `u` GPUs loads in
//!   parallel); down: at once, the replica's requests recomputed on the others;
//! - vertical: `restart_s + w(g') / storage_gbps` of downtime, every GPU reloading its shard;
//! - fine-grained up: `join_s` plus the peer-to-peer copies run as flows on the cluster's
//!   network (each new GPU `j` pulls `w(g')` from GPU `j mod g`); down: `join_s` plus each
//!   leaving GPU sending its experts to GPU `j mod g'`;
//! - a failure: the lost experts are read from storage by the survivors (fine-grained,
//!   vertical: with the restart); a horizontal replica just stops.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Setup;
use super::serve::{PoolReport, SimPricer};
use crate::error::{Error, Result};
use crate::scenario::{Failure, Scenario};
use crate::serve::config::ServingConfig;
use crate::serve::metrics::{SecondRow, ServingSummary};
use crate::serve::scaling::{
    Elastic, GpuFailure, Mechanism, Plan, ScaleEvent, ScaleTiming, ScalingConfig, Unit,
};
use crate::serve::{RankBatch, StepCost, StepPricer, TokenRun};
use crate::sim::LinkSettings;
use crate::sim::transfer::transfers_ns;
use crate::topology::Cluster;

const NS: f64 = 1e9;

/// A scenario's elastic settings, resolved against its cluster.
pub struct ElasticPlan {
    config: ScalingConfig,
    failures: Vec<GpuFailure>,
    /// GPUs of one scale unit.
    pub unit_gpus: usize,
    /// GPUs of the setup the pool's settings come from (one replica, or the smallest group).
    pub base_gpus: usize,
}

impl ElasticPlan {
    /// The plan of `scenario` (`None` without a `[scaling]` table); errors name the field.
    pub fn of(scenario: &Scenario, serving: &ServingConfig) -> Result<Option<ElasticPlan>> {
        let gpu_failures: Vec<(usize, GpuFailure)> = scenario
            .failures
            .iter()
            .enumerate()
            .filter_map(|(i, failure)| match failure {
                Failure::Gpu(gpu) => Some((i, *gpu)),
                Failure::Network(_) => None,
            })
            .collect();
        let Some(config) = &scenario.scaling else {
            if !gpu_failures.is_empty() {
                return Err(Error::invalid(
                    "`failures` of kind \"gpu\" need a `[scaling]` table (its `mechanism` recovers \
                     from them)",
                ));
            }
            return Ok(None);
        };
        if serving.disaggregation.is_some() {
            return Err(Error::invalid(
                "`scaling`: elastic scaling serves one colocated pool; drop `serving.disaggregation`",
            ));
        }
        let cluster = Cluster::resolve(&scenario.cluster)?;
        let unit_gpus = match config.knobs.unit {
            Unit::Gpu => scenario.tp,
            Unit::Node => cluster.gpus_per_node(),
            Unit::EpGroup => scenario.gpus.unwrap_or(cluster.num_gpus()),
        };
        config
            .check(unit_gpus, cluster.num_gpus())
            .map_err(Error::invalid)?;
        for (i, failure) in &gpu_failures {
            failure
                .check(*i, cluster.num_gpus())
                .map_err(Error::invalid)?;
        }
        let base_gpus = match config.knobs.mechanism {
            Mechanism::Horizontal => unit_gpus,
            _ => config.knobs.min_units * unit_gpus,
        };
        Ok(Some(ElasticPlan {
            config: config.clone(),
            failures: gpu_failures.iter().map(|(_, failure)| *failure).collect(),
            unit_gpus,
            base_gpus,
        }))
    }

    /// GPUs of the most units.
    pub fn max_gpus(&self) -> usize {
        self.config.knobs.max_units * self.unit_gpus
    }

    /// Data-parallel ranks of the most units, `gpus_per_rank` GPUs each.
    pub fn max_ranks(&self, gpus_per_rank: usize) -> usize {
        self.max_gpus() / gpus_per_rank
    }

    /// The pricer of whatever serves in ranks of `gpus_per_rank`: `base` prices the base
    /// setup's GPU count, `build` makes the pricer of another.
    pub(super) fn pricer<'a>(
        &self,
        base: &'a mut SimPricer,
        gpus_per_rank: usize,
        build: impl FnMut(usize) -> Result<SimPricer> + 'a,
    ) -> ElasticPricer<'a> {
        ElasticPricer {
            base,
            base_gpus: self.base_gpus,
            gpus_per_rank,
            replica_ranks: (self.config.knobs.mechanism == Mechanism::Horizontal)
                .then_some(self.unit_gpus / gpus_per_rank),
            others: BTreeMap::new(),
            build: Box::new(build),
            runs: Vec::new(),
        }
    }

    /// The controller, timed from `setup`'s model and the scenario's cluster.
    pub fn controller(
        &self,
        scenario: &Scenario,
        serving: &ServingConfig,
        setup: &Setup,
        report: &PoolReport,
    ) -> Result<Elastic<'static>> {
        let model = &setup.model;
        let timing = Timing {
            mechanism: self.config.knobs.mechanism,
            knobs: self.config.knobs.clone(),
            unit_gpus: self.unit_gpus,
            expert_bytes: (model.num_moe_layers() * model.num_experts) as f64
                * model.expert_weight_bytes() as f64,
            non_expert_bytes: model.non_expert_weight_bytes() / scenario.tp as f64,
            cluster: Cluster::resolve(&scenario.cluster)?,
            links: setup.sim.links,
        };
        let gpus_per_rank = report.config.gpus / report.config.ranks;
        Elastic::new(
            &self.config,
            &self.failures,
            self.unit_gpus,
            gpus_per_rank,
            serving.slo,
            Box::new(timing),
        )
        .map_err(Error::invalid)
    }

    /// The report of a run `controller` scaled; the summary's GPU-hours and cost become the
    /// GPUs billed over time.
    pub fn report(
        &self,
        controller: &Elastic,
        summary: &mut ServingSummary,
        seconds: &[SecondRow],
    ) -> ElasticReport {
        let end_ns = (summary.duration_s * NS) as u64;
        let gpu_hours = controller.gpu_hours(end_ns);
        if summary.gpu_hours > 0.0 {
            summary.cost_per_million_output_tokens *= gpu_hours / summary.gpu_hours;
        }
        summary.gpu_hours = gpu_hours;
        let events = controller.events().to_vec();
        let latency = |kind: &str| {
            let spans: Vec<f64> = events
                .iter()
                .filter(|e| e.kind == kind)
                .map(|e| e.ready_s - e.start_s)
                .collect();
            (!spans.is_empty()).then(|| spans.iter().sum::<f64>() / spans.len() as f64)
        };
        let ups: Vec<(f64, f64)> = events
            .iter()
            .filter(|e| e.kind == "up")
            .map(|e| (e.start_s, e.ready_s))
            .collect();
        let failures = events
            .iter()
            .filter(|e| e.kind == "failure")
            .map(|e| {
                // The failure lasts until its spare serves (or its rebuild ends).
                let spare = events
                    .iter()
                    .find(|s| s.kind == "spare" && s.start_s == e.start_s);
                let ready_s = spare.map_or(e.ready_s, |s| s.ready_s.max(e.ready_s));
                let span = (ready_s - e.start_s).max(1.0);
                let window = |from: f64, to: f64| Window {
                    output_tokens_per_s: throughput(seconds, &[(from, to)]),
                    ttft_mean_s: controller.mean_ttft(from, to),
                };
                FailureImpact {
                    at_s: e.start_s,
                    recovered_s: ready_s,
                    requests_affected: e.recomputed + e.kept_kv,
                    recomputed: e.recomputed,
                    before: window(e.start_s - span, e.start_s),
                    during: window(e.start_s, ready_s.max(e.start_s + 1.0)),
                    after: window(ready_s, ready_s + span),
                }
            })
            .collect();
        let mut gpus_by_second = vec![0; seconds.len()];
        for &(from, gpus) in controller.billed() {
            let first = (from as f64 / NS).floor() as usize;
            for slot in gpus_by_second.iter_mut().skip(first) {
                *slot = gpus;
            }
        }
        ElasticReport {
            mechanism: self.config.knobs.mechanism,
            unit: self.config.knobs.unit,
            unit_gpus: self.unit_gpus,
            policy: self.config.policy.clone(),
            provision_s: self.config.knobs.provision_s,
            storage_gbps: self.config.knobs.storage_gbps,
            restart_s: self.config.knobs.restart_s,
            join_s: self.config.knobs.join_s,
            scale_up_s: latency("up"),
            scale_down_s: latency("down"),
            output_tokens_per_s_scaling: throughput(seconds, &ups),
            output_tokens_per_s: summary.output_tokens_per_s,
            gpu_hours,
            cost: gpu_hours * summary.price_per_gpu_hour,
            events,
            failures,
            gpus_by_second,
        }
    }
}

/// Decode tokens per second over the seconds overlapping `spans` (0 without any).
fn throughput(seconds: &[SecondRow], spans: &[(f64, f64)]) -> f64 {
    let mut tokens = 0;
    let mut count = 0;
    for row in seconds {
        let (a, b) = (row.second as f64, row.second as f64 + 1.0);
        if spans.iter().any(|&(from, to)| a < to && b > from) {
            tokens += row.decode_tokens;
            count += 1;
        }
    }
    if count == 0 {
        0.0
    } else {
        tokens as f64 / count as f64
    }
}

/// What elastic scaling did in a run.
#[derive(Debug, Clone, Serialize)]
pub struct ElasticReport {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The scale unit.
    pub unit: Unit,
    /// GPUs of one unit.
    pub unit_gpus: usize,
    /// The autoscaler policy.
    pub policy: String,
    /// Horizontal provisioning, s.
    pub provision_s: f64,
    /// Storage read rate per GPU, GB/s.
    pub storage_gbps: f64,
    /// Vertical restart, s.
    pub restart_s: f64,
    /// Fine-grained join, s.
    pub join_s: f64,
    /// Mean scale-up latency (decision to serving), s.
    pub scale_up_s: Option<f64>,
    /// Mean scale-down latency, s.
    pub scale_down_s: Option<f64>,
    /// Output tokens per second over the seconds a scale-up was under way.
    pub output_tokens_per_s_scaling: f64,
    /// Output tokens per second over the run.
    pub output_tokens_per_s: f64,
    /// GPU-hours billed (GPUs held over time, new ones from the decision to add them).
    pub gpu_hours: f64,
    /// `gpu_hours x price_per_gpu_hour`.
    pub cost: f64,
    /// Every change, in order.
    pub events: Vec<ScaleEvent>,
    /// Each failure's effect.
    pub failures: Vec<FailureImpact>,
    /// GPUs billed in each second of the run.
    #[serde(skip)]
    pub gpus_by_second: Vec<usize>,
}

/// Throughput and latency around a failure.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FailureImpact {
    /// When the GPU failed, s.
    pub at_s: f64,
    /// When the capacity was back (spare serving) or the shrunk group served again, s.
    pub recovered_s: f64,
    /// Requests on the lost GPUs or restarted.
    pub requests_affected: u64,
    /// Of those, the ones recomputed.
    pub recomputed: u64,
    /// As long before the failure as it lasted.
    pub before: Window,
    /// While it lasted.
    pub during: Window,
    /// As long after.
    pub after: Window,
}

/// One span of a run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Window {
    /// Output tokens per second.
    pub output_tokens_per_s: f64,
    /// Mean TTFT of the requests arriving in it, s.
    pub ttft_mean_s: f64,
}

/// Prices the serving ranks: each replica on its own (the step takes the slowest) or the one
/// expert-parallel group at its GPU count.
pub(super) struct ElasticPricer<'a> {
    base: &'a mut SimPricer,
    base_gpus: usize,
    gpus_per_rank: usize,
    /// Ranks of one replica (horizontal scaling).
    replica_ranks: Option<usize>,
    others: BTreeMap<usize, SimPricer>,
    build: Box<dyn FnMut(usize) -> Result<SimPricer> + 'a>,
    runs: Vec<TokenRun>,
}

impl StepPricer for ElasticPricer<'_> {
    fn price(&mut self, ranks: &[RankBatch], runs: &[TokenRun]) -> Result<StepCost> {
        if let Some(per) = self.replica_ranks {
            let mut slowest = StepCost {
                ns: 1,
                imbalance: 1.0,
            };
            for (replica, batches) in ranks.chunks(per).enumerate() {
                let first = replica * per;
                self.runs.clear();
                self.runs.extend(
                    runs.iter()
                        .filter(|r| (first..first + per).contains(&r.rank))
                        .map(|r| TokenRun {
                            rank: r.rank - first,
                            ..*r
                        }),
                );
                let cost = self.base.price(batches, &self.runs)?;
                if cost.ns > slowest.ns {
                    slowest = cost;
                }
            }
            return Ok(slowest);
        }
        let gpus = ranks.len() * self.gpus_per_rank;
        if gpus == self.base_gpus {
            return self.base.price(ranks, runs);
        }
        let pricer = match self.others.entry(gpus) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert((self.build)(gpus)?),
        };
        pricer.price(ranks, runs)
    }
}

/// Each mechanism's timing on one model and cluster.
struct Timing {
    mechanism: Mechanism,
    knobs: crate::serve::scaling::ScalingKnobs,
    unit_gpus: usize,
    /// Routed experts' bytes, all layers.
    expert_bytes: f64,
    /// Bytes every GPU holds whole.
    non_expert_bytes: f64,
    cluster: Cluster,
    links: LinkSettings,
}

impl Timing {
    /// Weight bytes on each GPU of a group of `gpus`.
    fn per_gpu(&self, gpus: usize) -> f64 {
        self.expert_bytes / gpus as f64 + self.non_expert_bytes
    }

    /// `bytes` from storage on each GPU in parallel, ns.
    fn storage_read_ns(&self, bytes: f64) -> u64 {
        (bytes / self.knobs.storage_gbps).ceil() as u64
    }

    fn seconds(s: f64) -> u64 {
        (s * NS).round() as u64
    }
}

impl ScaleTiming for Timing {
    fn change(&mut self, from: usize, to: usize) -> Plan {
        let (g0, g1) = (from * self.unit_gpus, to * self.unit_gpus);
        match self.mechanism {
            Mechanism::Horizontal if to > from => {
                let w = self.per_gpu(self.unit_gpus);
                Plan {
                    ns: Self::seconds(self.knobs.provision_s) + self.storage_read_ns(w),
                    bytes: w * self.unit_gpus as f64,
                }
            }
            Mechanism::Horizontal => Plan::default(),
            Mechanism::Vertical => {
                let w = self.per_gpu(g1);
                Plan {
                    ns: Self::seconds(self.knobs.restart_s) + self.storage_read_ns(w),
                    bytes: w * g1 as f64,
                }
            }
            Mechanism::FineGrained if g0 == 0 => {
                // No peer left (the last GPU failed): the weights come from storage.
                let w = self.per_gpu(g1);
                Plan {
                    ns: Self::seconds(self.knobs.join_s) + self.storage_read_ns(w),
                    bytes: w * g1 as f64,
                }
            }
            Mechanism::FineGrained => {
                let flows: Vec<(usize, usize, u64)> = if g1 > g0 {
                    let w = self.per_gpu(g1).ceil() as u64;
                    (g0..g1).map(|j| (j % g0, j, w)).collect()
                } else {
                    let experts = (self.expert_bytes / g0 as f64).ceil() as u64;
                    (g1..g0).map(|j| (j, j % g1, experts)).collect()
                };
                Plan {
                    ns: Self::seconds(self.knobs.join_s)
                        + transfers_ns(&self.cluster, &self.links, &flows),
                    bytes: flows.iter().map(|f| f.2 as f64).sum(),
                }
            }
        }
    }

    fn restore(&mut self, from: usize, to: usize) -> Plan {
        let (g0, g1) = (from * self.unit_gpus, to * self.unit_gpus);
        let lost = self.expert_bytes / g0 as f64 * self.unit_gpus as f64;
        let reload = self.storage_read_ns(lost / g1.max(1) as f64);
        match self.mechanism {
            Mechanism::Horizontal => Plan::default(),
            Mechanism::Vertical => Plan {
                ns: Self::seconds(self.knobs.restart_s) + reload,
                bytes: lost,
            },
            Mechanism::FineGrained => Plan {
                ns: Self::seconds(self.knobs.join_s) + reload,
                bytes: lost,
            },
        }
    }
}

#[cfg(test)]
mod tests;
