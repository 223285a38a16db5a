//! The binary on bad input: one clear error naming the problem, exit 1, no output file left.

use crate::common;

use common::{assert_fails_with, moesim, moesim_in};

/// Writes an `.npy` file with the given dtype descriptor, shape and raw body.
fn write_npy(path: &std::path::Path, descr: &str, shape: &str, body: &[u8]) {
    std::fs::write(path, common::npy_bytes(descr, shape, body)).unwrap();
}

#[test]
fn missing_input_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.parquet");
    let output = moesim(&[
        "trace",
        "import",
        "/no/such/trace.npy",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_fails_with(&output, &["/no/such/trace.npy"]);
    // One line, the system's reason said once.
    assert_eq!(
        common::stderr(&output),
        "error: /no/such/trace.npy: No such file or directory (os error 2)\n"
    );
    assert!(!out.exists());
}

#[test]
fn float_npy_is_rejected_by_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("routing.npy");
    write_npy(&npy, "<f4", "(2, 1)", &[0u8; 8]);
    let out = dir.path().join("t.parquet");
    let output = moesim(&[
        "trace",
        "import",
        npy.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_fails_with(&output, &["routing.npy", "<f4"]);
    assert!(!out.exists());
}

#[test]
fn expert_id_past_the_model_is_reported_with_row_and_layer() {
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("routing.npy");
    // 3 tokens x 2 layers, int64; token 2 at layer 1 routes to expert 9 of an 8-expert model.
    let ids: [i64; 6] = [0, 1, 2, 3, 4, 9];
    let body: Vec<u8> = ids.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&npy, "<i8", "(3, 2)", &body);
    let out = dir.path().join("t.parquet");
    let output = moesim(&[
        "trace",
        "import",
        npy.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--num-experts",
        "8",
    ]);
    assert_fails_with(&output, &["routing.npy", "9", "row 2", "layer 1"]);
    assert!(!out.exists());
}

#[test]
fn truncated_parquet_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.parquet");
    let status = moesim(&[
        "trace",
        "synth",
        "--experts",
        "8",
        "--layers",
        "2",
        "--top-k",
        "2",
        "--tokens",
        "1000",
        "-o",
        full.to_str().unwrap(),
    ]);
    assert!(status.status.success(), "{}", common::stderr(&status));
    let bytes = std::fs::read(&full).unwrap();
    let cut = dir.path().join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let output = moesim(&["trace", "stats", cut.to_str().unwrap()]);
    assert_fails_with(&output, &["cut.parquet"]);
}

#[test]
fn unknown_scenario_key_is_named_and_no_report_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("typo.toml");
    std::fs::write(
        &scenario,
        "name = \"typo\"\nmodel = \"olmoe-1b-7b\"\ncluster = \"dgx-h100\"\ntokens_per_gpu = 8\n\
         placements = [\"contiguous\"]\nbatch_sise = 3\n[trace]\nfile = \"x.parquet\"\n",
    )
    .unwrap();
    let output = moesim_in(dir.path(), &["run", scenario.to_str().unwrap()]);
    assert_fails_with(&output, &["typo.toml", "batch_sise", "line 6"]);
    assert!(!dir.path().join("reports").exists());
}

#[test]
fn an_impossible_parallel_layout_names_the_scenario_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("tp3.toml");
    let trace = concat!(env!("CARGO_MANIFEST_DIR"), "/traces/quickstart.parquet");
    std::fs::write(
        &scenario,
        format!(
            "name = \"tp3\"\nmodel = \"olmoe-1b-7b\"\ncluster = \"dgx-h100\"\ntp = 3\n\
             tokens_per_gpu = 8\nplacements = [\"contiguous\"]\n[trace]\nfile = \"{trace}\"\n"
        ),
    )
    .unwrap();
    for command in ["run", "simulate"] {
        let output = moesim_in(dir.path(), &[command, scenario.to_str().unwrap()]);
        assert_fails_with(&output, &[]);
        assert_eq!(
            common::stderr(&output),
            format!(
                "error: {}: `tp` = 3 must divide the 8 expert-parallel GPUs and the 8 GPUs of a \
                 machine\n",
                scenario.display()
            )
        );
    }
    assert!(!dir.path().join("reports").exists());
}

#[test]
fn validate_lists_every_violation_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("hand.csv");
    std::fs::write(&csv, "layer,token,expert\n0,0,1\n0,0,1\n0,1,7\n").unwrap();
    let output = moesim(&[
        "trace",
        "validate",
        csv.to_str().unwrap(),
        "--num-experts",
        "4",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let out = common::stdout(&output);
    assert!(
        out.contains("row 0, column layer 0/rank 1: expert 1 repeats rank 0"),
        "{out}"
    );
    assert!(
        out.contains("row 1, column layer 0/rank 0: expert 7 >= 4 experts"),
        "{out}"
    );
    assert!(common::stderr(&output).contains("3 violation(s)"));
}

#[test]
fn bad_usage_exits_2() {
    let output = moesim(&["trace", "import"]);
    assert_eq!(output.status.code(), Some(2));
    let output = moesim(&["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn an_overlap_split_past_its_bound_is_refused_before_simulating() {
    // Issue 15 defect 3: `tiles = 65536` on the quickstart used to run ~7 s and abort at 2.9 GB.
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("tiles.toml");
    let trace = concat!(env!("CARGO_MANIFEST_DIR"), "/traces/quickstart.parquet");
    std::fs::write(
        &scenario,
        format!(
            "name = \"tiles\"\nmodel = \"olmoe-1b-7b\"\ncluster = \"dgx-h100\"\n\
             tokens_per_gpu = 8\nplacements = [\"contiguous\"]\n[trace]\nfile = \"{trace}\"\n\
             [sim]\noverlap = [\"fine-grained\"]\n[sim.fine-grained]\ntiles = 65536\n"
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let output = moesim_in(dir.path(), &["simulate", scenario.to_str().unwrap()]);
    assert_fails_with(
        &output,
        &["tiles.toml", "`tiles` = 65536 is out of range: 1 to 256"],
    );
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
}

#[test]
fn gpu_and_slot_counts_past_their_bounds_are_usage_errors_naming_the_flag() {
    // Issue 15 defect 5: `place --gpus 1000000` ran on for minutes (GPUs^2); past 2^20 GPUs or
    // 2^24 slots the flag itself is refused.
    let trace = concat!(env!("CARGO_MANIFEST_DIR"), "/traces/quickstart.parquet");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.json");
    let place = |extra: &[&str]| {
        let mut args = vec![
            "place",
            "--trace",
            trace,
            "--strategy",
            "eplb",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        moesim(&args)
    };
    let output = place(&["--gpus", "1048577"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(common::stderr(&output).contains("--gpus"));
    let output = place(&["--gpus", "8", "--slots", "16777224"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(common::stderr(&output).contains("--slots"));
    assert!(!out.exists());
    // 2^18 GPUs are placed and judged in about a second (release), not the quadratic minutes.
    let started = std::time::Instant::now();
    let output = place(&["--gpus", "262144"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
}

/// A decode scenario of gpt-oss-120b (MXFP4 experts) on one DGX H100, `context_len` as given.
fn gpt_oss_on_h100(dir: &std::path::Path, context_len: &str) -> std::path::PathBuf {
    let path = dir.join("gptoss.toml");
    let text = format!(
        "name = \"gptoss\"\nmodel = \"gpt-oss-120b\"\ncluster = \"dgx-h100\"\ntokens_per_gpu = 64\n\
         placements = [\"contiguous\"]\nschedule = [{{ phase = \"decode\", tokens_per_gpu = 64, repeat = 4 }}]\n\
         [trace.synth]\nnum_experts = 128\nnum_layers = 36\ntop_k = 4\nnum_tokens = 2048\n\
         [sequences]\ncontext_len = {context_len}\n[sim]\noverlap = [\"none\", \"dual-batch\"]\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn fp4_experts_on_h100_fall_back_to_fp8_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = gpt_oss_on_h100(dir.path(), "5000");
    let output = moesim(&["simulate", scenario.to_str().unwrap()]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    // Four steps, two overlap strategies, 36 layers: still one line.
    assert_eq!(
        common::stderr(&output),
        "warning: H100 SXM has no fp4 tensor cores; model `gpt-oss-120b`'s fp4 GEMMs are \
         priced at its fp8 rate\n"
    );
}

#[test]
fn a_context_length_below_one_is_an_error_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    for length in ["0", "-5000"] {
        let scenario = gpt_oss_on_h100(dir.path(), length);
        let output = moesim(&["simulate", scenario.to_str().unwrap()]);
        assert_fails_with(&output, &["gptoss.toml", "`sequences.context_len`", length]);
    }
}
