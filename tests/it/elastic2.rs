//! Elastic scaling through `moesim serve` on one burst of replayed requests: a vertical group
//! restarts once for a burst one more GPU absorbs (the backlog its own restart left is not read
//! as a lack of capacity), and a GPU failure does not cancel a horizontal scale-up in flight.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{moesim, stderr};

/// OLMoE on a DGX H100 serving 1,200 requests (256 in, 64 out) arriving at `rate` per second,
/// with the `[scaling]` knobs `scaling` and the tables `extra` appended.
fn scenario(dir: &Path, rate: f64, scaling: &str, extra: &str) -> PathBuf {
    let mut burst = String::from("arrival_s,input_tokens,output_tokens\n");
    for i in 0..1200 {
        burst.push_str(&format!("{},256,64\n", f64::from(i) / rate));
    }
    std::fs::write(dir.join("burst.csv"), burst).unwrap();
    let path = dir.join("elastic2.toml");
    let text = format!(
        "name = \"elastic2\"\nseed = 3\nmodel = \"olmoe-1b-7b\"\ncluster = \"dgx-h100\"\n\
         tokens_per_gpu = 64\nplacements = [\"contiguous\"]\n\
         [trace.synth]\nnum_experts = 64\nnum_layers = 16\ntop_k = 8\nnum_tokens = 4096\n\
         [sim]\noverlap = [\"none\"]\nall_to_all = \"low-latency\"\n\
         [workload.replay]\nfile = \"burst.csv\"\nformat = \"plain\"\n\
         [serving]\nmax_running = 16\nprice_per_gpu_hour = 2.0\n\
         [scaling]\npolicy = \"threshold\"\nmetric = \"queue\"\nup = 8\ndown = 0\ncooldown_s = 1\n\
         provision_s = 10\nstorage_gbps = 2.0\nrestart_s = 5\njoin_s = 0.5\n{scaling}\n{extra}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Serves `path` and returns its summary.
fn serve(path: &Path) -> Value {
    let out = path.with_extension("out");
    let output = moesim(&[
        "serve",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

/// (kind, from units, to units) of every change.
fn changes(summary: &Value) -> Vec<(String, u64, u64)> {
    summary["elastic"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["from_units"].as_u64().unwrap(),
                e["to_units"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn one_burst_one_more_gpu_absorbs_restarts_the_vertical_group_once() {
    let dir = tempfile::tempdir().unwrap();
    // 60 per second for 20 s.
    let path = scenario(
        dir.path(),
        60.0,
        "mechanism = \"vertical\"\nmin_units = 1\nmax_units = 4",
        "",
    );
    let summary = serve(&path);
    // The queue passes 8 within the first second: one restart to 2 GPUs (5 s plus each GPU's
    // shard from storage). The ~9 s of arrivals it kept waiting are worked off by 2 GPUs, whose
    // queue only shrinks from then on: no second restart (the whole queue, hundreds of
    // requests one cooldown after the restart, asked for a third GPU).
    assert_eq!(changes(&summary), [("up".to_string(), 1, 2)]);
    let up = &summary["elastic"]["events"][0];
    let latency = up["ready_s"].as_f64().unwrap() - up["start_s"].as_f64().unwrap();
    assert!(latency > 5.0 && latency < 10.0, "{latency}");
    assert_eq!(summary["summary"]["finished"].as_u64(), Some(1200));
}

#[test]
fn a_gpu_failure_leaves_the_scale_up_in_flight_and_the_spare_restores_the_count() {
    let dir = tempfile::tempdir().unwrap();
    // 120 per second for 10 s.
    let path = scenario(
        dir.path(),
        120.0,
        "mechanism = \"horizontal\"\nmin_units = 1\nmax_units = 3\ninitial_units = 2",
        "[[failures]]\nkind = \"gpu\"\ngpu = 0\nat_s = 5\nrecover = \"spare\"\n",
    );
    let summary = serve(&path);
    // A third replica is decided in the first second and loads for ~17 s; GPU 0 fails at 5 s:
    // 1 replica serves, the third goes on loading and a spare replaces the failed one, 3 again.
    assert_eq!(
        changes(&summary),
        [
            ("up".to_string(), 2, 3),
            ("failure".to_string(), 2, 1),
            ("spare".to_string(), 2, 3)
        ]
    );
    let events = &summary["elastic"]["events"];
    let span = |i: usize| {
        let e = &events[i];
        (
            e["start_s"].as_f64().unwrap(),
            e["ready_s"].as_f64().unwrap(),
        )
    };
    // The replica decided before the failure loads as long as the spare (10 s + its weights).
    let ((up_start, up_ready), (spare_start, spare_ready)) = (span(0), span(2));
    assert!((up_ready - up_start - (spare_ready - spare_start)).abs() < 1e-6);
    assert!(up_ready - up_start > 10.0);
    // Billed: 2 GPUs until the decision, then 3 (after the failure 1 serving + 2 loading) to
    // the end.
    let end = summary["summary"]["duration_s"].as_f64().unwrap();
    let hours = summary["elastic"]["gpu_hours"].as_f64().unwrap();
    let expected = (2.0 * up_start + 3.0 * (end - up_start)) / 3600.0;
    assert!((hours - expected).abs() < 1e-9, "{hours} vs {expected}");
}
