//! Speculation under every `[dispatch]` policy, through the binary: a scenario with a
//! non-default replica choice or a capacity factor is accepted, the predicted experts are
//! dispatched by that policy (a perfect oracle leaves no corrective byte), and the plain bytes it
//! is compared with are the policy's own.

use std::path::Path;

use crate::common::{moesim, stderr};

/// Runs `moesim speculate` with a perfect oracle on a Qwen1.5-MoE-shaped synthetic trace (60
/// experts, top-4, 24 layers, 2048 tokens) on the 8 GPUs of a DGX H100, where EPLB replicates 4
/// experts per layer into the 64 slots, with `dispatch` as its `[dispatch]` table; returns the
/// perfect oracle's total volumes.
fn perfect_oracle_volumes(dir: &Path, name: &str, dispatch: &str) -> serde_json::Value {
    let text = format!(
        "name = \"{name}\"\nmodel = \"qwen1.5-moe-a2.7b\"\ncluster = \"dgx-h100\"\n\
         tokens_per_gpu = 64\nplacements = [\"eplb\"]\n\
         [trace.synth]\nnum_experts = 60\nnum_layers = 24\ntop_k = 4\nnum_tokens = 2048\n\
         [sim]\noverlap = [\"none\"]\n[speculation]\npredictor = \"oracle\"\n\
         [dispatch]\n{dispatch}"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let out = dir.join(name);
    let output = moesim(&[
        "speculate",
        path.to_str().unwrap(),
        "--accuracies",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let perfect = &summary["clusters"][0]["oracle"][0];
    assert_eq!(perfect["accuracy"], 1.0);
    perfect["total"].clone()
}

#[test]
fn a_perfect_oracle_leaves_no_corrective_byte_under_every_dispatch_policy() {
    let dir = tempfile::tempdir().unwrap();
    let same_node = perfect_oracle_volumes(dir.path(), "same-node", "");
    let mut plains = Vec::new();
    for (name, table) in [
        ("same-node", ""),
        ("even", "replica = \"even\"\n"),
        ("least-loaded", "replica = \"least-loaded\"\n"),
        ("capacity", "capacity_factor = 1.0\n"),
    ] {
        let total = if table.is_empty() {
            same_node.clone()
        } else {
            perfect_oracle_volumes(dir.path(), name, table)
        };
        // The predicted experts go where the policy sends the real ones: the whole plain
        // dispatch moves ahead of the gate, nothing is corrected or wasted.
        let plain = total["plain"].as_u64().unwrap();
        assert!(plain > 0 && plain.is_multiple_of(2048), "{name}: {total}");
        assert_eq!(total["corrective"], 0, "{name}: {total}");
        assert_eq!(total["saved"].as_u64(), Some(plain), "{name}: {total}");
        assert_eq!(total["wasted"], 0, "{name}: {total}");
        plains.push(plain);
    }
    // Each policy's plain dispatch is its own: `even` sends tokens to remote replicas that
    // `same-node` keeps home (and picks alike elsewhere: all GPUs share one machine), so it moves
    // more; `least-loaded` moves otherwise; dropping pairs moves less.
    assert!(plains[1] > plains[0], "{plains:?}");
    assert_ne!(plains[2], plains[0], "{plains:?}");
    assert!(plains[3] < plains[0], "{plains:?}");
}
