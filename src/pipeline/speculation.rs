//! Speculative pre-scheduling of the dispatch (Speculative MoE's token shuffling, arXiv
//! 2503.04398): before a layer's gate, each token is sent towards the GPUs of the experts an
//! expert predictor expects it to visit; after the gate only the (token, destination GPU) pairs
//! the prediction missed are dispatched (the corrective transfer). Correct predictions take
//! their bytes off the post-gate dispatch; wrong ones are bytes sent for nothing.
//!
//! The speculative transfer rides the communication stream beside the layer's attention (see
//! [`LayerWork::speculative`]); the combine is unchanged (outputs return to each token's own
//! GPU). Predicted destinations are chosen by the scenario's dispatch policy exactly as the real
//! ones ([`route_tokens`]), so a predictor right every time leaves no corrective pair.

use std::sync::Mutex;

use serde::Serialize;

use crate::cost::TrafficMatrix;
use crate::error::{Error, Result};
use crate::model::MoeModel;
use crate::placement::Placement;
use crate::placement::dispatch::{DispatchPolicy, route_tokens};
use crate::predict::evaluate::{Evaluation, evaluate};
use crate::predict::{Ask, ExpertPredictor, PREDICTORS};
use crate::registry::Settings;
use crate::scenario::{Scenario, SpeculationSpec};
use crate::sim::StrategySim;
use crate::sim::step::LayerWork;
use crate::topology::Cluster;
use crate::trace::{self, ExpertId, LayerRouting, RoutingTrace, Trace};

use super::Setup;
use super::simulate::{SimOptions, simulate};

/// Where a step's tokens are dispatched: the cluster, the placement and the dispatch policy.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub cluster: &'a Cluster,
    pub placement: &'a Placement,
    pub policy: &'a DispatchPolicy,
}

/// A fitted predictor and how it pre-schedules the dispatch.
#[derive(Debug)]
pub struct Speculation {
    /// The predictor's name.
    pub predictor: String,
    /// The fitted predictor; one step's predictions are drawn under the lock, after a reseed,
    /// so they do not depend on the order steps are priced in.
    fitted: Mutex<Box<dyn ExpertPredictor>>,
    /// The seed each step's draws restart from (plus the step's first token).
    seed: u64,
    /// Tokens of the scenario's own trace the predictor was fitted on (the first ones; 0 when
    /// fitted on another trace): steps starting before this are in-sample.
    pub fit_tokens: usize,
}

impl Speculation {
    /// The predictor `spec` names, fitted on its `fit_trace` (which must match the model's
    /// experts and `trace`'s layers) or on the first `fit_fraction` of `trace`'s tokens.
    pub fn resolve(spec: &SpeculationSpec, trace: &Trace, model: &MoeModel) -> Result<Speculation> {
        let Trace::Tokens(routing) = trace else {
            return Err(Error::invalid(
                "`speculation` needs a token-level trace; this one holds only expert loads \
                 (generate tokens with `[trace.synth]`)",
            ));
        };
        if spec.predictor == "history" {
            return Err(Error::invalid(
                "`speculation.predictor` = \"history\" reads the trace's own rows, which a \
                 step's slice renumbers; use `transition` or `oracle`",
            ));
        }
        let mut settings = Settings::new();
        if spec.predictor == "oracle" {
            settings.insert("accuracy".into(), spec.accuracy.unwrap_or(1.0).into());
            let seed = i64::try_from(spec.seed)
                .map_err(|_| Error::invalid("`speculation.seed` must be below 2^63"))?;
            settings.insert("seed".into(), seed.into());
        }
        let built = PREDICTORS
            .build(&spec.predictor, &settings)
            .map_err(|e| Error::invalid(format!("`speculation.predictor`: {e}")))?;
        let mut predictor = built.strategy;
        let (fit_on, own) = match &spec.fit_trace {
            Some(path) => (fit_trace(path, routing, model)?, false),
            None => (routing.clone(), true),
        };
        let fit = (fit_on.num_tokens() as f64 * spec.fit_fraction).floor() as usize;
        predictor.fit(&fit_on, 0..fit).map_err(|e| {
            Error::invalid(format!("`speculation.predictor` = {}: {e}", spec.predictor))
        })?;
        Ok(Speculation {
            predictor: spec.predictor.clone(),
            fitted: Mutex::new(predictor),
            seed: spec.seed,
            fit_tokens: if own { fit } else { 0 },
        })
    }

    /// Splits the dispatch of every layer of `works` (the plain work of the step whose tokens
    /// are `routing`, starting at trace token `first_token`, dispatched as `target` says) into a speculative and a corrective transfer of `bytes_per_token` per token
    /// and GPU. The predicted experts are dispatched by the same policy as the real ones (one
    /// routing of predictions run through it, capacity a share of the real pairs), so a
    /// predictor right every time leaves no corrective pair under any policy.
    pub fn apply(
        &self,
        target: Target,
        routing: &RoutingTrace,
        first_token: usize,
        works: &mut [LayerWork],
        bytes_per_token: f64,
    ) -> Result<()> {
        let Target {
            cluster,
            placement,
            policy,
        } = target;
        let mut predictor = self.fitted.lock().unwrap_or_else(|e| e.into_inner());
        predictor.reseed(self.seed.wrapping_add(first_token as u64));
        let tokens = routing.num_tokens();
        let bytes = bytes_per_token.ceil() as u64;
        for (layer, work) in works.iter_mut().enumerate() {
            let real = routing.layer(layer);
            let (mut offsets, mut guessed) = (vec![0u32], Vec::new());
            for token in 0..tokens {
                let k = real.experts_of(token).len();
                if k > 0 {
                    let ask = Ask { layer, token, k };
                    guessed.extend(predictor.predict(routing, ask).unwrap_or_default());
                }
                offsets.push(guessed.len() as u32);
            }
            let guess = LayerRouting::new(offsets, guessed, None)?;
            let pairs = real.num_entries() as f64;
            let actual = route_tokens(cluster, placement, layer, real, policy, pairs)?;
            let predicted = route_tokens(cluster, placement, layer, &guess, policy, pairs)?;
            let gpus = work.dispatch.num_gpus();
            let mut speculative = TrafficMatrix::zeros(gpus);
            let mut corrective = TrafficMatrix::zeros(gpus);
            for token in 0..tokens {
                let src = actual.source(token);
                let ahead = predicted.destinations(token);
                for &dst in ahead {
                    speculative.add(src, dst, bytes);
                }
                for &dst in actual
                    .destinations(token)
                    .iter()
                    .filter(|d| !ahead.contains(d))
                {
                    corrective.add(src, dst, bytes);
                }
            }
            work.dispatch = corrective;
            work.speculative = Some(speculative);
        }
        Ok(())
    }
}

/// The yardstick of a fitted predictor in the report: each layer's `k` most loaded experts over
/// the fitted tokens, whatever the token (no prediction at layer 0, where the transition
/// predictor has none either). A predictor that only matches it learned popularity, not
/// affinity: on a trace whose layers are drawn independently that is all there is to learn.
#[derive(Debug, Default)]
struct Popularity {
    /// Per layer, its experts most loaded first (ties: lower id first).
    ranked: Vec<Vec<ExpertId>>,
}

impl ExpertPredictor for Popularity {
    fn fit(
        &mut self,
        trace: &RoutingTrace,
        fit: std::ops::Range<usize>,
    ) -> std::result::Result<(), String> {
        self.ranked = trace
            .layers()
            .iter()
            .map(|layer| {
                let mut loads = vec![0u64; trace.num_experts()];
                for token in fit.clone() {
                    for &e in layer.experts_of(token) {
                        loads[e as usize] += 1;
                    }
                }
                let mut ranked: Vec<ExpertId> = (0..loads.len() as ExpertId).collect();
                ranked.sort_by_key(|&e| std::cmp::Reverse(loads[e as usize]));
                ranked
            })
            .collect();
        Ok(())
    }

    fn predict(&mut self, _: &RoutingTrace, ask: Ask) -> Option<Vec<ExpertId>> {
        let ranked = self.ranked.get(ask.layer).filter(|_| ask.layer > 0)?;
        Some(ranked.iter().take(ask.k).copied().collect())
    }
}

/// The token trace at `path`, checked against the model's expert count and `trace`'s layers.
fn fit_trace(
    path: &std::path::Path,
    trace: &RoutingTrace,
    model: &MoeModel,
) -> Result<RoutingTrace> {
    let shown = path.display();
    let Trace::Tokens(fit) = trace::load(path)? else {
        return Err(Error::invalid(format!(
            "`speculation.fit_trace` {shown} holds only expert loads; a predictor needs tokens"
        )));
    };
    if fit.num_experts() != model.num_experts {
        return Err(Error::invalid(format!(
            "`speculation.fit_trace` {shown} has {} experts per layer but model `{}` has {}",
            fit.num_experts(),
            model.name,
            model.num_experts
        )));
    }
    if fit.num_layers() != trace.num_layers() {
        return Err(Error::invalid(format!(
            "`speculation.fit_trace` {shown} has {} MoE layers but the scenario's trace has {}",
            fit.num_layers(),
            trace.num_layers()
        )));
    }
    Ok(fit)
}

/// Bytes one MoE layer's dispatch moves between distinct GPUs, plain and speculative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Volumes {
    /// The plain post-gate dispatch.
    pub plain: u64,
    /// Sent ahead of the gate towards predicted destinations.
    pub speculative: u64,
    /// Sent after the gate for the pairs the prediction missed.
    pub corrective: u64,
    /// Plain bytes the speculation took off the post-gate dispatch (`plain - corrective`).
    pub saved: u64,
    /// Speculative bytes to GPUs the token did not need (`speculative - saved`).
    pub wasted: u64,
}

impl Volumes {
    /// The volumes of `speculated` (a layer after [`Speculation::apply`]) against `plain`.
    pub fn of(plain: &LayerWork, speculated: &LayerWork) -> Volumes {
        let plain = plain.dispatch.off_diagonal_bytes();
        let speculative = speculated
            .speculative
            .as_ref()
            .map_or(0, |m| m.off_diagonal_bytes());
        let corrective = speculated.dispatch.off_diagonal_bytes();
        let saved = plain.saturating_sub(corrective);
        Volumes {
            plain,
            speculative,
            corrective,
            saved,
            wasted: speculative.saturating_sub(saved),
        }
    }

    /// Adds `other`'s bytes.
    pub fn add(&mut self, other: &Volumes) {
        self.plain += other.plain;
        self.speculative += other.speculative;
        self.corrective += other.corrective;
        self.saved += other.saved;
        self.wasted += other.wasted;
    }
}

/// One placement of one scenario with speculation against the plain dispatch, over the same
/// steps (the first overlap strategy of the scenario).
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Placement strategy.
    pub placement: String,
    /// Predictor.
    pub predictor: String,
    /// The oracle's accuracy (none for a fitted predictor).
    pub accuracy: Option<f64>,
    /// Mean simulated step time with plain dispatch.
    pub plain_step_ns: u64,
    /// Mean simulated step time with speculation.
    pub step_ns: u64,
    /// `step_ns / plain_step_ns - 1`.
    pub step_change: f64,
    /// Mean per-step communication not hidden behind compute, plain.
    pub plain_exposed_comm_ns: u64,
    /// The same with speculation.
    pub exposed_comm_ns: u64,
    /// Dispatch bytes over all steps, per MoE layer.
    pub layers: Vec<Volumes>,
    /// Dispatch bytes over all steps and layers.
    pub total: Volumes,
    /// Per step: plain and speculative step time and the dispatch bytes of all layers.
    pub steps: Vec<StepComparison>,
}

/// One step of a [`Comparison`].
#[derive(Debug, Clone, Serialize)]
pub struct StepComparison {
    /// Step index among the simulated steps.
    pub step: usize,
    pub plain_step_ns: u64,
    pub step_ns: u64,
    pub volumes: Volumes,
}

/// The plain simulation of one placement, shared by every speculative run compared with it.
pub struct PlainRun {
    pub placement: (String, Placement),
    sim: StrategySim,
    /// Per step, per layer, the plain work.
    works: Vec<Vec<LayerWork>>,
}

impl PlainRun {
    /// Simulates `placement` on `setup` without speculation.
    pub fn new(setup: &mut Setup, placement: (String, Placement)) -> Result<PlainRun> {
        let speculation = setup.speculation.take();
        let outcome = simulate_one(setup, &placement).and_then(|sim| {
            let works = setup
                .steps
                .iter()
                .map(|step| setup.layer_work(&placement.1, step))
                .collect::<Result<_>>()?;
            Ok(PlainRun {
                placement: placement.clone(),
                sim,
                works,
            })
        });
        setup.speculation = speculation;
        outcome
    }

    /// Simulates the placement with `setup`'s speculation and compares; `accuracy` labels it.
    pub fn compare(&self, setup: &Setup, accuracy: Option<f64>) -> Result<Comparison> {
        let Some(speculation) = &setup.speculation else {
            return Err(Error::invalid(
                "comparing speculation needs a `[speculation]`",
            ));
        };
        let sim = simulate_one(setup, &self.placement)?;
        let mut layers = Vec::new();
        let mut total = Volumes::default();
        let mut steps = Vec::new();
        for (index, (step, plain)) in setup.steps.iter().zip(&self.works).enumerate() {
            let works = setup.layer_work(&self.placement.1, step)?;
            layers.resize(works.len(), Volumes::default());
            let mut volumes = Volumes::default();
            for ((sum, plain), speculated) in layers.iter_mut().zip(plain).zip(&works) {
                let layer = Volumes::of(plain, speculated);
                sum.add(&layer);
                volumes.add(&layer);
            }
            total.add(&volumes);
            steps.push(StepComparison {
                step: index,
                plain_step_ns: self.sim.steps[index].step_ns,
                step_ns: sim.steps[index].step_ns,
                volumes,
            });
        }
        Ok(Comparison {
            placement: self.placement.0.clone(),
            predictor: speculation.predictor.clone(),
            accuracy,
            plain_step_ns: self.sim.step_ns,
            step_ns: sim.step_ns,
            step_change: sim.step_ns as f64 / self.sim.step_ns.max(1) as f64 - 1.0,
            plain_exposed_comm_ns: self.sim.exposed_comm_ns / steps.len().max(1) as u64,
            exposed_comm_ns: sim.exposed_comm_ns / steps.len().max(1) as u64,
            layers,
            total,
            steps,
        })
    }
}

/// The first overlap strategy's simulation of `placement` on `setup`.
fn simulate_one(setup: &Setup, placement: &(String, Placement)) -> Result<StrategySim> {
    let result = simulate(
        setup,
        std::slice::from_ref(placement),
        SimOptions::default(),
    )?;
    result
        .strategies
        .into_iter()
        .next()
        .ok_or_else(|| Error::invalid("the scenario names no overlap strategy"))
}

/// The accuracy at which speculation stops paying: where the step time with speculation
/// (`points`: accuracy and step-time change, accuracies ascending) crosses the plain one,
/// interpolated linearly between the points around it. `Some(first accuracy)` when it pays
/// everywhere, `None` when it pays nowhere in the sweep.
pub fn break_even(points: &[(f64, f64)]) -> Option<f64> {
    let first = points.first()?;
    if first.1 <= 0.0 {
        return Some(first.0);
    }
    points.windows(2).find_map(|pair| {
        let ((a0, d0), (a1, d1)) = (pair[0], pair[1]);
        (d0 > 0.0 && d1 <= 0.0).then(|| a0 + (a1 - a0) * d0 / (d0 - d1))
    })
}

/// The speculation sweep of one cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSweep {
    /// Cluster preset or file.
    pub cluster: String,
    /// GPUs of the expert-parallel group.
    pub gpus: usize,
    /// Per placement, the oracle at every accuracy, ascending.
    pub oracle: Vec<Comparison>,
    /// Per placement, the scenario's own fitted predictor (when it is not the oracle).
    pub fitted: Vec<Comparison>,
    /// Per placement, the oracle accuracy where speculation stops paying ([`break_even`]).
    pub break_even: Vec<(String, Option<f64>)>,
}

/// A scenario's speculation sweep over clusters and oracle accuracies.
#[derive(Debug, Clone, Serialize)]
pub struct SpeculationSweep {
    pub scenario: String,
    pub model: String,
    pub trace: String,
    /// Steps simulated per run (those after the predictor's fitted tokens).
    pub steps: usize,
    /// Tokens of a step, all GPUs together (the first step's).
    pub step_tokens: usize,
    /// Dispatch bytes of one token to one GPU.
    pub dispatch_bytes_per_token: u64,
    /// The scenario's fitted predictor judged out of sample, when it has one.
    pub predictor: Option<Evaluation>,
    /// The yardstick it is read against, judged alike: [`Popularity`].
    pub baseline: Option<Evaluation>,
    pub clusters: Vec<ClusterSweep>,
}

/// Runs `scenario` on every cluster of `clusters` (all their GPUs) under every placement it
/// names: plain dispatch, the oracle at each of `accuracies`, and the scenario's own
/// `[speculation]` predictor when it is a fitted one.
pub fn sweep(
    scenario: &Scenario,
    clusters: &[String],
    accuracies: &[f64],
) -> Result<SpeculationSweep> {
    let own = scenario.speculation.clone().unwrap_or(SpeculationSpec {
        predictor: "oracle".into(),
        fit_fraction: 0.5,
        fit_trace: None,
        accuracy: None,
        seed: scenario.seed,
    });
    let oracle = |accuracy: f64| SpeculationSpec {
        predictor: "oracle".into(),
        accuracy: Some(accuracy),
        ..own.clone()
    };
    let mut sweeps = Vec::new();
    let mut first: Option<Setup> = None;
    for cluster in clusters {
        let on_cluster = Scenario {
            cluster: cluster.clone(),
            gpus: None,
            speculation: Some(own.clone()),
            ..scenario.clone()
        };
        let mut setup = Setup::from_scenario(&on_cluster)?;
        let mut sweep = ClusterSweep {
            cluster: cluster.clone(),
            gpus: setup.gpus(),
            oracle: Vec::new(),
            fitted: Vec::new(),
            break_even: Vec::new(),
        };
        for placement in setup.place_all()? {
            let plain = PlainRun::new(&mut setup, placement)?;
            if own.predictor != "oracle" {
                sweep.fitted.push(plain.compare(&setup, None)?);
            }
            let mut points = Vec::new();
            for &accuracy in accuracies {
                let spec = oracle(accuracy);
                setup.speculation = Some(Speculation::resolve(&spec, &setup.trace, &setup.model)?);
                let comparison = plain.compare(&setup, Some(accuracy))?;
                points.push((accuracy, comparison.step_change));
                sweep.oracle.push(comparison);
            }
            sweep
                .break_even
                .push((plain.placement.0.clone(), break_even(&points)));
            setup.speculation = Some(Speculation::resolve(&own, &setup.trace, &setup.model)?);
        }
        sweeps.push(sweep);
        first.get_or_insert(setup);
    }
    let Some(setup) = first else {
        return Err(Error::invalid("no cluster to sweep"));
    };
    let (predictor, baseline) = match (&own.predictor[..], &setup.trace, &own.fit_trace) {
        ("oracle", _, _) | (_, _, Some(_)) => (None, None),
        (name, Trace::Tokens(routing), None) => {
            let mut built = PREDICTORS
                .build(name, &Settings::new())
                .map_err(Error::invalid)?;
            let judged = evaluate(name, built.strategy.as_mut(), routing, own.fit_fraction);
            let baseline = evaluate(
                "popularity",
                &mut Popularity::default(),
                routing,
                own.fit_fraction,
            );
            (
                Some(judged.map_err(Error::invalid)?),
                Some(baseline.map_err(Error::invalid)?),
            )
        }
        _ => (None, None),
    };
    let hidden = setup.model.hidden_size as u64;
    Ok(SpeculationSweep {
        scenario: scenario.name.clone(),
        model: setup.model.name.clone(),
        trace: setup.trace_source.clone(),
        steps: setup.steps.len(),
        step_tokens: setup.steps.first().map_or(0, |s| s.tokens),
        dispatch_bytes_per_token: hidden * u64::from(scenario.comm.dispatch_bytes_per_elem),
        predictor,
        baseline,
        clusters: sweeps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::LayerPlacement;
    use crate::placement::dispatch::{DispatchConfig, plan_tokens_with};
    use crate::trace::{LayerRouting, TokenMeta};
    use std::path::Path;

    /// Bytes of one token to one GPU.
    const B: u64 = 1000;

    /// Two GPUs of a DGX H100, expert 0 on GPU 0 and expert 1 on GPU 1, and one layer of four
    /// top-1 tokens (tokens 0-1 start on GPU 0, 2-3 on GPU 1) routed to experts 1, 0, 1, 0:
    /// token 0 crosses 0 -> 1, token 3 crosses 1 -> 0, tokens 1 and 2 stay.
    fn fixture() -> (Cluster, Placement, RoutingTrace) {
        let layer = LayerRouting::fixed_k(1, vec![1, 0, 1, 0], None).unwrap();
        fixture_with(vec![vec![0], vec![1]], layer)
    }

    /// Two GPUs of a DGX H100 holding `gpu_experts` of two experts, and one layer `layer`.
    fn fixture_with(
        gpu_experts: Vec<Vec<u16>>,
        layer: LayerRouting,
    ) -> (Cluster, Placement, RoutingTrace) {
        let cluster = Cluster::resolve("dgx-h100").unwrap().first_gpus(2).unwrap();
        let layers = vec![LayerPlacement { gpu_experts }];
        let placement = Placement::new(2, 2, 2, layers).unwrap();
        let trace = RoutingTrace::new(2, vec![layer], TokenMeta::default()).unwrap();
        (cluster, placement, trace)
    }

    /// The volumes of the oracle at `accuracy` on the fixture.
    fn oracle_volumes(accuracy: f64) -> (Volumes, LayerWork) {
        let (cluster, placement, trace) = fixture();
        oracle_volumes_on(
            &cluster,
            &placement,
            &trace,
            &DispatchPolicy::default(),
            accuracy,
        )
    }

    /// The volumes of the oracle at `accuracy` on `trace`'s one layer under `policy`.
    fn oracle_volumes_on(
        cluster: &Cluster,
        placement: &Placement,
        trace: &RoutingTrace,
        policy: &DispatchPolicy,
        accuracy: f64,
    ) -> (Volumes, LayerWork) {
        let plan = plan_tokens_with(cluster, placement, 0, trace.layer(0), policy).unwrap();
        let plain = LayerWork::from_plan(&plan, B as f64, B as f64);
        let spec = SpeculationSpec {
            predictor: "oracle".into(),
            fit_fraction: 0.5,
            fit_trace: None,
            accuracy: Some(accuracy),
            seed: 3,
        };
        let model = MoeModel::preset("switch-base-8").unwrap();
        let speculation =
            Speculation::resolve(&spec, &Trace::Tokens(trace.clone()), &model).unwrap();
        let mut works = vec![plain.clone()];
        speculation
            .apply(
                Target {
                    cluster,
                    placement,
                    policy,
                },
                trace,
                0,
                &mut works,
                B as f64,
            )
            .unwrap();
        (Volumes::of(&plain, &works[0]), works.remove(0))
    }

    #[test]
    fn a_predictor_right_every_time_removes_exactly_the_predicted_dispatch() {
        let (volumes, work) = oracle_volumes(1.0);
        // Plain: tokens 0 and 3 cross, B each. All of it goes ahead of the gate, none after.
        assert_eq!(
            volumes,
            Volumes {
                plain: 2 * B,
                speculative: 2 * B,
                corrective: 0,
                saved: 2 * B,
                wasted: 0,
            }
        );
        let ahead = work.speculative.unwrap();
        assert_eq!((ahead.get(0, 1), ahead.get(1, 0)), (B, B));
        assert_eq!(work.dispatch.off_diagonal_bytes(), 0);
    }

    #[test]
    fn a_predictor_wrong_every_time_pays_the_whole_dispatch_after_the_gate_and_wastes_its_sends() {
        let (volumes, work) = oracle_volumes(0.0);
        // Every guess is the other expert, so the other GPU: tokens 1 and 2 are sent across for
        // nothing (B each), tokens 0 and 3 kept home and corrected after the gate (B each).
        assert_eq!(
            volumes,
            Volumes {
                plain: 2 * B,
                speculative: 2 * B,
                corrective: 2 * B,
                saved: 0,
                wasted: 2 * B,
            }
        );
        assert_eq!((work.dispatch.get(0, 1), work.dispatch.get(1, 0)), (B, B));
    }

    #[test]
    fn predicted_experts_take_the_replica_the_dispatch_policy_picks() {
        // Expert 0 on both GPUs, expert 1 on GPU 0; four top-1 tokens all to expert 0.
        let layer = LayerRouting::fixed_k(1, vec![0, 0, 0, 0], None).unwrap();
        let (cluster, placement, trace) = fixture_with(vec![vec![0, 1], vec![0]], layer);
        let least = DispatchConfig {
            replica: "least-loaded".into(),
            ..DispatchConfig::default()
        };
        let least = least.resolve(0).unwrap();
        // Least-loaded sends token 0 to GPU 0 (tie, lowest), 1 to GPU 1 (crosses 0 -> 1), 2 to
        // GPU 0 (tie; crosses 1 -> 0), 3 to GPU 1: 2 B of plain dispatch. The perfect oracle's
        // predictions run through the same policy land on the same GPUs: all of it saved.
        let (volumes, _) = oracle_volumes_on(&cluster, &placement, &trace, &least, 1.0);
        assert_eq!(
            volumes,
            Volumes {
                plain: 2 * B,
                speculative: 2 * B,
                corrective: 0,
                saved: 2 * B,
                wasted: 0,
            }
        );
        // Wrong every time: every guess is expert 1, on GPU 0 only. Tokens 2 and 3 are sent
        // 1 -> 0 ahead (2 B); token 2 needed it (saved B), token 3 did not (wasted B); token 1's
        // 0 -> 1 is corrected after the gate (B); token 0 stays home either way.
        let (volumes, work) = oracle_volumes_on(&cluster, &placement, &trace, &least, 0.0);
        assert_eq!(
            volumes,
            Volumes {
                plain: 2 * B,
                speculative: 2 * B,
                corrective: B,
                saved: B,
                wasted: B,
            }
        );
        assert_eq!((work.dispatch.get(0, 1), work.dispatch.get(1, 0)), (B, 0));
        // Same-node keeps every expert-0 token home: nothing to save, the same guesses waste
        // 2 B.
        let policy = DispatchPolicy::default();
        let (volumes, _) = oracle_volumes_on(&cluster, &placement, &trace, &policy, 0.0);
        assert_eq!((volumes.plain, volumes.wasted), (0, 2 * B));
    }

    #[test]
    fn predicted_pairs_over_the_capacity_are_not_sent_ahead() {
        // The fixture (routing 1, 0, 1, 0) at capacity factor 0.5: ceil(0.5 x 4 / 2) = 1 pair
        // per expert, so tokens 2 and 3 are dropped; plain dispatch is token 0's 0 -> 1 (B).
        let (cluster, placement, trace) = fixture();
        let strict = DispatchConfig {
            capacity_factor: Some(0.5),
            ..DispatchConfig::default()
        };
        let strict = strict.resolve(0).unwrap();
        let (volumes, _) = oracle_volumes_on(&cluster, &placement, &trace, &strict, 1.0);
        assert_eq!(
            volumes,
            Volumes {
                plain: B,
                speculative: B,
                corrective: 0,
                saved: B,
                wasted: 0,
            }
        );
        // Wrong every time (guesses 0, 1, 0, 1), capped alike (tokens 2-3's guesses are over the
        // cap, so not sent ahead): token 1 goes 0 -> 1 ahead for nothing (its expert 0 is home)
        // and token 0's real 0 -> 1, guessed home, goes after the gate.
        let (volumes, _) = oracle_volumes_on(&cluster, &placement, &trace, &strict, 0.0);
        assert_eq!(
            volumes,
            Volumes {
                plain: B,
                speculative: B,
                corrective: B,
                saved: 0,
                wasted: B,
            }
        );
    }

    #[test]
    fn the_popularity_yardstick_predicts_each_layers_most_loaded_experts() {
        // Two layers, top-1, 8 tokens: fitted on the first 4 (layer 1: experts 1, 1, 0, 1, so
        // expert 1 is the most loaded), judged on tokens 4-7 (layer 1: 1, 0, 0, 1): two hits in
        // four; layer 0 is not predicted.
        let layers = vec![
            LayerRouting::fixed_k(1, vec![0, 1, 0, 1, 0, 1, 0, 1], None).unwrap(),
            LayerRouting::fixed_k(1, vec![1, 1, 0, 1, 1, 0, 0, 1], None).unwrap(),
        ];
        let trace = RoutingTrace::new(2, layers, TokenMeta::default()).unwrap();
        let judged = evaluate("popularity", &mut Popularity::default(), &trace, 0.5);
        let judged = judged.unwrap();
        assert_eq!((judged.fit_tokens, judged.eval_tokens), (4, 4));
        assert_eq!(judged.layers[0].unpredicted, 4);
        assert_eq!(judged.layers[1].top1_hit_rate, Some(0.5));
        assert_eq!(judged.overall.recall, Some(0.5));
    }

    #[test]
    fn speculation_knobs_out_of_range_are_refused_naming_the_key() {
        let base = "name = \"t\"\nmodel = \"switch-base-8\"\ncluster = \"dgx-h100\"\n\
                    tokens_per_gpu = 1\nplacements = [\"contiguous\"]\n[trace]\nfile = \"x\"\n";
        let parse = |table: &str| {
            Scenario::parse(&format!("{base}[speculation]\n{table}"), Path::new("")).unwrap_err()
        };
        let err = parse("predictor = \"oracle\"\naccuracy = 1.5\n");
        assert!(err.contains("`speculation.accuracy` = 1.5"), "{err}");
        let err = parse("predictor = \"transition\"\naccuracy = 0.5\n");
        assert!(
            err.contains("`speculation.accuracy` is the oracle's knob"),
            "{err}"
        );
        let err = parse("predictor = \"transition\"\nfit_fraction = 1.0\n");
        assert!(err.contains("`speculation.fit_fraction` = 1"), "{err}");
    }

    #[test]
    fn break_even_interpolates_where_the_change_crosses_zero() {
        // +2% at 0, +1% at 0.5, -1% at 1: crosses halfway between 0.5 and 1.
        assert_eq!(
            break_even(&[(0.0, 0.02), (0.5, 0.01), (1.0, -0.01)]),
            Some(0.75)
        );
        assert_eq!(break_even(&[(0.0, -0.01), (1.0, -0.02)]), Some(0.0));
        assert_eq!(break_even(&[(0.0, 0.01), (1.0, 0.001)]), None);
    }

    #[test]
    fn a_fit_trace_with_another_expert_count_is_refused_naming_the_field() {
        let (_, _, trace) = fixture();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eight.parquet");
        let layer = LayerRouting::fixed_k(1, vec![7, 0, 1, 0], None).unwrap();
        let eight = RoutingTrace::new(8, vec![layer], TokenMeta::default()).unwrap();
        crate::trace::parquet::write_trace(&path, &Trace::Tokens(eight), "test").unwrap();
        let spec = SpeculationSpec {
            predictor: "transition".into(),
            fit_fraction: 0.5,
            fit_trace: Some(path),
            accuracy: None,
            seed: 0,
        };
        let model = MoeModel::preset("switch-base-128").unwrap();
        let err = Speculation::resolve(&spec, &Trace::Tokens(trace), &model).unwrap_err();
        assert!(
            err.to_string().contains("`speculation.fit_trace`")
                && err
                    .to_string()
                    .contains("has 8 experts per layer but model `switch-base-128` has 128"),
            "{err}"
        );
    }
}
