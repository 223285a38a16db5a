//! Scenario files: what to simulate, in TOML.
//!
//! A scenario names a model, a cluster, a routing trace (a file or synthetic parameters), the
//! placement strategies to compare (each tunable in its own `[placement.<name>]` table), the
//! batch size, a seed, the simulator's settings and where outputs go. Unknown keys are
//! rejected so a typo never silently falls back to a default. Relative paths inside a scenario
//! are resolved against the scenario file's folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result, parse_toml};
use crate::offload::spec::OffloadSpec;
use crate::placement::STRATEGIES;
use crate::placement::dispatch::DispatchConfig;
use crate::placement::replacement::ReplacementConfig;
use crate::registry::Settings;
use crate::serve::config::ServingConfig;
use crate::serve::scaling::{GpuFailure, ScalingConfig};
use crate::sim::SimConfig;
use crate::trace::Phase;
use crate::trace::synth::SynthParams;
use crate::workload::spec::WorkloadSpec;

/// The scenario `moesim run` uses when given no file: `scenarios/quickstart.toml`, compiled in.
pub const QUICKSTART_TOML: &str = include_str!("../scenarios/quickstart.toml");

/// A parsed scenario.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used for the report folder and titles.
    pub name: String,
    /// Seed for every random choice the run makes.
    #[serde(default)]
    pub seed: u64,
    /// A model preset name (`moesim` lists them in errors) or a path to a HuggingFace
    /// config.json (or its folder), relative to the scenario file.
    pub model: String,
    /// A cluster preset name (e.g. `dgx-h100`, `hgx-h800x4`) or a path to a cluster TOML,
    /// relative to the scenario file.
    pub cluster: String,
    /// Expert-parallel degree: how many of the cluster's GPUs hold experts. Defaults to all.
    #[serde(default)]
    pub gpus: Option<usize>,
    /// Tensor-parallel degree inside experts: the `gpus` GPUs form `gpus / tp` expert-parallel
    /// ranks of `tp` consecutive GPUs, experts are placed over the ranks, and each expert's FFN
    /// is split over its rank's GPUs. Default 1.
    #[serde(default = "Scenario::default_tp")]
    pub tp: usize,
    /// Tokens each GPU contributes to one step (the batch, after data-parallel attention).
    pub tokens_per_gpu: usize,
    /// Batch schedule of the simulated steps (`moesim simulate`, the simulated part of
    /// `moesim run`): entries played in order, each `repeat` times, the list cycled until the
    /// trace's tokens are used. Empty: steps of `tokens_per_gpu` per GPU (or the trace's own
    /// step metadata when it has some).
    #[serde(default)]
    pub schedule: Vec<BatchSpec>,
    /// Placement strategies to compare, by name.
    pub placements: Vec<String>,
    /// A placement strategy's own knobs, by its name (`[placement.ilp-balance]
    /// time_limit_s = 10`); strategies without a table take their defaults.
    #[serde(default)]
    pub placement: BTreeMap<String, Settings>,
    /// Where the routing comes from.
    pub trace: TraceSource,
    /// Element sizes of the all-to-all payloads.
    #[serde(default)]
    pub comm: CommConfig,
    /// Where and how results are written.
    #[serde(default)]
    pub outputs: OutputConfig,
    /// Discrete-event simulation settings (`moesim simulate`).
    #[serde(default)]
    pub sim: SimConfig,
    /// Sequence and context lengths the attention core is priced at, when the trace has no
    /// token positions.
    #[serde(default)]
    pub sequences: Sequences,
    /// Request traffic for `moesim serve` (the `[workload]` table of `moesim workload`).
    #[serde(default)]
    pub workload: Option<WorkloadSpec>,
    /// The serving engine `moesim serve` runs the workload through.
    #[serde(default)]
    pub serving: Option<ServingConfig>,
    /// How each layer's pairs are dispatched: replica choice, capacity, least-loaded EP.
    #[serde(default)]
    pub dispatch: DispatchConfig,
    /// Speculative pre-scheduling of the dispatch (`[speculation]`); absent: plain dispatch.
    #[serde(default)]
    pub speculation: Option<SpeculationSpec>,
    /// Re-placing experts while serving (`moesim serve`).
    #[serde(default)]
    pub replacement: Option<ReplacementConfig>,
    /// Elastic scaling of the serving pool (`moesim serve`).
    #[serde(default)]
    pub scaling: Option<ScalingConfig>,
    /// GPUs and network components that fail while serving (`[[failures]]`).
    #[serde(default)]
    pub failures: Vec<Failure>,
    /// Experts in host memory, a cache of them on the one GPU (`[offload]`).
    #[serde(default)]
    pub offload: Option<OffloadSpec>,
}

/// The `[speculation]` table: tokens sent towards their predicted experts' GPUs ahead of the
/// gate (Speculative MoE's token shuffling), by an expert predictor fitted on a trace.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpeculationSpec {
    /// The predictor, by name (`moesim predict` lists them): `transition` or `oracle`.
    pub predictor: String,
    /// Share of the fitting trace's tokens (the first ones) the predictor learns from, in
    /// (0, 1); without `fit_trace` the simulated steps are the scenario trace's later tokens.
    #[serde(default = "SpeculationSpec::default_fit_fraction")]
    pub fit_fraction: f64,
    /// A token trace to fit the predictor on instead of the scenario's own (relative to the
    /// scenario file); it must have the model's expert count.
    #[serde(default)]
    pub fit_trace: Option<PathBuf>,
    /// The oracle's accuracy, in [0, 1].
    #[serde(default)]
    pub accuracy: Option<f64>,
    /// The oracle's seed.
    #[serde(default)]
    pub seed: u64,
}

impl SpeculationSpec {
    fn default_fit_fraction() -> f64 {
        0.5
    }

    /// Checks the fraction and that `accuracy` goes with the oracle, naming the key at fault.
    fn check(&self) -> std::result::Result<(), String> {
        if !(self.fit_fraction > 0.0 && self.fit_fraction < 1.0) {
            return Err(format!(
                "`speculation.fit_fraction` = {} must be strictly between 0 and 1",
                self.fit_fraction
            ));
        }
        if self.accuracy.is_some() && self.predictor != "oracle" {
            return Err(format!(
                "`speculation.accuracy` is the oracle's knob, not predictor `{}`'s",
                self.predictor
            ));
        }
        if let Some(accuracy) = self.accuracy.filter(|a| !(0.0..=1.0).contains(a)) {
            return Err(format!(
                "`speculation.accuracy` = {accuracy} must be between 0 and 1"
            ));
        }
        Ok(())
    }
}

/// One `[[failures]]` entry, by its `kind`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Failure {
    /// `kind = "gpu"`: a GPU of an elastic pool fails (`[scaling]` recovers from it).
    Gpu(GpuFailure),
    /// `kind = "network"`: a NIC, switch or link fails.
    Network(NetworkFailure),
}

/// A `kind = "network"` failure: a NIC, switch or link of the cluster fails at `at_s` seconds of
/// simulated serving and stays down; the routes between GPUs go around it where the topology
/// allows.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkFailure {
    /// When it fails, s of simulated time.
    pub at_s: f64,
    /// A graph node of the cluster (`n0/nic3`, `leaf2`, `spine`: every link touching it) or a
    /// link (`n0/nic3->leaf3`: the cable, both directions).
    pub component: String,
}

/// The `[sequences]` table: how long the sequences of the simulated steps are, for traces
/// without token positions. Without either length, steps of that phase price the attention
/// projections only.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sequences {
    /// Tokens of each sequence of prefill (or training-like, or phase-less) steps: every token
    /// attends causally over its sequence so far, `(sequence_len + 1) / 2` keys on average.
    pub sequence_len: Option<i64>,
    /// Tokens of context each decode token reads from the KV cache.
    pub context_len: Option<i64>,
}

impl Sequences {
    /// Checks both lengths are at least 1, naming the key at fault.
    fn check(&self) -> std::result::Result<(), String> {
        for (key, value) in [
            ("sequence_len", self.sequence_len),
            ("context_len", self.context_len),
        ] {
            if let Some(value) = value.filter(|&v| v < 1) {
                return Err(format!(
                    "`sequences.{key}` must be at least 1 token, got {value}"
                ));
            }
        }
        Ok(())
    }
}

/// The routing trace of a scenario: a file, or parameters for the synthetic generator.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(try_from = "TraceTable")]
pub enum TraceSource {
    /// A trace file in moesim's Parquet format (or any importable format).
    File(PathBuf),
    /// Generate the trace with the seeded synthetic generator.
    Synth(SynthParams),
}

/// The `[trace]` table as written: exactly one of its keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceTable {
    file: Option<PathBuf>,
    synth: Option<SynthParams>,
}

impl TryFrom<TraceTable> for TraceSource {
    type Error = String;

    fn try_from(table: TraceTable) -> std::result::Result<TraceSource, String> {
        match (table.file, table.synth) {
            (Some(file), None) => Ok(TraceSource::File(file)),
            (None, Some(params)) => Ok(TraceSource::Synth(params)),
            _ => Err(
                "`trace` needs exactly one of `file` (a trace file) or a `[trace.synth]` \
                      table (generator parameters)"
                    .into(),
            ),
        }
    }
}

/// One entry of a batch schedule: `repeat` steps of `tokens_per_gpu` tokens per GPU in `phase`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    /// `prefill` or `decode`; labels the steps in the outputs (their cost follows from the
    /// token count: decode batches are small and memory-bound).
    pub phase: Phase,
    /// Tokens each GPU brings to each of these steps.
    pub tokens_per_gpu: usize,
    /// Consecutive steps of this shape before the next entry (default 1).
    #[serde(default = "BatchSpec::default_repeat")]
    pub repeat: usize,
}

impl BatchSpec {
    fn default_repeat() -> usize {
        1
    }
}

/// Payload element sizes for dispatch and combine.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommConfig {
    /// Bytes per hidden element sent to experts (1 for FP8 dispatch, as DeepEP does).
    #[serde(default = "CommConfig::default_dispatch_bytes")]
    pub dispatch_bytes_per_elem: u32,
    /// Bytes per hidden element returned from experts (2 for BF16 combine).
    #[serde(default = "CommConfig::default_combine_bytes")]
    pub combine_bytes_per_elem: u32,
}

impl CommConfig {
    fn default_dispatch_bytes() -> u32 {
        1
    }
    fn default_combine_bytes() -> u32 {
        2
    }
}

impl Default for CommConfig {
    fn default() -> Self {
        CommConfig {
            dispatch_bytes_per_elem: Self::default_dispatch_bytes(),
            combine_bytes_per_elem: Self::default_combine_bytes(),
        }
    }
}

/// Output settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Report folder; defaults to `reports/<name>` under the current directory.
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

impl Scenario {
    /// The scenario `place eval --model M --cluster C` prices a placement with: `trace` cut
    /// into steps of `tokens_per_gpu` per GPU, default communication and `[sim]` settings.
    pub fn for_placement_eval(
        model: &str,
        cluster: &str,
        tokens_per_gpu: usize,
        trace: &Path,
    ) -> Scenario {
        Scenario {
            name: "place-eval".into(),
            seed: 0,
            model: model.into(),
            cluster: cluster.into(),
            gpus: None,
            tp: Scenario::default_tp(),
            tokens_per_gpu,
            schedule: Vec::new(),
            placements: Vec::new(),
            placement: BTreeMap::new(),
            trace: TraceSource::File(trace.to_path_buf()),
            comm: CommConfig::default(),
            outputs: OutputConfig::default(),
            sim: SimConfig::default(),
            sequences: Sequences::default(),
            workload: None,
            serving: None,
            dispatch: DispatchConfig::default(),
            speculation: None,
            replacement: None,
            scaling: None,
            failures: Vec::new(),
            offload: None,
        }
    }

    /// Reads and checks a scenario file; relative paths inside it become relative to its folder.
    pub fn load(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let base = path.parent().unwrap_or(Path::new(""));
        Scenario::parse(&text, base).map_err(|message| Error::bad_file(path, message))
    }

    /// Parses scenario text; relative paths (trace, calibration, a model or cluster given as
    /// a file) are joined to `base`. The error is a message naming the offending key, for the
    /// caller to attach the file name to.
    pub fn parse(text: &str, base: &Path) -> std::result::Result<Scenario, String> {
        let mut scenario: Scenario = parse_toml(text)?;
        if let TraceSource::File(file) = &mut scenario.trace {
            *file = relative_to(base, "trace.file", file)?;
        }
        if let Some(workload) = &mut scenario.workload {
            workload.resolve(base)?;
        }
        if let Some(file) = &mut scenario.sim.calibration {
            *file = relative_to(base, "sim.calibration", file)?;
        }
        if let Some(file) = scenario
            .speculation
            .as_mut()
            .and_then(|s| s.fit_trace.as_mut())
        {
            *file = relative_to(base, "speculation.fit_trace", file)?;
        }
        for (key, spec, suffix) in [
            ("model", &mut scenario.model, ".json"),
            ("cluster", &mut scenario.cluster, ".toml"),
        ] {
            if spec.ends_with(suffix) || spec.contains(std::path::MAIN_SEPARATOR) {
                *spec = relative_to(base, key, Path::new(spec.as_str()))?
                    .display()
                    .to_string();
            }
        }
        scenario.check()?;
        Ok(scenario)
    }

    /// Checks values serde cannot: non-empty lists, positive sizes.
    fn check(&self) -> std::result::Result<(), String> {
        if self.tokens_per_gpu == 0 {
            return Err("`tokens_per_gpu` must be at least 1".into());
        }
        if self.placements.is_empty() {
            return Err("`placements` must name at least one strategy".into());
        }
        if self.gpus == Some(0) {
            return Err("`gpus` must be at least 1".into());
        }
        if self.tp == 0 {
            return Err("`tp` must be at least 1".into());
        }
        for (i, batch) in self.schedule.iter().enumerate() {
            if batch.tokens_per_gpu == 0 || batch.repeat == 0 {
                return Err(format!(
                    "`schedule[{i}]`: `tokens_per_gpu` and `repeat` must be at least 1"
                ));
            }
        }
        for name in &self.placements {
            self.placement_strategy_settings(name)
                .map_err(|message| format!("`placements`: {message}"))?;
        }
        for name in self.placement.keys() {
            self.placement_strategy_settings(name)
                .map_err(|message| format!("`placement.{name}`: {message}"))?;
        }
        self.sequences.check()?;
        if let Some(speculation) = &self.speculation {
            speculation.check()?;
        }
        if let Some(offload) = &self.offload {
            offload.check()?;
        }
        if let Some(workload) = &self.workload {
            workload.check()?;
        }
        if let Some(serving) = &self.serving {
            serving.check()?;
            if self.workload.is_none() {
                return Err("`serving` needs a `[workload]` table: the requests to serve".into());
            }
        }
        self.dispatch.resolve(0)?;
        if let Some(replacement) = &self.replacement {
            replacement.check()?;
        }
        if let Some(scaling) = &self.scaling {
            // The cluster's bounds are checked when it is resolved (`moesim serve`).
            scaling.check(1, usize::MAX)?;
        }
        for (i, failure) in self.failures.iter().enumerate() {
            match failure {
                // The GPU's bounds are checked against the cluster (`moesim serve`).
                Failure::Gpu(gpu) => gpu.check(i, usize::MAX)?,
                Failure::Network(network) if !(network.at_s >= 0.0 && network.at_s.is_finite()) => {
                    return Err(format!(
                        "`failures[{i}].at_s` = {} must be a non-negative number of seconds",
                        network.at_s
                    ));
                }
                Failure::Network(_) => {}
            }
        }
        self.sim.resolve().map(drop)
    }

    /// The settings table of placement strategy `name` (empty when the scenario has none),
    /// checked to build.
    pub fn placement_strategy_settings(&self, name: &str) -> std::result::Result<Settings, String> {
        let settings = self.placement.get(name).cloned().unwrap_or_default();
        STRATEGIES.build(name, &settings)?;
        Ok(settings)
    }

    fn default_tp() -> usize {
        1
    }

    /// The report folder.
    pub fn output_dir(&self) -> PathBuf {
        self.outputs
            .dir
            .clone()
            .unwrap_or_else(|| Path::new("reports").join(&self.name))
    }
}

/// `path` (key `key` of the scenario) joined to `base` when relative; an empty path is an
/// error naming the key (it would name the scenario's own folder).
fn relative_to(base: &Path, key: &str, path: &Path) -> std::result::Result<PathBuf, String> {
    if path.as_os_str().is_empty() {
        return Err(format!("`{key}` is empty; expected a file's path"));
    }
    Ok(if path.is_relative() {
        base.join(path)
    } else {
        path.to_path_buf()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
model = "mixtral-8x7b"
cluster = "dgx-h100"
tokens_per_gpu = 128
placements = ["contiguous"]
[trace]
file = "x.parquet"
"#;

    #[test]
    fn sequence_lengths_below_one_name_their_key() {
        let text = format!("{MINIMAL}[sequences]\nsequence_len = 4096\ncontext_len = 0\n");
        let err = Scenario::parse(&text, Path::new("")).unwrap_err();
        assert_eq!(
            err,
            "`sequences.context_len` must be at least 1 token, got 0"
        );
        let text = format!("{MINIMAL}[sequences]\nsequence_len = -4\n");
        let err = Scenario::parse(&text, Path::new("")).unwrap_err();
        assert_eq!(
            err,
            "`sequences.sequence_len` must be at least 1 token, got -4"
        );
        let text = format!("{MINIMAL}[sequences]\nsequence_len = 4096\ncontext_len = 5000\n");
        let sequences = Scenario::parse(&text, Path::new("")).unwrap().sequences;
        assert_eq!(
            (sequences.sequence_len, sequences.context_len),
            (Some(4096), Some(5000))
        );
    }

    #[test]
    fn relative_trace_paths_follow_the_scenario_file() {
        let s = Scenario::parse(MINIMAL, Path::new("scenarios")).unwrap();
        assert_eq!(s.trace, TraceSource::File("scenarios/x.parquet".into()));
        assert_eq!(s.comm.dispatch_bytes_per_elem, 1);
        assert_eq!(s.output_dir(), PathBuf::from("reports/t"));
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let text = MINIMAL
            .replace("seed", "")
            .replace("tokens_per_gpu", "seed = 1\ntokns_per_gpu");
        let err = Scenario::parse(&text, Path::new("")).unwrap_err();
        assert!(err.contains("tokns_per_gpu"), "{err}");
        assert!(err.starts_with("line "), "{err}");
    }

    #[test]
    fn type_errors_name_the_key_by_its_path_and_line() {
        let err = Scenario::parse(&MINIMAL.replace("128", "\"x\""), Path::new("")).unwrap_err();
        assert!(
            err.starts_with("line 5: `tokens_per_gpu`: invalid type: string \"x\""),
            "{err}"
        );
        let text = format!("{MINIMAL}[sim]\nrate_tolerance = \"x\"\n");
        let err = Scenario::parse(&text, Path::new("")).unwrap_err();
        assert!(
            err.starts_with("line 10: `sim.rate_tolerance`: invalid type"),
            "{err}"
        );
        let text = format!("{MINIMAL}[[schedule]]\nphase = \"decode\"\ntokens_per_gpu = -1\n");
        let err = Scenario::parse(&text, Path::new("")).unwrap_err();
        assert!(err.contains("`schedule[0].tokens_per_gpu`"), "{err}");
    }

    #[test]
    fn the_trace_table_needs_one_source_and_paths_are_not_empty() {
        let text = MINIMAL.replace("file = \"x.parquet\"", "");
        let err = Scenario::parse(&text, Path::new("")).unwrap_err();
        assert!(err.contains("`trace` needs exactly one of `file`"), "{err}");
        let text = MINIMAL.replace("x.parquet", "");
        let err = Scenario::parse(&text, Path::new("scenarios")).unwrap_err();
        assert_eq!(err, "`trace.file` is empty; expected a file's path");
        let text = format!("{MINIMAL}[sim]\ncalibration = \"\"\n");
        let err = Scenario::parse(&text, Path::new("scenarios")).unwrap_err();
        assert_eq!(err, "`sim.calibration` is empty; expected a file's path");
    }

    #[test]
    fn model_and_cluster_files_are_relative_to_the_scenario() {
        let text = MINIMAL
            .replace("\"mixtral-8x7b\"", "\"hf/config.json\"")
            .replace("\"dgx-h100\"", "\"clusters/two.toml\"");
        let s = Scenario::parse(&text, Path::new("scenarios")).unwrap();
        assert_eq!(s.model, "scenarios/hf/config.json");
        assert_eq!(s.cluster, "scenarios/clusters/two.toml");
        // Presets are names, not paths.
        let s = Scenario::parse(MINIMAL, Path::new("scenarios")).unwrap();
        assert_eq!(
            (s.model.as_str(), s.cluster.as_str()),
            ("mixtral-8x7b", "dgx-h100")
        );
    }

    #[test]
    fn zero_batch_is_rejected() {
        let text = MINIMAL.replace("128", "0");
        let err = Scenario::parse(&text, Path::new("")).unwrap_err();
        assert!(err.contains("tokens_per_gpu"), "{err}");
    }

    #[test]
    fn tp_defaults_to_1_and_0_is_rejected() {
        assert_eq!(Scenario::parse(MINIMAL, Path::new("")).unwrap().tp, 1);
        let text = MINIMAL.replace("placements", "tp = 0\nplacements");
        let err = Scenario::parse(&text, Path::new("")).unwrap_err();
        assert!(err.contains("`tp`"), "{err}");
    }

    #[test]
    fn the_sim_table_is_optional_and_checked() {
        let s = Scenario::parse(MINIMAL, Path::new("")).unwrap();
        assert_eq!(s.sim, SimConfig::default());
        let text =
            format!("{MINIMAL}[sim]\noverlap = [\"dual-batch\"]\nall_to_all = \"hierarchical\"\n");
        let s = Scenario::parse(&text, Path::new("")).unwrap();
        assert_eq!(s.sim.overlap, ["dual-batch"]);
        assert_eq!(s.sim.all_to_all, "hierarchical");
        let err = Scenario::parse(
            &format!("{MINIMAL}[sim.chunked]\nchunks = 0\n"),
            Path::new(""),
        )
        .unwrap_err();
        assert!(
            err.contains("`sim.chunked`") && err.contains("`chunks` = 0"),
            "{err}"
        );
    }

    #[test]
    fn placement_tables_tune_their_strategy_and_are_checked() {
        let text = format!("{MINIMAL}[placement.ilp-balance]\ntime_limit_s = 5\n");
        let s = Scenario::parse(&text, Path::new("")).unwrap();
        let settings = s.placement_strategy_settings("ilp-balance").unwrap();
        assert_eq!(settings["time_limit_s"].as_integer(), Some(5));
        assert!(s.placement_strategy_settings("eplb").unwrap().is_empty());
        let err = Scenario::parse(
            &format!("{MINIMAL}[placement.eplb]\ntime_limit_s = 5\n"),
            Path::new(""),
        )
        .unwrap_err();
        assert!(
            err.contains(
                "`placement.eplb`: placement strategy `eplb`: unknown field `time_limit_s`"
            ),
            "{err}"
        );
        let err =
            Scenario::parse(&MINIMAL.replace("contiguous", "random"), Path::new("")).unwrap_err();
        assert!(
            err.contains("`placements`: unknown placement strategy `random`"),
            "{err}"
        );
    }

    #[test]
    fn a_batch_schedule_is_parsed_and_checked() {
        let text = MINIMAL.replace(
            "placements",
            "schedule = [{ phase = \"prefill\", tokens_per_gpu = 512 }, \
             { phase = \"decode\", tokens_per_gpu = 16, repeat = 3 }]\nplacements",
        );
        let s = Scenario::parse(&text, Path::new("")).unwrap();
        assert_eq!(
            s.schedule,
            vec![
                BatchSpec {
                    phase: Phase::Prefill,
                    tokens_per_gpu: 512,
                    repeat: 1
                },
                BatchSpec {
                    phase: Phase::Decode,
                    tokens_per_gpu: 16,
                    repeat: 3
                },
            ]
        );
        let err =
            Scenario::parse(&text.replace("repeat = 3", "repeat = 0"), Path::new("")).unwrap_err();
        assert!(err.contains("schedule[1]"), "{err}");
        let err =
            Scenario::parse(&text.replace("\"decode\"", "\"serve\""), Path::new("")).unwrap_err();
        assert!(err.contains("serve"), "{err}");
    }

    #[test]
    fn the_embedded_quickstart_parses() {
        let s = Scenario::parse(QUICKSTART_TOML, Path::new("scenarios")).unwrap();
        assert_eq!(s.name, "quickstart");
        assert!(s.placements.len() >= 2);
    }
}
