//! `moesim offload` end to end: Mixtral-8x7B on one RTX 4090 over a synthetic trace of its
//! shape, the report's files, determinism, and bad input (one `error:` line, nothing written).

use std::path::Path;
use std::process::{Command, Output};

fn moesim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moesim"))
        .args(args)
        .output()
        .unwrap()
}

/// A synthetic top-2 trace of `experts` experts over Mixtral's 32 MoE layers.
fn synth(dir: &Path, experts: usize) -> String {
    let path = dir.join(format!("t{experts}.parquet"));
    let path = path.to_str().unwrap().to_string();
    let experts = experts.to_string();
    let out = moesim(&[
        "trace",
        "synth",
        "--experts",
        &experts,
        "--layers",
        "32",
        "--top-k",
        "2",
        "--tokens",
        "300",
        "--affinity",
        "0.6",
        "--seed",
        "5",
        "-o",
        &path,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn offload(trace: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "offload",
        trace,
        "--model",
        "mixtral-8x7b",
        "--cluster",
        "rtx4090-host",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    moesim(&args)
}

/// Column `name` of the rows of `csv` whose `mode` and `cache` match.
fn cell(csv: &str, mode: &str, cache: &str, name: &str) -> f64 {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = header.iter().position(|h| *h == name).unwrap();
    let row = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|r| r[0] == mode && r[1] == cache)
        .unwrap();
    row[column].parse().unwrap()
}

#[test]
fn prefetch_with_a_perfect_predictor_beats_on_demand_and_a_full_cache_never_misses() {
    let dir = tempfile::tempdir().unwrap();
    let trace = synth(dir.path(), 8);
    let out = dir.path().join("report");
    let args = ["--cache", "2,8", "--predictor", "oracle", "--steps", "40"];
    let run = offload(&trace, &out, &args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for file in [
        "summary.json",
        "runs.csv",
        "layer_hit_rates.csv",
        "hit_rate.png",
        "tokens_per_s.png",
        "layer_hit_rate.png",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    for mode in ["on-demand", "prefetch"] {
        assert_eq!(cell(&csv, mode, "8", "hit_rate"), 1.0);
        assert_eq!(cell(&csv, mode, "8", "stall_ns"), 0.0);
        assert_eq!(cell(&csv, mode, "8", "demand_bytes"), 0.0);
    }
    // Cache 2 of 8: on demand every miss stalls a whole copy (11.0 ms); a perfect predictor
    // copies each a layer early, so only the very first layer, which nothing predicts, copies
    // on demand: one of its two experts is not among the two the cache was warmed with. Of
    // 40 steps x 32 layers x 2 experts = 2,560 picks, that one misses.
    assert!(cell(&csv, "on-demand", "2", "hit_rate") < 0.5);
    assert_eq!(cell(&csv, "prefetch", "2", "demand_bytes"), 352_321_536.0);
    assert_eq!(cell(&csv, "prefetch", "2", "hit_rate"), 1.0 - 1.0 / 2560.0);
    assert!(
        cell(&csv, "prefetch", "2", "tokens_per_s") > cell(&csv, "on-demand", "2", "tokens_per_s")
    );
    let layers = std::fs::read_to_string(out.join("layer_hit_rates.csv")).unwrap();
    assert_eq!(layers.lines().count(), 1 + 4 * 32);
    // The same inputs give the same bytes.
    let again = dir.path().join("again");
    assert!(offload(&trace, &again, &args).status.success());
    for file in ["summary.json", "runs.csv", "layer_hit_rates.csv"] {
        assert_eq!(
            std::fs::read(out.join(file)).unwrap(),
            std::fs::read(again.join(file)).unwrap(),
            "{file}"
        );
    }
}

/// Fails with one `error:` line holding every piece of `expected`, writing nothing.
fn assert_refused(run: Output, out: &Path, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error:"), "{stderr}");
    for piece in expected {
        assert!(stderr.contains(piece), "{piece} not in {stderr}");
    }
    assert!(!out.exists(), "{} was written", out.display());
}

#[test]
fn bad_input_is_one_error_naming_it_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let trace = synth(dir.path(), 8);
    // A cache larger than the model, and an empty one.
    let run = offload(&trace, &out, &["--cache", "2,9"]);
    assert_refused(
        run,
        &out,
        &["--cache", "`cache` = 9", "larger than the model"],
    );
    let run = offload(&trace, &out, &["--cache", "0"]);
    assert_refused(run, &out, &["--cache", "`cache` = 0"]);
    // A memory budget holding more than every expert.
    let run = offload(&trace, &out, &["--memory-gib", "500"]);
    assert_refused(run, &out, &["--memory-gib 500", "larger than the model"]);
    // A trace (and a predictor fitted on it) with another expert count than the model's.
    let wide = synth(dir.path(), 16);
    let run = offload(&wide, &out, &["--cache", "2"]);
    assert_refused(run, &out, &["--model mixtral-8x7b", "16 experts", "has 8"]);
    let run = offload(&trace, &out, &["--cache", "2", "--eviction", "fifo"]);
    assert_refused(run, &out, &["--eviction", "fifo", "lru, lfu, predicted"]);
}
