//! The gating kernel on a real GPU against its CPU twin, bit for bit. Ignored by default (no
//! GPU in CI); `scripts/gpu_run.sh test` runs them with `--include-ignored` on the lent GPU.

#[path = "it/common/mod.rs"]
mod common;

use common::gating_cases::{Case, assert_same_bits, cases_with_logits, logits};
use moesim::capture::cpu;
use moesim::capture::device::Gpu;
use moesim::capture::gating::{GatingConfig, Scoring};
use moesim::capture::logits::RouterLogits;
use moesim::capture::reference::route_layer;

#[test]
#[ignore = "needs an NVIDIA GPU (scripts/gpu_run.sh test)"]
fn the_plain_kernel_matches_the_cpu_twin_bit_for_bit() {
    let gpu = Gpu::open("capture_gpu test").unwrap();
    for (Case { config, bias, .. }, values) in cases_with_logits(4096) {
        let cpu = route_layer(&config, &values, bias.as_deref(), "cpu").unwrap();
        let gpu_out = gpu.route_layer(&config, &values, bias.as_deref()).unwrap();
        assert_eq!(gpu_out.experts, cpu.experts, "{}", config.describe());
        assert_same_bits(&gpu_out.weights, &cpu.weights, &config.describe());
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU (scripts/gpu_run.sh test)"]
fn the_instrumented_capture_equals_the_cpu_capture() {
    let gpu = Gpu::open("capture_gpu test").unwrap();
    let config = GatingConfig::new(64, 8, Scoring::Softmax, None, true).unwrap();
    let router = seeded_router(100, 5, 3000, 64);
    let on_gpu = gpu.capture(&config, &router, None, 6000).unwrap();
    let on_cpu = cpu::capture(&config, &router, None).unwrap();
    assert_eq!(on_gpu.lost_records, 0);
    assert_eq!(on_gpu.expert_counts, on_cpu.expert_counts);
    assert_eq!(on_gpu.trace, on_cpu.trace);
}

#[test]
#[ignore = "needs an NVIDIA GPU (scripts/gpu_run.sh test)"]
fn a_small_ring_loses_a_deterministic_count_and_keeps_the_rest_exact() {
    // 3 layers x 1000 tokens, ring of 100: layer 0 keeps sequence numbers < 100 (900 lost);
    // layers 1 and 2 may only use sequence numbers below 0 + 100 and 1000 + 100, all of which
    // are taken, so they lose all 1000: 2900 lost.
    let gpu = Gpu::open("capture_gpu test").unwrap();
    let config = GatingConfig::new(32, 2, Scoring::Softmax, None, true).unwrap();
    let router = seeded_router(200, 3, 1000, 32);
    let on_gpu = gpu.capture(&config, &router, None, 100).unwrap();
    let on_cpu = cpu::capture(&config, &router, None).unwrap();
    assert_eq!(on_gpu.lost_records, 2900);
    assert_eq!(on_gpu.expert_counts, on_cpu.expert_counts);
    let kept = on_gpu.trace.layer(0);
    let mut received = 0;
    for token in 0..1000 {
        if !kept.experts_of(token).is_empty() {
            assert_eq!(
                kept.experts_of(token),
                on_cpu.trace.layer(0).experts_of(token)
            );
            received += 1;
        }
    }
    assert_eq!(received, 100);
}

/// `layers` layers of `tokens x experts` logits, layer `l` seeded `seed + l`.
fn seeded_router(seed: u64, layers: u64, tokens: usize, experts: usize) -> RouterLogits {
    RouterLogits {
        num_experts: experts,
        num_tokens: tokens,
        layers: (0..layers)
            .map(|l| logits(seed + l, tokens, experts, false))
            .collect(),
    }
}
