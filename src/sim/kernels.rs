//! Kernel durations for the simulated step: attention, gate, shared and routed experts, each a
//! roofline (the slower of tensor-core math and HBM weight reads, via
//! [`RooflineCompute`]) plus a fixed launch cost.
//!
//! Routed experts run as one grouped GEMM per GPU: every active expert's token count is padded
//! up to whole [`TILE_TOKENS`] tiles (a tile is computed whole even when half empty), so an
//! expert with 3 tokens costs the math of 64, and each active expert's weights are read once.
//! With few tokens per expert (decode) the weight reads dominate: memory-bound, as measured.
//! Attention counts the projections only (scores and KV-cache reads are left out).

use std::sync::Arc;

use crate::cost::compute::{ComputeCost, RooflineCompute};
use crate::model::{Ffn, MoeModel};
use crate::topology::GpuSpec;

/// Rows of one grouped-GEMM tile (Hopper grouped GEMMs in DeepGEMM / CUTLASS use 64 or 128).
pub const TILE_TOKENS: f64 = 64.0;

/// Fixed cost of launching one kernel and its prologue/epilogue, an assumption of a few
/// microseconds as seen in decode-step profiles.
pub const KERNEL_LAUNCH_NS: u64 = 2_000;

/// Durations of the kernels of one MoE layer on one GPU model.
#[derive(Clone)]
pub struct KernelCosts {
    gpu: GpuSpec,
    compute: Arc<dyn ComputeCost>,
    attention: Ffn,
    gate: Ffn,
    routed: Ffn,
    shared: Option<Ffn>,
}

impl KernelCosts {
    /// Costs of `model`'s kernels on `gpu` by roofline.
    pub fn new(model: &MoeModel, gpu: &GpuSpec) -> KernelCosts {
        KernelCosts::with_compute(model, gpu, Arc::new(RooflineCompute::default()))
    }

    /// Costs with every kernel's math and weight reads timed by `compute` (the fixed launch cost
    /// is added on top).
    pub fn with_compute(
        model: &MoeModel,
        gpu: &GpuSpec,
        compute: Arc<dyn ComputeCost>,
    ) -> KernelCosts {
        KernelCosts {
            gpu: gpu.clone(),
            compute,
            // Projections only: 2 FLOPs per weight per token, weights read once.
            attention: Ffn {
                params: model.attention.params(model.hidden_size),
                bytes_per_param: model.dense_bytes_per_param,
            },
            // The router: one hidden x experts matrix.
            gate: Ffn {
                params: (model.hidden_size * model.num_experts) as u64,
                bytes_per_param: model.dense_bytes_per_param,
            },
            routed: model.routed_expert(),
            shared: model.shared_experts(),
        }
    }

    /// The same costs with every routed expert's FFN split over `tp` tensor-parallel GPUs:
    /// each GPU multiplies and reads `1 / tp` of the expert's weights.
    pub fn with_expert_tp(mut self, tp: u64) -> KernelCosts {
        self.routed.params /= tp.max(1);
        self
    }

    /// Attention plus gate over `tokens` tokens (0 when there are none).
    pub fn attention_ns(&self, tokens: f64) -> u64 {
        self.kernel(&self.attention, tokens) + self.kernel(&self.gate, tokens)
    }

    /// The shared experts over `tokens` tokens (0 for models without them).
    pub fn shared_ns(&self, tokens: f64) -> u64 {
        self.shared.map_or(0, |ffn| self.kernel(&ffn, tokens))
    }

    /// One grouped GEMM over the GPU's experts with `expert_tokens` tokens each.
    pub fn routed_ns(&self, expert_tokens: impl IntoIterator<Item = f64>) -> u64 {
        let mut total = 0;
        let mut active = false;
        for tokens in expert_tokens.into_iter().filter(|&t| t > 0.0) {
            active = true;
            let padded = (tokens / TILE_TOKENS).ceil() * TILE_TOKENS;
            total += self.compute.ffn_time_ns(&self.gpu, &self.routed, padded);
        }
        if active { total + KERNEL_LAUNCH_NS } else { 0 }
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
    fn decode_experts_are_memory_bound_and_tiles_pad_prefill() {
        let model = MoeModel::preset("deepseek-v3").unwrap();
        let costs = KernelCosts::new(&model, &GpuSpec::named("h800").unwrap());
        // One expert: 3 x 7168 x 2048 = 44,040,192 FP8 weights = 44,040,192 B at
        // 3350 x 0.9 B/ns: 14,607.0 -> 14,608 ns; its 64-row tile is 64 x 88,080,384 FLOP at
        // 692,300 FLOP/ns = 8,142.7 ns, under the reads. Plus the 2,000 ns launch.
        assert_eq!(costs.routed_ns([3.0]), 14_608 + 2_000);
        assert_eq!(costs.routed_ns([3.0, 0.0, 64.0]), 2 * 14_608 + 2_000);
        // 1000 tokens pad to 1024: 90,194,313,216 FLOP / 692,300 = 130,282.4 -> 130,283 ns.
        assert_eq!(costs.routed_ns([1000.0]), 130_283 + 2_000);
        assert_eq!(costs.routed_ns([0.0]), 0);
        assert_eq!(costs.attention_ns(0.0), 0);
    }
}
