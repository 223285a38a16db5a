//! Published kernel figures (REFERENCE.md, "Kernel efficiency figures") and moesim's model of
//! each, shared by `tests/it/kernels.rs` (rows within 15%) and `benches/kernels.rs` (every row).

use moesim::cost::RooflineCompute;
use moesim::cost::attention::AttentionCore;
use moesim::cost::gemm::{GemmShape, grouped_gemm_ns};
use moesim::model::Attention;
use moesim::topology::{DataType, GpuSpec};

/// One row of a DeepGEMM README table: `groups` x `[m, k] x [k, n]`, published TFLOP/s.
#[derive(Debug, Clone, Copy)]
pub struct GemmRow {
    pub groups: u64,
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub tflops: f64,
}

const fn row(groups: u64, m: u64, n: u64, k: u64, tflops: f64) -> GemmRow {
    GemmRow {
        groups,
        m,
        n,
        k,
        tflops,
    }
}

/// DeepGEMM README (first release, H800 SXM5, NVCC 12.8), "Normal GEMMs for dense models":
/// DeepSeek-V3/R1 inference shapes.
pub const DEEPGEMM_NORMAL: [GemmRow; 18] = [
    row(1, 64, 2112, 7168, 206.0),
    row(1, 64, 24576, 1536, 289.0),
    row(1, 64, 32768, 512, 219.0),
    row(1, 64, 7168, 16384, 336.0),
    row(1, 64, 4096, 7168, 287.0),
    row(1, 64, 7168, 2048, 295.0),
    row(1, 128, 2112, 7168, 352.0),
    row(1, 128, 24576, 1536, 535.0),
    row(1, 128, 32768, 512, 358.0),
    row(1, 128, 7168, 16384, 645.0),
    row(1, 128, 4096, 7168, 533.0),
    row(1, 128, 7168, 2048, 510.0),
    row(1, 4096, 2112, 7168, 1058.0),
    row(1, 4096, 24576, 1536, 990.0),
    row(1, 4096, 32768, 512, 590.0),
    row(1, 4096, 7168, 16384, 1358.0),
    row(1, 4096, 4096, 7168, 1304.0),
    row(1, 4096, 7168, 2048, 1025.0),
];

/// DeepGEMM README, "Grouped GEMMs for MoE models (contiguous layout)" (prefill / training).
pub const DEEPGEMM_CONTIGUOUS: [GemmRow; 4] = [
    row(4, 8192, 4096, 7168, 1297.0),
    row(4, 8192, 7168, 2048, 1099.0),
    row(8, 4096, 4096, 7168, 1288.0),
    row(8, 4096, 7168, 2048, 1093.0),
];

/// DeepGEMM README, "Grouped GEMMs for MoE models (masked layout)" (decode).
pub const DEEPGEMM_MASKED: [GemmRow; 6] = [
    row(1, 1024, 4096, 7168, 1233.0),
    row(1, 1024, 7168, 2048, 925.0),
    row(2, 512, 4096, 7168, 1040.0),
    row(2, 512, 7168, 2048, 916.0),
    row(4, 256, 4096, 7168, 932.0),
    row(4, 256, 7168, 2048, 815.0),
];

fn h800() -> GpuSpec {
    GpuSpec::named("h800").unwrap()
}

/// moesim's TFLOP/s for a DeepGEMM row: one FP8 grouped kernel on an H800.
pub fn deepgemm_simulated_tflops(r: &GemmRow) -> f64 {
    let shape = GemmShape {
        k: r.k,
        n: r.n,
        weight_bytes: 1.0,
        dtype: DataType::Fp8,
    };
    let rows = vec![r.m as f64; r.groups as usize];
    let ns = grouped_gemm_ns(&h800(), &shape, &RooflineCompute::default().fp8, &rows);
    // FLOP per ns / 10^3 = TFLOP/s.
    (2 * r.groups * r.m * r.n * r.k) as f64 / ns / 1e3
}

/// FlashMLA's decode benchmark shape on an H800: `batch` requests of `query_len` query tokens
/// over `context` cached tokens, `heads` query heads, DeepSeek's latent (512) + RoPE key (64).
pub fn flashmla_simulated(batch: f64, query_len: f64, context: f64, heads: usize) -> (f64, f64) {
    let mla = Attention::Mla {
        num_heads: heads,
        q_lora_rank: 1536,
        kv_lora_rank: 512,
        qk_nope_head_dim: 128,
        qk_rope_head_dim: 64,
        v_head_dim: 128,
    };
    let core = AttentionCore::new(&mla);
    let ns = core.decode_ns(&h800(), batch * query_len, context);
    // The KV cache is read once per request whatever its query count.
    let bytes = batch * context * (512.0 + 64.0) * 2.0;
    let flops = batch * query_len * context * mla.decode_flops_per_key() as f64;
    (bytes / ns, flops / ns / 1e3)
}

/// FlashAttention-3 paper, Fig. "Attention forward speed, head dim 128 (H100 80GB SXM5)",
/// BF16: (sequence length, TFLOP/s); batch x length = 16k tokens, 2048 / head dim heads.
pub const FA3_HDIM128: [(u64, f64); 6] = [
    (512, 467.0),
    (1024, 565.0),
    (2048, 625.0),
    (4096, 638.0),
    (8192, 646.0),
    (16384, 648.0),
];

/// FlashAttention-3 paper, abstract: BF16 "up to 740 TFLOP/s (75% utilisation)" on H100 (head
/// dim 256, 16k).
pub const FA3_PEAK: f64 = 740.0;

/// moesim's TFLOP/s for FlashAttention-3's forward benchmark (non-causal: every query attends
/// the whole sequence) at `seq_len` with `head_dim` on an H100.
pub fn fa3_simulated_tflops(seq_len: u64, head_dim: usize) -> f64 {
    let heads = 2048 / head_dim;
    let gqa = Attention::Gqa {
        num_heads: heads,
        num_kv_heads: heads,
        head_dim,
    };
    let core = AttentionCore::new(&gqa);
    let tokens = 16384.0;
    let keys = seq_len as f64;
    let ns = core.prefill_ns(&GpuSpec::named("h100").unwrap(), tokens, keys);
    tokens * keys * gqa.score_flops_per_token(1) as f64 / ns / 1e3
}

/// Relative error of `simulated` against `published`.
pub fn error(simulated: f64, published: f64) -> f64 {
    simulated / published - 1.0
}
