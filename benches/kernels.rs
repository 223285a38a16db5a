//! Every published kernel table moesim's kernel model is fitted to, simulated against
//! published with the error (REFERENCE.md, "Kernel efficiency figures"):
//! `cargo bench --bench kernels`.

#[path = "../tests/it/published/mod.rs"]
mod published;

use published::*;

fn print_gemm_table(title: &str, rows: &[GemmRow]) {
    println!("\n{title}");
    println!("| groups | M | N | K | published TFLOP/s | simulated | error |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let simulated = deepgemm_simulated_tflops(r);
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:+.1}% |",
            r.groups,
            r.m,
            r.n,
            r.k,
            r.tflops,
            simulated,
            error(simulated, r.tflops) * 100.0
        );
    }
}

fn main() {
    println!("DeepGEMM README (first release), H800 SXM5, FP8 with fine-grained scaling");
    print_gemm_table("Normal GEMMs for dense models", &DEEPGEMM_NORMAL);
    print_gemm_table(
        "Grouped GEMMs, contiguous layout (prefill)",
        &DEEPGEMM_CONTIGUOUS,
    );
    print_gemm_table("Grouped GEMMs, masked layout (decode)", &DEEPGEMM_MASKED);

    println!("\nFlashMLA README, H800 SXM5, BF16 KV cache, 128 requests x 4096 cached tokens");
    println!("| configuration | published | simulated | error |");
    println!("|---|---:|---:|---:|");
    let (gbps, _) = flashmla_simulated(128.0, 1.0, 4096.0, 16);
    println!(
        "| memory-bound (16 heads, 1 query) | 3000 GB/s | {gbps:.0} GB/s | {:+.1}% |",
        error(gbps, 3000.0) * 100.0
    );
    let (_, tflops) = flashmla_simulated(128.0, 2.0, 4096.0, 128);
    for published in [580.0, 660.0] {
        println!(
            "| compute-bound (128 heads, 2 queries) | {published:.0} TFLOP/s | {tflops:.0} TFLOP/s | {:+.1}% |",
            error(tflops, published) * 100.0
        );
    }

    println!("\nFlashAttention-3 paper, H100 SXM5, BF16 forward, 16k tokens per batch");
    println!("| head dim | sequence length | published TFLOP/s | simulated | error |");
    println!("|---:|---:|---:|---:|---:|");
    for (len, published) in FA3_HDIM128 {
        let simulated = fa3_simulated_tflops(len, 128);
        println!(
            "| 128 | {len} | {published:.0} | {simulated:.0} | {:+.1}% |",
            error(simulated, published) * 100.0
        );
    }
    let simulated = fa3_simulated_tflops(16384, 256);
    println!(
        "| 256 | 16384 | {FA3_PEAK:.0} (headline) | {simulated:.0} | {:+.1}% |",
        error(simulated, FA3_PEAK) * 100.0
    );
}
