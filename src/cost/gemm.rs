//! Tensor-core GEMM time by a tiled roofline: the slower of the tiles' math (tile and wave
//! quantised) and the kernel's HBM traffic.
//!
//! A grouped GEMM (DeepGEMM's contiguous layout for prefill, masked layout for decode) is ONE
//! kernel over every group `[rows_g, k] x [k, n]` (one per local expert, each with its own
//! weights): its output tiles (`TILE_ROWS x TILE_COLS`, each group's rows padded to whole tiles)
//! run in waves of one tile per SM, each tile paying `2 x TILE_ROWS x TILE_COLS x k` FLOPs at
//! the SM's share of the dense peak of the data type times an efficiency, plus a fixed
//! prologue/epilogue; its traffic is every active group's weights once, its input rows and its
//! BF16 output. Few rows per group leave the kernel memory-bound (the weights dominate), many
//! make it compute-bound.
//!
//! The constants are fitted to DeepGEMM's first published table (README, H800 SXM5, FP8 with
//! fine-grained scaling; 27 of its 28 normal, contiguous and masked rows within 15%, see
//! `benches/kernels.rs`).

use crate::topology::{DataType, GpuSpec};

/// Rows of one output tile (DeepGEMM picks 64 for small M, CUTLASS Hopper kernels 64 or 128).
pub const TILE_ROWS: f64 = 64.0;

/// Columns of one output tile.
pub const TILE_COLS: f64 = 128.0;

/// One GEMM family as launched: `n` outputs over `k` inputs, weights at `weight_bytes` bytes per
/// element, multiplied in `dtype` (activations read in that format, output written in BF16).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmShape {
    /// Reduction width.
    pub k: u64,
    /// Output width.
    pub n: u64,
    /// Bytes per stored weight.
    pub weight_bytes: f64,
    /// Format the tensor cores multiply in.
    pub dtype: DataType,
}

/// The efficiencies of [`grouped_gemm_ns`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmEfficiency {
    /// Share of the SM's dense peak one tile's math reaches in `dtype`.
    pub tile: f64,
    /// Share of peak HBM bandwidth the kernel's traffic reaches.
    pub hbm: f64,
    /// Fixed cost of one tile (prologue, epilogue, output store), ns.
    pub tile_overhead_ns: f64,
}

/// Time of one grouped GEMM kernel of `shape` over groups of `rows` rows each (groups with no
/// rows are skipped: a masked kernel computes nothing for them and reads none of their weights);
/// 0 when every group is empty. Rows may be fractional (expectations).
pub fn grouped_gemm_ns(
    gpu: &GpuSpec,
    shape: &GemmShape,
    eff: &GemmEfficiency,
    rows: &[f64],
) -> f64 {
    let active = rows.iter().filter(|&&r| r > 0.0);
    let tile_rows: f64 = active.clone().map(|r| (r / TILE_ROWS).ceil()).sum();
    if tile_rows == 0.0 {
        return 0.0;
    }
    let groups = active.clone().count() as f64;
    let total_rows: f64 = active.sum();
    let (k, n) = (shape.k as f64, shape.n as f64);
    let tiles = tile_rows * (n / TILE_COLS).ceil();
    let sms = f64::from(gpu.sm_count.max(1));
    let waves = (tiles / sms).ceil();
    // 1 TFLOP/s = 10^3 FLOP/ns.
    let peak = gpu.peak_tflops(shape.dtype).unwrap_or(gpu.bf16_tflops) * 1e3;
    let tile_ns = 2.0 * TILE_ROWS * TILE_COLS * k / (peak / sms * eff.tile) + eff.tile_overhead_ns;
    let compute_ns = waves * tile_ns;
    let bytes = groups * n * k * shape.weight_bytes
        + total_rows * k * shape.dtype.activation_bytes()
        + total_rows * n * DataType::Bf16.activation_bytes();
    // 1 GB/s = 1 byte/ns.
    let memory_ns = bytes / (gpu.hbm_gbps * eff.hbm);
    compute_ns.max(memory_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEEPGEMM: GemmEfficiency = GemmEfficiency {
        tile: 0.67,
        hbm: 0.68,
        tile_overhead_ns: 900.0,
    };

    #[test]
    fn memory_bound_small_m_and_compute_bound_large_m_by_hand() {
        let h800 = GpuSpec::named("h800").unwrap();
        let shape = GemmShape {
            k: 7168,
            n: 4096,
            weight_bytes: 1.0,
            dtype: DataType::Fp8,
        };
        // M = 64: one tile row x 32 columns = 32 tiles, one wave: 2 x 64 x 128 x 7168 =
        // 117,440,512 FLOP at 1,979,000 / 132 x 0.67 = 10,045.0 FLOP/ns = 11,691.5 + 900 =
        // 12,591.5 ns. Bytes 4096 x 7168 + 64 x 7168 + 2 x 64 x 4096 = 30,343,168 at
        // 3350 x 0.68 = 2278 B/ns = 13,320.1 ns: memory-bound.
        let ns = grouped_gemm_ns(&h800, &shape, &DEEPGEMM, &[64.0]);
        assert!((ns - 13_320.1).abs() < 0.1, "{ns}");
        // M = 4096: 64 x 32 = 2048 tiles in 16 waves (15.5 rounded up) of 12,591.5 ns =
        // 201,464 ns; bytes 29.36e6 + 29.36e6 + 33.55e6 = 92.27e6: 40,505 ns.
        let ns = grouped_gemm_ns(&h800, &shape, &DEEPGEMM, &[4096.0]);
        assert!((ns - 201_464.0).abs() < 1.0, "{ns}");
        assert_eq!(grouped_gemm_ns(&h800, &shape, &DEEPGEMM, &[0.0, 0.0]), 0.0);
    }
}
