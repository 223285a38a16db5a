//! Built-in models with their published architecture numbers (from each model's HuggingFace
//! `config.json` and technical report).

use super::{Attention, MoeModel};

/// Names [`preset`] accepts.
pub(super) const NAMES: &[&str] = &[
    "mixtral-8x7b",
    "deepseek-v3",
    "deepseek-v2-lite",
    "qwen3-30b-a3b",
    "qwen1.5-moe-a2.7b",
    "olmoe-1b-7b",
    "gpt-oss-120b",
    "gpt-oss-20b",
    "switch-base-8",
    "switch-base-16",
    "switch-base-32",
    "switch-base-64",
    "switch-base-128",
    "switch-base-256",
];

/// bf16 weights.
const BF16_BYTES: f64 = 2.0;
/// fp8 weights.
const FP8_BYTES: f64 = 1.0;
/// MXFP4: 4-bit values plus one 8-bit scale per block of 32 = 4.25 bits.
pub(super) const MXFP4_BYTES: f64 = 4.25 / 8.0;

/// The preset called `name`, if any.
pub(super) fn preset(name: &str) -> Option<MoeModel> {
    let model = match name {
        "mixtral-8x7b" => mixtral_8x7b(),
        "deepseek-v3" => deepseek_v3(),
        "deepseek-v2-lite" => deepseek_v2_lite(),
        "qwen1.5-moe-a2.7b" => qwen15_moe_a27b(),
        "qwen3-30b-a3b" => qwen3_30b_a3b(),
        "olmoe-1b-7b" => olmoe_1b_7b(),
        "gpt-oss-120b" => gpt_oss(name, 36, 128),
        "gpt-oss-20b" => gpt_oss(name, 24, 32),
        _ => {
            let experts = name.strip_prefix("switch-base-")?.parse().ok()?;
            if ![8, 16, 32, 64, 128, 256].contains(&experts) {
                return None;
            }
            switch_base(name, experts)
        }
    };
    Some(model)
}

/// A decoder-only model where every layer is MoE, no shared experts, no expert groups, SwiGLU;
/// the presets below override what differs.
pub(super) fn all_moe_decoder(name: &str) -> MoeModel {
    MoeModel {
        name: name.to_string(),
        num_layers: 0,
        first_moe_layer: 0,
        moe_layer_freq: 1,
        decoder_stack_layers: 0,
        hidden_size: 0,
        expert_ffn_size: 0,
        dense_ffn_size: 0,
        num_experts: 0,
        top_k: 0,
        num_shared_experts: 0,
        shared_expert_ffn_size: 0,
        num_expert_groups: 1,
        topk_groups: 1,
        attention: Attention::Gqa {
            num_heads: 0,
            num_kv_heads: 0,
            head_dim: 0,
        },
        vocab_size: 0,
        tied_embeddings: false,
        gated_ffn: true,
        expert_bytes_per_param: BF16_BYTES,
        dense_bytes_per_param: BF16_BYTES,
    }
}

/// Mistral's Mixtral-8x7B: 32 layers, 8 experts, top-2 (46.7B total, 12.9B active).
fn mixtral_8x7b() -> MoeModel {
    MoeModel {
        num_layers: 32,
        hidden_size: 4096,
        expert_ffn_size: 14336,
        num_experts: 8,
        top_k: 2,
        attention: Attention::Gqa {
            num_heads: 32,
            num_kv_heads: 8,
            head_dim: 128,
        },
        vocab_size: 32000,
        ..all_moe_decoder("mixtral-8x7b")
    }
}

/// DeepSeek-V3: 61 layers (first 3 dense), 256 routed experts + 1 shared, top-8 within 4 of 8
/// groups, MLA attention, FP8 weights (671B total, 37B active; the MTP module is not counted).
fn deepseek_v3() -> MoeModel {
    MoeModel {
        num_layers: 61,
        first_moe_layer: 3,
        hidden_size: 7168,
        expert_ffn_size: 2048,
        dense_ffn_size: 18432,
        num_experts: 256,
        top_k: 8,
        num_shared_experts: 1,
        shared_expert_ffn_size: 2048,
        num_expert_groups: 8,
        topk_groups: 4,
        attention: Attention::Mla {
            num_heads: 128,
            q_lora_rank: 1536,
            kv_lora_rank: 512,
            qk_nope_head_dim: 128,
            qk_rope_head_dim: 64,
            v_head_dim: 128,
        },
        vocab_size: 129280,
        expert_bytes_per_param: FP8_BYTES,
        dense_bytes_per_param: FP8_BYTES,
        ..all_moe_decoder("deepseek-v3")
    }
}

/// DeepSeek-V2-Lite: 27 layers (the first dense), 64 routed experts top-6 + 2 shared, MLA
/// without a query down-projection, bf16 (15.7B total, 2.4B active).
fn deepseek_v2_lite() -> MoeModel {
    MoeModel {
        num_layers: 27,
        first_moe_layer: 1,
        hidden_size: 2048,
        expert_ffn_size: 1408,
        dense_ffn_size: 10944,
        num_experts: 64,
        top_k: 6,
        num_shared_experts: 2,
        shared_expert_ffn_size: 1408,
        attention: Attention::Mla {
            num_heads: 16,
            q_lora_rank: 0,
            kv_lora_rank: 512,
            qk_nope_head_dim: 128,
            qk_rope_head_dim: 64,
            v_head_dim: 128,
        },
        vocab_size: 102400,
        ..all_moe_decoder("deepseek-v2-lite")
    }
}

/// Qwen1.5-MoE-A2.7B: 24 layers, 60 experts top-4 plus one shared expert 5632 wide (14.3B
/// total, 2.7B active).
fn qwen15_moe_a27b() -> MoeModel {
    MoeModel {
        num_layers: 24,
        hidden_size: 2048,
        expert_ffn_size: 1408,
        dense_ffn_size: 5632,
        num_experts: 60,
        top_k: 4,
        num_shared_experts: 1,
        shared_expert_ffn_size: 5632,
        attention: Attention::Gqa {
            num_heads: 16,
            num_kv_heads: 16,
            head_dim: 128,
        },
        vocab_size: 151936,
        ..all_moe_decoder("qwen1.5-moe-a2.7b")
    }
}

/// Qwen3-30B-A3B: 48 layers, 128 experts, top-8 (30.5B total, 3.3B active).
fn qwen3_30b_a3b() -> MoeModel {
    MoeModel {
        num_layers: 48,
        hidden_size: 2048,
        expert_ffn_size: 768,
        dense_ffn_size: 6144,
        num_experts: 128,
        top_k: 8,
        attention: Attention::Gqa {
            num_heads: 32,
            num_kv_heads: 4,
            head_dim: 128,
        },
        vocab_size: 151936,
        ..all_moe_decoder("qwen3-30b-a3b")
    }
}

/// AllenAI's OLMoE-1B-7B: 16 layers, 64 experts, top-8 (6.9B total, 1.3B active).
fn olmoe_1b_7b() -> MoeModel {
    MoeModel {
        num_layers: 16,
        hidden_size: 2048,
        expert_ffn_size: 1024,
        num_experts: 64,
        top_k: 8,
        attention: Attention::Gqa {
            num_heads: 16,
            num_kv_heads: 16,
            head_dim: 128,
        },
        vocab_size: 50304,
        ..all_moe_decoder("olmoe-1b-7b")
    }
}

/// OpenAI's gpt-oss: width 2880, top-4, MXFP4 experts (120b: 36 layers x 128 experts, 116.8B
/// total; 20b: 24 layers x 32 experts, 20.9B total).
fn gpt_oss(name: &str, num_layers: usize, num_experts: usize) -> MoeModel {
    MoeModel {
        num_layers,
        hidden_size: 2880,
        expert_ffn_size: 2880,
        num_experts,
        top_k: 4,
        attention: Attention::Gqa {
            num_heads: 64,
            num_kv_heads: 8,
            head_dim: 64,
        },
        vocab_size: 201088,
        expert_bytes_per_param: MXFP4_BYTES,
        ..all_moe_decoder(name)
    }
}

/// Google's Switch Transformers (T5 encoder-decoder, base size): 12 encoder + 12 decoder layers,
/// every other layer MoE (layers 1, 3, ..., 11: the 6 MoE layers of the encoder traces), top-1,
/// ReLU FFN, tied embeddings (switch-base-8: 0.62B total, switch-base-128: 7.4B).
fn switch_base(name: &str, num_experts: usize) -> MoeModel {
    MoeModel {
        num_layers: 12,
        first_moe_layer: 1,
        moe_layer_freq: 2,
        decoder_stack_layers: 12,
        hidden_size: 768,
        expert_ffn_size: 3072,
        dense_ffn_size: 3072,
        num_experts,
        top_k: 1,
        attention: Attention::Gqa {
            num_heads: 12,
            num_kv_heads: 12,
            head_dim: 64,
        },
        vocab_size: 32128,
        tied_embeddings: true,
        gated_ffn: false,
        ..all_moe_decoder(name)
    }
}
