//! Kernel durations for the simulated step: attention (projections, the attention core) and
//! gate, shared and routed experts, each timed by the compute cost (the tiled roofline of
//! [`crate::cost::gemm`] in the weights' data type, or a calibration) plus a fixed launch cost.
//!
//! Routed experts run as one grouped GEMM per matrix over the GPU's local experts (DeepGEMM's
//! contiguous layout in prefill, masked in decode): every active expert's rows are padded to
//! whole tiles, each active expert's weights read once; with few tokens per expert (decode) the
//! weight reads dominate. Attention's core depends on what the step's tokens attend over
//! ([`AttentionSpan`]): causal prefill FLOPs over each sequence, decode KV-cache reads.

use std::sync::Arc;

use crate::cost::attention::{AttentionCore, AttentionSpan};
use crate::cost::compute::{ComputeCost, RooflineCompute};
use crate::model::{Ffn, MoeModel};
use crate::topology::GpuSpec;

/// Fixed cost of launching one kernel and its prologue/epilogue, an assumption of a few
/// microseconds as seen in decode-step profiles.
pub const KERNEL_LAUNCH_NS: u64 = 2_000;

/// Durations of the kernels of one MoE layer on one GPU model.
#[derive(Clone)]
pub struct KernelCosts {
    gpu: GpuSpec,
    compute: Arc<dyn ComputeCost>,
    projections: Ffn,
    core: AttentionCore,
    gate: Ffn,
    routed: Ffn,
    shared: Option<Ffn>,
    lm_head: Ffn,
}

/// Where the GEMM model's constants come from.
pub const GEMM_SOURCE: &str = "DeepGEMM README, H800 FP8: 1,358 TFLOP/s normal (M=4096), \
    1,297 contiguous grouped, 2,064 GB/s masked (256 rows/expert), 2,668 GB/s at M=64";

/// Where the prefill attention model's constants come from.
pub const PREFILL_SOURCE: &str =
    "FlashAttention-3, H100 BF16 forward: 648 TFLOP/s at 16k (head dim 128), up to 740";

/// Where the decode attention model's constants come from.
pub const DECODE_SOURCE: &str =
    "FlashMLA, H800: ~3,000 GB/s memory-bound, 580-660 TFLOP/s compute-bound";

/// One kernel's share of a layer, for reports: its time and the rate it ran at.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KernelTime {
    /// What ran.
    pub kernel: &'static str,
    /// The published kernel figures its model is fitted to.
    pub source: &'static str,
    /// Its duration without the launch cost, ns.
    pub ns: u64,
    /// FLOPs it did.
    pub flops: f64,
    /// Bytes it moved from HBM (weights, or the KV cache).
    pub bytes: f64,
}

impl KernelCosts {
    /// Costs of `model`'s kernels on `gpu` by the tiled roofline.
    pub fn new(model: &MoeModel, gpu: &GpuSpec) -> KernelCosts {
        KernelCosts::with_compute(model, gpu, Arc::new(RooflineCompute::default()))
    }

    /// Costs with every GEMM timed by `compute` (the fixed launch cost is added on top) and the
    /// attention core by [`AttentionCore`].
    pub fn with_compute(
        model: &MoeModel,
        gpu: &GpuSpec,
        compute: Arc<dyn ComputeCost>,
    ) -> KernelCosts {
        let hidden = model.hidden_size as u64;
        KernelCosts {
            gpu: gpu.clone(),
            compute,
            // Every projection of the block as one hidden-wide GEMM at the dense data type.
            projections: Ffn::projection(
                model.attention.params(model.hidden_size),
                hidden,
                model.dense_bytes_per_param,
            ),
            core: AttentionCore::new(&model.attention),
            // The router: one hidden x experts matrix.
            gate: Ffn::projection(
                hidden * model.num_experts as u64,
                hidden,
                model.dense_bytes_per_param,
            ),
            routed: model.routed_expert(),
            shared: model.shared_experts(),
            // Logits: hidden x vocabulary, kept in BF16 by FP8 checkpoints too.
            lm_head: Ffn::projection(model.vocab_size as u64 * hidden, hidden, 2.0),
        }
    }

    /// The same costs with every routed expert's FFN split over `tp` tensor-parallel GPUs:
    /// each GPU multiplies and reads `1 / tp` of the expert's weights.
    pub fn with_expert_tp(mut self, tp: u64) -> KernelCosts {
        self.routed.params /= tp.max(1);
        self
    }

    /// Attention (projections and core) plus gate over `tokens` tokens attending as `span`
    /// says (0 when there are none).
    pub fn attention_ns(&self, tokens: f64, span: &AttentionSpan) -> u64 {
        let core = match self.core.time_ns(&self.gpu, tokens, span).ceil() as u64 {
            0 => 0,
            ns => ns + KERNEL_LAUNCH_NS,
        };
        self.kernel(&self.projections, tokens) + core + self.kernel(&self.gate, tokens)
    }

    /// The LM head's logits for `tokens` sampling tokens (0 for none, or a model without a
    /// vocabulary size).
    pub fn lm_head_ns(&self, tokens: f64) -> u64 {
        if tokens <= 0.0 || self.lm_head.params == 0 {
            return 0;
        }
        self.kernel(&self.lm_head, tokens)
    }

    /// The shared experts over `tokens` tokens (0 for models without them).
    pub fn shared_ns(&self, tokens: f64) -> u64 {
        self.shared.map_or(0, |ffn| self.kernel(&ffn, tokens))
    }

    /// One grouped GEMM over the GPU's experts with `expert_tokens` tokens each.
    pub fn routed_ns(&self, expert_tokens: impl IntoIterator<Item = f64>) -> u64 {
        let tokens: Vec<f64> = expert_tokens.into_iter().collect();
        match self
            .compute
            .grouped_ffn_time_ns(&self.gpu, &self.routed, &tokens)
        {
            0 => 0,
            ns => ns + KERNEL_LAUNCH_NS,
        }
    }

    /// Every kernel of one layer on one GPU with `tokens` tokens attending as `span` says and
    /// `expert_tokens` per local expert, for reports (launch costs left out).
    pub fn breakdown(
        &self,
        tokens: f64,
        span: &AttentionSpan,
        expert_tokens: &[f64],
    ) -> Vec<KernelTime> {
        let gemm = |kernel, ffn: &Ffn, rows: &[f64]| KernelTime {
            kernel,
            source: GEMM_SOURCE,
            ns: self.compute.grouped_ffn_time_ns(&self.gpu, ffn, rows),
            flops: rows.iter().sum::<f64>() * ffn.flops_per_token() as f64,
            bytes: rows.iter().filter(|&&r| r > 0.0).count() as f64 * ffn.weight_bytes() as f64,
        };
        let (prefill, decode) = self.core.work(tokens, span);
        let mut kernels = vec![
            gemm("attention projections", &self.projections, &[tokens]),
            KernelTime {
                kernel: "attention core (prefill)",
                source: PREFILL_SOURCE,
                ns: self
                    .core
                    .prefill_ns(&self.gpu, tokens, span.prefill_keys)
                    .ceil() as u64,
                flops: prefill.0,
                bytes: prefill.1,
            },
            KernelTime {
                kernel: "attention core (decode)",
                source: DECODE_SOURCE,
                ns: self
                    .core
                    .decode_ns(&self.gpu, tokens, span.decode_keys)
                    .ceil() as u64,
                flops: decode.0,
                bytes: decode.1,
            },
            gemm("router", &self.gate, &[tokens]),
        ];
        if let Some(shared) = &self.shared {
            kernels.push(gemm("shared experts", shared, &[tokens]));
        }
        kernels.push(gemm(
            "routed experts (grouped)",
            &self.routed,
            expert_tokens,
        ));
        kernels.retain(|k| k.ns > 0);
        kernels
    }

    /// Streaming multiprocessors of the GPU.
    pub fn sm_count(&self) -> u32 {
        self.gpu.sm_count
    }

    fn kernel(&self, ffn: &Ffn, tokens: f64) -> u64 {
        match self.compute.ffn_time_ns(&self.gpu, ffn, tokens) {
            0 => 0,
            ns => ns + KERNEL_LAUNCH_NS,
        }
    }
}

impl std::fmt::Debug for KernelCosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelCosts")
            .field("gpu", &self.gpu.name)
            .field("routed", &self.routed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_experts_are_memory_bound_and_one_grouped_kernel() {
        let model = MoeModel::preset("deepseek-v3").unwrap();
        let costs = KernelCosts::new(&model, &GpuSpec::named("h800").unwrap());
        // One expert, 3 tokens, FP8: gate_up [3, 7168] x [7168, 4096] reads 29,360,128 +
        // 21,504 + 24,576 = 29,406,208 B, down [3, 2048] x [2048, 7168] 14,680,064 + 6,144 +
        // 43,008 = 14,729,216 B; at 3350 x 0.68 = 2278 B/ns: 12,908.8 + 6,465.9 = 19,374.7 ns,
        // above the tiles' math (one wave each: 12,591.5 and 4,239.0 ns).
        assert_eq!(costs.routed_ns([3.0]), 19_375 + 2_000);
        // Two active experts in one kernel, one launch: their weights twice and the 67 rows'
        // activations: gate_up 59,749,376 B = 26,228.9 ns, down 30,457,856 B = 13,370.4 ns
        // (still over one wave of 64 and 112 tiles): 39,599.3 -> 39,600 ns.
        assert_eq!(costs.routed_ns([3.0, 0.0, 64.0]), 39_600 + 2_000);
        assert_eq!(costs.routed_ns([0.0]), 0);
        assert_eq!(costs.attention_ns(0.0, &AttentionSpan::default()), 0);
    }

    #[test]
    fn attention_grows_with_the_context_it_reads() {
        let model = MoeModel::preset("deepseek-v3").unwrap();
        let costs = KernelCosts::new(&model, &GpuSpec::named("h800").unwrap());
        let decode = |keys| AttentionSpan {
            prefill_keys: 0.0,
            decode_keys: keys,
        };
        let short = costs.attention_ns(128.0, &decode(1000.0));
        let long = costs.attention_ns(128.0, &decode(5000.0));
        // 128 heads make absorbed MLA decode compute-bound (as FlashMLA with 128 heads):
        // 128 requests x 4000 more keys x 2 x 128 x (2 x 512 + 64) = 142.6 GFLOP at
        // 989,000 x 0.63 = 623,070 FLOP/ns: 228,877 ns more (the reads, 1152 B per key,
        // would take 195,625 ns).
        assert!(long.abs_diff(short + 228_877) <= 2, "{short} {long}");
    }

    #[test]
    fn the_lm_head_reads_the_vocabulary_once_per_step() {
        let model = MoeModel::preset("deepseek-v3").unwrap();
        let gpu = GpuSpec::named("h100").unwrap();
        let costs = KernelCosts::new(&model, &gpu);
        // 129,280 x 7,168 BF16 weights = 1,853,358,080 B: at least 553,241 ns at 3,350 GB/s.
        let floor = 1_853_358_080.0 / gpu.hbm_gbps;
        let one = costs.lm_head_ns(1.0) as f64;
        assert!(one > floor && one < 2.0 * floor, "{one} vs {floor}");
        // 256 decode tokens still read the weights once: 474 GFLOP of BF16 fit in about the
        // same time.
        let many = costs.lm_head_ns(256.0) as f64;
        assert!(many < 1.5 * one, "{many} vs {one}");
        assert_eq!(costs.lm_head_ns(0.0), 0);
    }
}
