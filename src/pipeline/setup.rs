//! A scenario resolved: its model, the cluster its expert-parallel group occupies, its trace
//! fitted to the model and cut into steps, the compute cost (roofline or calibrated) and the
//! simulator's plug-ins. The analytical estimate, the simulation and `place eval` all start from
//! one [`Setup`], so they price the same steps the same way.

use std::sync::Arc;

use crate::cost::attention::AttentionSpan;
use crate::cost::{AnalyticalCost, ComputeCost, CostOptions, DispatchPlan, RooflineCompute};
use crate::error::{Error, Result};
use crate::model::MoeModel;
use crate::placement::dispatch::DispatchPolicy;
use crate::placement::{Placement, PlacementRequest, STRATEGIES, tp_expand};
use crate::profile::{CalibratedCompute, Calibration};
use crate::scenario::{Scenario, TraceSource};
use crate::sim::SimSetup;
use crate::sim::kernels::KernelCosts;
use crate::sim::step::{LayerWork, StepSpec};
use crate::topology::{Cluster, DataType, GpuSpec};
use crate::trace::{self, ExpertLoads, Trace, synth};

use super::offload::OffloadPlan;
use super::speculation::{Speculation, Target};
use super::steps::{Step, attention_span, cut_steps, step_plans, step_routing};

/// Everything a scenario's placements are priced with.
pub struct Setup {
    /// The scenario it was resolved from.
    pub scenario: Scenario,
    /// The model.
    pub model: MoeModel,
    /// The cluster the expert-parallel group occupies ([`Cluster::first_gpus`]).
    pub cluster: Cluster,
    /// Tensor-parallel degree inside experts.
    pub tp: usize,
    /// Nodes the group's GPUs span.
    pub nodes: usize,
    /// The routing trace, its MoE layers lined up with the model's.
    pub trace: Trace,
    /// The layers of the trace as read that were dropped to line it up (dense layers).
    pub dropped_layers: Vec<usize>,
    /// Where the routing came from.
    pub trace_source: String,
    /// The steps every estimate and simulation prices ([`cut_steps`]).
    pub steps: Vec<Step>,
    /// How long an expert's GEMMs take: measured (the scenario's calibration) or roofline.
    pub compute: Arc<dyn ComputeCost>,
    /// The simulator's overlap strategies, all-to-all algorithm and link settings.
    pub sim: SimSetup,
    /// How each layer's pairs are dispatched (`[dispatch]`).
    pub dispatch: DispatchPolicy,
    /// Speculative pre-scheduling of the dispatch (`[speculation]`), when the scenario asks.
    pub speculation: Option<Speculation>,
    /// Experts in host memory and a cache of them on the one GPU (`[offload]`).
    pub offload: Option<OffloadPlan>,
}

impl Setup {
    /// Resolves `scenario`, reading or generating its trace.
    pub fn from_scenario(scenario: &Scenario) -> Result<Setup> {
        let (trace, source) = load_trace(scenario)?;
        Setup::new(scenario, trace, source)
    }

    /// Resolves `scenario` with `trace` (from `source`) in place of the scenario's own.
    pub fn new(scenario: &Scenario, trace: Trace, source: String) -> Result<Setup> {
        let model = MoeModel::resolve(&scenario.model)?;
        let whole = Cluster::resolve(&scenario.cluster)?;
        let gpus = scenario.gpus.unwrap_or(whole.num_gpus());
        let cluster = whole.first_gpus(gpus)?;
        let (trace, dropped_layers) = fit_trace_to_model(trace, &model, &source)?;
        let nodes = gpus.div_ceil(cluster.gpus_per_node());
        let tp = scenario.tp;
        if !gpus.min(cluster.gpus_per_node()).is_multiple_of(tp) {
            return Err(Error::invalid(format!(
                "`tp` = {tp} must divide the {gpus} expert-parallel GPUs and the {} GPUs of a machine",
                cluster.gpus_per_node()
            )));
        }
        let sim = scenario.sim.resolve().map_err(Error::invalid)?;
        let compute = compute_cost(scenario, &model)?;
        warn_unsupported_types(&model, cluster.gpu_spec(0));
        let sms = cluster.gpu_spec(0).sm_count;
        if sim.all_to_all.sms_taken() >= sms {
            return Err(Error::invalid(format!(
                "`sim.{}.comm_sms` = {} leaves no SM of the {sms} for GEMMs",
                sim.all_to_all.name,
                sim.all_to_all.sms_taken()
            )));
        }
        let dispatch = scenario
            .dispatch
            .resolve(model.expert_weight_bytes())
            .map_err(Error::invalid)?;
        if dispatch.llep.is_some() && tp > 1 {
            return Err(Error::invalid(format!(
                "`dispatch.llep` needs `tp` = 1 (got {tp}): borrowed experts are whole experts"
            )));
        }
        let mut steps = cut_steps(&trace, &scenario.schedule, gpus, scenario.tokens_per_gpu);
        let speculation = match &scenario.speculation {
            Some(spec) => {
                let speculation = Speculation::resolve(spec, &trace, &model)?;
                check_speculation(&speculation, &mut steps, tp, &sim)?;
                Some(speculation)
            }
            None => None,
        };
        let offload = match &scenario.offload {
            Some(spec) => Some(OffloadPlan::resolve(
                spec, &model, &cluster, &trace, &mut steps,
            )?),
            None => None,
        };
        Ok(Setup {
            scenario: scenario.clone(),
            model,
            cluster,
            tp,
            nodes,
            trace,
            dropped_layers,
            trace_source: source,
            steps,
            compute,
            sim,
            dispatch,
            speculation,
            offload,
        })
    }

    /// GPUs of the expert-parallel group.
    pub fn gpus(&self) -> usize {
        self.cluster.num_gpus()
    }

    /// Places the experts with every strategy the scenario names, with its own settings, over
    /// the tensor-parallel ranks (each rank's experts then listed on every GPU of the rank:
    /// [`tp_expand`]), in scenario order.
    pub fn place_all(&self) -> Result<Vec<(String, Placement)>> {
        self.scenario
            .placements
            .iter()
            .map(|name| Ok((name.clone(), self.place(name)?)))
            .collect()
    }

    /// The experts placed by strategy `name` with the scenario's settings for it, as
    /// [`Setup::place_all`] places each.
    pub fn place(&self, name: &str) -> Result<Placement> {
        self.place_with_loads(name, &self.trace.expert_loads())
    }

    /// The experts placed by strategy `name` for `loads` (per MoE layer of the trace) instead
    /// of the trace's own: a re-placement from the loads of recent steps.
    pub fn place_with_loads(&self, name: &str, loads: &ExpertLoads) -> Result<Placement> {
        let settings = self
            .scenario
            .placement_strategy_settings(name)
            .map_err(Error::invalid)?;
        let strategy = STRATEGIES.build(name, &settings).map_err(Error::invalid)?;
        let request = PlacementRequest {
            num_nodes: self.nodes,
            num_groups: self.model.num_expert_groups,
            transitions: self.trace.tokens(),
            cluster: (self.tp == 1).then_some(&self.cluster),
            ..PlacementRequest::new(loads, self.gpus() / self.tp)
        };
        tp_expand(&strategy.place(&request)?, self.tp)
    }

    /// The analytical estimator over the setup's model, cluster and compute cost, with the
    /// scenario's activation precision.
    pub fn analytical_cost(&self) -> AnalyticalCost<'_> {
        let comm = &self.scenario.comm;
        let options = CostOptions {
            dispatch_bytes_per_elem: f64::from(comm.dispatch_bytes_per_elem),
            combine_bytes_per_elem: f64::from(comm.combine_bytes_per_elem),
        };
        AnalyticalCost::new(&self.model, &self.cluster, &*self.compute, options)
    }

    /// Per MoE layer, the dispatch plan of `step` under `placement` ([`step_plans`]).
    pub fn plans(&self, placement: &Placement, step: &Step) -> Result<Vec<DispatchPlan>> {
        step_plans(
            &self.cluster,
            placement,
            &self.trace,
            step,
            self.model.top_k,
            &self.dispatch,
        )
    }

    /// Per MoE layer, what `step` moves and computes under `placement` in the simulator: its
    /// plans at the scenario's activation precision, each expert split over its TP rank.
    pub fn layer_work(&self, placement: &Placement, step: &Step) -> Result<Vec<LayerWork>> {
        self.layer_work_from(&self.trace, placement, step)
    }

    /// [`Setup::layer_work`] with the step's routing taken from `trace` (the serving engine
    /// prices steps larger than the trace from its loads).
    pub fn layer_work_from(
        &self,
        trace: &Trace,
        placement: &Placement,
        step: &Step,
    ) -> Result<Vec<LayerWork>> {
        let hidden = self.model.hidden_size as f64;
        let comm = &self.scenario.comm;
        let plans = step_plans(
            &self.cluster,
            placement,
            trace,
            step,
            self.model.top_k,
            &self.dispatch,
        )?;
        let dispatch_bytes = hidden * f64::from(comm.dispatch_bytes_per_elem);
        let mut works = LayerWork::from_plans(
            &plans,
            dispatch_bytes,
            hidden * f64::from(comm.combine_bytes_per_elem),
            self.tp,
            self.sim.all_to_all.per_machine(),
        );
        // Speculation needs token identities: steps priced from loads dispatch plainly.
        if let (Some(speculation), Trace::Tokens(routing)) = (&self.speculation, trace) {
            let tokens = step_routing(routing, step);
            let first = step.first_token;
            let target = Target {
                cluster: &self.cluster,
                placement,
                policy: &self.dispatch,
            };
            speculation.apply(target, &tokens, first, &mut works, dispatch_bytes)?;
        }
        Ok(works)
    }

    /// What `step`'s tokens attend over ([`attention_span`]).
    pub fn attention_span(&self, step: &Step) -> AttentionSpan {
        attention_span(&self.trace, step, &self.scenario.sequences)
    }

    /// The simulator's description of `step` of `layers` on the setup's cluster, timed by
    /// `costs` ([`Setup::kernel_costs`]) and run with the setup's all-to-all and links.
    pub fn step_spec<'a>(
        &'a self,
        costs: &'a KernelCosts,
        step: &Step,
        layers: &'a [LayerWork],
    ) -> StepSpec<'a> {
        StepSpec {
            cluster: &self.cluster,
            costs,
            attention: self.attention_span(step),
            layers,
            all_to_all: &*self.sim.all_to_all,
            links: self.sim.links,
        }
    }

    /// The simulator's kernel durations: the compute cost plus launches, each routed expert's
    /// FFN split over its tensor-parallel rank.
    pub fn kernel_costs(&self) -> KernelCosts {
        KernelCosts::with_compute(&self.model, self.cluster.gpu_spec(0), self.compute.clone())
            .with_expert_tp(self.tp as u64)
    }
}

/// Keeps the steps the predictor was not fitted on, and refuses what speculation does not
/// model: tensor-parallel experts and an all-to-all that deduplicates per machine.
fn check_speculation(
    speculation: &Speculation,
    steps: &mut Vec<Step>,
    tp: usize,
    sim: &SimSetup,
) -> Result<()> {
    if tp > 1 {
        return Err(Error::invalid(
            "`speculation` with `tp` > 1 is not modelled (a token's destination is a rank)",
        ));
    }
    if sim.all_to_all.per_machine() {
        return Err(Error::invalid(format!(
            "`speculation` with `sim.all_to_all` = \"{}\" is not modelled (it sends a token to a \
             machine once)",
            sim.all_to_all.name
        )));
    }
    steps.retain(|s| s.first_token >= speculation.fit_tokens);
    if steps.is_empty() {
        return Err(Error::invalid(format!(
            "`speculation.fit_fraction` leaves no step after the {} fitted tokens",
            speculation.fit_tokens
        )));
    }
    Ok(())
}

/// One `warning:` line per data type of `model`'s weights that `gpu` has no tensor cores for
/// (FP4 on H100, FP8 on A100): those GEMMs are priced at the next wider type it has.
fn warn_unsupported_types(model: &MoeModel, gpu: &GpuSpec) {
    let mut types: Vec<DataType> = [model.expert_bytes_per_param, model.dense_bytes_per_param]
        .into_iter()
        .map(DataType::of_bytes_per_param)
        .collect();
    types.dedup();
    for dtype in types {
        let used = gpu.supported(dtype);
        if used != dtype {
            eprintln!(
                "warning: {} has no {} tensor cores; model `{}`'s {} GEMMs are priced at its {} rate",
                gpu.name,
                dtype.name(),
                model.name,
                dtype.name(),
                used.name()
            );
        }
    }
}

/// Reads or generates the scenario's trace, and says where it came from.
pub fn load_trace(scenario: &Scenario) -> Result<(Trace, String)> {
    match &scenario.trace {
        TraceSource::File(path) => Ok((trace::load(path)?, path.display().to_string())),
        TraceSource::Synth(params) => {
            let mut params = params.clone();
            params.seed = scenario.seed;
            let routing = synth::synthesize(&params)?;
            Ok((
                Trace::Tokens(routing),
                format!("synthetic (seed {})", scenario.seed),
            ))
        }
    }
}

/// `trace` with its MoE layers lined up with `model`'s: SGLang's expert-load dumps list every
/// decoder layer, DeepSeek's first dense ones as rows of zeros (61 rows for DeepSeek-V3's 58
/// MoE layers); when a load trace has more layers than the model has MoE layers, its empty rows
/// are dropped (and returned). The trace must then come from (a model shaped like) `model`.
fn fit_trace_to_model(trace: Trace, model: &MoeModel, source: &str) -> Result<(Trace, Vec<usize>)> {
    let (trace, dropped) = match trace {
        Trace::Loads(mut loads) if loads.num_layers() > model.num_moe_layers() => {
            let layers = loads.num_layers();
            let kept = loads.drop_empty_layers();
            let dropped = (0..layers).filter(|l| !kept.contains(l)).collect();
            (Trace::Loads(loads), dropped)
        }
        other => (other, Vec::new()),
    };
    if trace.num_experts() != model.num_experts {
        return Err(Error::invalid(format!(
            "{source}: trace has {} experts per layer but model `{}` has {}",
            trace.num_experts(),
            model.name,
            model.num_experts
        )));
    }
    if trace.num_layers() > model.num_moe_layers() {
        return Err(Error::invalid(format!(
            "{source}: trace has {} MoE layers but model `{}` has {}",
            trace.num_layers(),
            model.name,
            model.num_moe_layers()
        )));
    }
    Ok((trace, dropped))
}

/// The scenario's compute cost: its `sim.calibration` file (measured on a GPU by `moesim
/// profile`, fitted by `moesim calibrate`; FFNs it does not cover keep the roofline), or the
/// roofline.
fn compute_cost(scenario: &Scenario, model: &MoeModel) -> Result<Arc<dyn ComputeCost>> {
    Ok(match &scenario.sim.calibration {
        Some(path) => Arc::new(CalibratedCompute::new(
            Calibration::load(path)?,
            std::slice::from_ref(model),
        )),
        None => Arc::new(RooflineCompute::default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::trace::ExpertLoads;

    #[test]
    fn load_traces_lose_their_empty_dense_layers_only_when_the_model_has_fewer() {
        let model = MoeModel::preset("mixtral-8x7b").unwrap();
        let layers = model.num_moe_layers();
        let busy = vec![1.0; model.num_experts];
        let idle = vec![0.0; model.num_experts];
        let loads =
            |rows: Vec<Vec<f64>>| Trace::Loads(ExpertLoads::new(model.num_experts, rows).unwrap());
        // One dense layer in front, as SGLang writes it: dropped, the rest fits.
        let with_dense = loads([vec![idle.clone()], vec![busy.clone(); layers]].concat());
        let (fitted, dropped) = fit_trace_to_model(with_dense, &model, "t").unwrap();
        assert_eq!((fitted.num_layers(), dropped), (layers, vec![0]));
        // As many layers as the model: an idle layer is kept (it is a MoE layer no token chose).
        let exact = loads([vec![idle.clone()], vec![busy.clone(); layers - 1]].concat());
        let (fitted, dropped) = fit_trace_to_model(exact, &model, "t").unwrap();
        assert_eq!((fitted.num_layers(), dropped.len()), (layers, 0));
        // More busy layers than the model has: an error naming both counts.
        let err = fit_trace_to_model(loads(vec![busy; layers + 1]), &model, "t")
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains(&format!("{} MoE layers but model", layers + 1)),
            "{err}"
        );
    }

    #[test]
    fn a_calibration_file_times_the_routed_experts() {
        let model = MoeModel {
            hidden_size: 100,
            expert_ffn_size: 100,
            gated_ffn: true,
            expert_bytes_per_param: 2.0,
            ..MoeModel::preset("mixtral-8x7b").unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calibration.toml");
        // gate_up 100x200 and down 100x100, both measured: 1000 / 3000 ns and 400 / 600 ns at
        // 1 / 128 tokens.
        std::fs::write(
            &path,
            "gpu = \"g\"\ndriver = \"d\"\ndate = \"x\"\nsource = \"synthetic\"\nfit_half = \"all\"\n\
             [[gemm]]\nk = 100\nn = 200\ntokens = [1, 128]\ntime_ns = [1000, 3000]\n\
             [[gemm]]\nk = 100\nn = 100\ntokens = [1, 128]\ntime_ns = [400, 600]\n",
        )
        .unwrap();
        let text = format!(
            "name = \"t\"\nmodel = \"mixtral-8x7b\"\ncluster = \"dgx-h100\"\ntokens_per_gpu = 1\n\
             placements = [\"contiguous\"]\n[trace]\nfile = \"x\"\n[sim]\ncalibration = {:?}\n",
            path.display().to_string()
        );
        let scenario = Scenario::parse(&text, Path::new("")).unwrap();
        let compute = compute_cost(&scenario, &model).unwrap();
        let h100 = crate::topology::GpuSpec::named("h100").unwrap();
        let costs = KernelCosts::with_compute(&model, &h100, compute);
        // The measured GEMMs at 3 tokens (a measurement needs no tile padding): 1000 + 2/127 x
        // 2000 = 1031.5 -> 1031 and 400 + 2/127 x 200
        // = 403.1 -> 403, plus the launch.
        assert_eq!(costs.routed_ns([3.0]), 1031 + 403 + 2_000);
        let missing = Scenario {
            sim: crate::sim::SimConfig {
                calibration: Some(dir.path().join("none.toml")),
                ..Default::default()
            },
            ..scenario
        };
        assert!(compute_cost(&missing, &model).is_err());
    }
}
