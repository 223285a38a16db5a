//! MoE model architectures: the shape numbers every cost model needs.
//!
//! [`MoeModel`] describes one decoder stack (or, for encoder-decoder Switch Transformers, the
//! encoder stack that routing traces cover): which layers are MoE, how big an expert is, how many
//! experts a token visits, expert groups, shared experts, attention shape and weight precision.
//! Models come from built-in presets ([`MoeModel::preset`]) holding the published architecture
//! numbers, or from a HuggingFace `config.json` ([`MoeModel::from_hf_config`]).
//!
//! Parameter counts cover every weight matrix (embeddings, attention projections, routers, dense
//! and expert FFNs); norms, biases and position tables are left out (well under 0.1% of any preset).

mod hf_config;
mod presets;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Attention block shape, used for parameter counts and attention FLOPs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Attention {
    /// Multi-head / grouped-query attention: `num_kv_heads == num_heads` is plain MHA.
    Gqa {
        /// Query heads.
        num_heads: usize,
        /// Key/value heads (shared by groups of query heads).
        num_kv_heads: usize,
        /// Width of one head.
        head_dim: usize,
    },
    /// DeepSeek multi-head latent attention: queries and keys/values pass through low-rank
    /// projections. FLOPs are counted for the naive (non-absorbed) form, where keys have
    /// `qk_nope_head_dim + qk_rope_head_dim` and values `v_head_dim` per head.
    Mla {
        /// Attention heads.
        num_heads: usize,
        /// Rank of the query down-projection; 0 when queries are projected directly.
        q_lora_rank: usize,
        /// Rank of the joint key/value down-projection (the cached latent).
        kv_lora_rank: usize,
        /// Per-head query/key width without rotary embedding.
        qk_nope_head_dim: usize,
        /// Per-head query/key width carrying rotary embedding.
        qk_rope_head_dim: usize,
        /// Per-head value width.
        v_head_dim: usize,
    },
}

impl Attention {
    /// Number of query heads.
    pub fn num_heads(&self) -> usize {
        match *self {
            Attention::Gqa { num_heads, .. } | Attention::Mla { num_heads, .. } => num_heads,
        }
    }

    /// Weights of one attention block (all projections) for a model of width `hidden`.
    pub fn params(&self, hidden: usize) -> u64 {
        let h = hidden as u64;
        match *self {
            Attention::Gqa {
                num_heads,
                num_kv_heads,
                head_dim,
            } => {
                let q_width = (num_heads * head_dim) as u64;
                let kv_width = (num_kv_heads * head_dim) as u64;
                // q and o projections, then k and v.
                2 * h * q_width + 2 * h * kv_width
            }
            Attention::Mla {
                num_heads,
                q_lora_rank,
                kv_lora_rank,
                qk_nope_head_dim,
                qk_rope_head_dim,
                v_head_dim,
            } => {
                let heads = num_heads as u64;
                let qk_width = heads * (qk_nope_head_dim + qk_rope_head_dim) as u64;
                let q = if q_lora_rank == 0 {
                    h * qk_width
                } else {
                    let rank = q_lora_rank as u64;
                    h * rank + rank * qk_width
                };
                let kv_down = h * (kv_lora_rank + qk_rope_head_dim) as u64;
                let kv_up = kv_lora_rank as u64 * heads * (qk_nope_head_dim + v_head_dim) as u64;
                let out = heads * v_head_dim as u64 * h;
                q + kv_down + kv_up + out
            }
        }
    }

    /// Elements one token keeps in the KV cache of one layer: keys and values of every KV head
    /// (`2 x kv_heads x head_dim`), or MLA's latent plus its RoPE key
    /// (`kv_lora_rank + qk_rope_head_dim`).
    pub fn kv_elems_per_token(&self) -> u64 {
        match *self {
            Attention::Gqa {
                num_kv_heads,
                head_dim,
                ..
            } => 2 * (num_kv_heads * head_dim) as u64,
            Attention::Mla {
                kv_lora_rank,
                qk_rope_head_dim,
                ..
            } => (kv_lora_rank + qk_rope_head_dim) as u64,
        }
    }

    /// FLOPs of one decode query against one cached key: the score and value products of every
    /// head. MLA decode runs absorbed (FlashMLA): scores over the latent plus RoPE key
    /// (`kv_lora_rank + qk_rope_head_dim`), values over the latent (`kv_lora_rank`).
    pub fn decode_flops_per_key(&self) -> u64 {
        match *self {
            Attention::Gqa { .. } => self.score_flops_per_token(1),
            Attention::Mla {
                num_heads,
                kv_lora_rank,
                qk_rope_head_dim,
                ..
            } => 2 * (num_heads * (2 * kv_lora_rank + qk_rope_head_dim)) as u64,
        }
    }

    /// Per-token FLOPs of the score (Q K^T) and weighted-sum (A V) products over `context_len`
    /// keys, without the projections (MLA in its prefill, non-absorbed form).
    pub fn score_flops_per_token(&self, context_len: u64) -> u64 {
        let (heads, qk_dim, v_dim) = match *self {
            Attention::Gqa {
                num_heads,
                head_dim,
                ..
            } => (num_heads, head_dim, head_dim),
            Attention::Mla {
                num_heads,
                qk_nope_head_dim,
                qk_rope_head_dim,
                v_head_dim,
                ..
            } => (num_heads, qk_nope_head_dim + qk_rope_head_dim, v_head_dim),
        };
        2 * heads as u64 * (qk_dim + v_dim) as u64 * context_len
    }
}

/// One FFN's weights as the compute cost model sees them: parameter count, shape and storage
/// precision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ffn {
    /// Weights of all the FFN's matrices.
    pub params: u64,
    /// Bytes per stored weight (bf16 = 2, fp8 = 1, MXFP4 = 0.53125).
    pub bytes_per_param: f64,
    /// Width of the FFN's input (the model's hidden size).
    pub hidden: u64,
    /// Weight matrices: 3 gated (gate, up, down), 2 plain (up, down), 1 for a single
    /// projection (`hidden x params / hidden`).
    pub matrices: u64,
}

impl Ffn {
    /// A single `hidden x (params / hidden)` projection (attention projections, the router).
    pub fn projection(params: u64, hidden: u64, bytes_per_param: f64) -> Ffn {
        Ffn {
            params,
            bytes_per_param,
            hidden,
            matrices: 1,
        }
    }

    /// The GEMMs running it, `(k, n)` each (`[tokens, k] x [k, n]`): gate and up fused
    /// (`hidden x (matrices - 1) x width`) then down (`width x hidden`), or the one projection.
    pub fn gemms(&self) -> Vec<(u64, u64)> {
        let hidden = self.hidden.max(1);
        if self.matrices <= 1 {
            return vec![(hidden, self.params / hidden)];
        }
        let width = self.params / (self.matrices * hidden);
        vec![(hidden, (self.matrices - 1) * width), (width, hidden)]
    }

    /// Bytes read from memory to run the FFN once (its weights), rounded up.
    pub fn weight_bytes(&self) -> u64 {
        (self.params as f64 * self.bytes_per_param).ceil() as u64
    }

    /// FLOPs per token: one multiply-add (2 FLOPs) per weight.
    pub fn flops_per_token(&self) -> u64 {
        2 * self.params
    }
}

/// An MoE model's architecture, as far as scheduling and cost models need it.
///
/// Layer `i` (0-based, of `num_layers`) is an MoE layer when `i >= first_moe_layer` and
/// `(i - first_moe_layer) % moe_layer_freq == 0`; other layers have a dense FFN of
/// `dense_ffn_size`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoeModel {
    /// Preset name or the name of the config it was read from.
    pub name: String,
    /// Transformer layers of the stack routing traces cover (all decoder layers; for Switch
    /// Transformers the encoder).
    pub num_layers: usize,
    /// Index of the first MoE layer (DeepSeek-V3 has 3 dense layers before it).
    pub first_moe_layer: usize,
    /// Every `moe_layer_freq`-th layer from `first_moe_layer` on is MoE (1 = all of them).
    pub moe_layer_freq: usize,
    /// Layers of a second (decoder) stack in encoder-decoder models, with the same dense/MoE
    /// pattern plus cross-attention. Counted in parameters only; 0 for decoder-only models.
    pub decoder_stack_layers: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Intermediate width of one routed expert.
    pub expert_ffn_size: usize,
    /// Intermediate width of the dense FFN in non-MoE layers (0 when there are none).
    pub dense_ffn_size: usize,
    /// Routed experts per MoE layer.
    pub num_experts: usize,
    /// Routed experts each token visits.
    pub top_k: usize,
    /// Shared experts every token visits, in every MoE layer.
    pub num_shared_experts: usize,
    /// Intermediate width of one shared expert.
    pub shared_expert_ffn_size: usize,
    /// Expert groups (DeepSeek `n_group`); 1 when routing is not group-limited.
    pub num_expert_groups: usize,
    /// Groups a token may route into (DeepSeek `topk_group`); 1 when not group-limited.
    pub topk_groups: usize,
    /// Attention shape.
    pub attention: Attention,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Whether the output projection shares the input embedding's weights.
    pub tied_embeddings: bool,
    /// Gated FFN (SwiGLU / GeGLU: gate, up and down matrices) rather than two matrices.
    pub gated_ffn: bool,
    /// Bytes per routed-expert weight (bf16 2, fp8 1, MXFP4 0.53125 = 4 bits + a shared 8-bit
    /// scale per 32 weights).
    pub expert_bytes_per_param: f64,
    /// Bytes per weight of everything else (attention, dense and shared FFNs, embeddings).
    pub dense_bytes_per_param: f64,
}

impl MoeModel {
    /// A built-in model by name; the error lists the known names.
    pub fn preset(name: &str) -> Result<MoeModel> {
        presets::preset(name).ok_or_else(|| {
            Error::invalid(format!(
                "unknown model preset `{name}`; known presets: {}",
                presets::NAMES.join(", ")
            ))
        })
    }

    /// Names accepted by [`MoeModel::preset`].
    pub fn preset_names() -> &'static [&'static str] {
        presets::NAMES
    }

    /// Reads a HuggingFace `config.json` of a supported architecture (`model_type` mixtral,
    /// deepseek_v2, deepseek_v3, qwen2_moe, qwen3_moe, olmoe, gpt_oss, switch_transformers).
    /// Errors name the file and the missing or malformed field.
    pub fn from_hf_config(path: &Path) -> Result<MoeModel> {
        hf_config::read(path)
    }

    /// A preset name, a path to a `config.json`, or a folder holding one.
    pub fn resolve(spec: &str) -> Result<MoeModel> {
        let path = Path::new(spec);
        if path.is_dir() {
            MoeModel::from_hf_config(&path.join("config.json"))
        } else if path.is_file() || spec.ends_with(".json") {
            MoeModel::from_hf_config(path)
        } else {
            MoeModel::preset(spec).map_err(|_| {
                Error::invalid(format!(
                    "model `{spec}` is neither a preset ({}) nor a path to a HuggingFace config.json",
                    presets::NAMES.join(", ")
                ))
            })
        }
    }

    /// Checks the numbers are consistent (experts, top-k, groups, layers); names the field at fault.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::invalid(format!("model `{}`: {msg}", self.name)));
        if self.hidden_size == 0 || self.expert_ffn_size == 0 {
            return fail("hidden_size and expert_ffn_size must be positive".into());
        }
        if self.num_experts == 0 || self.num_experts > crate::trace::ExpertId::MAX as usize + 1 {
            return fail(format!(
                "num_experts must be between 1 and 65536, got {}",
                self.num_experts
            ));
        }
        if self.top_k == 0 || self.top_k > self.num_experts {
            return fail(format!(
                "top_k must be between 1 and num_experts ({}), got {}",
                self.num_experts, self.top_k
            ));
        }
        if self.moe_layer_freq == 0 {
            return fail("moe_layer_freq must be at least 1".into());
        }
        if self.num_moe_layers() == 0 {
            return fail(format!(
                "no MoE layer: first_moe_layer {} is past the last of {} layers",
                self.first_moe_layer, self.num_layers
            ));
        }
        if self.num_expert_groups == 0 || !self.num_experts.is_multiple_of(self.num_expert_groups) {
            return fail(format!(
                "num_expert_groups ({}) must divide num_experts ({})",
                self.num_expert_groups, self.num_experts
            ));
        }
        if self.topk_groups == 0 || self.topk_groups > self.num_expert_groups {
            return fail(format!(
                "topk_groups must be between 1 and num_expert_groups ({}), got {}",
                self.num_expert_groups, self.topk_groups
            ));
        }
        let reachable = self.topk_groups * (self.num_experts / self.num_expert_groups);
        if self.top_k > reachable {
            return fail(format!(
                "top_k {} exceeds the {reachable} experts in {} of {} groups",
                self.top_k, self.topk_groups, self.num_expert_groups
            ));
        }
        Ok(())
    }

    /// Whether layer `layer` (0-based over `num_layers`) is an MoE layer.
    pub fn is_moe_layer(&self, layer: usize) -> bool {
        layer < self.num_layers && self.is_moe_pattern(layer)
    }

    /// Indices of the MoE layers, in order; position `i` is MoE layer `i` of a routing trace.
    pub fn moe_layers(&self) -> Vec<usize> {
        (0..self.num_layers)
            .filter(|&l| self.is_moe_layer(l))
            .collect()
    }

    /// Number of MoE layers (the layer count of a routing trace of this model).
    pub fn num_moe_layers(&self) -> usize {
        self.moe_layers().len()
    }

    /// Weight matrices per FFN: 3 when gated (SwiGLU), else 2.
    pub fn ffn_matrices(&self) -> u64 {
        if self.gated_ffn { 3 } else { 2 }
    }

    /// One routed expert.
    pub fn routed_expert(&self) -> Ffn {
        Ffn {
            params: self.ffn_params(self.expert_ffn_size),
            bytes_per_param: self.expert_bytes_per_param,
            hidden: self.hidden_size as u64,
            matrices: self.ffn_matrices(),
        }
    }

    /// All shared experts of one MoE layer as the single fused FFN engines run them
    /// (`num_shared_experts * shared_expert_ffn_size` wide); `None` when the model has none.
    pub fn shared_experts(&self) -> Option<Ffn> {
        (self.num_shared_experts > 0).then(|| Ffn {
            params: self.ffn_params(self.num_shared_experts * self.shared_expert_ffn_size),
            bytes_per_param: self.dense_bytes_per_param,
            hidden: self.hidden_size as u64,
            matrices: self.ffn_matrices(),
        })
    }

    /// The FFN of the layers without experts (`None` when every decoder layer is a MoE layer).
    pub fn dense_ffn(&self) -> Option<Ffn> {
        (self.num_moe_layers() < self.num_layers && self.dense_ffn_size > 0).then(|| Ffn {
            params: self.ffn_params(self.dense_ffn_size),
            bytes_per_param: self.dense_bytes_per_param,
            hidden: self.hidden_size as u64,
            matrices: self.ffn_matrices(),
        })
    }

    /// Bytes of every weight but the routed experts' (what each data-parallel attention rank
    /// holds whole).
    pub fn non_expert_weight_bytes(&self) -> f64 {
        let routed =
            (self.num_moe_layers() * self.num_experts) as u64 * self.routed_expert().params;
        (self.total_params() - routed) as f64 * self.dense_bytes_per_param
    }

    /// Bytes of one routed expert's weights.
    pub fn expert_weight_bytes(&self) -> u64 {
        self.routed_expert().weight_bytes()
    }

    /// FLOPs one token costs in one routed expert: `2 * matrices * hidden * expert_ffn`.
    pub fn expert_flops_per_token(&self) -> u64 {
        self.routed_expert().flops_per_token()
    }

    /// FLOPs of one attention layer for one token attending over `context_len` keys: the
    /// projections (2 per weight) plus the score and value products.
    pub fn attention_flops_per_token(&self, context_len: u64) -> u64 {
        2 * self.attention.params(self.hidden_size)
            + self.attention.score_flops_per_token(context_len)
    }

    /// Weights of the embedding table and the output projection (once when tied).
    pub fn embedding_params(&self) -> u64 {
        let table = (self.vocab_size * self.hidden_size) as u64;
        if self.tied_embeddings {
            table
        } else {
            2 * table
        }
    }

    /// All weights of the model.
    pub fn total_params(&self) -> u64 {
        self.params_with_routed_experts(self.num_experts)
    }

    /// Weights one token touches: every non-expert weight, the shared experts and `top_k` routed
    /// experts per MoE layer. Includes the embedding table, as Mistral, DeepSeek, Qwen and OLMoE
    /// count it (OpenAI's gpt-oss figures leave it out).
    pub fn active_params(&self) -> u64 {
        self.params_with_routed_experts(self.top_k)
    }

    /// Weights of an FFN of intermediate width `ffn_size`.
    fn ffn_params(&self, ffn_size: usize) -> u64 {
        self.ffn_matrices() * (self.hidden_size * ffn_size) as u64
    }

    /// Model weights when each MoE layer holds `routed` routed experts.
    fn params_with_routed_experts(&self, routed: usize) -> u64 {
        let attention = self.attention.params(self.hidden_size);
        let moe_ffn = (self.hidden_size * self.num_experts) as u64 // router
            + routed as u64 * self.routed_expert().params
            + self.shared_experts().map_or(0, |s| s.params);
        let dense_ffn = self.ffn_params(self.dense_ffn_size);
        // Decoder layers of an encoder-decoder model add cross-attention.
        let stack = |layers: usize, attention_blocks: u64| -> u64 {
            (0..layers)
                .map(|l| {
                    attention_blocks * attention
                        + if self.is_moe_pattern(l) {
                            moe_ffn
                        } else {
                            dense_ffn
                        }
                })
                .sum()
        };
        self.embedding_params() + stack(self.num_layers, 1) + stack(self.decoder_stack_layers, 2)
    }

    /// The MoE layer pattern, independent of which stack the layer index belongs to.
    fn is_moe_pattern(&self, layer: usize) -> bool {
        layer >= self.first_moe_layer
            && (layer - self.first_moe_layer).is_multiple_of(self.moe_layer_freq.max(1))
    }
}

#[cfg(test)]
mod tests;
