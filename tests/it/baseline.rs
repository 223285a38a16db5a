//! The committed regression baseline (`reports/baseline/`, the CI gate's reference) against a
//! fresh run of the quickstart: a change that moves any number fails here, before CI's gate,
//! with the table of what moved and the command that refreshes the baseline.

use crate::common;

use std::path::Path;

use common::{moesim, stderr, stdout};

const BASELINE: &str = "reports/baseline/quickstart";
const THRESHOLDS: &str = "reports/baseline/thresholds.toml";

#[test]
fn the_quickstart_matches_its_committed_baseline_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("quickstart");
    let out = out.to_str().unwrap();
    let run = moesim(&["run", "scenarios/quickstart.toml", "--out", out]);
    assert!(run.status.success(), "{}", stderr(&run));
    let compared = moesim(&["compare", BASELINE, out, "--thresholds", THRESHOLDS]);
    let table = stdout(&compared);
    assert!(
        compared.status.code() == Some(0) && table.contains("Every metric is the same"),
        "the quickstart's numbers moved from the committed baseline:\n\n{table}\n{}\nIf the \
         change is intended, refresh the baseline with `cargo test` then \
         `scripts/regression_gate.sh --update`, and commit reports/baseline/.",
        stderr(&compared)
    );
}

/// Writes the baseline with `simulated.strategies.eplb/none.step_ns` scaled by `factor`.
fn with_eplb_step_scaled(dir: &Path, factor: f64) -> String {
    let text = std::fs::read_to_string(Path::new(BASELINE).join("summary.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let eplb = json["simulated"]["strategies"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["placement"] == "eplb" && s["strategy"] == "none")
        .unwrap();
    let step = eplb["step_ns"].as_u64().unwrap();
    eplb["step_ns"] = ((step as f64 * factor).round() as u64).into();
    let path = dir.join(format!("scaled-{factor}.json"));
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn the_gate_fails_a_one_percent_slower_step_and_passes_a_faster_one() {
    let dir = tempfile::tempdir().unwrap();
    let committed = Path::new(BASELINE).join("summary.json");
    let step = |path: &str| -> u64 {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        json["simulated"]["strategies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["placement"] == "eplb" && s["strategy"] == "none")
            .unwrap()["step_ns"]
            .as_u64()
            .unwrap()
    };
    let base = step(committed.to_str().unwrap());
    for (factor, code, verdict) in [
        (1.01, 1, "↓ REGRESSION (worse by more than 0.5%)"),
        (1.004, 0, "↓ worse (within 0.5%)"),
        (0.99, 0, "↑ better"),
        (1.0, 0, ""),
    ] {
        let current = with_eplb_step_scaled(dir.path(), factor);
        let scaled = step(&current);
        let out = moesim(&["compare", BASELINE, &current, "--thresholds", THRESHOLDS]);
        assert_eq!(out.status.code(), Some(code), "{factor}: {}", stderr(&out));
        let text = stdout(&out);
        let row = format!(
            "| `simulated.strategies.eplb/none.step_ns` | {base} | {scaled} | {:+.2}% | {verdict} |",
            (scaled as f64 - base as f64) * 100.0 / base as f64
        );
        assert_eq!(text.contains(&row), factor != 1.0, "{row}\n{text}");
    }
}
