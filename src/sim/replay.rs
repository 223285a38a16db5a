//! Simulating steps one after another into a strategy's totals, as a replay of a trace does per
//! placement and overlap strategy, optionally keeping a step's timeline (a Chrome / Perfetto
//! trace, the excerpt the report's Gantt chart draws).

use serde_json::Value;

use super::engine::{self, LinkBusy, TaskGraph, Timeline};
use super::metrics;
use super::overlap::OverlapStrategy;
use super::perfetto;
use super::step::{self, Label, StepSpec};
use super::totals::{StrategySim, StrategyTotals, excerpt_layer};
use crate::registry::Named;
use crate::trace::Phase;

/// What to keep of a simulated step besides its times.
#[derive(Debug, Default)]
pub struct Recording<'e> {
    /// Append the step's events to a Chrome / Perfetto trace, as this process.
    pub perfetto: Option<PerfettoProcess<'e>>,
    /// Keep the kernels and transfers of MoE layer [`excerpt_layer`]
    /// ([`StrategySim::timeline_excerpt`]).
    pub excerpt: bool,
}

/// Where a step's Chrome / Perfetto events go.
#[derive(Debug)]
pub struct PerfettoProcess<'e> {
    /// The trace's events so far.
    pub events: &'e mut Vec<Value>,
    /// Process id the step's tracks are grouped under.
    pub pid: usize,
    /// Process name shown in the viewer.
    pub name: String,
}

impl StrategyTotals {
    /// Simulates the step `spec` describes under `overlap`, adds it (labelled `phase`) and
    /// keeps what `recording` asks for.
    pub fn simulate(
        &mut self,
        spec: &StepSpec,
        overlap: &dyn OverlapStrategy,
        phase: Option<Phase>,
        recording: Recording,
    ) {
        let link_busy = if recording.perfetto.is_some() {
            LinkBusy::Record
        } else {
            LinkBusy::Skip
        };
        let (graph, timeline) = run_graph(spec, overlap, link_busy);
        if let Some(process) = recording.perfetto {
            perfetto::append_events(
                process.events,
                process.pid,
                &process.name,
                &graph,
                &timeline,
                spec.cluster,
            );
        }
        if recording.excerpt {
            let layer = excerpt_layer(spec.layers.len());
            self.excerpt = metrics::timeline_excerpt(&graph, &timeline, layer);
        }
        self.add(spec, phase, &graph, &timeline);
    }
}

/// Simulates the one step `spec` describes under `overlap`, labelling it with `placement`.
pub fn simulate_step(
    spec: &StepSpec,
    overlap: &Named<dyn OverlapStrategy>,
    placement: &str,
) -> StrategySim {
    let mut totals = StrategyTotals::new(overlap.name, placement, spec.cluster);
    totals.simulate(spec, &**overlap, None, Recording::default());
    totals.finish(spec.cluster)
}

/// The task graph of the step `spec` describes under `overlap`, and its timeline (with link
/// occupancy as `link_busy` says).
pub(super) fn run_graph<'a>(
    spec: &StepSpec<'a>,
    overlap: &dyn OverlapStrategy,
    link_busy: LinkBusy,
) -> (TaskGraph<'a, Label>, Timeline) {
    let graph = step::build(spec, overlap);
    let timeline = engine::run(&graph, spec.cluster, &spec.links, link_busy);
    (graph, timeline)
}
