//! Fuzzing of every input boundary on stable Rust: proptest drives structure-aware generators
//! ([`inputs`]) and byte mutations of valid files ([`mutate`]) into the npy, vLLM, SGLang and CSV
//! importers, the Parquet trace reader, placement JSON, calibration TOML, scenario TOML (read and
//! set up as `moesim run` does, up to the placements), cluster TOML and request files (Azure,
//! BurstGPT, Mooncake, plain CSV, replayed to their end). The property: the
//! reader does not panic, and returns either a value or an error whose message starts with the
//! file's path. What an importer accepts also goes through `trace validate` and `trace stats`.
//!
//! Budget: `MOESIM_FUZZ_CASES` inputs per target (default 40, the CI run) and
//! `MOESIM_FUZZ_SEED` (default 0) for the generator; the long run is
//! `MOESIM_FUZZ_CASES=100000 cargo test --release --test fuzz -- --nocapture` (minutes; see the
//! README). A failing input is shrunk by proptest and the smallest one is written to
//! `target/tmp/fuzz-crashers/<target>`; copied into `tests/fuzz-corpus/<target>/`, it is replayed
//! by `corpus_replays_clean` on every run.

#[path = "../it/common/mod.rs"]
mod common;
mod inputs;
mod mutate;

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use moesim::analysis;
use moesim::model::MoeModel;
use moesim::pipeline::Setup;
use moesim::placement::export::read_placement;
use moesim::profile::Calibration;
use moesim::profile::calibrated::CalibratedCompute;
use moesim::profile::measurement::{Kind, Measurements};
use moesim::scenario::{Scenario, TraceSource};
use moesim::topology::{Cluster, DataType};
use moesim::trace::importers::{self, ImportFormat};
use moesim::trace::parquet::{read_chunks, read_trace, write_trace};
use moesim::trace::validate::validate;
use moesim::trace::{ExpertLoads, LayerRouting, Phase, RoutingTrace, TokenMeta, Trace};
use moesim::workload::replay;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// One input boundary: its name (also its corpus folder), the file name inputs are written to,
/// and the reader.
struct Target {
    name: &'static str,
    file: &'static str,
    read: fn(&Path) -> moesim::Result<()>,
}

const NPY: Target = Target {
    name: "npy",
    file: "input.npy",
    read: |path| import(path, ImportFormat::Npy),
};
const VLLM: Target = Target {
    name: "vllm",
    file: "input.vllm",
    read: |path| import(path, ImportFormat::Vllm),
};
const SGLANG: Target = Target {
    name: "sglang",
    file: "input.json",
    read: |path| import(path, ImportFormat::Sglang),
};
const CSV: Target = Target {
    name: "csv",
    file: "input.csv",
    read: |path| import(path, ImportFormat::Csv),
};
const PARQUET: Target = Target {
    name: "parquet",
    file: "input.parquet",
    read: read_parquet,
};
const PLACEMENT: Target = Target {
    name: "placement",
    file: "input.json",
    read: |path| read_placement(path).map(drop),
};
const CALIBRATION: Target = Target {
    name: "calibration",
    file: "input.toml",
    read: read_calibration,
};

const SCENARIO: Target = Target {
    name: "scenario",
    file: "input.toml",
    read: read_scenario,
};
const CLUSTER: Target = Target {
    name: "cluster",
    file: "input.toml",
    read: |path| Cluster::from_toml(path).map(drop),
};
const REQUESTS: Target = Target {
    name: "requests",
    file: "input.csv",
    read: read_requests,
};

/// Replays request file `path` (format detected) to its end, as `moesim workload` does.
fn read_requests(path: &Path) -> moesim::Result<()> {
    for request in replay::open(path)? {
        request?;
    }
    Ok(())
}

/// Imports `path` as `format`; what is accepted is validated and summarised too (when small
/// enough to do so quickly).
fn import(path: &Path, format: ImportFormat) -> moesim::Result<()> {
    let trace = importers::import(path, Some(format), None)?;
    touch(&trace);
    Ok(())
}

/// Runs what follows an import on `trace`: validation and statistics.
fn touch(trace: &Trace) {
    if trace.num_layers() * trace.num_experts() <= 1 << 16 {
        validate(trace, trace.num_experts());
        analysis::trace_stats(trace);
    }
}

/// Reads a trace file whole, in small chunks, and streamed into statistics.
fn read_parquet(path: &Path) -> moesim::Result<()> {
    let trace = read_trace(path)?;
    touch(&trace);
    if trace.tokens().is_some() {
        for chunk in read_chunks(path, 3)? {
            chunk?;
        }
        analysis::file_stats(path)?;
    }
    Ok(())
}

/// Reads a scenario and sets it up as `moesim run` does before placing: trace, model, cluster,
/// parallel layout, simulator settings, compute cost. An error must name the scenario or the
/// file it points to (trace, cluster, calibration), which is then reported as such.
fn read_scenario(path: &Path) -> moesim::Result<()> {
    let scenario = Scenario::load(path)?;
    if let TraceSource::Synth(params) = &scenario.trace {
        // A valid but large synthetic trace takes seconds to generate: not what fuzzing is for
        // (the generator's own caps on entries and work are unit tests).
        if params.work() > 1 << 24 && params.validate().is_ok() {
            return Ok(());
        }
    }
    let Err(error) = Setup::from_scenario(&scenario) else {
        return Ok(());
    };
    let error = error.in_file(path);
    let message = error.to_string();
    let mut named = vec![scenario.cluster.clone()];
    if let TraceSource::File(file) = &scenario.trace {
        named.push(file.display().to_string());
    }
    named.extend(
        scenario
            .sim
            .calibration
            .iter()
            .map(|f| f.display().to_string()),
    );
    if named
        .iter()
        .any(|file| message.starts_with(&format!("{file}: ")))
    {
        return Ok(());
    }
    Err(error)
}

/// Loads a calibration and asks the cost model built on it a few questions.
fn read_calibration(path: &Path) -> moesim::Result<()> {
    let calibration = Calibration::load(path)?;
    let compute = CalibratedCompute::new(calibration, &[MoeModel::preset("deepseek-v3")?]);
    for tokens in [0.5, 1.0, 4096.0, 1e12] {
        compute.gemm_time_ns(DataType::Bf16, 2048, 7168, tokens);
    }
    for bytes in [0, 1 << 20, u64::MAX] {
        compute.copy_time_ns(Kind::HbmCopy, bytes);
    }
    compute.warnings();
    Ok(())
}

/// Inputs per target: `MOESIM_FUZZ_CASES`, else a short CI budget.
fn cases() -> u32 {
    std::env::var("MOESIM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

/// Where the smallest failing input of `target` is kept.
fn crasher_path(target: &Target) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz-crashers")
        .join(target.name)
}

/// Writes `bytes` as `target`'s input file in `dir` and reads it: `Err` describes a panic or an
/// error that does not name the file.
fn check(target: &Target, dir: &Path, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(target.file);
    fs::write(&path, bytes).unwrap();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| (target.read)(&path)));
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) if error.to_string().starts_with(&path.display().to_string()) => Ok(()),
        Ok(Err(error)) => Err(format!("error does not name the file: {error}")),
        Err(payload) => Err(format!(
            "panicked: {}",
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

/// Runs `cases()` inputs from `strategy` through `target`; on a failure proptest shrinks it and
/// the smallest failing input is saved to [`crasher_path`].
fn fuzz(target: &Target, strategy: impl Strategy<Value = Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let seed: u64 = std::env::var("MOESIM_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..8 + target.name.len()].copy_from_slice(target.name.as_bytes());
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
    let crasher = crasher_path(target);
    let start = Instant::now();
    let result = runner.run(&strategy, |bytes| {
        check(target, dir.path(), &bytes).map_err(|message| {
            fs::create_dir_all(crasher.parent().unwrap()).unwrap();
            fs::write(&crasher, &bytes).unwrap();
            TestCaseError::fail(message)
        })
    });
    eprintln!(
        "fuzz {}: {} inputs in {:.1} s",
        target.name,
        cases(),
        start.elapsed().as_secs_f64()
    );
    if let Err(failure) = result {
        panic!(
            "fuzz {}: {failure}; smallest input saved to {}",
            target.name,
            crasher.display()
        );
    }
}

/// Valid `.npy` seeds: ExFlow's int64 top-1 matrix and a vLLM int32 capture with a dense layer.
fn npy_seeds() -> Vec<Vec<u8>> {
    let top1: Vec<u8> = (0..24i64).flat_map(|i| (i * 5 % 8).to_le_bytes()).collect();
    let capture: Vec<u8> = (0..4i32)
        .flat_map(|t| [0, 0, t, t + 1, 7 - t, -1])
        .flat_map(i32::to_le_bytes)
        .collect();
    vec![
        common::npy_bytes("<i8", "(8, 3)", &top1),
        common::npy_bytes("<i4", "(4, 3, 2)", &capture),
    ]
}

/// A token-level trace with gate weights and every metadata column, and an aggregate one.
fn parquet_seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let layer = |experts: Vec<u16>| {
        let weights = experts.iter().map(|&e| f32::from(e) / 8.0).collect();
        LayerRouting::new(vec![0, 2, 3, 3, 5], experts, Some(weights)).unwrap()
    };
    let meta = TokenMeta {
        step: Some(vec![0, 0, 1, 1]),
        request_id: Some(vec![7, 7, 9, 9]),
        position: Some(vec![0, 1, 0, 1]),
        phase: Some(vec![
            Phase::Prefill,
            Phase::Prefill,
            Phase::Decode,
            Phase::Decode,
        ]),
        dp_rank: Some(vec![0, 1, 0, 1]),
    };
    let layers = vec![layer(vec![0, 3, 1, 2, 7]), layer(vec![5, 4, 6, 0, 1])];
    let tokens = Trace::Tokens(RoutingTrace::new(8, layers, meta).unwrap());
    let loads =
        Trace::Loads(ExpertLoads::new(3, vec![vec![0.0, 0.0, 0.0], vec![4.0, 1.5, 2.0]]).unwrap());
    [tokens, loads]
        .iter()
        .enumerate()
        .map(|(i, trace)| {
            let path = dir.path().join(format!("{i}.parquet"));
            write_trace(&path, trace, "fuzz seed").unwrap();
            fs::read(path).unwrap()
        })
        .collect()
}

/// A calibration fitted on the profile fixture's measurements.
fn calibration_seed() -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let measurements =
        Measurements::read_parquet(&root.join("tests/fixtures/profile/measurements.parquet"))
            .unwrap();
    let calibration = Calibration::fit(&measurements, moesim::profile::FitHalf::All).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    calibration.save(&path).unwrap();
    fs::read(path).unwrap()
}

fn text_seeds(texts: &[&str]) -> Vec<Vec<u8>> {
    texts.iter().map(|t| t.as_bytes().to_vec()).collect()
}

#[test]
fn fuzz_npy() {
    fuzz(
        &NPY,
        prop_oneof![inputs::npy(), mutate::mutated(npy_seeds())],
    );
}

#[test]
fn fuzz_vllm() {
    let mut seeds = text_seeds(&[
        "[[[1, 2], [3, -1]], [[0, 3], [-1, -1]]]",
        r#"{"routed_experts": [[[0, 0], [2, 5]], [[0, 0], [1, 4]]]}"#,
    ]);
    seeds.extend(npy_seeds());
    fuzz(
        &VLLM,
        prop_oneof![inputs::vllm_json(), mutate::mutated(seeds)],
    );
}

#[test]
fn fuzz_sglang() {
    let seeds = text_seeds(&[
        r#"{"logical_count": [[0, 0, 0], [12.0, 0.5, 3]]}"#,
        r#"{"rank": 0, "logical_count": [[[1, 0, 2], [5, 0, 0]], [[3, 1, 0], [4, 0, 1]]]}"#,
    ]);
    fuzz(
        &SGLANG,
        prop_oneof![inputs::sglang_json(), mutate::mutated(seeds)],
    );
}

#[test]
fn fuzz_csv() {
    let seeds = text_seeds(&[
        "token,layer,expert,weight\n1,0,3,0.5\n0,1,2,1\n0,0,4,0.75\n1,0,0,0.5\n1,1,,\n",
        "layer,expert,load\n1,2,7.5\n0,0,3\n",
    ]);
    fuzz(&CSV, prop_oneof![inputs::csv(), mutate::mutated(seeds)]);
}

#[test]
fn fuzz_parquet() {
    fuzz(&PARQUET, mutate::mutated(parquet_seeds()));
}

#[test]
fn fuzz_placement() {
    let seeds = text_seeds(&[
        r#"{"format_version":1,"strategy":"eplb","placement":{"num_gpus":2,"num_experts":3,"slots_per_gpu":2,"layers":[{"gpu_experts":[[0,1],[2,0]]},{"gpu_experts":[[1,2],[0,2]]}]}}"#,
        "[[[0, 1], [2, 0]], [[1, 2], [0, 2]]]",
    ]);
    fuzz(
        &PLACEMENT,
        prop_oneof![inputs::placement_json(), mutate::mutated(seeds)],
    );
}

#[test]
fn fuzz_calibration() {
    fuzz(
        &CALIBRATION,
        prop_oneof![
            inputs::calibration_toml(),
            mutate::mutated(vec![calibration_seed()])
        ],
    );
}

/// The quickstart with its trace file and with a synthetic trace, a scheduled run with a custom
/// cluster and every simulator table.
fn scenario_seeds() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let trace = root.join("traces/quickstart.parquet");
    let cluster = root.join("tests/fixtures/clusters/two-node-a100.toml");
    let quickstart = fs::read_to_string(root.join("scenarios/quickstart.toml"))
        .unwrap()
        .replace("../traces/quickstart.parquet", &trace.display().to_string());
    let synth = format!(
        "name = \"s\"\nseed = 3\nmodel = \"mixtral-8x7b\"\ncluster = \"{}\"\ngpus = 16\ntp = 2\n\
         tokens_per_gpu = 4\nplacements = [\"contiguous\", \"eplb\"]\n\
         schedule = [{{ phase = \"prefill\", tokens_per_gpu = 8 }}, \
         {{ phase = \"decode\", tokens_per_gpu = 2, repeat = 3 }}]\n\
         [trace.synth]\nnum_experts = 8\nnum_layers = 2\ntop_k = 2\nnum_tokens = 64\n\
         skew = {{ kind = \"zipf\", exponent = 1.0 }}\n\
         [comm]\ndispatch_bytes_per_elem = 1\n[sim]\noverlap = [\"none\", \"chunked\", \
         \"fine-grained\"]\nall_to_all = \"hierarchical\"\nrate_tolerance = 0.2\n\
         [sim.chunked]\nchunks = 3\n[sim.fine-grained]\ntiles = 5\n[placement.eplb]\n",
        cluster.display()
    );
    text_seeds(&[&quickstart, &synth])
}

#[test]
fn fuzz_scenario() {
    let dir = tempfile::tempdir().unwrap();
    for seed in scenario_seeds() {
        let path = dir.path().join("seed.toml");
        fs::write(&path, seed).unwrap();
        read_scenario(&path).unwrap();
    }
    fuzz(
        &SCENARIO,
        prop_oneof![inputs::scenario_toml(), mutate::mutated(scenario_seeds())],
    );
}

#[test]
fn fuzz_cluster() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seed = fs::read(root.join("tests/fixtures/clusters/two-node-a100.toml")).unwrap();
    Cluster::from_toml(&root.join("tests/fixtures/clusters/two-node-a100.toml")).unwrap();
    fuzz(
        &CLUSTER,
        prop_oneof![inputs::cluster_toml(), mutate::mutated(vec![seed])],
    );
}

#[test]
fn fuzz_requests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/requests");
    let seeds = ["azure.csv", "burstgpt.csv", "mooncake.jsonl", "plain.csv"]
        .map(|name| fs::read(root.join(name)).unwrap())
        .to_vec();
    fuzz(&REQUESTS, mutate::mutated(seeds));
}

#[test]
fn corpus_replays_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
    let dir = tempfile::tempdir().unwrap();
    let mut replayed = 0;
    for target in [
        NPY,
        VLLM,
        SGLANG,
        CSV,
        PARQUET,
        PLACEMENT,
        CALIBRATION,
        SCENARIO,
        CLUSTER,
        REQUESTS,
    ] {
        let Ok(entries) = fs::read_dir(root.join(target.name)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let outcome = check(&target, dir.path(), &fs::read(&path).unwrap());
            assert_eq!(outcome, Ok(()), "{}", path.display());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "the corpus is empty");
}
