//! Elastic scaling and GPU failures: the `[scaling]` and `[[failures]]` tables, and the
//! controller that changes how many data-parallel ranks of the entry pool serve over time.
//!
//! Capacity comes in scale units (one GPU, one node or one expert-parallel group). The engine
//! asks the controller at every step boundary of the entry pool what changes ([`Scaler`]); the
//! controller runs the autoscaler policy ([`super::autoscale::AUTOSCALERS`]) under a cooldown,
//! replays the failures, and times each change with a [`ScaleTiming`] the pipeline provides (the
//! bytes each mechanism moves over storage or the simulated links). What each mechanism does to
//! the requests follows its description:
//!
//! - horizontal: a new replica serves once provisioned and loaded; a removed one's requests are
//!   recomputed on the others;
//! - vertical: the expert-parallel group restarts at the new size: the pool stops for the
//!   rebuild and every running request's KV cache is lost (recomputed);
//! - fine-grained (ElasticMoE, vLLM elastic EP): new GPUs receive their weights from peers while
//!   the old ones serve and join between two steps; leaving GPUs hand their requests over with
//!   their KV cache.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::autoscale::{AUTOSCALERS, Autoscaler, Signal};
use super::config::Slo;
use super::metrics::RequestRecord;
use crate::registry::{Named, Settings, positive};

const NS: f64 = 1e9;

/// What one scale unit is.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    /// One GPU.
    #[default]
    Gpu,
    /// One node of the cluster.
    Node,
    /// One expert-parallel group of the scenario's `gpus`.
    EpGroup,
}

/// How capacity is added or removed.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// Replicas of one unit each, provisioned and loaded from storage.
    #[default]
    Horizontal,
    /// One expert-parallel group rebuilt at the new size (downtime).
    Vertical,
    /// One expert-parallel group that GPUs join or leave between steps, weights peer to peer.
    FineGrained,
}

impl Mechanism {
    /// Every mechanism, in report order.
    pub const ALL: [Mechanism; 3] = [
        Mechanism::Horizontal,
        Mechanism::Vertical,
        Mechanism::FineGrained,
    ];

    /// Its name in the scenario.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Horizontal => "horizontal",
            Mechanism::Vertical => "vertical",
            Mechanism::FineGrained => "fine-grained",
        }
    }
}

/// Keys of `[scaling]` that are not the policy's.
const MECHANISM_KEYS: [&str; 12] = [
    "policy",
    "cooldown_s",
    "unit",
    "mechanism",
    "min_units",
    "max_units",
    "initial_units",
    "provision_s",
    "storage_gbps",
    "restart_s",
    "join_s",
    "window_s",
];

/// The `[scaling]` table: the policy (its knobs beside it), the unit, the mechanism and its
/// timings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(try_from = "Settings")]
pub struct ScalingConfig {
    /// Autoscaler policy, by name.
    pub policy: String,
    /// The policy's own knobs (`metric`, `up`, `down`, `unit_rps`, ...).
    pub policy_settings: Settings,
    /// Everything else.
    pub knobs: ScalingKnobs,
}

/// The `[scaling]` keys that are not the policy's.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScalingKnobs {
    /// Autoscaler policy, by name (`none`, `threshold`, `predictive`).
    #[serde(default = "ScalingKnobs::default_policy")]
    pub policy: String,
    /// No policy action within this long of the last one ending, s.
    #[serde(default = "ScalingKnobs::default_cooldown_s")]
    pub cooldown_s: f64,
    /// The scale unit.
    #[serde(default)]
    pub unit: Unit,
    /// The scale mechanism.
    #[serde(default)]
    pub mechanism: Mechanism,
    /// Fewest units.
    #[serde(default = "one")]
    pub min_units: usize,
    /// Most units (their GPUs must fit the cluster).
    pub max_units: usize,
    /// Units at the start (default `min_units`).
    #[serde(default)]
    pub initial_units: Option<usize>,
    /// Horizontal: provisioning a machine before its weights load, s.
    #[serde(default = "ScalingKnobs::default_provision_s")]
    pub provision_s: f64,
    /// Weights read from storage per GPU, GB/s (horizontal loads, vertical restarts).
    #[serde(default = "ScalingKnobs::default_storage_gbps")]
    pub storage_gbps: f64,
    /// Vertical: the engine's restart (process, communicators, graphs), s.
    #[serde(default = "ScalingKnobs::default_restart_s")]
    pub restart_s: f64,
    /// Fine-grained: rebuilding the communicators and expert maps when GPUs join or leave, s
    /// (vLLM elastic EP: about 3-4 s with split communicators).
    #[serde(default = "ScalingKnobs::default_join_s")]
    pub join_s: f64,
    /// Window over which the arrival rate and SLO misses are measured, s.
    #[serde(default = "ScalingKnobs::default_window_s")]
    pub window_s: f64,
}

fn one() -> usize {
    1
}

impl ScalingKnobs {
    fn default_policy() -> String {
        "threshold".into()
    }
    fn default_cooldown_s() -> f64 {
        30.0
    }
    fn default_provision_s() -> f64 {
        60.0
    }
    fn default_storage_gbps() -> f64 {
        2.0
    }
    fn default_restart_s() -> f64 {
        30.0
    }
    fn default_join_s() -> f64 {
        3.5
    }
    fn default_window_s() -> f64 {
        10.0
    }

    /// Units at the start.
    pub fn initial(&self) -> usize {
        self.initial_units.unwrap_or(self.min_units)
    }
}

impl TryFrom<Settings> for ScalingConfig {
    type Error = String;

    fn try_from(table: Settings) -> Result<Self, String> {
        let (mine, policy): (Settings, Settings) = table
            .into_iter()
            .partition(|(key, _)| MECHANISM_KEYS.contains(&key.as_str()));
        let knobs: ScalingKnobs = toml::Value::Table(mine)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        Ok(ScalingConfig {
            policy: knobs.policy.clone(),
            policy_settings: policy,
            knobs,
        })
    }
}

impl ScalingConfig {
    /// The policy, built.
    pub fn autoscaler(&self) -> Result<Named<dyn Autoscaler>, String> {
        AUTOSCALERS.build(&self.policy, &self.policy_settings)
    }

    /// Checks every value against a cluster of `cluster_gpus` GPUs whose units hold
    /// `unit_gpus` GPUs; the message names the key (`scaling.max_units`).
    pub fn check(&self, unit_gpus: usize, cluster_gpus: usize) -> Result<(), String> {
        self.autoscaler().map_err(|m| format!("`scaling`: {m}"))?;
        let k = &self.knobs;
        if k.min_units == 0 {
            return Err("`scaling.min_units` must be at least 1".into());
        }
        if k.max_units < k.min_units {
            return Err(format!(
                "`scaling.max_units` = {} must be at least `scaling.min_units` = {}",
                k.max_units, k.min_units
            ));
        }
        if k.max_units * unit_gpus > cluster_gpus {
            return Err(format!(
                "`scaling.max_units` = {} units of {unit_gpus} GPUs exceed the cluster's {cluster_gpus} GPUs",
                k.max_units
            ));
        }
        if !(k.min_units..=k.max_units).contains(&k.initial()) {
            return Err(format!(
                "`scaling.initial_units` = {} must be in `min_units..=max_units`",
                k.initial()
            ));
        }
        for (key, value) in [
            ("cooldown_s", k.cooldown_s),
            ("provision_s", k.provision_s),
            ("restart_s", k.restart_s),
            ("join_s", k.join_s),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(format!(
                    "`scaling.{key}` = {value} must be a non-negative number"
                ));
            }
        }
        positive("scaling.storage_gbps", k.storage_gbps)?;
        positive("scaling.window_s", k.window_s)
    }
}

/// How the pool recovers from a failure.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Recover {
    /// A spare unit is brought in through the scale mechanism at once.
    #[default]
    Spare,
    /// The pool goes on with one unit fewer.
    Shrink,
}

/// A `[[failures]]` entry of `kind = "gpu"`: one GPU of the pool fails.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GpuFailure {
    /// The GPU (cluster index).
    pub gpu: usize,
    /// When, s.
    pub at_s: f64,
    /// How the pool recovers.
    #[serde(default)]
    pub recover: Recover,
}

impl GpuFailure {
    /// Checks the entry (`i`-th) against a cluster of `cluster_gpus` GPUs.
    pub fn check(&self, i: usize, cluster_gpus: usize) -> Result<(), String> {
        if self.gpu >= cluster_gpus {
            return Err(format!(
                "`failures[{i}].gpu` = {} does not exist: the cluster has GPUs 0..{cluster_gpus}",
                self.gpu
            ));
        }
        if !(self.at_s >= 0.0 && self.at_s.is_finite()) {
            return Err(format!(
                "`failures[{i}].at_s` = {} must be a non-negative number",
                self.at_s
            ));
        }
        Ok(())
    }
}

/// How long a change of the unit count takes and what it moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Plan {
    /// From the decision to the new capacity serving, ns.
    pub ns: u64,
    /// Bytes moved (weights from storage or peers, KV caches).
    pub bytes: f64,
}

/// Times the changes of one mechanism (the pipeline's, from the model's weights and the
/// cluster's links).
pub trait ScaleTiming {
    /// Going from `from` units to `to`.
    fn change(&mut self, from: usize, to: usize) -> Plan;
    /// Serving again on `to` units after one of `from` failed (its experts rebuilt).
    fn restore(&mut self, from: usize, to: usize) -> Plan;
}

/// What happens to the requests of ranks that leave (or of every rank, on a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// Handed over with their KV cache.
    KeepKv,
    /// Their KV cache is lost: recomputed elsewhere.
    Recompute,
}

/// A capacity change for the engine to apply now.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Ranks whose GPUs failed (their requests are recomputed), ascending.
    pub failed: Vec<usize>,
    /// Active ranks from now on (after the failed ones are gone).
    pub ranks: usize,
    /// What happens to the requests of ranks that leave.
    pub moved: Moved,
    /// Whether every running request loses its KV (a restart).
    pub restart: bool,
    /// The pool steps no earlier than this, ns.
    pub pause_until_ns: u64,
}

/// The engine's side of elastic scaling.
pub trait Scaler {
    /// Active ranks at the start.
    fn initial_ranks(&self) -> usize;
    /// A request arrived.
    fn arrival(&mut self, arrival_ns: u64);
    /// A request finished.
    fn finished(&mut self, record: &RequestRecord);
    /// What changes at `signal.now_ns` (the engine fills the queue and slots; the scaler the
    /// rates and SLO misses).
    fn poll(&mut self, signal: Signal) -> Option<Change>;
    /// The last change recomputed `recomputed` requests and moved `kept` with their KV.
    fn applied(&mut self, recomputed: u64, kept: u64);
}

/// One change of capacity, as it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleEvent {
    /// `up`, `down`, `failure` or `spare`.
    pub kind: &'static str,
    /// When it was decided (or the GPU failed), s.
    pub start_s: f64,
    /// When the mechanism was done and the new capacity could serve, s (a failure's pause in
    /// between delays it further: that is the failure's recovery).
    pub ready_s: f64,
    /// Units before.
    pub from_units: usize,
    /// Units after.
    pub to_units: usize,
    /// Bytes it moved.
    pub bytes: f64,
    /// Requests whose KV cache was lost (recomputed).
    pub recomputed: u64,
    /// Requests handed over with their KV cache.
    pub kept_kv: u64,
}

/// A change decided and not done yet.
#[derive(Debug, Clone, Copy)]
struct Pending {
    event: usize,
    ready_ns: u64,
    /// Units it adds to (or takes from) the serving ones when done (a vertical restart: 0, its
    /// units counted at once).
    delta: isize,
    /// Units billed beyond the serving ones until it is done (new ones loading, or a vertical
    /// restart's leaving ones).
    held: usize,
}

/// The controller: policy, cooldown, failures and mechanism timing.
pub struct Elastic<'t> {
    knobs: ScalingKnobs,
    policy: Named<dyn Autoscaler>,
    timing: Box<dyn ScaleTiming + 't>,
    slo: Slo,
    ranks_per_unit: usize,
    gpus_per_rank: usize,
    units: usize,
    /// Failures not happened yet, by time.
    failures: VecDeque<GpuFailure>,
    /// Changes in flight, in the order decided (a failure cancels none of them).
    pending: Vec<Pending>,
    cooldown_until_ns: u64,
    /// The pool stops (a restart, a failure's rebuild) until this, ns.
    paused_until_ns: u64,
    /// Whether the queue left by the last pause is still to be read (at the pool's first step
    /// boundary after it).
    backlog_unread: bool,
    /// The queue the last pause left and the pool has not worked off yet: the lowest queue
    /// since it resumed.
    backlog: u64,
    arrivals: VecDeque<u64>,
    finished: VecDeque<(u64, bool)>,
    events: Vec<ScaleEvent>,
    /// Billed GPUs from each time on: (ns, GPUs).
    billed: Vec<(u64, usize)>,
    unit_gpus: usize,
    /// The event whose change the engine applied last.
    change_event: usize,
    /// (arrival, TTFT) of every finished request, s.
    ttfts: Vec<(f64, f64)>,
}

impl<'t> Elastic<'t> {
    /// A controller of `config` for units of `unit_gpus` GPUs in ranks of `gpus_per_rank`,
    /// failing `failures`, judged against `slo`, timed by `timing`.
    pub fn new(
        config: &ScalingConfig,
        failures: &[GpuFailure],
        unit_gpus: usize,
        gpus_per_rank: usize,
        slo: Slo,
        timing: Box<dyn ScaleTiming + 't>,
    ) -> Result<Elastic<'t>, String> {
        let mut failures = failures.to_vec();
        failures.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        let units = config.knobs.initial();
        Ok(Elastic {
            policy: config.autoscaler()?,
            knobs: config.knobs.clone(),
            timing,
            slo,
            ranks_per_unit: unit_gpus / gpus_per_rank,
            gpus_per_rank,
            units,
            failures: failures.into(),
            pending: Vec::new(),
            cooldown_until_ns: 0,
            paused_until_ns: 0,
            backlog_unread: false,
            backlog: 0,
            arrivals: VecDeque::new(),
            finished: VecDeque::new(),
            events: Vec::new(),
            billed: vec![(0, units * unit_gpus)],
            unit_gpus,
            change_event: 0,
            ttfts: Vec::new(),
        })
    }

    /// The changes so far.
    pub fn events(&self) -> &[ScaleEvent] {
        &self.events
    }

    /// Mean TTFT of the finished requests that arrived in `from_s..to_s` (0 without any), s.
    pub fn mean_ttft(&self, from_s: f64, to_s: f64) -> f64 {
        let inside: Vec<f64> = self
            .ttfts
            .iter()
            .filter(|(a, _)| (from_s..to_s).contains(a))
            .map(|t| t.1)
            .collect();
        if inside.is_empty() {
            return 0.0;
        }
        inside.iter().sum::<f64>() / inside.len() as f64
    }

    /// Billed GPUs over time: (from ns, GPUs).
    pub fn billed(&self) -> &[(u64, usize)] {
        &self.billed
    }

    /// GPU-hours billed up to `end_ns`.
    pub fn gpu_hours(&self, end_ns: u64) -> f64 {
        let mut hours = 0.0;
        for (i, &(from, gpus)) in self.billed.iter().enumerate() {
            let to = self.billed.get(i + 1).map_or(end_ns, |b| b.0).max(from);
            hours += gpus as f64 * (to.min(end_ns).saturating_sub(from)) as f64 / NS / 3600.0;
        }
        hours
    }

    /// Bills, from `at_ns`, the serving units and those held by changes in flight.
    fn bill(&mut self, at_ns: u64) {
        let held: usize = self.pending.iter().map(|p| p.held).sum();
        let gpus = (self.units + held) * self.unit_gpus;
        // Several changes at one instant bill only what they leave.
        while self.billed.last().is_some_and(|&(t, _)| t == at_ns) {
            self.billed.pop();
        }
        if self.billed.last().is_none_or(|&(_, g)| g != gpus) {
            self.billed.push((at_ns, gpus));
        }
    }

    /// The pool stops until `until_ns`: changes in flight serve no earlier, and the queue it
    /// leaves is read when it resumes.
    fn pause(&mut self, until_ns: u64) {
        self.paused_until_ns = self.paused_until_ns.max(until_ns);
        self.backlog_unread = true;
        for pending in &mut self.pending {
            pending.ready_ns = pending.ready_ns.max(until_ns);
        }
    }

    fn window_ns(&self) -> u64 {
        (self.knobs.window_s * NS) as u64
    }

    /// Starts a change of `delta` units at `now_ns` (from the units serving once the changes in
    /// flight are done); returns what the engine does at once.
    fn start(&mut self, now_ns: u64, delta: isize, kind: &'static str) -> Option<Change> {
        let from = self
            .units
            .checked_add_signed(self.pending.iter().map(|p| p.delta).sum())?;
        let to = from.checked_add_signed(delta)?;
        let plan = self.timing.change(from, to);
        let ready_ns = now_ns + plan.ns;
        self.events.push(ScaleEvent {
            kind,
            start_s: now_ns as f64 / NS,
            ready_s: ready_ns as f64 / NS,
            from_units: from,
            to_units: to,
            bytes: plan.bytes,
            recomputed: 0,
            kept_kv: 0,
        });
        let event = self.events.len() - 1;
        self.change_event = event;
        if self.knobs.mechanism == Mechanism::Vertical {
            // The group restarts at the new size at once (a restart in flight restarts with
            // it); it serves again when rebuilt. Leaving GPUs are billed until then.
            self.units = to;
            self.pending.push(Pending {
                event,
                ready_ns,
                delta: 0,
                held: from.saturating_sub(to),
            });
            self.pause(ready_ns);
            self.bill(now_ns);
            return Some(Change {
                failed: Vec::new(),
                ranks: to * self.ranks_per_unit,
                moved: Moved::Recompute,
                restart: true,
                pause_until_ns: self.paused_until_ns,
            });
        }
        if delta < 0 && self.knobs.mechanism == Mechanism::Horizontal {
            // A replica leaves at once.
            self.units = self.units.checked_add_signed(delta)?;
            self.bill(now_ns);
            self.cooldown_until_ns = now_ns + (self.knobs.cooldown_s * NS) as u64;
            return Some(self.resize(now_ns, Moved::Recompute));
        }
        // New GPUs are billed from the decision, leaving ones until they are released.
        self.pending.push(Pending {
            event,
            ready_ns,
            delta,
            held: delta.max(0) as usize,
        });
        self.bill(now_ns);
        None
    }

    fn resize(&self, now_ns: u64, moved: Moved) -> Change {
        Change {
            failed: Vec::new(),
            ranks: self.units * self.ranks_per_unit,
            moved,
            restart: false,
            pause_until_ns: now_ns,
        }
    }

    /// The GPU of `failure` fails at `now_ns`.
    fn fail(&mut self, now_ns: u64, failure: GpuFailure) -> Option<Change> {
        let rank = failure.gpu / self.gpus_per_rank;
        if rank >= self.units * self.ranks_per_unit {
            return None;
        }
        // The failed GPU's unit is lost; the others serve on, the expert-parallel group
        // rebuilding its lost experts (vertical: a restart) before it steps again. Changes in
        // flight go on.
        let unit = rank / self.ranks_per_unit;
        let failed: Vec<usize> =
            (unit * self.ranks_per_unit..(unit + 1) * self.ranks_per_unit).collect();
        let from = self.units;
        let to = from - 1;
        let plan = self.timing.restore(from, to);
        self.events.push(ScaleEvent {
            kind: "failure",
            start_s: now_ns as f64 / NS,
            ready_s: (now_ns + plan.ns) as f64 / NS,
            from_units: from,
            to_units: to,
            bytes: plan.bytes,
            recomputed: 0,
            kept_kv: 0,
        });
        self.units = to;
        self.bill(now_ns);
        if plan.ns > 0 {
            self.pause(now_ns + plan.ns);
        }
        Some(Change {
            failed,
            ranks: to * self.ranks_per_unit,
            moved: Moved::KeepKv,
            restart: self.knobs.mechanism == Mechanism::Vertical,
            pause_until_ns: now_ns + plan.ns,
        })
    }

    /// The changes in flight done by `now_ns` (and before `before_ns`) take effect; returns
    /// what the engine does, `None` when nothing was done or nothing changes the ranks.
    fn land(&mut self, now_ns: u64, before_ns: u64) -> Option<Option<Change>> {
        let (mut done, left): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.ready_ns <= now_ns && p.ready_ns <= before_ns);
        self.pending = left;
        if done.is_empty() {
            return None;
        }
        done.sort_by_key(|p| p.ready_ns);
        let mut resized = false;
        for pending in done {
            self.units = self.units.saturating_add_signed(pending.delta);
            self.bill(pending.ready_ns);
            self.cooldown_until_ns = self
                .cooldown_until_ns
                .max(pending.ready_ns + (self.knobs.cooldown_s * NS) as u64);
            self.change_event = pending.event;
            resized |= pending.delta != 0;
        }
        Some(resized.then(|| self.resize(now_ns, Moved::KeepKv)))
    }
}

impl Scaler for Elastic<'_> {
    fn initial_ranks(&self) -> usize {
        self.units * self.ranks_per_unit
    }

    fn arrival(&mut self, arrival_ns: u64) {
        self.arrivals.push_back(arrival_ns);
    }

    fn finished(&mut self, record: &RequestRecord) {
        let end_ns = ((record.arrival_s + record.e2e_s) * NS) as u64;
        let met = self.slo.met(record.ttft_s, record.tpot_s);
        self.finished.push_back((end_ns, met));
        self.ttfts.push((record.arrival_s, record.ttft_s));
    }

    fn poll(&mut self, mut signal: Signal) -> Option<Change> {
        let now = signal.now_ns;
        let window = self.window_ns();
        while self.arrivals.front().is_some_and(|&t| t + 2 * window < now) {
            self.arrivals.pop_front();
        }
        while self
            .finished
            .front()
            .is_some_and(|&(t, _)| t + window < now)
        {
            self.finished.pop_front();
        }
        let recent = self.arrivals.iter().filter(|&&t| t + window >= now).count();
        signal.window_s = self.knobs.window_s;
        signal.arrival_rate = recent as f64 / self.knobs.window_s;
        signal.previous_rate = (self.arrivals.len() - recent) as f64 / self.knobs.window_s;
        let missed = self.finished.iter().filter(|(_, met)| !met).count();
        signal.slo_miss = missed as f64 / self.finished.len().max(1) as f64;
        // What waited through the last pause is worked off by the capacity there: it is read
        // when the pool resumes and shrinks with the queue.
        if self.backlog_unread && now >= self.paused_until_ns {
            self.backlog_unread = false;
            self.backlog = signal.queued;
        }
        self.backlog = self.backlog.min(signal.queued);
        signal.backlog = self.backlog;

        let failure_ns = self
            .failures
            .front()
            .map(|f| (f.at_s * NS) as u64)
            .filter(|&at| at <= now);
        // Changes done before the failure take effect first.
        if let Some(change) = self.land(now, failure_ns.unwrap_or(u64::MAX)) {
            return change;
        }
        if let Some(failure_ns) = failure_ns {
            let failure = self.failures.pop_front()?;
            // Seen at this step boundary, dated when it happened.
            let mut change = self.fail(failure_ns, failure)?;
            let failure_event = self.events.len() - 1;
            // Nothing serves without a unit: the last one is always replaced.
            if (failure.recover == Recover::Spare || self.units == 0)
                && let Some(spare) = self.start(failure_ns, 1, "spare")
            {
                // A vertical spare joins in the same restart.
                change.ranks = spare.ranks;
                change.pause_until_ns = change.pause_until_ns.max(spare.pause_until_ns);
            }
            if self.units == 0
                && let Some(ready_ns) = self.pending.iter().map(|p| p.ready_ns).max()
            {
                change.pause_until_ns = change.pause_until_ns.max(ready_ns);
                self.pause(ready_ns);
            }
            self.change_event = failure_event;
            return Some(change);
        }
        if !self.pending.is_empty() || now < self.cooldown_until_ns {
            return None;
        }
        let wanted = self
            .policy
            .strategy
            .desired(&signal, self.units)
            .clamp(self.knobs.min_units, self.knobs.max_units);
        match wanted.cmp(&self.units) {
            std::cmp::Ordering::Greater => self.start(now, 1, "up"),
            std::cmp::Ordering::Less => self.start(now, -1, "down"),
            std::cmp::Ordering::Equal => None,
        }
    }

    fn applied(&mut self, recomputed: u64, kept: u64) {
        if let Some(event) = self.events.get_mut(self.change_event) {
            event.recomputed += recomputed;
            event.kept_kv += kept;
        }
    }
}

#[cfg(test)]
mod tests;
