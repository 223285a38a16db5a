//! Reading a HuggingFace `config.json` into a [`MoeModel`].
//!
//! Each architecture names the same quantities differently (`num_local_experts`,
//! `n_routed_experts`, `num_experts`; `intermediate_size` is the expert width in Mixtral but the
//! dense width in DeepSeek). This module maps them; a missing or malformed field is an error
//! naming the file and the field.

use std::path::Path;

use serde_json::{Map, Value};

use super::presets::{MXFP4_BYTES, all_moe_decoder};
use super::{Attention, MoeModel};
use crate::error::{Error, Result};

/// The architectures (`model_type` values) this reader understands.
const MODEL_TYPES: &[&str] = &[
    "mixtral",
    "deepseek_v2",
    "deepseek_v3",
    "qwen2_moe",
    "qwen3_moe",
    "olmoe",
    "gpt_oss",
    "switch_transformers",
];

/// Reads and maps the config at `path`, then validates the result.
pub(super) fn read(path: &Path) -> Result<MoeModel> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(path, format!("not valid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| Error::bad_file(path, "expected a JSON object at the top level"))?;
    let config = Config { path, object };
    let model = config.to_model()?;
    model
        .validate()
        .map_err(|e| Error::bad_file(path, e.to_string()))?;
    Ok(model)
}

/// A parsed config.json and where it came from, with typed field accessors.
struct Config<'a> {
    path: &'a Path,
    object: &'a Map<String, Value>,
}

impl Config<'_> {
    /// Maps the config by its `model_type`.
    fn to_model(&self) -> Result<MoeModel> {
        let model_type = self.string("model_type")?;
        let model = match model_type.as_str() {
            "mixtral" => self.mixtral_like("num_local_experts")?,
            "olmoe" => self.mixtral_like("num_experts")?,
            "gpt_oss" => self.gpt_oss()?,
            "qwen2_moe" | "qwen3_moe" => self.qwen_moe(&model_type)?,
            "deepseek_v2" | "deepseek_v3" => self.deepseek()?,
            "switch_transformers" => self.switch()?,
            other => {
                return Err(self.error(format!(
                    "`model_type` {other:?} is not supported; expected one of {}",
                    MODEL_TYPES.join(", ")
                )));
            }
        };
        Ok(model)
    }

    /// Mixtral and OLMoE: every layer MoE, `intermediate_size` is the expert width.
    fn mixtral_like(&self, experts_field: &str) -> Result<MoeModel> {
        Ok(MoeModel {
            expert_ffn_size: self.usize("intermediate_size")?,
            num_experts: self.usize(experts_field)?,
            top_k: self.usize("num_experts_per_tok")?,
            ..self.decoder_base()?
        })
    }

    /// gpt-oss: like Mixtral, top-k under either of two names, MXFP4 experts.
    fn gpt_oss(&self) -> Result<MoeModel> {
        let top_k = match self.optional_usize("num_experts_per_tok")? {
            Some(k) => k,
            None => self.usize("experts_per_token")?,
        };
        Ok(MoeModel {
            expert_ffn_size: self.usize("intermediate_size")?,
            num_experts: self.usize("num_local_experts")?,
            top_k,
            ..self.decoder_base()?
        })
    }

    /// Qwen2-MoE / Qwen3-MoE: `decoder_sparse_step`, dense layers in `mlp_only_layers`, Qwen2's
    /// single shared expert of `shared_expert_intermediate_size`.
    fn qwen_moe(&self, model_type: &str) -> Result<MoeModel> {
        let step = self.optional_usize("decoder_sparse_step")?.unwrap_or(1);
        if step == 0 {
            return Err(self.error("field `decoder_sparse_step` must be at least 1"));
        }
        let dense_prefix = self.dense_prefix_layers()?;
        if dense_prefix > 0 && step != 1 {
            return Err(self.error(
                "fields `mlp_only_layers` and `decoder_sparse_step` > 1 together are not supported",
            ));
        }
        let shared_ffn = if model_type == "qwen2_moe" {
            self.usize("shared_expert_intermediate_size")?
        } else {
            0
        };
        Ok(MoeModel {
            first_moe_layer: dense_prefix.max(step - 1),
            moe_layer_freq: step,
            expert_ffn_size: self.usize("moe_intermediate_size")?,
            dense_ffn_size: self.usize("intermediate_size")?,
            num_experts: self.usize("num_experts")?,
            top_k: self.usize("num_experts_per_tok")?,
            num_shared_experts: usize::from(shared_ffn > 0),
            shared_expert_ffn_size: shared_ffn,
            ..self.decoder_base()?
        })
    }

    /// How many leading layers `mlp_only_layers` makes dense: it must list `0..k` exactly.
    fn dense_prefix_layers(&self) -> Result<usize> {
        let Some(value) = self.object.get("mlp_only_layers") else {
            return Ok(0);
        };
        let layers: Vec<u64> = value
            .as_array()
            .and_then(|a| a.iter().map(Value::as_u64).collect())
            .ok_or_else(|| self.error("field `mlp_only_layers` must be a list of layer indices"))?;
        if layers.iter().enumerate().any(|(i, &l)| l != i as u64) {
            return Err(self.error(
                "field `mlp_only_layers` must list the leading layers 0, 1, ..., k-1; other patterns are not supported",
            ));
        }
        Ok(layers.len())
    }

    /// DeepSeek-V2 / V3: dense prefix, MoE frequency, shared experts, expert groups, MLA.
    fn deepseek(&self) -> Result<MoeModel> {
        let first_dense = self.optional_usize("first_k_dense_replace")?.unwrap_or(0);
        let freq = self.optional_usize("moe_layer_freq")?.unwrap_or(1);
        if freq == 0 {
            return Err(self.error("field `moe_layer_freq` must be at least 1"));
        }
        // DeepSeek: layer i is MoE when i >= first_k_dense_replace and i % moe_layer_freq == 0.
        let first_moe_layer = first_dense.div_ceil(freq) * freq;
        let expert_ffn_size = self.usize("moe_intermediate_size")?;
        let num_shared_experts = self.optional_usize("n_shared_experts")?.unwrap_or(0);
        let attention = Attention::Mla {
            num_heads: self.usize("num_attention_heads")?,
            q_lora_rank: self.optional_usize("q_lora_rank")?.unwrap_or(0),
            kv_lora_rank: self.usize("kv_lora_rank")?,
            qk_nope_head_dim: self.usize("qk_nope_head_dim")?,
            qk_rope_head_dim: self.usize("qk_rope_head_dim")?,
            v_head_dim: self.usize("v_head_dim")?,
        };
        Ok(MoeModel {
            first_moe_layer,
            moe_layer_freq: freq,
            expert_ffn_size,
            dense_ffn_size: self.usize("intermediate_size")?,
            num_experts: self.usize("n_routed_experts")?,
            top_k: self.usize("num_experts_per_tok")?,
            num_shared_experts,
            shared_expert_ffn_size: if num_shared_experts > 0 {
                expert_ffn_size
            } else {
                0
            },
            num_expert_groups: self.optional_usize("n_group")?.unwrap_or(1),
            topk_groups: self.optional_usize("topk_group")?.unwrap_or(1),
            attention,
            ..self.decoder_base()?
        })
    }

    /// Switch Transformers (T5): encoder of `num_layers`, decoder of `num_decoder_layers`, every
    /// `encoder_sparse_step`-th layer MoE (HF: layer i is sparse when i % step == 1), top-1, ReLU.
    fn switch(&self) -> Result<MoeModel> {
        let step = self.usize("encoder_sparse_step")?;
        let (first_moe_layer, moe_layer_freq) = match step {
            0 => return Err(self.error("field `encoder_sparse_step` is 0: no MoE layer")),
            1 => (0, 1),
            _ => (1, step),
        };
        let hidden_size = self.usize("d_model")?;
        let ffn = self.usize("d_ff")?;
        let num_heads = self.usize("num_heads")?;
        let bytes_per_param = self.dtype_bytes()?;
        Ok(MoeModel {
            name: self.name(),
            num_layers: self.usize("num_layers")?,
            first_moe_layer,
            moe_layer_freq,
            decoder_stack_layers: self
                .optional_usize("num_decoder_layers")?
                .unwrap_or(self.usize("num_layers")?),
            hidden_size,
            expert_ffn_size: ffn,
            dense_ffn_size: ffn,
            num_experts: self.usize("num_experts")?,
            // Switch routing is top-1 by design; the config has no field for it.
            top_k: 1,
            num_shared_experts: 0,
            shared_expert_ffn_size: 0,
            num_expert_groups: 1,
            topk_groups: 1,
            attention: Attention::Gqa {
                num_heads,
                num_kv_heads: num_heads,
                head_dim: self.usize("d_kv")?,
            },
            vocab_size: self.usize("vocab_size")?,
            tied_embeddings: self.optional_bool("tie_word_embeddings")?.unwrap_or(true),
            gated_ffn: false,
            expert_bytes_per_param: bytes_per_param,
            dense_bytes_per_param: bytes_per_param,
        })
    }

    /// The fields decoder-only architectures share (layers, width, GQA attention, vocabulary,
    /// precision); expert fields are zero for the caller to fill.
    fn decoder_base(&self) -> Result<MoeModel> {
        let hidden_size = self.usize("hidden_size")?;
        let num_heads = self.usize("num_attention_heads")?;
        if num_heads == 0 {
            return Err(self.error("field `num_attention_heads` must be positive"));
        }
        let head_dim = self
            .optional_usize("head_dim")?
            .unwrap_or(hidden_size / num_heads);
        let (expert_bytes_per_param, dense_bytes_per_param) = self.weight_precision()?;
        Ok(MoeModel {
            num_layers: self.usize("num_hidden_layers")?,
            hidden_size,
            attention: Attention::Gqa {
                num_heads,
                num_kv_heads: self
                    .optional_usize("num_key_value_heads")?
                    .unwrap_or(num_heads),
                head_dim,
            },
            vocab_size: self.usize("vocab_size")?,
            // Every supported decoder-only architecture defaults to untied embeddings.
            tied_embeddings: self.optional_bool("tie_word_embeddings")?.unwrap_or(false),
            expert_bytes_per_param,
            dense_bytes_per_param,
            ..all_moe_decoder(&self.name())
        })
    }

    /// (expert, other) bytes per weight from `dtype` / `torch_dtype` and `quantization_config`:
    /// fp8 quantization makes every linear weight 1 byte, MXFP4 only the experts.
    fn weight_precision(&self) -> Result<(f64, f64)> {
        let dtype_bytes = self.dtype_bytes()?;
        let Some(quant) = self.object.get("quantization_config") else {
            return Ok((dtype_bytes, dtype_bytes));
        };
        let method = quant
            .get("quant_method")
            .and_then(Value::as_str)
            .ok_or_else(|| self.error("field `quantization_config.quant_method` is missing"))?;
        match method {
            "fp8" => Ok((1.0, 1.0)),
            "mxfp4" => Ok((MXFP4_BYTES, dtype_bytes)),
            other => Err(self.error(format!(
                "field `quantization_config.quant_method` {other:?} is not supported; expected fp8 or mxfp4"
            ))),
        }
    }

    /// Bytes per weight of the checkpoint's `dtype` (newer transformers) or `torch_dtype`;
    /// bf16 when neither is given.
    fn dtype_bytes(&self) -> Result<f64> {
        let field = ["dtype", "torch_dtype"]
            .into_iter()
            .find(|f| self.object.contains_key(*f));
        let Some(field) = field else {
            return Ok(2.0);
        };
        match self.string(field)?.as_str() {
            "bfloat16" | "float16" => Ok(2.0),
            "float32" => Ok(4.0),
            "float8_e4m3fn" | "float8_e5m2" => Ok(1.0),
            other => Err(self.error(format!(
                "field `{field}` {other:?} is not a known weight type (bfloat16, float16, float32, float8_e4m3fn)"
            ))),
        }
    }

    /// The model's name: the file's stem, or its folder's name for a file called `config.json`.
    fn name(&self) -> String {
        let stem = self.path.file_stem().and_then(|s| s.to_str());
        let folder = self
            .path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|s| s.to_str());
        match (stem, folder) {
            (Some("config"), Some(folder)) => folder.to_string(),
            (Some(stem), _) => stem.to_string(),
            _ => "hf-config".to_string(),
        }
    }

    /// A required non-negative integer field.
    fn usize(&self, field: &str) -> Result<usize> {
        self.optional_usize(field)?
            .ok_or_else(|| self.error(format!("field `{field}` is missing")))
    }

    /// An optional non-negative integer field; `null` counts as absent.
    fn optional_usize(&self, field: &str) -> Result<Option<usize>> {
        match self.object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| {
                    self.error(format!(
                        "field `{field}` must be a non-negative integer, got {value}"
                    ))
                }),
        }
    }

    /// An optional boolean field.
    fn optional_bool(&self, field: &str) -> Result<Option<bool>> {
        match self.object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value.as_bool().map(Some).ok_or_else(|| {
                self.error(format!(
                    "field `{field}` must be true or false, got {value}"
                ))
            }),
        }
    }

    /// A required string field.
    fn string(&self, field: &str) -> Result<String> {
        match self.object.get(field) {
            None | Some(Value::Null) => Err(self.error(format!("field `{field}` is missing"))),
            Some(value) => value.as_str().map(str::to_string).ok_or_else(|| {
                self.error(format!("field `{field}` must be a string, got {value}"))
            }),
        }
    }

    /// An error about this config file.
    fn error(&self, message: impl Into<String>) -> Error {
        Error::bad_file(self.path, message)
    }
}
