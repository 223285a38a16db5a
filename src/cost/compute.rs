//! Expert compute time by roofline: a GEMM is bound either by tensor-core throughput or by
//! reading its weights from HBM, whichever takes longer.

use serde::{Deserialize, Serialize};

use crate::model::Ffn;
use crate::topology::GpuSpec;

/// How long one GPU takes to run one FFN (an expert) over a number of tokens. The seam where
/// a calibration table measured on real GPUs replaces the roofline estimate.
pub trait ComputeCost: Send + Sync {
    /// Time for GPU `gpu` to run `ffn` over `tokens` tokens (fractional when the count is an
    /// expectation); 0 when there are no tokens, since an idle expert is never launched.
    fn ffn_time_ns(&self, gpu: &GpuSpec, ffn: &Ffn, tokens: f64) -> u64;
}

/// Roofline: `max(flops / (peak * gemm_efficiency), weight_bytes / (hbm * hbm_efficiency))`,
/// weights read once per expert per step. Activation traffic is left out (small next to the
/// weights while memory-bound, hidden under compute once compute-bound). Throughput is taken at
/// the GPU's BF16 peak whatever the weight precision: FP8 GEMMs (up to 2x faster) are left to
/// calibration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RooflineCompute {
    /// Share of peak tensor-core throughput expert GEMMs reach. Default 0.7: a large square
    /// BF16 GEMM measures 798 of 989 TFLOP/s (0.81) on H100; grouped expert GEMMs with
    /// few tokens per expert reach less.
    pub gemm_efficiency: f64,
    /// Share of peak memory bandwidth weight reads reach. Default 0.9: a device-to-device copy
    /// measures ~3.0 of 3.35 TB/s on H100.
    pub hbm_efficiency: f64,
}

impl Default for RooflineCompute {
    fn default() -> Self {
        RooflineCompute {
            gemm_efficiency: 0.7,
            hbm_efficiency: 0.9,
        }
    }
}

impl ComputeCost for RooflineCompute {
    fn ffn_time_ns(&self, gpu: &GpuSpec, ffn: &Ffn, tokens: f64) -> u64 {
        if tokens <= 0.0 {
            return 0;
        }
        // 1 TFLOP/s = 10^3 FLOP/ns; 1 GB/s = 1 byte/ns.
        let compute_ns =
            tokens * ffn.flops_per_token() as f64 / (gpu.bf16_tflops * 1e3 * self.gemm_efficiency);
        let memory_ns = ffn.weight_bytes() as f64 / (gpu.hbm_gbps * self.hbm_efficiency);
        compute_ns.max(memory_ns).ceil() as u64
    }
}

/// Time for one GPU to run `ffn` once per entry of `expert_tokens` (token counts of the experts
/// it holds), one after another.
pub fn experts_time_ns(
    cost: &dyn ComputeCost,
    gpu: &GpuSpec,
    ffn: &Ffn,
    expert_tokens: &[f64],
) -> u64 {
    expert_tokens
        .iter()
        .map(|&tokens| cost.ffn_time_ns(gpu, ffn, tokens))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MoeModel;

    #[test]
    fn mixtral_expert_on_h100_by_hand() {
        let expert = MoeModel::preset("mixtral-8x7b").unwrap().routed_expert();
        let h100 = GpuSpec::named("h100").unwrap();
        let roofline = RooflineCompute::default();
        // 512 tokens x 2 x 3 x 4096 x 14336 = 180,388,626,432 FLOP at 989 x 0.7 = 692.3 TFLOP/s:
        // 260,564.24 ns. Weights 352,321,536 B at 3350 x 0.9 GB/s: 116,856.2 ns. Compute-bound.
        assert_eq!(roofline.ffn_time_ns(&h100, &expert, 512.0), 260_565);
        // One token: 509 ns of math, still 116,857 ns of weight reads.
        assert_eq!(roofline.ffn_time_ns(&h100, &expert, 1.0), 116_857);
        assert_eq!(roofline.ffn_time_ns(&h100, &expert, 0.0), 0);
        assert_eq!(
            experts_time_ns(&roofline, &h100, &expert, &[512.0, 0.0, 1.0]),
            260_565 + 116_857
        );
    }

    #[test]
    fn efficiency_scales_the_compute_bound() {
        let expert = MoeModel::preset("mixtral-8x7b").unwrap().routed_expert();
        let h100 = GpuSpec::named("h100").unwrap();
        let at_peak = RooflineCompute {
            gemm_efficiency: 1.0,
            hbm_efficiency: 1.0,
        };
        // 180,388,626,432 / 989,000 FLOP/ns = 182,394.97 ns.
        assert_eq!(at_peak.ffn_time_ns(&h100, &expert, 512.0), 182_395);
        // 352,321,536 B / 3350 B/ns = 105,170.6 ns.
        assert_eq!(at_peak.ffn_time_ns(&h100, &expert, 1.0), 105_171);
    }
}
