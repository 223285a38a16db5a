//! Expert re-placement and network failures on the serving timeline, inside a pool's step
//! pricer.
//!
//! [`Replacer`] keeps a moving window of the expert loads the pool's simulated steps routed,
//! checks its policy every `interval_steps` steps (or `interval_s` seconds), computes the new
//! placement with the configured strategy from the window, and times the weight transfers as
//! flows on the pool's links ([`transfers_ns`]: NVLink inside a machine, RDMA across, max-min
//! fair). Synchronous migrations stall the step that triggers them (planning plus transfers);
//! asynchronous ones run beside serving, layer after layer, and the new placement serves once
//! the last layer landed. [`Failures`] takes NICs, switches or links out of service at their
//! time, the routes recomputed around them ([`Cluster::with_failed_links`]).

use std::collections::VecDeque;

use serde::Serialize;

use super::Setup;
use crate::error::{Error, Result};
use crate::placement::Placement;
use crate::placement::replacement::{
    Check, MigrationMode, Move, ReplacementConfig, ReplacementPolicy, imbalance, keep_in_place,
    moves,
};
use crate::scenario::{Failure, NetworkFailure};
use crate::serve::StepCost;
use crate::sim::step::LayerWork;
use crate::sim::transfer::transfers_ns;
use crate::topology::Cluster;
use crate::trace::ExpertLoads;

/// One re-placement, as reported.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplacementEvent {
    /// When it was decided, s.
    pub at_s: f64,
    /// When the new placement started serving, s.
    pub serving_s: f64,
    /// Expert copies moved.
    pub experts_moved: usize,
    /// Weight bytes moved.
    pub bytes_moved: u64,
    /// Planning time, ms.
    pub planning_ms: f64,
    /// Transfer time, ms.
    pub transfer_ms: f64,
    /// Serving paused, ms (planning plus transfers when synchronous, 0 when asynchronous).
    pub stall_ms: f64,
    /// Most bytes one GPU held on top of its experts while receiving (one layer's incoming
    /// experts when asynchronous, every layer's when synchronous).
    pub extra_bytes_per_gpu: u64,
    /// Busiest GPU over the mean on the window's loads under the old placement.
    pub imbalance_before: f64,
    /// The same under the new placement.
    pub imbalance_after: f64,
}

/// One priced step of a pool with `[replacement]`, for the charts over time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSample {
    /// When it started, ns.
    pub start_ns: u64,
    /// Its duration with the stall of a synchronous re-placement it triggered, ns.
    pub ns: u64,
    /// Busiest GPU's routed tokens over the mean, averaged over the MoE layers.
    pub imbalance: f64,
}

/// The expert loads of the recent steps, in blocks of a tenth of the window: the window holds
/// the steps of its last ten whole blocks and the current one.
struct LoadWindow {
    block_steps: u64,
    /// (first step, per layer and expert the tokens routed), oldest first.
    blocks: VecDeque<(u64, Vec<f64>)>,
    window_steps: u64,
    layers: usize,
    experts: usize,
}

impl LoadWindow {
    fn new(window_steps: u64, layers: usize, experts: usize) -> LoadWindow {
        LoadWindow {
            block_steps: window_steps.div_ceil(10),
            blocks: VecDeque::new(),
            window_steps,
            layers,
            experts,
        }
    }

    /// Adds step `step`'s routed tokens (each GPU's tokens of each expert it holds under
    /// `placement`).
    fn add(&mut self, step: u64, layers: &[LayerWork], placement: &Placement) {
        let block = step - step % self.block_steps;
        if self.blocks.back().is_none_or(|(first, _)| *first != block) {
            self.blocks
                .push_back((block, vec![0.0; self.layers * self.experts]));
        }
        while self
            .blocks
            .front()
            .is_some_and(|(first, _)| first + self.block_steps + self.window_steps <= step + 1)
        {
            self.blocks.pop_front();
        }
        let loads = &mut self.blocks.back_mut().expect("pushed").1;
        for (layer, work) in layers.iter().enumerate().take(self.layers) {
            for (gpu, tokens) in work.expert_tokens.iter().enumerate() {
                for (&expert, &t) in placement.experts_on(layer, gpu).iter().zip(tokens) {
                    loads[layer * self.experts + expert as usize] += t;
                }
            }
        }
    }

    /// The window's loads; `None` before any step was added.
    fn loads(&self) -> Option<ExpertLoads> {
        let mut sum = vec![0.0; self.layers * self.experts];
        for (_, block) in &self.blocks {
            for (s, b) in sum.iter_mut().zip(block) {
                *s += b;
            }
        }
        if self.blocks.is_empty() || sum.iter().all(|&l| l == 0.0) {
            return None;
        }
        let rows = sum.chunks(self.experts).map(<[f64]>::to_vec).collect();
        ExpertLoads::new(self.experts, rows).ok()
    }
}

/// A pool's re-placement state.
pub struct Replacer {
    config: ReplacementConfig,
    policy: Box<dyn ReplacementPolicy>,
    window: LoadWindow,
    /// Weight bytes of one expert slot on one GPU.
    slot_bytes: u64,
    /// MoE layers of the model (the trace may have fewer; see [`model_moves`]).
    model_layers: usize,
    steps: u64,
    last_check_step: u64,
    last_check_ns: u64,
    /// An asynchronous migration in flight: when it lands and what then serves.
    pending: Option<(u64, Placement)>,
    /// The re-placements so far.
    pub events: Vec<ReplacementEvent>,
    /// Every step priced so far, in time order.
    pub timeline: Vec<StepSample>,
}

impl Replacer {
    /// The re-placement state of a pool set up as `setup`, placed as `placement`.
    pub fn new(config: &ReplacementConfig, setup: &Setup, placement: &Placement) -> Replacer {
        Replacer {
            policy: config.build_policy(),
            window: LoadWindow::new(
                config.window_steps,
                placement.num_layers(),
                placement.num_experts(),
            ),
            slot_bytes: setup.model.expert_weight_bytes() / setup.tp as u64,
            model_layers: setup.model.num_moe_layers().max(placement.num_layers()),
            config: config.clone(),
            steps: 0,
            last_check_step: 0,
            last_check_ns: 0,
            pending: None,
            events: Vec::new(),
            timeline: Vec::new(),
        }
    }

    /// The placement an asynchronous migration landed by `now_ns`, if one did.
    pub fn landed(&mut self, now_ns: u64) -> Option<Placement> {
        match &self.pending {
            Some((ready, _)) if *ready <= now_ns => self.pending.take().map(|(_, p)| p),
            _ => None,
        }
    }

    /// Adds a simulated step's routed tokens (under `placement`) to the window.
    pub fn observe(&mut self, layers: &[LayerWork], placement: &Placement) {
        self.window.add(self.steps, layers, placement);
    }

    /// After a step that started at `now_ns` and cost `cost` under `placement`: checks the
    /// policy when an interval has passed and, when it re-places synchronously, returns the new
    /// placement and the stall to add to the step. The step joins the timeline.
    pub fn step_done(
        &mut self,
        setup: &Setup,
        placement: &Placement,
        now_ns: u64,
        cost: StepCost,
    ) -> Result<Option<(Placement, u64)>> {
        let outcome = self.check(setup, placement, now_ns, cost.ns)?;
        self.timeline.push(StepSample {
            start_ns: now_ns,
            ns: cost.ns + outcome.as_ref().map_or(0, |(_, stall)| *stall),
            imbalance: cost.imbalance,
        });
        Ok(outcome)
    }

    /// The policy check and re-placement of [`Replacer::step_done`], without the timeline.
    fn check(
        &mut self,
        setup: &Setup,
        placement: &Placement,
        now_ns: u64,
        step_ns: u64,
    ) -> Result<Option<(Placement, u64)>> {
        self.steps += 1;
        let end_ns = now_ns + step_ns;
        let due = match self.config.interval_s {
            Some(s) => (end_ns - self.last_check_ns) as f64 >= s * 1e9,
            None => {
                self.steps - self.last_check_step
                    >= self
                        .config
                        .interval_steps
                        .unwrap_or(ReplacementConfig::DEFAULT_INTERVAL_STEPS)
            }
        };
        if !due || self.pending.is_some() {
            return Ok(None);
        }
        (self.last_check_step, self.last_check_ns) = (self.steps, end_ns);
        let Some(loads) = self.window.loads() else {
            return Ok(None);
        };
        let before = imbalance(placement, &loads)?;
        let check = Check {
            imbalance: before,
            threshold: self.config.threshold,
        };
        if !self.policy.due(&check) {
            return Ok(None);
        }
        let mut new = setup.place_with_loads(&self.config.strategy, &loads)?;
        if self.config.move_cost {
            new = keep_in_place(placement, &new)?;
        }
        let moved = model_moves(
            &moves(placement, &new, &setup.cluster),
            placement.num_layers(),
            self.model_layers,
        );
        let layers = self.model_layers;
        let planning_ns = self.config.planning_ns(layers);
        let sync = self.config.mode == MigrationMode::Sync;
        let transfer_ns = if sync {
            transfers_ns(&setup.cluster, &setup.sim.links, &self.transfers(&moved))
        } else {
            (0..layers)
                .map(|layer| {
                    let layer_moves: Vec<Move> =
                        moved.iter().filter(|m| m.layer == layer).copied().collect();
                    transfers_ns(
                        &setup.cluster,
                        &setup.sim.links,
                        &self.transfers(&layer_moves),
                    )
                })
                .sum()
        };
        let mut incoming = vec![vec![0u64; layers]; placement.num_gpus()];
        for m in &moved {
            incoming[m.to][m.layer] += self.slot_bytes;
        }
        let extra_bytes_per_gpu = incoming
            .iter()
            .map(|layers| match sync {
                true => layers.iter().sum(),
                false => layers.iter().copied().max().unwrap_or(0),
            })
            .max()
            .unwrap_or(0);
        let busy_ns = planning_ns + transfer_ns;
        self.events.push(ReplacementEvent {
            at_s: end_ns as f64 / 1e9,
            serving_s: (end_ns + busy_ns) as f64 / 1e9,
            experts_moved: moved.len(),
            bytes_moved: moved.len() as u64 * self.slot_bytes,
            planning_ms: planning_ns as f64 / 1e6,
            transfer_ms: transfer_ns as f64 / 1e6,
            stall_ms: if sync { busy_ns as f64 / 1e6 } else { 0.0 },
            extra_bytes_per_gpu,
            imbalance_before: before,
            imbalance_after: imbalance(&new, &loads)?,
        });
        if sync {
            Ok(Some((new, busy_ns)))
        } else {
            self.pending = Some((end_ns + busy_ns, new));
            Ok(None)
        }
    }

    /// `moved` as weight transfers.
    fn transfers(&self, moved: &[Move]) -> Vec<(usize, usize, u64)> {
        moved
            .iter()
            .map(|m| (m.from, m.to, self.slot_bytes))
            .collect()
    }
}

/// `moved` on a trace's `traced` layers for every one of the model's `model_layers` MoE layers:
/// a layer the trace lacks moves what the trace's layer of its index modulo `traced` moves, as
/// the step pricer prices the layers a trace lacks like those it has.
fn model_moves(moved: &[Move], traced: usize, model_layers: usize) -> Vec<Move> {
    if model_layers == traced {
        return moved.to_vec();
    }
    (0..model_layers)
        .flat_map(|layer| {
            moved
                .iter()
                .filter(move |m| m.layer == layer % traced)
                .map(move |m| Move { layer, ..*m })
        })
        .collect()
}

/// The placement a pool starts with: strategy `strategy` on the trace's loads, or with
/// `[replacement] initial_tokens` on the loads of the trace's first tokens only. The error names
/// the field when the trace has no tokens or too few.
pub fn initial_placement(
    config: Option<&ReplacementConfig>,
    setup: &Setup,
    strategy: &str,
) -> Result<Placement> {
    let Some(tokens) = config.and_then(|c| c.initial_tokens) else {
        return setup.place(strategy);
    };
    let field =
        |message: String| Error::invalid(format!("`replacement.initial_tokens`: {message}"));
    let routing = setup.trace.tokens().ok_or_else(|| {
        field("needs a trace of tokens; the scenario's trace holds expert loads only".into())
    })?;
    if tokens > routing.num_tokens() {
        return Err(field(format!(
            "{tokens} tokens but the trace has {}",
            routing.num_tokens()
        )));
    }
    setup.place_with_loads(strategy, &routing.slice_tokens(0..tokens).expert_loads())
}

/// The `[[failures]]` of a pool: its cluster with each failure's links out of service from its
/// time on (cumulatively), every degraded cluster built up front so that a failure leaving GPUs
/// without a path is an error before serving starts.
pub struct Failures {
    /// (from ns, the cluster from then on), in time order.
    due: VecDeque<(u64, Cluster)>,
}

impl Failures {
    /// No failures.
    pub fn none() -> Failures {
        Failures {
            due: VecDeque::new(),
        }
    }

    /// The failures of `failures` on `cluster`; the error names the entry whose component the
    /// cluster lacks or whose loss disconnects it.
    pub fn new(failures: &[Failure], cluster: &Cluster) -> Result<Failures> {
        // The network failures, by (time, entry index).
        let mut order: Vec<(usize, &NetworkFailure)> = failures
            .iter()
            .enumerate()
            .filter_map(|(i, failure)| match failure {
                Failure::Network(network) => Some((i, network)),
                Failure::Gpu(_) => None,
            })
            .collect();
        order.sort_by(|a, b| a.1.at_s.total_cmp(&b.1.at_s));
        let mut failed = Vec::new();
        let mut due = VecDeque::new();
        for (i, failure) in order {
            let links = cluster.component_links(&failure.component).ok_or_else(|| {
                Error::invalid(format!(
                    "`failures[{i}].component`: cluster `{}` has no component `{}` (name a \
                     node such as `n0/nic0`, `leaf0`, `spine`, or a link such as \
                     `n0/nic0->leaf0`)",
                    cluster.name(),
                    failure.component
                ))
            })?;
            failed.extend(links);
            let degraded = cluster.with_failed_links(&failed).map_err(|e| {
                Error::invalid(format!(
                    "`failures[{i}].component`: without `{}` {e}",
                    failure.component
                ))
            })?;
            due.push_back(((failure.at_s * 1e9).round() as u64, degraded));
        }
        Ok(Failures { due })
    }

    /// The cluster from `now_ns` on, when a failure happened since the last call.
    pub fn due(&mut self, now_ns: u64) -> Option<Cluster> {
        let mut latest = None;
        while self.due.front().is_some_and(|(at, _)| *at <= now_ns) {
            latest = self.due.pop_front().map(|(_, c)| c);
        }
        latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::LinkSettings;

    const EXACT: LinkSettings = LinkSettings {
        nvlink_efficiency: 1.0,
        rate_tolerance: 0.0,
    };

    #[test]
    fn k_experts_over_one_link_take_k_times_b_over_g_plus_the_latency() {
        // GPU 0 to GPU 1 of a DGX H100: NVLink up to the NVSwitch and down, 450 GB/s each way.
        let cluster = Cluster::preset("dgx-h100").unwrap();
        let route = cluster.route(0, 1);
        assert_eq!(route.links.len(), 2);
        let (g, latency) = (route.bottleneck_gbps, route.latency_ns);
        assert_eq!(g, 450.0);
        // Three Qwen3-30B-A3B experts: 3 x 2048 x 768 x 2 bytes = 9,437,184 bytes each.
        let b = 9_437_184;
        let k = 3;
        let ns = transfers_ns(&cluster, &EXACT, &vec![(0, 1, b); k]);
        assert_eq!(ns, (k as f64 * b as f64 / g).ceil() as u64 + latency);
        // 62,915 ns of bytes plus the two NVLink hops.
        assert_eq!(ns, 62_915 + latency);
        assert_eq!(transfers_ns(&cluster, &EXACT, &[]), 0);
    }

    #[test]
    fn a_failed_nics_traffic_takes_the_other_route() {
        let cluster = Cluster::preset("dgx-h100x2").unwrap();
        let b = 50_000_000;
        let g = cluster.route(0, 8).bottleneck_gbps;
        let both = [(0, 8, b), (1, 9, b)];
        // Each GPU on its own NIC: B / G each.
        let alone = (b as f64 / g).ceil() as u64;
        assert_eq!(
            transfers_ns(&cluster, &EXACT, &both),
            alone + cluster.route(0, 8).latency_ns
        );
        // NIC 0 of machine 0 fails: GPU 0's bytes leave by NIC 1, shared with GPU 1's.
        let failures = [Failure::Network(NetworkFailure {
            at_s: 30.0,
            component: "n0/nic0".into(),
        })];
        let mut schedule = Failures::new(&failures, &cluster).unwrap();
        assert!(schedule.due(29_999_999_999).is_none());
        let failed = schedule.due(30_000_000_000).unwrap();
        assert!(schedule.due(40_000_000_000).is_none());
        let rerouted = failed.route(0, 8);
        assert!(
            rerouted
                .links
                .iter()
                .any(|&l| failed.link(l).name == "n0/nic1->leaf1")
        );
        assert_eq!(
            transfers_ns(&failed, &EXACT, &both),
            (2.0 * b as f64 / g).ceil() as u64 + rerouted.latency_ns
        );
    }

    #[test]
    fn a_periodic_policy_on_a_stationary_trace_converges_then_moves_nothing() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let scenario =
            crate::scenario::Scenario::parse(crate::scenario::QUICKSTART_TOML, &dir).unwrap();
        let setup = Setup::from_scenario(&scenario).unwrap();
        let contiguous = setup.place("contiguous").unwrap();
        let config: ReplacementConfig = toml::from_str(
            "policy = \"periodic\"\nwindow_steps = 1\ninterval_steps = 2\nplanning_s = 0.5\nplanning_per_layer_ms = 0",
        )
        .unwrap();
        let mut replacer = Replacer::new(&config, &setup, &contiguous);
        // Every step routes the trace's first step: the same loads each time.
        let layers = setup.layer_work(&contiguous, &setup.steps[0]).unwrap();
        let mut placement = contiguous;
        let mut stalls = Vec::new();
        for step in 0..6u64 {
            replacer.observe(
                &setup.layer_work(&placement, &setup.steps[0]).unwrap(),
                &placement,
            );
            let cost = StepCost {
                ns: 1000,
                imbalance: 1.5,
            };
            if let Some((new, stall)) = replacer
                .step_done(&setup, &placement, step * 1000, cost)
                .unwrap()
            {
                placement = new;
                stalls.push(stall);
            }
        }
        assert_eq!(layers.len(), placement.num_layers());
        // Checked after steps 2, 4 and 6: the first moves experts, the others none.
        let moved: Vec<usize> = replacer.events.iter().map(|e| e.experts_moved).collect();
        assert_eq!(moved.len(), 3);
        assert!(moved[0] > 0, "{moved:?}");
        assert_eq!(moved[1..], [0, 0]);
        let first = &replacer.events[0];
        assert!(first.imbalance_after < first.imbalance_before);
        assert_eq!(replacer.events[2].imbalance_before, first.imbalance_after);
        // OLMoE expert: 3 x 2048 x 1024 x 2 bytes.
        assert_eq!(first.bytes_moved, moved[0] as u64 * 12_582_912);
        // Synchronous: the stall is the planning plus the transfers; nothing to transfer later.
        assert_eq!(
            stalls[0],
            500_000_000 + (first.transfer_ms * 1e6).round() as u64
        );
        assert!(first.transfer_ms > 0.0);
        assert_eq!(stalls[1..], [500_000_000, 500_000_000]);
        // Every step joins the timeline, the checked ones with their stall.
        let timeline: Vec<(u64, u64)> = replacer
            .timeline
            .iter()
            .map(|s| (s.start_ns, s.ns))
            .collect();
        assert_eq!(
            timeline,
            [
                (0, 1000),
                (1000, 1000 + stalls[0]),
                (2000, 1000),
                (3000, 1000 + stalls[1]),
                (4000, 1000),
                (5000, 1000 + stalls[2])
            ]
        );
        assert!(replacer.timeline.iter().all(|s| s.imbalance == 1.5));
    }

    #[test]
    fn layers_the_trace_lacks_move_what_the_trace_layer_of_their_index_moves() {
        let m = |layer, expert| Move {
            layer,
            expert,
            from: 0,
            to: 1,
        };
        // A 2-layer trace of a 5-layer model: model layers 0, 2, 4 move like trace layer 0.
        let traced = [m(0, 7), m(1, 3), m(1, 4)];
        let all = model_moves(&traced, 2, 5);
        assert_eq!(
            all,
            [
                m(0, 7),
                m(1, 3),
                m(1, 4),
                m(2, 7),
                m(3, 3),
                m(3, 4),
                m(4, 7)
            ]
        );
        assert_eq!(model_moves(&traced, 2, 2), traced);
    }

    #[test]
    fn unknown_or_disconnecting_failures_name_the_entry() {
        let cluster = Cluster::preset("dgx-h100x2").unwrap();
        let failure = |component: &str| {
            Failure::Network(NetworkFailure {
                at_s: 1.0,
                component: component.into(),
            })
        };
        let err = Failures::new(&[failure("n0/nic0"), failure("n0/nic9")], &cluster)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(
                "`failures[1].component`: cluster `dgx-h100x2` has no component `n0/nic9`"
            ),
            "{err}"
        );
        // GPU 0's PCIe switch holds NIC 0 only; without it and the host, GPU 0 has NVLink alone.
        let err = Failures::new(&[failure("n0/nic0"), failure("n0/host")], &cluster)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(
                "`failures[1].component`: without `n0/host` no path from n0/gpu0 to n1/gpu0"
            ),
            "{err}"
        );
    }
}
