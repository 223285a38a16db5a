//! `moesim capture`: the one-line refusal without a GPU, and the CPU twin end to end.

use crate::common;

use std::path::Path;

use common::{assert_fails_with, moesim, stderr};
use moesim::trace::Trace;
use moesim::trace::importers::write_f32;
use moesim::trace::parquet::read_trace;

/// Two layers x three tokens x four experts; the expected top-2 is worked out per row below.
const LOGITS: [f32; 24] = [
    0.0, 2.0, 1.0, -1.0, // layer 0, token 0: experts 1, 2
    3.0, 3.0, 0.0, 0.0, //                 1: tie, 0 then 1
    0.0, 0.0, 0.0, 5.0, //                 2: 3, then 0 (ties 1, 2)
    1.0, 0.0, 0.0, 0.0, // layer 1, token 0: 0, then 1 (ties 2, 3)
    0.0, 0.0, 4.0, 4.0, //                 1: tie, 2 then 3
    -1.0, -2.0, -3.0, -4.0, //             2: 0, 1
];

fn write_logits(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("router_logits.npy");
    write_f32(&path, &[2, 3, 4], &LOGITS).unwrap();
    path
}

#[test]
fn without_a_driver_capture_prints_one_line_and_writes_nothing() {
    if moesim::gpu::driver_present() {
        eprintln!("skipping: this machine has an NVIDIA driver");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let logits = write_logits(dir.path());
    let out = dir.path().join("trace.parquet");
    let output = moesim(&[
        "capture",
        "--logits",
        logits.to_str().unwrap(),
        "--top-k",
        "2",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: moesim capture needs a GPU: no NVIDIA driver found (libcuda could not be \
         loaded)\n"
    );
    assert!(!out.exists());
    assert!(!dir.path().join("trace.capture.json").exists());
}

#[test]
fn the_cpu_twin_writes_the_hand_computed_routing_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let logits = write_logits(dir.path());
    let out = dir.path().join("trace.parquet");
    let output = moesim(&[
        "capture",
        "--cpu",
        "--logits",
        logits.to_str().unwrap(),
        "--top-k",
        "2",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let Trace::Tokens(trace) = read_trace(&out).unwrap() else {
        panic!("a capture is a token-level trace");
    };
    assert_eq!(
        (trace.num_layers(), trace.num_tokens(), trace.num_experts()),
        (2, 3, 4)
    );
    assert_eq!(trace.layer(0).experts(), [1, 2, 0, 1, 3, 0]);
    assert_eq!(trace.layer(1).experts(), [0, 1, 2, 3, 0, 1]);
    // Renormalized softmax weights: e^2 / (e^2 + e) = 0.7310586, ties 0.5, e^5 / (e^5 + 1).
    let weights = trace.layer(0).weights().unwrap();
    let expected = [0.731_058_6, 0.268_941_4, 0.5, 0.5, 0.993_307_1, 0.006_692_9];
    for (got, want) in weights.iter().zip(expected) {
        assert!((got - want).abs() < 1e-6, "{weights:?}");
    }
    let sidecar: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("trace.capture.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sidecar["engine"], "cpu twin");
    assert_eq!(sidecar["gating"], "softmax top-2 of 4, renormalized");
    assert_eq!(sidecar["lost_records"], 0);
    assert_eq!(
        sidecar["expert_counts"],
        serde_json::json!([[2, 2, 1, 1], [2, 2, 1, 1]])
    );
}

#[test]
fn group_limited_sigmoid_routing_with_a_bias_from_the_command_line() {
    // One layer, one token, 8 experts in 4 groups; all logits 0 (score 0.5) so the bias alone
    // ranks: selection scores 1.0 0.5 | 0.75 0.75 | 0.875 0.5 | 0.625 0.625, group sums 1.5,
    // 1.5, 1.375, 1.25: groups 0 and 1 are kept, so expert 4 loses to expert 2.
    let dir = tempfile::tempdir().unwrap();
    let logits = dir.path().join("l.npy");
    write_f32(&logits, &[1, 8], &[0.0; 8]).unwrap();
    let bias = dir.path().join("bias.npy");
    write_f32(
        &bias,
        &[8],
        &[0.5, 0.0, 0.25, 0.25, 0.375, 0.0, 0.125, 0.125],
    )
    .unwrap();
    let out = dir.path().join("g.parquet");
    let output = moesim(&[
        "capture",
        "--cpu",
        "--logits",
        logits.to_str().unwrap(),
        "--top-k",
        "2",
        "--scoring",
        "sigmoid",
        "--groups",
        "4",
        "--top-groups",
        "2",
        "--bias",
        bias.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let Trace::Tokens(trace) = read_trace(&out).unwrap() else {
        panic!("a capture is a token-level trace");
    };
    assert_eq!(trace.layer(0).experts(), [0, 2]);
}

#[test]
fn bad_capture_inputs_are_named_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let logits = dir.path().join("nan.npy");
    write_f32(&logits, &[2, 2], &[0.0, 1.0, f32::NAN, 0.0]).unwrap();
    let out = dir.path().join("t.parquet");
    let run = |extra: &[&str]| {
        let mut args = vec!["capture", "--cpu", "--logits", logits.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-o", out.to_str().unwrap()]);
        moesim(&args)
    };
    assert_fails_with(
        &run(&["--top-k", "1"]),
        &["layer 0: token 1 expert 0: logit NaN is not finite"],
    );
    assert_fails_with(
        &run(&["--top-k", "3"]),
        &["--top-k 3 must be between 1 and the 2 experts"],
    );
    assert_eq!(
        run(&["--top-k", "1", "--groups", "2"]).status.code(),
        Some(2)
    );
    assert!(!out.exists());
}

#[test]
fn the_python_capture_module_passes_its_cpu_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let numpy = std::process::Command::new("python3")
        .args(["-c", "import numpy"])
        .output();
    if !numpy.is_ok_and(|o| o.status.success()) {
        eprintln!("skipping: python3 with numpy not available");
        return;
    }
    let output = std::process::Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "python/tests"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("Ran 7 tests"),
        "{}",
        stderr(&output)
    );
}
