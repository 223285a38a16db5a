//! `moesim sweep`: a grid of settings over a small quickstart, failed points recorded, shards
//! merged into exactly the unsharded table, and one clear error per bad input.

use crate::common;

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

/// Runs `command` with `sh -c` in `dir` with the variables `env`, asserting it succeeds.
fn shell(dir: &Path, command: &str, env: &[(&str, String)]) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(out.status.success(), "{command}: {}", stderr(&out));
}

#[test]
fn the_slurm_script_and_the_k8s_job_shard_as_the_tests_do() {
    let dir = tempfile::tempdir().unwrap();
    base_scenario(dir.path(), "base.toml", "");
    let spec = sweep_file(dir.path(), "sweep.toml", GRID);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = env!("CARGO_BIN_EXE_moesim").to_string();
    let all = dir.path().join("all.parquet");
    sweep(&["sweep", &spec, "-o", all.to_str().unwrap()]);
    let unsharded = std::fs::read(&all).unwrap();

    // Slurm: every array task by hand (SLURM_ARRAY_TASK_ID set), then the merge step.
    let script = root.join("docs/slurm-sweep.sh");
    let slurm = format!("{} sweep.toml slurm.parquet", script.display());
    for task in 0..3 {
        let env = [
            ("MOESIM", bin.clone()),
            ("SLURM_ARRAY_TASK_ID", task.to_string()),
            ("SLURM_ARRAY_TASK_COUNT", "3".to_string()),
        ];
        shell(dir.path(), &slurm, &env);
    }
    let merge = [
        ("MOESIM", bin.clone()),
        ("MOESIM_SWEEP_MERGE", "1".to_string()),
        ("SLURM_ARRAY_TASK_COUNT", "3".to_string()),
    ];
    shell(dir.path(), &slurm, &merge);
    let merged = std::fs::read(dir.path().join("slurm.parquet")).unwrap();
    assert!(
        merged == unsharded,
        "the Slurm merge differs from the unsharded table"
    );

    // Kubernetes: the Indexed Job's command (its one `args` line), run per completion index
    // with the slices' volume pointed at a local folder, then merged.
    let manifest = std::fs::read_to_string(root.join("docs/k8s-sweep-job.yaml")).unwrap();
    let field = |key: &str| -> String {
        let line = manifest
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("no `{key}` in the manifest"));
        line.trim_start()[key.len()..]
            .trim()
            .trim_matches('"')
            .to_string()
    };
    let completions: usize = field("completions:").parse().unwrap();
    assert_eq!(
        field("value:"),
        completions.to_string(),
        "SHARDS is the completions"
    );
    let args_at = manifest.find("args:").unwrap();
    let command = manifest[args_at..].lines().nth(1).unwrap().trim();
    let command = command.strip_prefix("- moesim ").expect("args run moesim");
    let volume = dir.path().join("k8s");
    std::fs::create_dir(&volume).unwrap();
    let command = format!(
        "{bin} {}",
        command.replace("/data/sweep", volume.to_str().unwrap())
    );
    assert!(
        command.contains("--shard \"$JOB_COMPLETION_INDEX/$SHARDS\""),
        "{command}"
    );
    for index in 0..3 {
        let env = [
            ("JOB_COMPLETION_INDEX", index.to_string()),
            ("SHARDS", "3".to_string()),
        ];
        shell(dir.path(), &command, &env);
    }
    let parts: Vec<String> = (0..3)
        .map(|i| {
            volume
                .join(format!("part-{i}.parquet"))
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let k8s = dir.path().join("k8s.parquet");
    let mut args = vec!["sweep", "merge", "-o", k8s.to_str().unwrap()];
    args.extend(parts.iter().map(String::as_str));
    sweep(&args);
    assert!(
        std::fs::read(&k8s).unwrap() == unsharded,
        "the K8s merge differs"
    );
}

#[test]
fn a_corrupt_slice_is_named_before_it_is_decoded() {
    let dir = tempfile::tempdir().unwrap();
    base_scenario(dir.path(), "base.toml", "");
    let spec = sweep_file(dir.path(), "sweep.toml", "[grid]\ntokens_per_gpu = [0]\n");
    let part = dir.path().join("part.parquet");
    sweep(&["sweep", &spec, "-o", part.to_str().unwrap()]);
    let mut bytes = std::fs::read(&part).unwrap();
    // Scribble over the data pages; the footer stays intact.
    let end = bytes.len() / 3;
    for byte in &mut bytes[4..end] {
        *byte = 0xff;
    }
    let bad = dir.path().join("bad.parquet");
    std::fs::write(&bad, &bytes).unwrap();
    let out = dir.path().join("merged.parquet");
    assert_fails_with(
        &moesim(&[
            "sweep",
            "merge",
            "-o",
            out.to_str().unwrap(),
            bad.to_str().unwrap(),
        ]),
        &[bad.to_str().unwrap()],
    );
    assert!(!out.exists());
}

/// A served scenario: Qwen3-30B-A3B, 16 requests, on a small synthetic trace.
const SERVED: &str = "name = \"served\"\nseed = 11\nmodel = \"qwen3-30b-a3b\"\n\
cluster = \"dgx-h100\"\ngpus = 2\ntokens_per_gpu = 256\nplacements = [\"contiguous\"]\n\
[trace.synth]\nnum_experts = 128\nnum_layers = 4\ntop_k = 8\nnum_tokens = 2048\n\
[sim]\noverlap = [\"none\"]\nall_to_all = \"low-latency\"\n\
[workload]\nseed = 11\nrequests = 16\n[workload.arrival]\nprocess = \"poisson\"\nrate = 10.0\n\
[workload.input]\ndist = \"fixed\"\ntokens = 128\n[workload.output]\ndist = \"fixed\"\ntokens = 64\n\
[serving]\nprice_per_gpu_hour = 2.5\n[serving.slo]\nttft_ms = 500\ntpot_ms = 50\n";

#[test]
fn served_points_record_the_serving_summary_and_chart_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.toml"), SERVED).unwrap();
    let spec = sweep_file(
        dir.path(),
        "sweep.toml",
        "[grid]\ngpus = [1, 2]\n\"workload.arrival.rate\" = [10.0, 40.0]\n",
    );
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let report = path("report");
    sweep(&[
        "sweep",
        &spec,
        "-o",
        &path("all.parquet"),
        "--report",
        &report,
    ]);
    let table = ParquetReader::new(std::fs::File::open(path("all.parquet")).unwrap())
        .finish()
        .unwrap();
    assert_eq!(table.height(), 4);
    // Point 2 (2 GPUs at 10 requests/s) is the base scenario: what `moesim serve` measures.
    let serve = moesim(&["serve", &path("base.toml"), "--out", &path("serve")]);
    assert!(serve.status.success(), "{}", stderr(&serve));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path("serve/summary.json")).unwrap()).unwrap();
    for (column, json) in [
        ("summary.ttft.p99", &summary["summary"]["ttft"]["p99"]),
        ("summary.tpot.p99", &summary["summary"]["tpot"]["p99"]),
        (
            "summary.slo_attainment",
            &summary["summary"]["slo_attainment"],
        ),
        ("summary.gpus", &summary["summary"]["gpus"]),
        (
            "summary.cost_per_million_output_tokens",
            &summary["summary"]["cost_per_million_output_tokens"],
        ),
    ] {
        let value = table.column(column).unwrap().f64().unwrap().get(2).unwrap();
        assert_eq!(value, json.as_f64().unwrap(), "{column}");
    }
    // The report: verdict first, a heatmap per headline metric over the two axes, the front.
    let md = std::fs::read_to_string(dir.path().join("report/report.md")).unwrap();
    let verdict = md.lines().nth(2).unwrap();
    assert!(
        verdict.starts_with("Across 4 points (0 failed), the best cost is "),
        "{md}"
    );
    for file in [
        "heatmap_0.png",
        "heatmap_3.png",
        "pareto.png",
        "index.html",
        "summary.json",
    ] {
        assert!(dir.path().join("report").join(file).is_file(), "{file}");
    }
}
