use std::path::{Path, PathBuf};

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

/// Asserts `actual` is within 5% of the published `expected`.
fn assert_near_published(model: &str, what: &str, actual: u64, expected: f64) {
    let error = (actual as f64 - expected).abs() / expected;
    assert!(
        error < 0.05,
        "{model}: {what} {actual} is {:.1}% off the published {expected}",
        error * 100.0
    );
}

#[test]
fn mixtral_counts_match_a_hand_count() {
    let m = MoeModel::preset("mixtral-8x7b").unwrap();
    // Expert: 3 x 4096 x 14336. Attention: q, o 4096x4096 + k, v 4096x1024.
    assert_eq!(m.routed_expert().params, 176_160_768);
    assert_eq!(m.expert_weight_bytes(), 352_321_536);
    assert_eq!(m.expert_flops_per_token(), 2 * 3 * 4096 * 14336);
    assert_eq!(m.attention.params(m.hidden_size), 41_943_040);
    // 2 x 32000 x 4096 + 32 x (attention + router 4096x8 + 8 experts)
    assert_eq!(m.total_params(), 46_702_526_464);
    assert_eq!(m.active_params(), 12_879_659_008);
    // Projections 2 x 41,943,040 + scores 2 x 32 heads x (128 + 128) x 1000 keys.
    assert_eq!(m.attention_flops_per_token(1000), 100_270_080);
    assert_eq!(m.num_moe_layers(), 32);
    assert!(m.shared_experts().is_none());
}

#[test]
fn presets_match_published_parameter_counts() {
    // (preset, published total, published active where the vendor counts the embedding table)
    let published: [(&str, f64, Option<f64>); 9] = [
        ("mixtral-8x7b", 46.7e9, Some(12.9e9)),
        ("deepseek-v2-lite", 15.7e9, None),
        ("qwen1.5-moe-a2.7b", 14.3e9, Some(2.7e9)),
        ("deepseek-v3", 671e9, Some(37e9)),
        ("qwen3-30b-a3b", 30.5e9, Some(3.3e9)),
        ("olmoe-1b-7b", 6.9e9, Some(1.3e9)),
        ("gpt-oss-120b", 116.8e9, None),
        ("gpt-oss-20b", 20.9e9, None),
        ("switch-base-128", 7.4e9, None),
    ];
    for (name, total, active) in published {
        let m = MoeModel::preset(name).unwrap();
        m.validate().unwrap();
        assert_near_published(name, "total", m.total_params(), total);
        if let Some(active) = active {
            assert_near_published(name, "active", m.active_params(), active);
        }
    }
    // OpenAI's active counts (5.1B, 3.6B) and DeepSeek-V2-Lite's (2.4B) leave the input
    // embedding table out.
    for (name, active) in [
        ("gpt-oss-120b", 5.13e9),
        ("gpt-oss-20b", 3.61e9),
        ("deepseek-v2-lite", 2.4e9),
    ] {
        let m = MoeModel::preset(name).unwrap();
        let table = (m.vocab_size * m.hidden_size) as u64;
        assert_near_published(name, "active", m.active_params() - table, active);
    }
}

#[test]
fn deepseek_v3_layers_groups_and_mla() {
    let m = MoeModel::preset("deepseek-v3").unwrap();
    assert_eq!(m.num_moe_layers(), 58);
    assert_eq!(m.moe_layers()[0], 3);
    assert!(!m.is_moe_layer(2) && m.is_moe_layer(60) && !m.is_moe_layer(61));
    // MLA: q 7168x1536 + 1536x128x192, kv 7168x576 + 512x128x256, o 128x128x7168.
    assert_eq!(m.attention.params(7168), 187_105_280);
    // FP8 expert: 3 x 7168 x 2048 bytes.
    assert_eq!(m.expert_weight_bytes(), 44_040_192);
    assert_eq!(m.shared_experts().unwrap().params, 44_040_192);
    assert_eq!((m.num_expert_groups, m.topk_groups), (8, 4));
}

#[test]
fn switch_presets_follow_the_encoder_traces() {
    let m = MoeModel::preset("switch-base-32").unwrap();
    assert_eq!(m.moe_layers(), vec![1, 3, 5, 7, 9, 11]);
    assert_eq!((m.num_experts, m.top_k), (32, 1));
    // ReLU FFN: 2 x 768 x 3072 weights.
    assert_eq!(m.expert_flops_per_token(), 2 * 2 * 768 * 3072);
    // Encoder and decoder stacks, tied embeddings: 619,290,624 weights (published 0.62B).
    assert_eq!(
        MoeModel::preset("switch-base-8").unwrap().total_params(),
        619_290_624
    );
    assert!(MoeModel::preset("switch-base-12").is_err());
}

#[test]
fn gpt_oss_experts_are_mxfp4() {
    let m = MoeModel::preset("gpt-oss-120b").unwrap();
    // 3 x 2880 x 2880 = 24,883,200 weights at 4.25 bits = 13,219,200 bytes.
    assert_eq!(m.expert_weight_bytes(), 13_219_200);
    assert_eq!(m.dense_bytes_per_param, 2.0);
}

#[test]
fn unknown_preset_lists_the_known_ones() {
    let err = MoeModel::preset("llama-70b").unwrap_err().to_string();
    assert!(
        err.contains("llama-70b") && err.contains("mixtral-8x7b"),
        "{err}"
    );
}

#[test]
fn hf_configs_load_equal_to_their_presets() {
    for name in [
        "mixtral-8x7b",
        "deepseek-v3",
        "qwen3-30b-a3b",
        "olmoe-1b-7b",
        "gpt-oss-120b",
        "switch-base-8",
    ] {
        let loaded = MoeModel::from_hf_config(&fixture(&format!("{name}.json"))).unwrap();
        assert_eq!(loaded, MoeModel::preset(name).unwrap(), "{name}");
    }
}

#[test]
fn qwen2_moe_maps_its_shared_expert() {
    let m = MoeModel::from_hf_config(&fixture("qwen1.5-moe-a2.7b.json")).unwrap();
    let preset = MoeModel::preset("qwen1.5-moe-a2.7b").unwrap();
    assert_eq!(
        MoeModel {
            name: preset.name.clone(),
            ..m.clone()
        },
        preset
    );
    assert_eq!((m.num_experts, m.top_k, m.expert_ffn_size), (60, 4, 1408));
    assert_eq!((m.num_shared_experts, m.shared_expert_ffn_size), (1, 5632));
    // Published: 14.3B total, 2.7B active.
    assert_near_published("qwen1.5-moe", "total", m.total_params(), 14.3e9);
    assert_near_published("qwen1.5-moe", "active", m.active_params(), 2.7e9);
}

#[test]
fn deepseek_moe_layer_frequency_is_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("deepseek-v3.json"))
        .unwrap()
        .replace("\"moe_layer_freq\": 1", "\"moe_layer_freq\": 2");
    let path = dir.path().join("config.json");
    std::fs::write(&path, text).unwrap();
    let m = MoeModel::from_hf_config(&path).unwrap();
    // DeepSeek: MoE when i >= 3 and i % 2 == 0, so layers 4, 6, ..., 60.
    assert_eq!(m.moe_layers()[..3], [4, 6, 8]);
    assert_eq!(m.num_moe_layers(), 29);
    // A file called config.json takes its folder's name.
    assert_eq!(m.name, dir.path().file_name().unwrap().to_str().unwrap());
}

/// Writes `fixture` with `from` replaced by `to` into a temporary `config.json`.
fn edited_fixture(fixture_name: &str, from: &str, to: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture(fixture_name)).unwrap();
    assert!(text.contains(from), "fixture lacks {from}");
    let path = dir.path().join("config.json");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    (dir, path)
}

#[test]
fn missing_or_bad_fields_are_named() {
    let cases = [
        (
            "\"num_experts_per_tok\": 2,",
            "",
            "field `num_experts_per_tok` is missing",
        ),
        (
            "\"num_local_experts\": 8,",
            "\"num_local_experts\": -8,",
            "field `num_local_experts` must be a non-negative integer, got -8",
        ),
        (
            "\"model_type\": \"mixtral\"",
            "\"model_type\": \"llama\"",
            "`model_type` \"llama\" is not supported",
        ),
        (
            "\"num_experts_per_tok\": 2,",
            "\"num_experts_per_tok\": 9,",
            "top_k must be between 1 and num_experts (8), got 9",
        ),
    ];
    for (from, to, expected) in cases {
        let (_dir, path) = edited_fixture("mixtral-8x7b.json", from, to);
        let err = MoeModel::from_hf_config(&path).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
        assert!(err.contains("config.json"), "error names the file: {err}");
    }
}

#[test]
fn unreadable_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    assert!(matches!(
        MoeModel::from_hf_config(&path),
        Err(Error::Io { .. })
    ));
    std::fs::write(&path, "[1, 2]").unwrap();
    let err = MoeModel::from_hf_config(&path).unwrap_err().to_string();
    assert!(err.contains("expected a JSON object"), "{err}");
}

#[test]
fn resolve_takes_presets_files_and_folders() {
    assert_eq!(MoeModel::resolve("olmoe-1b-7b").unwrap().num_experts, 64);
    let file = fixture("olmoe-1b-7b.json");
    assert_eq!(
        MoeModel::resolve(file.to_str().unwrap())
            .unwrap()
            .num_experts,
        64
    );
    let (dir, _) = edited_fixture(
        "olmoe-1b-7b.json",
        "\"num_experts\": 64",
        "\"num_experts\": 32",
    );
    assert_eq!(
        MoeModel::resolve(dir.path().to_str().unwrap())
            .unwrap()
            .num_experts,
        32
    );
    let err = MoeModel::resolve("nope").unwrap_err().to_string();
    assert!(err.contains("neither a preset"), "{err}");
}
