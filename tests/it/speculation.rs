//! `moesim speculate` and `[speculation]` through the binary: a perfect oracle takes every
//! dispatch byte off the post-gate all-to-all and shortens the step; a predictor fitted on a
//! trace of another expert count is one error naming the field, with nothing written.

use std::path::Path;
use std::process::{Command, Output};

fn moesim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moesim"))
        .args(args)
        .output()
        .expect("run moesim")
}

/// A switch-base-128-shaped scenario on a synthetic top-1 trace of 4096 tokens (steps of 512:
/// the last four, after the 2048 fitted tokens, are simulated), with `speculation` appended.
fn scenario(dir: &Path, speculation: &str) -> String {
    let text = format!(
        "name = \"spec\"\nmodel = \"switch-base-128\"\ncluster = \"dgx-h100\"\n\
         tokens_per_gpu = 64\nplacements = [\"contiguous\"]\n\
         [trace.synth]\nnum_experts = 128\nnum_layers = 6\ntop_k = 1\nnum_tokens = 4096\n\
         [sim]\noverlap = [\"none\"]\n{speculation}"
    );
    let path = dir.join("spec.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn a_perfect_oracle_moves_every_dispatch_byte_ahead_of_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), "[speculation]\npredictor = \"transition\"\n");
    let out = dir.path().join("report");
    let output = moesim(&[
        "speculate",
        &path,
        "--accuracies",
        "0,1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.lines().nth(2).unwrap().starts_with("**Verdict:**"),
        "{report}"
    );
    assert!(out.join("step-time-vs-accuracy.png").exists());
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 4);
    let cluster = &summary["clusters"][0];
    let perfect = &cluster["oracle"][1];
    assert_eq!(perfect["accuracy"], 1.0);
    let total = &perfect["total"];
    // Every (token, remote GPU) pair predicted: the corrective transfer is empty, the saving is
    // the whole plain dispatch, nothing is wasted, and 768-byte tokens make whole multiples.
    let plain = total["plain"].as_u64().unwrap();
    assert!(plain > 0 && plain.is_multiple_of(768), "{total}");
    assert_eq!(total["corrective"], 0);
    assert_eq!(total["saved"].as_u64(), Some(plain));
    assert_eq!(total["wasted"], 0);
    assert!(
        perfect["step_ns"].as_u64() < perfect["plain_step_ns"].as_u64(),
        "{perfect}"
    );
    // The fitted transition predictor is compared too, on the same steps.
    assert_eq!(cluster["fitted"][0]["predictor"], "transition");
    assert_eq!(cluster["fitted"][0]["total"]["plain"].as_u64(), Some(plain));
}

#[test]
fn a_predictor_fitted_on_another_expert_count_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let eight = dir.path().join("eight.parquet");
    let made = moesim(&[
        "trace",
        "synth",
        "--experts",
        "8",
        "--layers",
        "6",
        "--top-k",
        "1",
        "--tokens",
        "64",
        "-o",
        eight.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{made:?}");
    let path = scenario(
        dir.path(),
        "[speculation]\npredictor = \"transition\"\nfit_trace = \"eight.parquet\"\n",
    );
    let out = dir.path().join("report");
    let output = moesim(&["speculate", &path, "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error:")
            && stderr.contains("spec.toml")
            && stderr.contains("`speculation.fit_trace`")
            && stderr.contains("has 8 experts per layer but model `switch-base-128` has 128"),
        "{stderr}"
    );
    assert!(!out.exists());
}
