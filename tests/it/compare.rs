//! `moesim compare`: verdicts, thresholds and exit codes on summaries with hand-computed
//! changes.

use crate::common;

use std::path::Path;

use common::{moesim, stderr, stdout};

/// Writes a summary with one placement's mean step time and throughput.
fn summary(dir: &Path, name: &str, step_ns: u64, tokens_per_s: f64) -> String {
    let path = dir.join(name);
    let json = format!(
        r#"{{"scenario": "x", "seed": 7, "strategies": [{{"name": "eplb", "step_ns": {step_ns}, "tokens_per_s": {tokens_per_s}}}]}}"#
    );
    std::fs::write(&path, json).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_ten_percent_slower_step_past_five_percent_regresses() {
    let dir = tempfile::tempdir().unwrap();
    let base = summary(dir.path(), "base.json", 2_000_000, 1000.0);
    let slow = summary(dir.path(), "slow.json", 2_200_000, 1000.0);
    let out = moesim(&["compare", &base, &slow]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "| `strategies.eplb.step_ns` | 2000000 | 2200000 | +10.00% | ↓ REGRESSION (worse by more than 5%) |"
        ),
        "{text}"
    );
    assert!(text.contains("3 metrics; 1 regressed past their threshold, 0 worse within it, 0 better, 0 changed (direction unknown), 0 added, 0 removed, 2 the same."), "{text}");
    // The unchanged metrics are listed with --all only.
    assert!(!text.contains("`seed`"), "{text}");
    assert!(
        stdout(&moesim(&["compare", &base, &slow, "--all"]))
            .contains("| `seed` | 7 | 7 | +0.00% | = same |")
    );
}

#[test]
fn a_three_percent_slower_step_is_worse_within_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let base = summary(dir.path(), "base.json", 2_000_000, 1000.0);
    // 2,060,000 / 2,000,000 = +3%; throughput 1000 -> 1100 = +10%, better.
    let current = summary(dir.path(), "current.json", 2_060_000, 1100.0);
    let out = moesim(&["compare", &base, &current]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "| `strategies.eplb.step_ns` | 2000000 | 2060000 | +3.00% | ↓ worse (within 5%) |"
        ),
        "{text}"
    );
    assert!(
        text.contains("| `strategies.eplb.tokens_per_s` | 1000 | 1100 | +10.00% | ↑ better |"),
        "{text}"
    );
}

#[test]
fn thresholds_are_set_per_metric_in_a_toml() {
    let dir = tempfile::tempdir().unwrap();
    let base = summary(dir.path(), "base.json", 2_000_000, 1000.0);
    let slow = summary(dir.path(), "slow.json", 2_200_000, 960.0);
    let toml = dir.path().join("thresholds.toml");
    // step_ns may be 15% worse; everything else 1%: throughput -4% regresses.
    std::fs::write(
        &toml,
        "default = 1.0\n[metrics]\n\"strategies.*.step_ns\" = 15\n",
    )
    .unwrap();
    let toml = toml.to_str().unwrap();
    let out = moesim(&["compare", &base, &slow, "--thresholds", toml]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("| +10.00% | ↓ worse (within 15%) |"),
        "{text}"
    );
    assert!(text.contains("| `strategies.eplb.tokens_per_s` | 1000 | 960 | -4.00% | ↓ REGRESSION (worse by more than 1%) |"), "{text}");
    // Raising the throughput's threshold to 4% (exactly its drop) passes.
    std::fs::write(
        dir.path().join("thresholds.toml"),
        "default = 4\n[metrics]\n\"strategies.*.step_ns\" = 15\n",
    )
    .unwrap();
    let out = moesim(&["compare", &base, &slow, "--thresholds", toml]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn json_output_lists_every_metric_with_its_change() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("run")).unwrap();
    let base = summary(dir.path(), "base.json", 2_000_000, 1000.0);
    summary(&dir.path().join("run"), "summary.json", 2_200_000, 1000.0);
    let run = dir.path().join("run");
    let out = moesim(&["compare", &base, run.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["regressed"], true);
    assert_eq!(json["counts"]["regression"], 1);
    assert_eq!(json["counts"]["same"], 2);
    let rows = json["rows"].as_array().unwrap();
    let step = rows
        .iter()
        .find(|r| r["metric"] == "strategies.eplb.step_ns")
        .unwrap();
    assert_eq!(step["baseline"], 2_000_000);
    assert_eq!(step["current"], 2_200_000);
    assert_eq!(step["change_pct"], 10.0);
    assert_eq!(step["direction"], "lower_is_better");
    assert_eq!(step["threshold_pct"], 5.0);
    assert_eq!(step["verdict"], "regression");
    assert_eq!(rows.len(), 3);
}

/// Asserts exit code 2 and exactly one line on stderr, an `error:` line holding every needle.
fn assert_bad_input(args: &[&str], needles: &[&str]) {
    let out = moesim(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
    }
    assert!(stdout(&out).is_empty());
}

#[test]
fn bad_input_exits_2_with_one_error_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = summary(dir.path(), "base.json", 2_000_000, 1000.0);
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"step_ns\": 1,\n \"x\": }").unwrap();
    let broken = broken.to_str().unwrap();
    assert_bad_input(
        &["compare", &base, broken],
        &[broken, "not valid JSON", "line 2"],
    );
    let words = dir.path().join("words.json");
    std::fs::write(&words, r#"{"model": "olmoe"}"#).unwrap();
    let words = words.to_str().unwrap();
    assert_bad_input(
        &["compare", words, &base],
        &[words, "holds no numeric metrics"],
    );
    let missing = dir.path().join("nothing-here");
    std::fs::create_dir(&missing).unwrap();
    let expected = missing.join("summary.json");
    assert_bad_input(
        &["compare", &base, missing.to_str().unwrap()],
        &[expected.to_str().unwrap()],
    );
    let toml = dir.path().join("t.toml");
    std::fs::write(&toml, "[metrics]\n\"strategies.*.step_ns\" = -2\n").unwrap();
    let toml = toml.to_str().unwrap();
    assert_bad_input(
        &["compare", &base, &base, "--thresholds", toml],
        &[toml, "`metrics.\"strategies.*.step_ns\"`", "-2"],
    );
}
