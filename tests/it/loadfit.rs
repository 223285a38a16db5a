//! `moesim trace fit` on per-expert loads (SGLang dumps) and `moesim trace concat`: the binary as
//! a user runs it to build synthetic traces of recorded workloads and workload switches.

use std::path::{Path, PathBuf};

use crate::common;

use common::{assert_fails_with, moesim, shared_data, stderr};
use moesim::trace::parquet::read_trace;
use moesim::trace::{RoutingTrace, Trace};

/// Writes an SGLang expert-distribution dump with `rows` as its `logical_count`.
fn sglang_dump(dir: &Path, name: &str, rows: &[Vec<f64>]) -> PathBuf {
    let path = dir.join(name);
    let json = serde_json::json!({ "logical_count": rows });
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

/// Runs `moesim` and asserts it succeeded; returns its standard error.
fn run_ok(args: &[&str]) -> String {
    let output = moesim(args);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    stderr(&output)
}

/// The token-level trace at `path`.
fn tokens(path: &Path) -> RoutingTrace {
    match read_trace(path).unwrap() {
        Trace::Tokens(t) => t,
        Trace::Loads(_) => panic!("{}: loads", path.display()),
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn loads_fit_drops_dense_layers_and_synth_reproduces_the_shares() {
    let dir = tempfile::tempdir().unwrap();
    // A dense layer, then two MoE layers of 4 experts, top-2: each token takes 2 of the 4.
    let dump = sglang_dump(
        dir.path(),
        "loads.json",
        &[
            vec![0.0; 4],
            vec![400_000.0, 300_000.0, 200_000.0, 100_000.0],
            vec![100_000.0, 150_000.0, 300_000.0, 450_000.0],
        ],
    );
    let params = dir.path().join("fit.toml");
    let err = run_ok(&["trace", "fit", s(&dump), "--top-k", "2", "-o", s(&params)]);
    assert!(
        err.contains("dropped 1 all-zero (dense) layer(s) [0]; fitted 2 MoE layers"),
        "{err}"
    );
    let text = std::fs::read_to_string(&params).unwrap();
    assert!(
        text.contains("top_k = 2") && text.contains("affinity = 0.0"),
        "{text}"
    );
    let out = dir.path().join("synth.parquet");
    run_ok(&[
        "trace",
        "synth",
        "--params",
        s(&params),
        "--tokens",
        "20000",
        "--seed",
        "3",
        "-o",
        s(&out),
    ]);
    let loads = tokens(&out).expert_loads();
    // Recorded shares are 0.4, 0.3, 0.2, 0.1 and 0.1, 0.15, 0.3, 0.45 (used as weights, the
    // heaviest expert would get only 0.358 and 0.386 of the entries); each synthetic share of the
    // 40,000 entries has a sampling sd of at most sqrt(0.25 / 20000) / 2 = 0.0018.
    let recorded = [[0.4, 0.3, 0.2, 0.1], [0.1, 0.15, 0.3, 0.45]];
    for (layer, recorded) in recorded.iter().enumerate() {
        for (expert, share) in recorded.iter().enumerate() {
            let synthetic = loads.layer(layer)[expert] / 40_000.0;
            assert!(
                (synthetic - share).abs() < 0.008,
                "layer {layer} expert {expert}: {synthetic} vs {share}"
            );
        }
    }
}

#[test]
fn model_flag_gives_the_top_k_and_group_limit() {
    let dir = tempfile::tempdir().unwrap();
    // DeepSeek-V3's width: 256 experts; one MoE layer with linearly falling loads.
    let row: Vec<f64> = (0..256).map(|e| (1000 - 3 * e) as f64).collect();
    let dump = sglang_dump(dir.path(), "ds.json", &[vec![0.0; 256], row]);
    let params = dir.path().join("fit.toml");
    run_ok(&[
        "trace",
        "fit",
        s(&dump),
        "--model",
        "deepseek-v3",
        "-o",
        s(&params),
    ]);
    let text = std::fs::read_to_string(&params).unwrap();
    assert!(text.contains("top_k = 8"), "{text}");
    assert!(
        text.contains("[groups]\nn_groups = 8\ntopk_groups = 4"),
        "{text}"
    );
    // --top-k and --groups override the model's.
    run_ok(&[
        "trace",
        "fit",
        s(&dump),
        "--model",
        "deepseek-v3",
        "--top-k",
        "4",
        "--groups",
        "8:8",
        "-o",
        s(&params),
    ]);
    let text = std::fs::read_to_string(&params).unwrap();
    assert!(
        text.contains("top_k = 4") && text.contains("topk_groups = 8"),
        "{text}"
    );
}

#[test]
fn bad_loads_fits_name_the_flag_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let dump = sglang_dump(dir.path(), "loads.json", &[vec![5.0, 3.0, 2.0, 1.0]]);
    let out = dir.path().join("fit.toml");
    let cases: [(&[&str], &[&str]); 4] = [
        (&[], &["loads.json", "--top-k K or --model M"]),
        (&["--top-k", "5"], &["loads.json", "top-k 5", "4 experts"]),
        (
            &["--model", "no-such-model"],
            &["loads.json", "--model", "no-such-model"],
        ),
        (
            &["--model", "deepseek-v3"],
            &["loads.json", "4 experts", "--model deepseek-v3 has 256"],
        ),
    ];
    for (flags, needles) in cases {
        let mut args = vec!["trace", "fit", s(&dump), "-o", s(&out)];
        args.extend_from_slice(flags);
        assert_fails_with(&moesim(&args), needles);
        assert!(!out.exists(), "{flags:?} wrote a file");
    }
}

#[test]
fn concat_plays_traces_in_order_and_names_a_misfit() {
    let dir = tempfile::tempdir().unwrap();
    let synth = |name: &str, experts: &str, seed: &str| {
        let out = dir.path().join(name);
        run_ok(&[
            "trace",
            "synth",
            "--experts",
            experts,
            "--layers",
            "3",
            "--top-k",
            "2",
            "--tokens",
            "300",
            "--seed",
            seed,
            "-o",
            s(&out),
        ]);
        out
    };
    let (a, b) = (synth("a.parquet", "16", "1"), synth("b.parquet", "16", "2"));
    let joined = dir.path().join("ab.parquet");
    let err = run_ok(&["trace", "concat", s(&a), s(&b), s(&a), "-o", s(&joined)]);
    assert!(err.contains("(300 + 300 + 300 tokens)"), "{err}");
    let (a, b, joined) = (tokens(&a), tokens(&b), tokens(&joined));
    assert_eq!(joined.num_tokens(), 900);
    assert_eq!(joined.slice_tokens(0..300), a);
    assert_eq!(joined.slice_tokens(300..600), b);
    assert_eq!(joined.slice_tokens(600..900), a);

    let wide = synth("wide.parquet", "32", "1");
    let out = dir.path().join("bad.parquet");
    let first = dir.path().join("a.parquet");
    assert_fails_with(
        &moesim(&["trace", "concat", s(&first), s(&wide), "-o", s(&out)]),
        &["wide.parquet", "32 experts x 3 layers", "16 x 3"],
    );
    assert!(!out.exists());
}

/// Layers kept of the recorded DeepSeek-V3 dumps: the 3 dense ones and 2 MoE layers (all 61
/// would take minutes in a debug build; the commands are the same).
const SWITCH_LAYERS: [usize; 5] = [0, 1, 2, 5, 35];

/// The README's workload switch: fit two recorded DeepSeek-V3 workloads (cut to
/// [`SWITCH_LAYERS`]), synthesise each, join.
#[test]
fn deepseek_workload_switch_builds_from_two_recorded_workloads() {
    let (Some(prefill), Some(decode)) = (
        shared_data("deepseek-v3-expert-load/prefill_in1024.json"),
        shared_data("deepseek-v3-expert-load/decode_in1000out1000.json"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut parts = Vec::new();
    for (name, recorded) in [("prefill", &prefill), ("decode", &decode)] {
        let Ok(Trace::Loads(loads)) = moesim::trace::load(recorded) else {
            panic!("{}: not a loads file", recorded.display());
        };
        let rows: Vec<Vec<f64>> = SWITCH_LAYERS
            .iter()
            .map(|&l| loads.layer(l).to_vec())
            .collect();
        let dump = sglang_dump(dir.path(), &format!("{name}.json"), &rows);
        let params = dir.path().join(format!("{name}.toml"));
        let err = run_ok(&[
            "trace",
            "fit",
            s(&dump),
            "--model",
            "deepseek-v3",
            "-o",
            s(&params),
        ]);
        assert!(
            err.contains("dropped 3 all-zero (dense) layer(s) [0, 1, 2]"),
            "{err}"
        );
        let out = dir.path().join(format!("{name}.parquet"));
        run_ok(&[
            "trace",
            "synth",
            "--params",
            s(&params),
            "--tokens",
            "500",
            "--seed",
            "1",
            "-o",
            s(&out),
        ]);
        parts.push(out);
    }
    let switch = dir.path().join("switch.parquet");
    run_ok(&[
        "trace",
        "concat",
        s(&parts[0]),
        s(&parts[1]),
        "-o",
        s(&switch),
    ]);
    let trace = tokens(&switch);
    assert_eq!(
        (trace.num_tokens(), trace.num_layers(), trace.num_experts()),
        (1000, 2, 256)
    );
    assert_eq!(trace.slice_tokens(500..1000), tokens(&parts[1]));
}
