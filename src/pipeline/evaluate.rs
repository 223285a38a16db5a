//! `place eval`'s whole answer for one placement on one trace: the placement's own judgement
//! (loads, transitions, memory: [`crate::placement::evaluate`]) and, with a model and a cluster,
//! the analytical step per layer with its bytes per link and the simulated steps, all over the
//! same steps and set-up as `moesim run` and `moesim simulate`.

use serde::Serialize;

use super::Setup;
use super::estimate::{estimate_steps, mean_over_steps};
use super::simulate::{SimOptions, simulate};
use crate::cost::LayerEstimate;
use crate::error::{Error, Result};
use crate::placement::Placement;
use crate::placement::evaluate::{
    EvalContext, Evaluation, EvaluationSummary, LayerEvaluation, evaluate,
};
use crate::topology::Cluster;
use crate::trace::Trace;

/// The evaluation of a placement, with step times when a set-up was given.
#[derive(Debug, Clone, Serialize)]
pub struct PlacementReport {
    /// The totals over all layers.
    #[serde(flatten)]
    pub summary: EvaluationSummary,
    /// Steps the trace was cut into for the step times (with a set-up).
    pub steps: Option<usize>,
    /// Per MoE layer.
    pub layers: Vec<LayerReport>,
    /// Per overlap strategy, the simulated steps (with a set-up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulated: Option<Vec<SimulatedStep>>,
}

/// One MoE layer: the placement's judgement and the analytical step.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Loads, transitions and memory.
    #[serde(flatten)]
    pub placement: LayerEvaluation,
    /// Analytical dispatch + slowest compute + combine per step, mean over steps, ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_ns: Option<u64>,
    /// Dispatch + combine bytes per step (mean) on every link that carries any, by link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_bytes: Option<Vec<LinkBytes>>,
}

/// Bytes one link carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkBytes {
    /// The link's name (`from->to`).
    pub link: String,
    /// Bytes per step, mean over steps, rounded up.
    pub bytes: u64,
}

/// One overlap strategy's simulated steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimulatedStep {
    /// Overlap strategy.
    pub overlap: String,
    /// Mean simulated time of a step through all MoE layers, ns.
    pub step_ns: u64,
    /// 99th-percentile step time, ns.
    pub p99_step_ns: u64,
    /// Communication on the critical path, mean per step, ns.
    pub exposed_comm_ns: u64,
}

/// Judges `placement` on `trace` by loads, transitions and (with the context's model) memory,
/// without step times.
pub fn judge_placement(
    placement: &Placement,
    trace: &Trace,
    context: EvalContext,
) -> Result<PlacementReport> {
    let Evaluation { summary, layers } = evaluate(placement, trace, context)?;
    Ok(PlacementReport {
        summary,
        steps: None,
        layers: layers.into_iter().map(LayerReport::bare).collect(),
        simulated: None,
    })
}

/// Judges `placement` on `setup`'s trace, and prices every step of the setup analytically and
/// by simulation. A placement fitted on the whole load trace, dense layers included, loses the
/// layers the set-up dropped from the trace ([`Setup::dropped_layers`]).
pub fn evaluate_placement(placement: &Placement, setup: &Setup) -> Result<PlacementReport> {
    if setup.tp != 1 {
        return Err(Error::invalid(format!(
            "the placement lists GPUs, so it is evaluated with `tp` = 1, not {}",
            setup.tp
        )));
    }
    let fitted;
    let placement = if placement.num_layers()
        == setup.trace.num_layers() + setup.dropped_layers.len()
        && !setup.dropped_layers.is_empty()
    {
        fitted = placement.without_layers(&setup.dropped_layers)?;
        &fitted
    } else {
        placement
    };
    let context = EvalContext {
        model: Some(&setup.model),
        cluster: Some(&setup.cluster),
    };
    let Evaluation { summary, layers } = evaluate(placement, &setup.trace, context)?;
    let estimates = estimate_steps(setup, placement)?;
    let layers = layers
        .into_iter()
        .zip(&estimates)
        .map(|(placement, steps)| LayerReport {
            placement,
            step_ns: Some(mean_over_steps(steps, |e| e.step_ns)),
            link_bytes: Some(link_bytes(steps, &setup.cluster)),
        })
        .collect();
    let placements = [(String::new(), placement.clone())];
    let sim = simulate(setup, &placements, SimOptions::default())?;
    let simulated = sim
        .strategies
        .into_iter()
        .map(|s| SimulatedStep {
            exposed_comm_ns: s.exposed_comm_ns.div_ceil(s.steps.len().max(1) as u64),
            overlap: s.strategy,
            step_ns: s.step_ns,
            p99_step_ns: s.p99_step_ns,
        })
        .collect();
    Ok(PlacementReport {
        summary,
        steps: Some(setup.steps.len()),
        layers,
        simulated: Some(simulated),
    })
}

impl LayerReport {
    /// A layer without step times.
    fn bare(placement: LayerEvaluation) -> LayerReport {
        LayerReport {
            placement,
            step_ns: None,
            link_bytes: None,
        }
    }
}

/// Mean bytes per step on every link that carries any, in link order.
fn link_bytes(steps: &[LayerEstimate], cluster: &Cluster) -> Vec<LinkBytes> {
    cluster
        .links()
        .filter_map(|(id, link)| {
            let bytes = mean_over_steps(steps, |e| e.link_bytes[id.index()]);
            (bytes > 0).then(|| LinkBytes {
                link: link.name.clone(),
                bytes,
            })
        })
        .collect()
}
