//! The attention core (scores and weighted values, without the projections): causal prefill
//! over each sequence, compute-bound as FlashAttention-3 runs it, and decode reading each
//! request's KV cache, memory-bound at long contexts as FlashMLA runs it.
//!
//! Prefill: every query token attends `keys` keys (causal over a sequence of `L` tokens: the
//! mean is `(L + 1) / 2`), at [`PREFILL_EFFICIENCY`] of the BF16 peak, plus a fixed cost per
//! tile of [`QUERY_TILE`] queries of one head (its prologue and epilogue, which is why short
//! sequences run slower). Decode: every token reads `keys` cached keys of
//! [`crate::model::Attention::kv_elems_per_token`] BF16 elements, the slower of those reads
//! at [`DECODE_HBM_EFFICIENCY`] of HBM bandwidth and the absorbed products at
//! [`DECODE_EFFICIENCY`] of the BF16 peak.

use crate::model::Attention;
use crate::topology::GpuSpec;

/// FlashAttention-3 (Shah et al. 2024): BF16 forward on H100 "up to 740 TFLOP/s (75%
/// utilisation)"; 0.70 puts its head-dim-128 curve (467..648 TFLOP/s, 512..16k) within 6%
/// and the 740 headline within 8%.
pub const PREFILL_EFFICIENCY: f64 = 0.70;

/// Queries of one prefill tile (FlashAttention-3 on Hopper: 128).
pub const QUERY_TILE: f64 = 128.0;

/// Fixed cost of one prefill tile of one head, ns: fitted to FlashAttention-3's head-dim-128
/// curve (467 TFLOP/s at 512 tokens, 648 at 16k, batch x length = 16k, 16 heads).
pub const PREFILL_TILE_OVERHEAD_NS: f64 = 2600.0;

/// FlashMLA (DeepSeek, H800 SXM5): "up to 3000 GB/s memory-bound": 0.9 of 3,350 GB/s.
pub const DECODE_HBM_EFFICIENCY: f64 = 0.9;

/// FlashMLA compute-bound decode: 580 TFLOP/s at release, ~660 later, of 989: 0.63 (623).
pub const DECODE_EFFICIENCY: f64 = 0.63;

/// Bytes of one cached KV element: caches are BF16 (FlashMLA, FlashAttention).
pub const KV_BYTES: f64 = 2.0;

/// What the tokens of a step attend over, as means over all its tokens (a token of the other
/// phase counts 0), so a share of the step carries its share of the work.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AttentionSpan {
    /// Keys each prefill token attends (causal: its position + 1).
    pub prefill_keys: f64,
    /// Cached keys each decode token reads (its context length).
    pub decode_keys: f64,
}

/// Attention-core kernel times of one model's attention on one GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionCore {
    heads: f64,
    prefill_flops_per_key: f64,
    decode_flops_per_key: f64,
    kv_bytes_per_key: f64,
}

impl AttentionCore {
    /// The core of `attention`.
    pub fn new(attention: &Attention) -> AttentionCore {
        AttentionCore {
            heads: attention.num_heads() as f64,
            prefill_flops_per_key: attention.score_flops_per_token(1) as f64,
            decode_flops_per_key: attention.decode_flops_per_key() as f64,
            kv_bytes_per_key: attention.kv_elems_per_token() as f64 * KV_BYTES,
        }
    }

    /// FLOPs and KV-cache bytes of the prefill and decode kernels over `tokens` tokens of a
    /// step attending as `span` says (prefill reads its keys from on-chip tiles: 0 bytes).
    pub fn work(&self, tokens: f64, span: &AttentionSpan) -> ((f64, f64), (f64, f64)) {
        let prefill = tokens.max(0.0) * span.prefill_keys.max(0.0);
        let decode = tokens.max(0.0) * span.decode_keys.max(0.0);
        (
            (prefill * self.prefill_flops_per_key, 0.0),
            (
                decode * self.decode_flops_per_key,
                decode * self.kv_bytes_per_key,
            ),
        )
    }

    /// Prefill over `tokens` query tokens attending `keys` keys each on `gpu`, ns.
    pub fn prefill_ns(&self, gpu: &GpuSpec, tokens: f64, keys: f64) -> f64 {
        if tokens <= 0.0 || keys <= 0.0 {
            return 0.0;
        }
        // 1 TFLOP/s = 10^3 FLOP/ns.
        let flops = tokens * keys * self.prefill_flops_per_key;
        let math = flops / (gpu.bf16_tflops * 1e3 * PREFILL_EFFICIENCY);
        let tiles = (tokens / QUERY_TILE).ceil() * self.heads;
        math + tiles * PREFILL_TILE_OVERHEAD_NS / f64::from(gpu.sm_count.max(1))
    }

    /// Decode of `tokens` requests reading `keys` cached keys each on `gpu`, ns.
    pub fn decode_ns(&self, gpu: &GpuSpec, tokens: f64, keys: f64) -> f64 {
        if tokens <= 0.0 || keys <= 0.0 {
            return 0.0;
        }
        let pairs = tokens * keys;
        // 1 GB/s = 1 byte/ns.
        let reads = pairs * self.kv_bytes_per_key / (gpu.hbm_gbps * DECODE_HBM_EFFICIENCY);
        let math = pairs * self.decode_flops_per_key / (gpu.bf16_tflops * 1e3 * DECODE_EFFICIENCY);
        reads.max(math)
    }

    /// Both kernels over `tokens` tokens of a step attending as `span` says, ns.
    pub fn time_ns(&self, gpu: &GpuSpec, tokens: f64, span: &AttentionSpan) -> f64 {
        self.prefill_ns(gpu, tokens, span.prefill_keys)
            + self.decode_ns(gpu, tokens, span.decode_keys)
    }
}
