//! Expert and projection compute time: a GEMM is bound either by tensor-core throughput in its
//! data type or by its HBM traffic, whichever takes longer ([`super::gemm`]).

use super::gemm::{GemmEfficiency, GemmShape, grouped_gemm_ns};
use crate::model::Ffn;
use crate::topology::{DataType, GpuSpec};

/// How long one GPU takes to run an FFN (an expert, or a projection) over a number of tokens.
/// The seam where a calibration table measured on real GPUs replaces the model.
pub trait ComputeCost: Send + Sync {
    /// Time for GPU `gpu` to run `ffn` over `tokens` tokens (fractional when the count is an
    /// expectation); 0 when there are no tokens, since an idle expert is never launched.
    fn ffn_time_ns(&self, gpu: &GpuSpec, ffn: &Ffn, tokens: f64) -> u64;

    /// Time for GPU `gpu` to run one grouped GEMM per matrix of `ffn` over its local experts,
    /// expert `i` taking `expert_tokens[i]` tokens. By default the experts one after another
    /// (what a table of separately measured GEMMs can say).
    fn grouped_ffn_time_ns(&self, gpu: &GpuSpec, ffn: &Ffn, expert_tokens: &[f64]) -> u64 {
        expert_tokens
            .iter()
            .map(|&tokens| self.ffn_time_ns(gpu, ffn, tokens))
            .sum()
    }
}

/// The tiled roofline of [`super::gemm`] at the dense peak of the weights' data type (FP8
/// weights on FP8 tensor cores, MXFP4 on FP4 ones; a type the GPU lacks runs in the next wider
/// one). Every matrix of an FFN is one grouped kernel over the local experts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RooflineCompute {
    /// Efficiencies of BF16 GEMMs.
    pub bf16: GemmEfficiency,
    /// Efficiencies of FP8 and FP4 GEMMs.
    pub fp8: GemmEfficiency,
}

impl Default for RooflineCompute {
    fn default() -> Self {
        // DeepGEMM README (first release, H800 SXM5): the fit of its FP8 normal, contiguous and
        // masked tables (see `super::gemm`): tiles at 0.67 of the FP8 peak plus 900 ns each,
        // traffic at 0.68 of HBM bandwidth.
        let fp8 = GemmEfficiency {
            tile: 0.67,
            hbm: 0.68,
            tile_overhead_ns: 900.0,
        };
        // BF16 has no fine-grained scaling to promote on CUDA cores: 0.85 per tile reproduces
        // the 798 TFLOP/s an 8192^3 BF16 matmul measured on an H100 (REFERENCE.md, Hardware).
        let bf16 = GemmEfficiency { tile: 0.85, ..fp8 };
        RooflineCompute { bf16, fp8 }
    }
}

impl RooflineCompute {
    /// The efficiencies of GEMMs in `dtype`.
    fn efficiency(&self, dtype: DataType) -> &GemmEfficiency {
        match dtype {
            DataType::Bf16 => &self.bf16,
            DataType::Fp8 | DataType::Fp4 => &self.fp8,
        }
    }

    /// One grouped kernel per GEMM of `ffn` over `rows` rows per expert, ns.
    fn ffn_ns(&self, gpu: &GpuSpec, ffn: &Ffn, rows: &[f64]) -> u64 {
        let dtype = gpu.supported(DataType::of_bytes_per_param(ffn.bytes_per_param));
        let eff = self.efficiency(dtype);
        let ns: f64 = ffn
            .gemms()
            .into_iter()
            .map(|(k, n)| {
                let shape = GemmShape {
                    k,
                    n,
                    weight_bytes: ffn.bytes_per_param,
                    dtype,
                };
                grouped_gemm_ns(gpu, &shape, eff, rows)
            })
            .sum();
        ns.ceil() as u64
    }
}

impl ComputeCost for RooflineCompute {
    fn ffn_time_ns(&self, gpu: &GpuSpec, ffn: &Ffn, tokens: f64) -> u64 {
        self.ffn_ns(gpu, ffn, &[tokens])
    }

    fn grouped_ffn_time_ns(&self, gpu: &GpuSpec, ffn: &Ffn, expert_tokens: &[f64]) -> u64 {
        self.ffn_ns(gpu, ffn, expert_tokens)
    }
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
        // BF16, tiles at 989,000 / 132 x 0.85 = 6,368.5 FLOP/ns per SM; traffic at
        // 3350 x 0.68 = 2278 B/ns.
        // gate_up [512, 4096] x [4096, 28672]: 8 x 224 = 1792 tiles, 14 waves (13.6) of
        // 67,108,864 / 6,368.5 + 900 = 11,437.5 ns = 160,125.3 ns, over its traffic
        // (234,881,024 + 4,194,304 + 29,360,128 B: 117,838.2 ns).
        // down [512, 14336] x [14336, 4096]: 8 x 32 = 256 tiles, 2 waves of 234,881,024 /
        // 6,368.5 + 900 = 37,781.3 ns = 75,562.7 ns (traffic 59,839.7 ns).
        // Sum 235,688.0 -> 235,689 ns: compute-bound.
        assert_eq!(roofline.ffn_time_ns(&h100, &expert, 512.0), 235_689);
        // One token: the weights' traffic, 234,946,560 B (103,137.2 ns) + 117,477,376 B
        // (51,570.4 ns) = 154,707.6 -> 154,708 ns, over one or two waves of tiles.
        assert_eq!(roofline.ffn_time_ns(&h100, &expert, 1.0), 154_708);
        assert_eq!(roofline.ffn_time_ns(&h100, &expert, 0.0), 0);
    }

    #[test]
    fn grouped_experts_read_each_active_experts_weights_once_in_one_kernel() {
        let expert = MoeModel::preset("deepseek-v3").unwrap().routed_expert();
        let h800 = GpuSpec::named("h800").unwrap();
        let roofline = RooflineCompute::default();
        let one = roofline.grouped_ffn_time_ns(&h800, &expert, &[8.0]);
        let four = roofline.grouped_ffn_time_ns(&h800, &expert, &[8.0, 8.0, 0.0, 8.0, 8.0]);
        // Memory-bound: four experts' weights take four times as long, and the empty one
        // reads nothing.
        assert!(four.abs_diff(4 * one) <= 4, "{one} {four}");
        // The grouped kernel over many small experts beats running them one by one (their
        // tiles share waves).
        let rows = vec![200.0; 8];
        let grouped = roofline.grouped_ffn_time_ns(&h800, &expert, &rows);
        let separate: u64 = rows
            .iter()
            .map(|&r| roofline.ffn_time_ns(&h800, &expert, r))
            .sum();
        assert!(grouped < separate, "{grouped} {separate}");
    }
}
