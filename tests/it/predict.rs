//! `moesim predict` through the binary: a hand-made trace judged by hand, and bad input.

use crate::common;

use std::path::{Path, PathBuf};

use common::{assert_fails_with, moesim, stdout};

/// An ExFlow-style trace: 8 tokens, 2 layers, layer 1's expert is layer 0's plus one (mod 4).
fn shifted_trace(dir: &Path) -> PathBuf {
    let body: Vec<u8> = (0..8i64)
        .flat_map(|t| [t % 4, (t + 1) % 4])
        .flat_map(i64::to_le_bytes)
        .collect();
    let path = dir.join("shifted.npy");
    std::fs::write(&path, common::npy_bytes("<i8", "(8, 2)", &body)).unwrap();
    path
}

#[test]
fn transition_is_right_out_of_sample_on_a_deterministic_trace() {
    let dir = tempfile::tempdir().unwrap();
    let trace = shifted_trace(dir.path());
    let args = [
        "predict",
        trace.to_str().unwrap(),
        "--predictor",
        "transition",
        "--json",
    ];
    let output = moesim(&args);
    assert!(output.status.success(), "{}", common::stderr(&output));
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["eval_tokens"], 4);
    assert_eq!(report["layers"][1]["top1_hit_rate"], 1.0);
    assert_eq!(report["overall"]["tokens"], 8);
    assert_eq!(report["overall"]["unpredicted"], 4);
    assert_eq!(stdout(&moesim(&args)), stdout(&output));
}

#[test]
fn bad_input_is_one_error_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let trace = shifted_trace(dir.path());
    let trace = trace.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--predictor", "psychic"], "unknown predictor `psychic`"),
        (
            &["--predictor", "transition", "--fit-fraction", "1"],
            "--fit-fraction",
        ),
        (
            &["--predictor", "oracle", "--accuracy", "1.5"],
            "`accuracy`",
        ),
        (&["--predictor", "history"], "`request_id`"),
    ];
    for (flags, needle) in cases {
        let args: Vec<&str> = ["predict", trace].iter().chain(flags).copied().collect();
        assert_fails_with(&moesim(&args), &[needle]);
    }
    let loads = dir.path().join("loads.json");
    std::fs::write(&loads, r#"{"logical_count": [[3, 1], [2, 2]]}"#).unwrap();
    let output = moesim(&[
        "predict",
        loads.to_str().unwrap(),
        "--predictor",
        "transition",
    ]);
    assert_fails_with(&output, &["only expert loads"]);
}
