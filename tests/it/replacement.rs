//! `moesim serve` with `[replacement]` and `[[failures]]`: re-placements reported with their
//! bytes and stalls, a policy that never fires, the variants side by side
//! (`--compare-replacement`), and bad input naming its field with nothing written.

use std::path::{Path, PathBuf};
use std::process::Output;

fn moesim(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_moesim"))
        .args(args)
        .output()
        .unwrap()
}

/// OLMoE on 2 H100s serving 120 requests on a drifting synthetic trace, every step simulated,
/// with `extra` appended (a `[replacement]` table, `[[failures]]`).
fn scenario(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("replace.toml");
    let text = format!(
        "name = \"replace-test\"\nseed = 4\nmodel = \"olmoe-1b-7b\"\ncluster = \"dgx-h100\"\ngpus = 2\n\
         tokens_per_gpu = 64\nplacements = [\"contiguous\"]\n\
         [trace.synth]\nnum_experts = 64\nnum_layers = 16\ntop_k = 8\nnum_tokens = 8192\n\
         drift = 0.2\ndrift_period = 512\n\
         [sim]\noverlap = [\"none\"]\nall_to_all = \"low-latency\"\n\
         [workload]\nseed = 2\nrequests = 120\n[workload.arrival]\nprocess = \"poisson\"\nrate = 40.0\n\
         [workload.input]\ndist = \"fixed\"\ntokens = 256\n[workload.output]\ndist = \"fixed\"\ntokens = 32\n\
         [serving]\nfidelity = \"full\"\n{extra}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn serve(scenario: &Path, out: &Path) -> Output {
    moesim(&[
        "serve",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn periodic_sync_re_placements_stall_for_planning_and_transfers() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        dir.path(),
        "[replacement]\npolicy = \"periodic\"\nwindow_steps = 50\ninterval_steps = 100\n\
         mode = \"sync\"\nplanning_s = 0.01\nplanning_per_layer_ms = 0.5\n\
         [[failures]]\nat_s = 0.5\nkind = \"network\"\ncomponent = \"n0/gpu1->n0/pcie1\"",
    );
    let out = dir.path().join("out");
    let output = serve(&path, &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let s = summary(&out);
    let events = s["pools"][0]["replacements"].as_array().unwrap();
    assert!(!events.is_empty(), "{s}");
    for e in events {
        let f = |key: &str| e[key].as_f64().unwrap();
        // 10 ms + 16 layers x 0.5 ms of planning, then the transfers, serving paused.
        assert_eq!(f("planning_ms"), 18.0);
        assert!((f("stall_ms") - f("planning_ms") - f("transfer_ms")).abs() < 1e-9);
        // An OLMoE expert is 3 x 2048 x 1024 x 2 bytes.
        assert_eq!(
            e["bytes_moved"].as_u64().unwrap(),
            e["experts_moved"].as_u64().unwrap() * 12_582_912
        );
        assert!(f("imbalance_after") <= f("imbalance_before") + 1e-9, "{e}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## Re-placements"), "{report}");
    assert!(out.join("imbalance.png").is_file() && out.join("step_time.png").is_file());
    // The link failed in second 0: nothing before it to compare, the seconds after it counted.
    let failure = &s["network_failures"][0];
    assert_eq!(failure["component"], "n0/gpu1->n0/pcie1");
    assert_eq!(failure["at_s"], 0.5);
    assert_eq!(failure["before"]["seconds"], 0);
    let seconds_after = s["summary"]["duration_s"].as_f64().unwrap().ceil() as u64 - 1;
    assert_eq!(
        failure["after"]["seconds"].as_u64().unwrap(),
        seconds_after.min(10)
    );
    assert!(report.contains("## Network failures"), "{report}");
}

#[test]
fn a_triggered_policy_below_its_threshold_never_re_places() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        dir.path(),
        "[replacement]\npolicy = \"triggered\"\nthreshold = 50\ninterval_steps = 20",
    );
    let out = dir.path().join("out");
    let output = serve(&path, &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        summary(&out)["pools"][0]["replacements"],
        serde_json::json!([])
    );
    // The charts over time are drawn all the same, as the baseline of the other policies.
    assert!(out.join("imbalance.png").is_file());
}

#[test]
fn bad_replacement_and_failure_entries_name_their_field_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, field) in [
        (
            "[replacement]\npolicy = \"periodic\"\ninterval_steps = 0",
            "`replacement.interval_steps`: must be at least 1 step",
        ),
        (
            "[replacement]\npolicy = \"sometimes\"",
            "`replacement.policy`: unknown re-placement policy `sometimes`",
        ),
        (
            "[[failures]]\nkind = \"network\"\nat_s = 1.0\ncomponent = \"n0/nic9\"",
            "has no component `n0/nic9`",
        ),
        (
            "[[failures]]\nkind = \"network\"\nat_s = -1.0\ncomponent = \"n0/nic0\"",
            "`failures[0].at_s` = -1 must be a non-negative number of seconds",
        ),
    ] {
        let path = scenario(dir.path(), extra);
        let out = dir.path().join("bad");
        let output = serve(&path, &out);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra}");
        assert!(
            stderr.starts_with("error:") && stderr.contains(field),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!out.exists(), "{extra}: wrote {out:?}");
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn compare_replacement_serves_each_variant_and_sums_its_re_placements() {
    let dir = tempfile::tempdir().unwrap();
    // The variants override the policy and mode; the table's other knobs hold for all.
    let path = scenario(
        dir.path(),
        "[replacement]\npolicy = \"triggered\"\nmode = \"async\"\nwindow_steps = 50\n\
         interval_steps = 100\nplanning_s = 0.01\nplanning_per_layer_ms = 0.5\n\
         initial_tokens = 1024",
    );
    let out = dir.path().join("out");
    let output = moesim(&[
        "serve",
        path.to_str().unwrap(),
        "--compare-replacement=never,periodic",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = json(&out.join("summary.json"));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, variant) in rows.iter().zip(["never", "periodic"]) {
        assert_eq!(row["variant"], variant);
        let run = json(&out.join(variant).join("summary.json"));
        assert_eq!(run["replacement"], variant);
        let events = run["pools"][0]["replacements"].as_array().unwrap();
        let sum = |key: &str| events.iter().map(|e| e[key].as_f64().unwrap()).sum::<f64>();
        assert_eq!(row["replacements"].as_u64().unwrap(), events.len() as u64);
        assert_eq!(row["bytes_moved"].as_f64().unwrap(), sum("bytes_moved"));
        assert!((row["stall_ms"].as_f64().unwrap() - sum("stall_ms")).abs() < 1e-9);
        assert_eq!(row["mean_step_ms"], run["summary"]["mean_step_ms"]);
        assert_eq!(row["slo_attainment"], run["summary"]["slo_attainment"]);
        assert!(out.join(variant).join("imbalance.png").is_file());
    }
    // never moves nothing; periodic (synchronous) stalls for 10 ms + 16 x 0.5 ms of planning
    // and its transfers at every re-placement.
    assert_eq!(rows[0]["replacements"], 0);
    assert_eq!(rows[0]["bytes_moved"], 0);
    let periodic = rows[1]["replacements"].as_u64().unwrap();
    assert!(periodic > 0);
    assert!(
        (rows[1]["stall_ms"].as_f64().unwrap()
            - 18.0 * periodic as f64
            - rows[1]["transfer_ms"].as_f64().unwrap())
        .abs()
            < 1e-6
    );
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(readme.starts_with("Re-placement "), "{readme}");
    assert!(readme.contains("| periodic | "), "{readme}");
    assert!(
        readme.contains("--compare-replacement=never,periodic"),
        "{readme}"
    );
    for chart in ["imbalance_by_policy.png", "step_time_by_policy.png"] {
        assert!(out.join(chart).is_file(), "{chart}");
    }
}

#[test]
fn bad_comparison_variants_and_initial_tokens_name_their_field_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, flag, message) in [
        (
            "[replacement]\npolicy = \"never\"",
            "--compare-replacement=never,sometimes-async",
            "`--compare-replacement`: unknown re-placement variant `sometimes-async`",
        ),
        (
            "[replacement]\npolicy = \"never\"",
            "--compare-replacement=never,never",
            "`--compare-replacement`: variant `never` named twice",
        ),
        (
            "",
            "--compare-replacement",
            "`--compare-replacement` needs a `[replacement]` table",
        ),
        (
            "[replacement]\npolicy = \"never\"\ninitial_tokens = 9000",
            "--json",
            "`replacement.initial_tokens`: 9000 tokens but the trace has 8192",
        ),
        (
            "[replacement]\npolicy = \"never\"\ninitial_tokens = 0",
            "--json",
            "`replacement.initial_tokens`: must be at least 1 token",
        ),
    ] {
        let path = scenario(dir.path(), extra);
        let out = dir.path().join("bad");
        let output = moesim(&[
            "serve",
            path.to_str().unwrap(),
            flag,
            "--out",
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra} {flag}");
        assert!(
            stderr.starts_with("error:") && stderr.contains(message),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!out.exists(), "{extra} {flag}: wrote {out:?}");
    }
}
