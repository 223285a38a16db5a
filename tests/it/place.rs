//! `moesim place` and `moesim place eval` end to end.

use crate::common;

use std::path::Path;

use common::{assert_fails_with, moesim, moesim_in, shared_data, stdout};

/// Four tokens over two layers of four experts, top-1. Layer 0: tokens go to experts 0 0 0 1;
/// layer 1: 0 2 3 1.
const TINY_CSV: &str =
    "layer,token,expert\n0,0,0\n0,1,0\n0,2,0\n0,3,1\n1,0,0\n1,1,2\n1,2,3\n1,3,1\n";

fn tiny_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.csv"), TINY_CSV).unwrap();
    dir
}

/// Fits round-robin on 2 GPUs to the tiny trace with `extra` arguments; asserts it succeeds.
fn place_tiny_round_robin(dir: &Path, extra: &[&str]) {
    let mut args = vec![
        "place",
        "--trace",
        "t.csv",
        "--strategy",
        "round-robin",
        "--gpus",
        "2",
    ];
    args.extend_from_slice(extra);
    let fit = moesim_in(dir, &args);
    assert_eq!(fit.status.code(), Some(0), "{}", common::stderr(&fit));
}

fn eval_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let output = moesim_in(dir, args);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    serde_json::from_str(&stdout(&output)).unwrap()
}

#[test]
fn eplb_fits_and_evaluates_the_tiny_trace_exactly() {
    let dir = tiny_dir();
    let fit = moesim_in(
        dir.path(),
        &[
            "place",
            "--trace",
            "t.csv",
            "--strategy",
            "eplb",
            "--gpus",
            "2",
            "--slots",
            "6",
            "-o",
            "p.json",
        ],
    );
    assert_eq!(fit.status.code(), Some(0), "{}", common::stderr(&fit));
    // Layer 0 loads [3 1 0 0]: both spare slots go to expert 0 (3, then 1.5 > 1); replicas of
    // load 1 alternate GPUs, the zero-load experts fill the rest. Layer 1 loads [1 1 1 1]:
    // experts 0 then 1 (ties: lower index) get a second replica.
    let placement = std::fs::read_to_string(dir.path().join("p.json")).unwrap();
    assert!(
        placement.contains(
            r#""layers":[{"gpu_experts":[[0,0,2],[1,0,3]]},{"gpu_experts":[[2,0,0],[3,1,1]]}]"#
        ),
        "{placement}"
    );
    let eval = eval_json(
        dir.path(),
        &[
            "place",
            "eval",
            "--placement",
            "p.json",
            "--trace",
            "t.csv",
            "--json",
        ],
    );
    assert_eq!(
        eval["layers"][0]["gpu_loads"],
        serde_json::json!([2.0, 2.0])
    );
    assert_eq!(eval["layers"][1]["max_mean"], 1.0);
    // Every transition can stay on one GPU: token 2 (0 -> 3) uses expert 0's replica on GPU 1.
    assert_eq!(eval["layers"][0]["cross_gpu_fraction"], 0.0);
    assert!(eval["layers"][1].get("cross_gpu_fraction").is_none());
}

#[test]
fn fit_on_the_first_half_and_evaluate_on_the_rest() {
    let dir = tiny_dir();
    place_tiny_round_robin(dir.path(), &["--fit-fraction", "0.5", "-o", "r.json"]);
    // Round-robin: experts 0, 2 on GPU 0; 1, 3 on GPU 1. Held-out tokens 2 and 3:
    // layer 0 experts 0, 1 -> [1 1]; layer 1 experts 3, 1 -> [0 2]; token 2 crosses (0 -> 3).
    let rest = eval_json(
        dir.path(),
        &[
            "place",
            "eval",
            "--placement",
            "r.json",
            "--trace",
            "t.csv",
            "--skip-fraction",
            "0.5",
            "--json",
        ],
    );
    assert_eq!(rest["num_tokens"], 2);
    assert_eq!(
        rest["layers"][0]["gpu_loads"],
        serde_json::json!([1.0, 1.0])
    );
    assert_eq!(
        rest["layers"][1]["gpu_loads"],
        serde_json::json!([0.0, 2.0])
    );
    assert_eq!(rest["layers"][0]["cross_gpu_fraction"], 0.5);
    assert_eq!(rest["mean_max_mean"], 1.5);
    // In-sample tokens 0 and 1: layer 0 both on expert 0 -> [2 0]; 0 -> 0 and 0 -> 2 stay.
    let first = eval_json(
        dir.path(),
        &[
            "place",
            "eval",
            "--placement",
            "r.json",
            "--trace",
            "t.csv",
            "--first-fraction",
            "0.5",
            "--json",
        ],
    );
    assert_eq!(
        first["layers"][0]["gpu_loads"],
        serde_json::json!([2.0, 0.0])
    );
    assert_eq!(first["cross_gpu_fraction"], 0.0);
    // The table names its columns and the totals.
    let table = moesim_in(
        dir.path(),
        &["place", "eval", "--placement", "r.json", "--trace", "t.csv"],
    );
    let text = stdout(&table);
    assert!(text.starts_with("layer  max/mean  cross-gpu"), "{text}");
    assert!(
        text.contains("mean max/mean over loaded layers 1.2500; cross-GPU fraction 0.2500"),
        "{text}"
    );
}

#[test]
fn bad_requests_fail_before_writing_anything() {
    let dir = tiny_dir();
    let cases: [(&[&str], &[&str]); 7] = [
        (
            &["--strategy", "eplb", "--gpus", "2", "--slots", "7"],
            &["7 slots is not a multiple of 2 GPUs (1 over"],
        ),
        (
            &["--strategy", "eplb", "--gpus", "2", "--slots", "2"],
            &["4 experts but 2 GPUs x 1 slots = 2 slots (2 short)"],
        ),
        (
            &["--strategy", "magic", "--gpus", "2"],
            &["unknown placement strategy `magic`", "eplb"],
        ),
        (
            &["--strategy", "eplb", "--gpus", "2", "--fit-fraction", "1.5"],
            &["t.csv", "got 1.5"],
        ),
        (
            &["--strategy", "eplb", "--gpus", "2", "--fit-fraction", "0.1"],
            &["t.csv", "0.1 of 4 tokens leaves no tokens"],
        ),
        (
            &[
                "--strategy",
                "ilp-affinity",
                "--gpus",
                "2",
                "--max-load-ratio",
                "0.5",
            ],
            &["`--max-load-ratio` = 0.5 must be at least 1"],
        ),
        (
            &["--strategy", "eplb", "--gpus", "2", "--comm-weight", "1"],
            &["--comm-weight does not apply: placement strategy `eplb`"],
        ),
    ];
    for (args, needles) in cases {
        let mut full = vec!["place", "--trace", "t.csv", "-o", "x.json"];
        full.extend_from_slice(args);
        assert_fails_with(&moesim_in(dir.path(), &full), needles);
        assert!(!dir.path().join("x.json").exists());
    }
    // Memory: a DeepSeek-V3 FP8 expert is 3 x 7168 x 2048 bytes; a slot holds one in each of the
    // 2 layers (88,080,384 bytes), and 1000 slots exceed an 80 GiB H100.
    let loads = serde_json::json!({ "logical_count": [vec![1.0; 256], vec![2.0; 256]] });
    std::fs::write(dir.path().join("loads.json"), loads.to_string()).unwrap();
    let out = moesim_in(
        dir.path(),
        &[
            "place",
            "--trace",
            "loads.json",
            "--strategy",
            "eplb",
            "--gpus",
            "8",
            "--slots",
            "8000",
            "--model",
            "deepseek-v3",
            "--cluster",
            "dgx-h100",
            "-o",
            "x.json",
        ],
    );
    assert_fails_with(
        &out,
        &[
            "1000 slots x 88080384 expert weight bytes need 88080384000 bytes per GPU but only \
           85899345920 are available (2181038080 bytes short)",
        ],
    );
    let split = moesim_in(
        dir.path(),
        &[
            "place",
            "--trace",
            "loads.json",
            "--strategy",
            "eplb",
            "--gpus",
            "8",
            "--fit-fraction",
            "0.5",
            "-o",
            "x.json",
        ],
    );
    assert_fails_with(
        &split,
        &["loads.json", "splitting needs a token-level trace"],
    );
    // Usage errors exit 2.
    let usage = moesim(&["place", "--trace", "t.csv", "-o", "x.json"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn deepseek_eplb_advantage_shrinks_out_of_sample_but_holds() {
    let (Some(fit), Some(other)) = (
        shared_data("deepseek-v3-expert-load/prefill_in1024.json"),
        shared_data("deepseek-v3-expert-load/prefill_in4096.json"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mean = |strategy: &str, slots: &str, trace: &Path| {
        let out = dir.path().join(format!("{strategy}.json"));
        let place = moesim(&[
            "place",
            "--trace",
            fit.to_str().unwrap(),
            "--strategy",
            strategy,
            "--gpus",
            "32",
            "--nodes",
            "4",
            "--slots",
            slots,
            "--groups",
            "8",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(place.status.code(), Some(0), "{}", common::stderr(&place));
        let eval = eval_json(
            dir.path(),
            &[
                "place",
                "eval",
                "--placement",
                out.to_str().unwrap(),
                "--trace",
                trace.to_str().unwrap(),
                "--json",
            ],
        );
        eval["mean_max_mean"].as_f64().unwrap()
    };
    let eplb_in = mean("eplb", "288", &fit);
    let eplb_out = mean("eplb", "288", &other);
    let contiguous_out = mean("contiguous", "256", &other);
    // Measured: EPLB 1.166 in sample, 1.498 on prefill_in4096; contiguous 3.04 there.
    assert!((1.15..1.18).contains(&eplb_in), "{eplb_in}");
    assert!((1.48..1.52).contains(&eplb_out), "{eplb_out}");
    assert!((3.0..3.1).contains(&contiguous_out), "{contiguous_out}");
}

#[test]
fn exflow_placements_evaluate_from_the_command_line() {
    let (Some(placement), Some(trace)) = (
        shared_data("exflow-placements/switch-exp128-gpu8.json"),
        shared_data("switch-top1/switch-base-128.trace.npy"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let eval = eval_json(
        dir.path(),
        &[
            "place",
            "eval",
            "--placement",
            placement.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            "--json",
        ],
    );
    // numpy on the same files: 26,252 of 204,000 transitions change GPU; the busiest GPU of
    // layer 4 has 17,458 tokens against a mean of 5,100.
    assert_eq!(eval["cross_gpu_fraction"], 26_252.0 / 204_000.0);
    assert_eq!(eval["layers"][4]["max_mean"], 17_458.0 / 5_100.0);
}

/// `moesim place --trace <quickstart> --strategy S --gpus 8 -o OUT` in `dir`, which must succeed.
fn fit_on_quickstart(dir: &Path, strategy: &str, out: &str) {
    let fit = moesim_in(
        dir,
        &[
            "place",
            "--trace",
            QUICKSTART_TRACE,
            "--strategy",
            strategy,
            "--gpus",
            "8",
            "-o",
            out,
        ],
    );
    assert_eq!(fit.status.code(), Some(0), "{}", common::stderr(&fit));
}

/// `moesim place eval --placement P --trace <quickstart> --json` plus `extra`, as JSON.
fn eval_on_quickstart(dir: &Path, placement: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "place",
        "eval",
        "--placement",
        placement,
        "--trace",
        QUICKSTART_TRACE,
        "--json",
    ];
    args.extend_from_slice(extra);
    eval_json(dir, &args)
}

/// `place eval`'s simulated entries are `moesim simulate`'s strategies over its `steps` steps:
/// the same overlap order, mean and tail step, and exposed communication per step.
fn assert_simulated_as_simulate(eval: &serde_json::Value, simulated: &serde_json::Value) {
    let steps = simulated["steps"].as_u64().unwrap();
    assert_eq!(eval["steps"], steps);
    let entries = eval["simulated"].as_array().unwrap();
    let strategies = simulated["strategies"].as_array().unwrap();
    assert_eq!(entries.len(), strategies.len());
    for (entry, strategy) in entries.iter().zip(strategies) {
        assert_eq!(entry["overlap"], strategy["strategy"]);
        assert_eq!(entry["step_ns"], strategy["step_ns"]);
        assert_eq!(entry["p99_step_ns"], strategy["p99_step_ns"]);
        let total = strategy["exposed_comm_ns"].as_u64().unwrap();
        assert_eq!(entry["exposed_comm_ns"], total.div_ceil(steps));
        assert!(entry["step_ns"].as_u64().unwrap() > 0);
    }
}

/// The quickstart trace, committed in the repository.
const QUICKSTART_TRACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/traces/quickstart.parquet");

#[test]
fn eval_with_a_model_and_cluster_reports_the_simulated_step_of_moesim_simulate() {
    // The same placement (round-robin), trace, model, cluster and step size through
    // `moesim simulate` and `moesim place eval`: the same simulated step, overlap by overlap.
    let dir = tempfile::tempdir().unwrap();
    let scenario = format!(
        "name = \"rr\"\nmodel = \"olmoe-1b-7b\"\ncluster = \"dgx-h100\"\ntokens_per_gpu = 512\n\
         placements = [\"round-robin\"]\n[trace]\nfile = \"{QUICKSTART_TRACE}\"\n"
    );
    std::fs::write(dir.path().join("rr.toml"), scenario).unwrap();
    let simulated = eval_json(dir.path(), &["simulate", "rr.toml", "--json"]);
    fit_on_quickstart(dir.path(), "round-robin", "rr.json");
    // 8 GPUs x 512 tokens: the trace's 4096 tokens are one step for both commands.
    let cluster = ["--model", "olmoe-1b-7b", "--cluster", "dgx-h100"];
    let eval = eval_on_quickstart(
        dir.path(),
        "rr.json",
        &[&cluster[..], &["--tokens-per-gpu", "512"]].concat(),
    );
    assert_eq!(eval["simulated"].as_array().unwrap().len(), 4);
    assert_simulated_as_simulate(&eval, &simulated);
    // Without a cluster there is nothing to simulate on.
    let bare = eval_on_quickstart(dir.path(), "rr.json", &[]);
    assert!(bare.get("simulated").is_none());
}

#[test]
fn comm_weight_puts_every_expert_on_both_machines() {
    // 4 experts of 4 tokens on 2 machines x 2 GPUs x 2 slots: one expert per GPU already meets
    // the load bound (4), but then every expert lives on one machine and half its tokens cross.
    // With --comm-weight 1 each expert gets one replica per machine (still 4 per GPU).
    let dir = tempfile::tempdir().unwrap();
    let loads = serde_json::json!({ "logical_count": [[4.0, 4.0, 4.0, 4.0]] });
    std::fs::write(dir.path().join("loads.json"), loads.to_string()).unwrap();
    let place = |extra: &[&str], out: &str| {
        let mut args = vec![
            "place",
            "--trace",
            "loads.json",
            "--strategy",
            "ilp-balance",
            "--gpus",
            "4",
            "--nodes",
            "2",
            "--slots",
            "8",
            "-o",
            out,
        ];
        args.extend_from_slice(extra);
        let fit = moesim_in(dir.path(), &args);
        assert_eq!(fit.status.code(), Some(0), "{}", common::stderr(&fit));
        let text = std::fs::read_to_string(dir.path().join(out)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let gpus = json["placement"]["layers"][0]["gpu_experts"].clone();
        // Per machine, the sorted experts it holds.
        let machine = |first: usize| {
            let mut held: Vec<u64> = (first..first + 2)
                .flat_map(|g| gpus[g].as_array().unwrap().clone())
                .map(|e| e.as_u64().unwrap())
                .collect();
            held.sort_unstable();
            held
        };
        (machine(0), machine(2))
    };
    assert_eq!(place(&[], "balance.json"), (vec![0, 1], vec![2, 3]));
    assert_eq!(
        place(&["--comm-weight", "1"], "weighted.json"),
        (vec![0, 1, 2, 3], vec![0, 1, 2, 3])
    );
}

#[test]
fn eval_with_a_scenario_prices_its_steps_as_simulate_does_calibration_included() {
    // A scenario with a measured calibration and two steps (8 GPUs x 256 of 4096 tokens): the
    // placement `moesim place` fits, evaluated with `--scenario`, gets exactly the steps and
    // step times `moesim simulate` gives the same strategy; with `--model` and `--cluster`
    // instead (roofline experts) the simulated step is another.
    let dir = tempfile::tempdir().unwrap();
    let measurements = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/profile/measurements.parquet"
    );
    let calibrate = moesim_in(
        dir.path(),
        &[
            "calibrate",
            "--measurements",
            measurements,
            "-o",
            "cal.toml",
            "--fit-half",
            "all",
        ],
    );
    assert_eq!(
        calibrate.status.code(),
        Some(0),
        "{}",
        common::stderr(&calibrate)
    );
    let scenario = format!(
        "name = \"cal\"\nmodel = \"olmoe-1b-7b\"\ncluster = \"dgx-h100\"\ntokens_per_gpu = 256\n\
         placements = [\"eplb\"]\n[trace]\nfile = \"{QUICKSTART_TRACE}\"\n\
         [sim]\noverlap = [\"none\", \"dual-batch\"]\ncalibration = \"cal.toml\"\n"
    );
    std::fs::write(dir.path().join("cal-scenario.toml"), scenario).unwrap();
    let simulated = eval_json(dir.path(), &["simulate", "cal-scenario.toml", "--json"]);
    assert_eq!(simulated["steps"], 2);
    fit_on_quickstart(dir.path(), "eplb", "eplb.json");
    let with_scenario = eval_on_quickstart(
        dir.path(),
        "eplb.json",
        &["--scenario", "cal-scenario.toml"],
    );
    assert_simulated_as_simulate(&with_scenario, &simulated);
    let roofline = eval_on_quickstart(
        dir.path(),
        "eplb.json",
        &["--model", "olmoe-1b-7b", "--cluster", "dgx-h100"],
    );
    assert_ne!(
        roofline["simulated"][0]["step_ns"],
        with_scenario["simulated"][0]["step_ns"]
    );
    // A scenario and --model together are a usage error.
    let both = moesim_in(
        dir.path(),
        &[
            "place",
            "eval",
            "--placement",
            "eplb.json",
            "--trace",
            QUICKSTART_TRACE,
            "--scenario",
            "cal-scenario.toml",
            "--model",
            "olmoe-1b-7b",
        ],
    );
    assert_eq!(both.status.code(), Some(2));
}
