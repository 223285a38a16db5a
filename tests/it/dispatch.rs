//! Dispatch policies end to end (`[dispatch]`): the dropped share that `moesim simulate` and
//! `moesim serve` report, and a bad capacity factor rejected before anything is written.

use crate::common;

use std::path::{Path, PathBuf};

use common::{assert_fails_with, moesim, stdout};

/// OLMoE (64 experts, top-8, 16 layers) on 2 H100s over 4,096 synthetic tokens, with the
/// `[dispatch]` table body `dispatch` and `extra` tables appended.
fn scenario(dir: &Path, dispatch: &str, extra: &str) -> PathBuf {
    let path = dir.join("dispatch.toml");
    let text = format!(
        "name = \"dispatch-test\"\nseed = 4\nmodel = \"olmoe-1b-7b\"\ncluster = \"dgx-h100\"\n\
         gpus = 2\ntokens_per_gpu = 1024\nplacements = [\"contiguous\"]\n\
         [trace.synth]\nnum_experts = 64\nnum_layers = 16\ntop_k = 8\nnum_tokens = 4096\n\
         [sim]\noverlap = [\"none\"]\n[dispatch]\n{dispatch}\n{extra}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `moesim simulate --json`'s dispatch summary of the scenario's one placement.
fn simulated(dispatch: &str) -> (serde_json::Value, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), dispatch, "");
    let out = moesim(&["simulate", path.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let step_ns = json["strategies"][0]["step_ns"].as_u64().unwrap();
    (json["dispatch"]["placements"][0].clone(), step_ns)
}

#[test]
fn simulate_reports_the_share_of_pairs_a_capacity_factor_drops() {
    // 4,096 tokens x top-8 x 16 layers are routed whatever the policy.
    let routed = 4096.0 * 8.0 * 16.0;
    let (none, _) = simulated("");
    assert_eq!(none["routed_pairs"], routed);
    assert_eq!(none["dropped_pairs"], 0.0);
    let mut last = 1.0;
    for factor in ["1.0", "1.25", "2.0"] {
        let (d, _) = simulated(&format!("capacity_factor = {factor}"));
        assert_eq!(d["routed_pairs"], routed, "{factor}");
        let share = d["dropped_share"].as_f64().unwrap();
        let dropped = d["dropped_pairs"].as_f64().unwrap();
        assert_eq!(share, dropped / routed, "{factor}");
        // A larger capacity drops fewer; the skewed synthetic routing overflows even at 2.
        assert!(share > 0.0 && share < last, "{factor}: {share}");
        last = share;
    }
    // The table printed without --json says it too.
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), "capacity_factor = 1.0", "");
    let out = stdout(&moesim(&["simulate", path.to_str().unwrap()]));
    assert!(
        out.contains("capacity factor 1, LLEP off): dropped "),
        "{out}"
    );
}

#[test]
fn llep_moves_pairs_and_sends_weights_when_the_budget_allows() {
    let (d, _) = simulated("[dispatch.llep]\nthreshold = 1.0\nmemory_budget_gb = 1");
    // OLMoE's experts are 3 x 2048 x 1024 BF16 weights: 12,582,912 bytes each.
    let weights = d["weight_bytes"].as_f64().unwrap();
    assert!(weights > 0.0 && weights % 12_582_912.0 == 0.0, "{weights}");
    assert!(d["moved_pairs"].as_f64().unwrap() > 0.0);
    let (off, _) = simulated("[dispatch.llep]\nthreshold = 1.0\nmemory_budget_gb = 0.01");
    assert_eq!(off["weight_bytes"], 0.0);
}

#[test]
fn serve_reports_the_dropped_share_of_its_simulated_steps() {
    let dir = tempfile::tempdir().unwrap();
    let workload = "[workload]\nseed = 2\nrequests = 40\n[workload.arrival]\nprocess = \"poisson\"\n\
        rate = 20.0\n[workload.input]\ndist = \"uniform\"\nlow = 64\nhigh = 256\n\
        [workload.output]\ndist = \"uniform\"\nlow = 4\nhigh = 16\n[serving]\n";
    let path = scenario(dir.path(), "capacity_factor = 1.0", workload);
    let out = dir.path().join("out");
    let output = moesim(&[
        "serve",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let pool = &summary["pools"][0];
    let (dropped, routed) = (
        pool["dispatch"]["dropped_pairs"].as_f64().unwrap(),
        pool["dispatch"]["routed_pairs"].as_f64().unwrap(),
    );
    assert!(dropped > 0.0 && routed > dropped, "{pool}");
    assert_eq!(pool["dropped_share"].as_f64().unwrap(), dropped / routed);
    assert!(stdout(&output).contains("pool dispatch: dropped "));
}

#[test]
fn a_capacity_factor_of_zero_or_less_is_one_error_naming_the_key_and_nothing_is_written() {
    for factor in ["0", "-1.0"] {
        let dir = tempfile::tempdir().unwrap();
        let path = scenario(dir.path(), &format!("capacity_factor = {factor}"), "");
        let out = dir.path().join("out");
        let output = moesim(&[
            "run",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_fails_with(&output, &["dispatch.toml", "`dispatch.capacity_factor`"]);
        assert_eq!(common::stderr(&output).lines().count(), 1);
        assert!(!out.exists(), "a failed run left {}", out.display());
        let output = moesim(&["simulate", path.to_str().unwrap()]);
        assert_fails_with(&output, &["`dispatch.capacity_factor`"]);
        assert!(stdout(&output).is_empty());
    }
}
