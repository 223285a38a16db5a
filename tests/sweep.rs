//! `moesim sweep`: a grid of settings over a small quickstart, failed points recorded, shards
//! merged into exactly the unsharded table, and one clear error per bad input.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_fails_with, moesim, stderr};
use polars::prelude::*;

/// The small base scenario (one placement, one overlap strategy) with `extra` TOML appended.
fn base_scenario(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let trace = Path::new(env!("CARGO_MANIFEST_DIR")).join("traces/quickstart.parquet");
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "name = \"small\"\nseed = 7\nmodel = \"olmoe-1b-7b\"\ncluster = \"dgx-h100\"\n\
             tokens_per_gpu = 256\nplacements = [\"contiguous\"]\n{extra}\
             [trace]\nfile = {trace:?}\n[sim]\noverlap = [\"none\"]\n"
        ),
    )
    .unwrap();
    path
}

/// A sweep file over `base.toml` with `body` after the `scenario` line.
fn sweep_file(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("scenario = \"base.toml\"\n{body}")).unwrap();
    path.to_str().unwrap().to_string()
}

/// tokens_per_gpu 0 (refused: a recorded failure), 128, 256 x two overlap strategies.
const GRID: &str =
    "[grid]\ntokens_per_gpu = [0, 128, 256]\n\"sim.overlap\" = [[\"none\"], [\"dual-batch\"]]\n";

fn sweep(args: &[&str]) {
    let out = moesim(args);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn shards_merge_into_exactly_the_unsharded_table() {
    let dir = tempfile::tempdir().unwrap();
    base_scenario(dir.path(), "base.toml", "");
    let spec = sweep_file(dir.path(), "sweep.toml", GRID);
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    sweep(&["sweep", &spec, "-o", &path("all.parquet")]);
    for shard in 0..3 {
        let part = path(&format!("part-{shard}.parquet"));
        sweep(&[
            "sweep",
            &spec,
            "-o",
            &part,
            "--shard",
            &format!("{shard}/3"),
        ]);
    }
    let (p0, p1, p2) = (
        path("part-0.parquet"),
        path("part-1.parquet"),
        path("part-2.parquet"),
    );
    sweep(&[
        "sweep",
        "merge",
        "-o",
        &path("merged.parquet"),
        &p2,
        &p0,
        &p1,
    ]);
    let all = std::fs::read(path("all.parquet")).unwrap();
    assert_eq!(all, std::fs::read(path("merged.parquet")).unwrap());

    let table = ParquetReader::new(std::fs::File::open(path("all.parquet")).unwrap())
        .finish()
        .unwrap();
    assert_eq!(table.height(), 6);
    let text = |name: &str| -> Vec<Option<String>> {
        let column = table.column(name).unwrap().str().unwrap().clone();
        column.iter().map(|v| v.map(str::to_string)).collect()
    };
    // Axes in name order, the first slowest: `sim.overlap`, then `tokens_per_gpu`.
    let tokens = text("scenario.tokens_per_gpu");
    let expected = ["0", "128", "256", "0", "128", "256"];
    assert_eq!(tokens, expected.map(|t| Some(t.to_string())));
    let overlap = text("scenario.sim.overlap");
    assert_eq!(overlap[0].as_deref(), Some("[\"none\"]"));
    assert_eq!(overlap[5].as_deref(), Some("[\"dual-batch\"]"));
    let errors = text("error");
    for (point, error) in errors.iter().enumerate() {
        match point {
            0 | 3 => assert!(
                error.as_deref().unwrap().contains("tokens_per_gpu"),
                "{errors:?}"
            ),
            _ => assert_eq!(error, &None),
        }
    }
    // Point 2 (256 tokens per GPU, no overlap) is the base scenario: its step time is what
    // `moesim run` simulates for it.
    let step = table
        .column("simulated.strategies.contiguous/none.step_ns")
        .unwrap()
        .f64()
        .unwrap()
        .get(2)
        .unwrap();
    let out = path("run");
    sweep(&["run", &path("base.toml"), "--out", &out]);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(&out).join("summary.json")).unwrap())
            .unwrap();
    let run_step = summary["simulated"]["strategies"][0]["step_ns"]
        .as_u64()
        .unwrap();
    assert_eq!(step, run_step as f64);
    // Only the two dual-batch points that ran have a dual-batch step time.
    let dual = table
        .column("simulated.strategies.contiguous/dual-batch.step_ns")
        .unwrap();
    assert_eq!(dual.null_count(), 4);
}

#[test]
fn bad_sweeps_get_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    base_scenario(dir.path(), "base.toml", "");
    let out = dir.path().join("out.parquet");
    let out = out.to_str().unwrap();
    let unknown = sweep_file(
        dir.path(),
        "a.toml",
        "[grid]\n\"sim.overlapp\" = [[\"none\"]]\n",
    );
    assert_fails_with(
        &moesim(&["sweep", &unknown, "-o", out]),
        &[&unknown, "axis `sim.overlapp` names no scenario field"],
    );
    let empty = sweep_file(dir.path(), "b.toml", "[grid]\ntokens_per_gpu = []\n");
    assert_fails_with(
        &moesim(&["sweep", &empty, "-o", out]),
        &[&empty, "`grid.\"tokens_per_gpu\"`: the grid is empty"],
    );
    let none = sweep_file(dir.path(), "c.toml", "[grid]\n");
    assert_fails_with(&moesim(&["sweep", &none, "-o", out]), &[&none, "no axes"]);
    assert!(!Path::new(out).exists());

    let good = sweep_file(
        dir.path(),
        "d.toml",
        "[grid]\ntokens_per_gpu = [128, 256]\n",
    );
    let shard = moesim(&["sweep", &good, "-o", out, "--shard", "3/3"]);
    assert_eq!(shard.status.code(), Some(2));
    assert!(
        stderr(&shard).contains("shard 3 of 3 is out of range"),
        "{}",
        stderr(&shard)
    );

    // Slices of two different sweeps, and a merge missing a slice.
    let other = sweep_file(
        dir.path(),
        "e.toml",
        "[grid]\ntokens_per_gpu = [128, 512]\n",
    );
    let part = |spec: &str, name: &str, shard: &str| {
        let path = dir.path().join(name).to_str().unwrap().to_string();
        sweep(&["sweep", spec, "-o", &path, "--shard", shard]);
        path
    };
    let d0 = part(&good, "d0.parquet", "0/2");
    let e1 = part(&other, "e1.parquet", "1/2");
    assert_fails_with(
        &moesim(&["sweep", "merge", "-o", out, &d0, &e1]),
        &[&e1, "a slice of another sweep"],
    );
    assert_fails_with(
        &moesim(&["sweep", "merge", "-o", out, &d0]),
        &["point 1 is in no slice"],
    );
    assert!(!Path::new(out).exists());
}
