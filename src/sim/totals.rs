//! One strategy's results summed over the simulated steps: per-step times and their mean,
//! median and 99th percentile, per-layer critical-path shares, per-link bytes per layer.

use serde::Serialize;

use super::engine::{TaskGraph, Timeline};
use super::metrics::{self, ExcerptBar, LayerTimes, LinkUse};
use super::step::{Label, StepSpec};
use crate::topology::Cluster;
use crate::trace::Phase;

/// One simulated step's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StepTime {
    /// Step index, in trace order.
    pub step: usize,
    /// Prefill or decode, when the schedule or the trace says.
    pub phase: Option<Phase>,
    /// Tokens of the step, all GPUs together.
    pub tokens: usize,
    /// Simulated time of the step through all MoE layers.
    pub step_ns: u64,
}

/// One overlap strategy under one placement, over every simulated step.
#[derive(Debug, Clone, Serialize)]
pub struct StrategySim {
    /// Overlap strategy name.
    pub strategy: String,
    /// Placement strategy name.
    pub placement: String,
    /// Mean step time (rounded up).
    pub step_ns: u64,
    /// Median step time (nearest rank).
    pub p50_step_ns: u64,
    /// 99th-percentile step time (nearest rank).
    pub p99_step_ns: u64,
    /// All steps together: the sum of `steps[].step_ns`.
    pub total_ns: u64,
    /// Communication on the critical path, all steps and layers.
    pub exposed_comm_ns: u64,
    /// `exposed_comm_ns / total_ns`.
    pub exposed_comm_share: f64,
    /// All-to-all bytes between GPUs of one machine (dispatch + combine, all steps and layers).
    pub intra_node_bytes: u64,
    /// All-to-all bytes between machines.
    pub inter_node_bytes: u64,
    /// Engine events processed.
    pub events: u64,
    /// Per step.
    pub steps: Vec<StepTime>,
    /// Per MoE layer, summed over steps: the critical-path shares add up to `total_ns` (less
    /// any wait outside the step graph: [`StrategyTotals::add_wait`]).
    pub layers: Vec<LayerTimes>,
    /// Links that carried bytes.
    pub links: Vec<LinkUse>,
    /// The kernels and transfers of MoE layer [`excerpt_layer`] in the first step, when asked
    /// for ([`super::Recording::excerpt`]).
    #[serde(skip)]
    pub timeline_excerpt: Vec<ExcerptBar>,
}

/// The MoE layer a timeline excerpt shows: the second (the first has no predecessor to
/// overlap with), or the only one.
pub fn excerpt_layer(num_layers: usize) -> u32 {
    u32::from(num_layers > 1)
}

/// One strategy's results, summed over the steps simulated so far.
pub struct StrategyTotals {
    overlap: &'static str,
    placement: String,
    steps: Vec<StepTime>,
    layers: Vec<LayerTimes>,
    /// Per link index, bytes per layer.
    link_layer_bytes: Vec<Vec<u64>>,
    intra_node_bytes: u64,
    inter_node_bytes: u64,
    events: u64,
    pub(super) excerpt: Vec<ExcerptBar>,
}

impl StrategyTotals {
    /// No steps yet of overlap strategy `overlap` under placement `placement` on `cluster`.
    pub fn new(overlap: &'static str, placement: &str, cluster: &Cluster) -> StrategyTotals {
        StrategyTotals {
            overlap,
            placement: placement.to_string(),
            steps: Vec::new(),
            layers: Vec::new(),
            link_layer_bytes: vec![Vec::new(); cluster.num_links()],
            intra_node_bytes: 0,
            inter_node_bytes: 0,
            events: 0,
            excerpt: Vec::new(),
        }
    }

    /// Adds the step `spec` describes, run as `graph` into `timeline`.
    pub(super) fn add(
        &mut self,
        spec: &StepSpec,
        phase: Option<Phase>,
        graph: &TaskGraph<'_, Label>,
        timeline: &Timeline,
    ) {
        let cluster = spec.cluster;
        let num_layers = spec.layers.len();
        let layers = metrics::layer_times(graph, timeline, num_layers, cluster.num_gpus());
        if self.layers.is_empty() {
            self.layers = layers;
        } else {
            metrics::add_layer_times(&mut self.layers, &layers);
        }
        let link_bytes = metrics::link_layer_bytes(graph, cluster, num_layers);
        for (sum, step) in self.link_layer_bytes.iter_mut().zip(link_bytes) {
            sum.resize(num_layers, 0);
            for (s, b) in sum.iter_mut().zip(step) {
                *s += b;
            }
        }
        for work in spec.layers {
            let (dispatch, combine) = work.traffic(spec.all_to_all);
            for matrix in [dispatch, combine] {
                for (src, dst, bytes) in matrix.pairs() {
                    if cluster.node_of(src) == cluster.node_of(dst) {
                        self.intra_node_bytes += bytes;
                    } else {
                        self.inter_node_bytes += bytes;
                    }
                }
            }
        }
        self.events += timeline.events;
        let tokens = spec
            .layers
            .first()
            .map_or(0.0, |l| l.source_tokens.iter().sum::<f64>());
        self.steps.push(StepTime {
            step: self.steps.len(),
            phase,
            tokens: tokens.round() as usize,
            step_ns: timeline.makespan_ns(),
        });
    }

    /// Adds `ns` the last step added waited outside its task graph (its experts copied from host
    /// memory: `[offload]`) to its time; the per-layer shares leave it out.
    pub fn add_wait(&mut self, ns: u64) {
        if let Some(step) = self.steps.last_mut() {
            step.step_ns += ns;
        }
    }

    /// The totals over every step added, with mean, median and 99th-percentile step times.
    pub fn finish(self, cluster: &Cluster) -> StrategySim {
        let total_ns: u64 = self.steps.iter().map(|s| s.step_ns).sum();
        let mut sorted: Vec<u64> = self.steps.iter().map(|s| s.step_ns).collect();
        sorted.sort_unstable();
        let exposed_comm_ns = self.layers.iter().map(|l| l.exposed_comm_ns).sum();
        StrategySim {
            strategy: self.overlap.to_string(),
            placement: self.placement,
            step_ns: total_ns.div_ceil(sorted.len().max(1) as u64),
            p50_step_ns: nearest_rank(&sorted, 50),
            p99_step_ns: nearest_rank(&sorted, 99),
            total_ns,
            exposed_comm_ns,
            exposed_comm_share: exposed_comm_ns as f64 / total_ns.max(1) as f64,
            intra_node_bytes: self.intra_node_bytes,
            inter_node_bytes: self.inter_node_bytes,
            events: self.events,
            links: metrics::link_use(cluster, &self.link_layer_bytes, total_ns),
            steps: self.steps,
            layers: self.layers,
            timeline_excerpt: self.excerpt,
        }
    }
}

/// The `percent`th percentile of ascending `sorted` by the nearest-rank method (0 when empty).
fn nearest_rank(sorted: &[u64], percent: usize) -> u64 {
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MoeModel;
    use crate::sim::kernels::KernelCosts;
    use crate::sim::tests::{spec, uniform_layers};
    use crate::sim::{OVERLAPS, Recording, SimSetup, simulate_step};

    #[test]
    fn steps_add_up_into_totals_with_mean_median_and_tail() {
        let cluster = Cluster::preset("hgx-h800").unwrap();
        let model = MoeModel::preset("deepseek-v3").unwrap();
        let costs = KernelCosts::new(&model, cluster.gpu_spec(0));
        let setup = SimSetup::default();
        let (big, small) = (
            uniform_layers(&cluster, 2, 128),
            uniform_layers(&cluster, 2, 64),
        );
        let none = OVERLAPS.build("none", &Default::default()).unwrap();
        let mut totals = StrategyTotals::new("none", "p", &cluster);
        let mut alone = Vec::new();
        for (phase, layers) in [(Phase::Prefill, &big), (Phase::Decode, &small)] {
            let spec = spec(&cluster, &costs, layers, &setup);
            totals.simulate(&spec, &*none, Some(phase), Recording::default());
            alone.push(simulate_step(&spec, &none, "p"));
        }
        let sim = totals.finish(&cluster);
        let (a, b) = (alone[0].step_ns, alone[1].step_ns);
        assert!(b < a);
        assert_eq!(sim.total_ns, a + b);
        assert_eq!(sim.step_ns, (a + b).div_ceil(2));
        assert_eq!((sim.p50_step_ns, sim.p99_step_ns), (b, a));
        assert_eq!(sim.steps[1].phase, Some(Phase::Decode));
        assert_eq!(sim.steps[1].tokens, 8 * 64);
        let layer_sum =
            |s: &StrategySim, f: fn(&LayerTimes) -> u64| -> u64 { s.layers.iter().map(f).sum() };
        assert_eq!(
            layer_sum(&sim, |l| l.expert_ns),
            layer_sum(&alone[0], |l| l.expert_ns) + layer_sum(&alone[1], |l| l.expert_ns)
        );
        // GPU 0's port to the NVSwitch carries, per layer, its 7 remote pairs' dispatch (1 B)
        // and combine (2 B) of 7168-wide tokens: 7 x (128 + 64) x 7168 x 3 = 28,901,376 B.
        let port = &sim.links[0];
        assert_eq!(port.layer_bytes, vec![28_901_376; 2]);
        assert_eq!(port.bytes, 2 * 28_901_376);
        assert_eq!(sim.intra_node_bytes, 2 * 56 * 192 * 7168 * 3);
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let sorted: Vec<u64> = (1..=200).collect();
        assert_eq!(nearest_rank(&sorted, 50), 100);
        assert_eq!(nearest_rank(&sorted, 99), 198);
        assert_eq!(nearest_rank(&[7, 9], 50), 7);
        assert_eq!(nearest_rank(&[7, 9], 99), 9);
        assert_eq!(nearest_rank(&[], 99), 0);
    }
}
