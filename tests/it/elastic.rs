//! Elastic scaling and GPU failures through `moesim serve`: the three mechanisms side by side
//! on a bursty trace, and bad `[scaling]` / `[[failures]]` input named by its field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn moesim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moesim"))
        .args(args)
        .output()
        .unwrap()
}

/// OLMoE on a DGX H100, 1 to 4 GPUs, bursty arrivals, `scaling` and `extra` appended.
fn scenario(dir: &Path, scaling: &str, extra: &str) -> PathBuf {
    let path = dir.join("elastic.toml");
    let text = format!(
        "name = \"elastic-test\"\nseed = 3\nmodel = \"olmoe-1b-7b\"\ncluster = \"dgx-h100\"\n\
         tokens_per_gpu = 64\nplacements = [\"contiguous\"]\n\
         [trace.synth]\nnum_experts = 64\nnum_layers = 16\ntop_k = 8\nnum_tokens = 4096\n\
         [sim]\noverlap = [\"none\"]\nall_to_all = \"low-latency\"\n\
         [workload]\nseed = 3\nrequests = 600\n\
         [workload.arrival]\nprocess = \"on-off\"\nrate_on = 60.0\nrate_off = 2.0\non_s = 4.0\noff_s = 4.0\n\
         [workload.input]\ndist = \"fixed\"\ntokens = 256\n[workload.output]\ndist = \"fixed\"\ntokens = 64\n\
         [serving]\nmax_running = 16\nprice_per_gpu_hour = 2.0\n[serving.slo]\nttft_ms = 500\n\
         [scaling]\n{scaling}\n{extra}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

const SCALING: &str = "policy = \"threshold\"\nmetric = \"queue\"\nup = 8\ndown = 1\ncooldown_s = 1\n\
    unit = \"gpu\"\nmin_units = 1\nmax_units = 4\nprovision_s = 10\nstorage_gbps = 2.0\n\
    restart_s = 5\njoin_s = 0.5\nwindow_s = 2";

#[test]
fn three_mechanisms_side_by_side_fine_grained_scales_up_fastest() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        dir.path(),
        SCALING,
        "[[failures]]\nkind = \"gpu\"\ngpu = 0\nat_s = 6\n",
    );
    let out = dir.path().join("cmp");
    let output = moesim(&[
        "serve",
        path.to_str().unwrap(),
        "--compare-mechanisms",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        readme.starts_with("Fine-grained scaling came up"),
        "{readme}"
    );
    let rows: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let up = |i: usize| rows[i]["scale_up_s"].as_f64().unwrap();
    let names: Vec<&str> = (0..3)
        .map(|i| rows[i]["mechanism"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["horizontal", "vertical", "fine-grained"]);
    // OLMoE's 1-GPU replica holds ~13.8 GB: 10 s provisioning + ~6.9 s from storage; vertical
    // restarts for 5 s plus its shard; fine-grained joins in 0.5 s plus milliseconds of NVLink.
    assert!(up(0) > 16.0 && up(0) < 18.0, "{}", up(0));
    assert!(up(1) > 5.0 && up(1) < 12.0, "{}", up(1));
    assert!(up(2) > 0.5 && up(2) < 0.6, "{}", up(2));
    for i in 0..3 {
        let failures = rows[i]["failures"].as_array().unwrap();
        assert_eq!(failures.len(), 1, "{}", names[i]);
        assert_eq!(failures[0]["at_s"].as_f64().unwrap().floor(), 6.0);
        assert!(rows[i]["gpu_hours"].as_f64().unwrap() > 0.0);
    }
    for name in names {
        assert!(out.join(name).join("summary.json").is_file());
    }
    assert!(out.join("throughput_by_mechanism.png").is_file());
}

fn fails_naming(scaling: &str, extra: &str, field: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(dir.path(), scaling, extra);
    let out = dir.path().join("out");
    let output = moesim(&[
        "serve",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(field), "{stderr}");
    assert!(stderr.contains("elastic.toml"), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn a_scale_step_beyond_the_cluster_is_named() {
    fails_naming(
        &SCALING.replace("max_units = 4", "max_units = 9"),
        "",
        "`scaling.max_units`",
    );
}

#[test]
fn a_failure_of_a_gpu_that_does_not_exist_is_named() {
    fails_naming(
        SCALING,
        "[[failures]]\nkind = \"gpu\"\ngpu = 99\nat_s = 1\n",
        "`failures[0].gpu`",
    );
}
