//! SYNTHETIC measurements: a flat BF16 roofline plus seeded noise, in the shape `moesim profile` writes.
//! They are NOT GPU measurements; they exist so CI can exercise `calibrate` and `validate` on a
//! machine without a GPU (the fixture under `tests/fixtures/profile/` is made by
//! [`synthetic_run`], see its README). Every file they land in says `source = synthetic`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::counters::CounterSample;
use super::measurement::{Kind, Measurement, Measurements, Provenance};
use super::plan::{GemmShape, HBM_COPY_BYTES, PCIE_COPY_BYTES, TOKEN_COUNTS};
use crate::topology::GpuSpec;

/// Fixed cost added to every synthetic GEMM (kernel launch and tail).
pub const GEMM_LAUNCH_NS: f64 = 3_000.0;
/// Fixed latency of a synthetic PCIe copy.
pub const PCIE_LATENCY_NS: f64 = 8_000.0;
/// Synthetic PCIe bandwidths, host-to-device and device-to-host, GB/s (Gen5 x16 in practice).
pub const PCIE_GBPS: (f64, f64) = (55.0, 52.0);
/// Synthetic HBM copy bandwidth counting read and write (the measured H100 figure), GB/s.
pub const HBM_COPY_GBPS: f64 = 3_000.0;
/// Relative noise on every synthetic time: uniform in +-2%.
pub const NOISE: f64 = 0.02;
/// Share of the BF16 peak synthetic GEMMs reach while compute-bound.
const GEMM_EFFICIENCY: f64 = 0.7;
/// Share of HBM bandwidth synthetic GEMMs' weight reads reach while memory-bound.
const HBM_EFFICIENCY: f64 = 0.9;
/// Timed repetitions each synthetic row claims.
const REPS: u32 = 20;
/// Period of the synthetic NVML samples.
const SAMPLE_PERIOD_NS: u64 = 1_000_000;
/// Idle time between two synthetic benchmarks.
const GAP_NS: u64 = 1_000_000;

/// Synthetic measurements of `shapes` on `gpu` (GEMMs at every [`TOKEN_COUNTS`], copies at the
/// plan's sizes) and matching NVML samples (PCIe throughput during copies), from `seed`.
pub fn synthetic_run(
    gpu: &GpuSpec,
    shapes: &[GemmShape],
    seed: u64,
    date: &str,
) -> (Measurements, Vec<CounterSample>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::new();
    let mut clock_ns = 0;
    let mut push = |rows: &mut Vec<Measurement>,
                    rng: &mut ChaCha8Rng,
                    row: (Kind, String, u64, u64, u64, u64, f64)| {
        let (kind, shape, k, n, tokens, bytes, ideal_ns) = row;
        let median_ns = (ideal_ns * (1.0 + rng.random_range(-NOISE..NOISE))).round() as u64;
        let end_ns = clock_ns + u64::from(REPS) * median_ns;
        rows.push(Measurement {
            kind,
            shape,
            k,
            n,
            tokens,
            bytes,
            reps: REPS,
            median_ns,
            min_ns: median_ns * 98 / 100,
            max_ns: median_ns * 103 / 100,
            start_ns: Some(clock_ns),
            end_ns: Some(end_ns),
        });
        clock_ns = end_ns + GAP_NS;
    };
    for shape in shapes {
        for tokens in TOKEN_COUNTS {
            let ideal = GEMM_LAUNCH_NS + flat_roofline_ns(gpu, shape, tokens);
            let row = (
                Kind::Gemm,
                shape.label(),
                shape.k,
                shape.n,
                tokens,
                shape.weight_bytes(),
                ideal,
            );
            push(&mut rows, &mut rng, row);
        }
    }
    let copies = HBM_COPY_BYTES
        .iter()
        .map(|&b| (Kind::HbmCopy, b, 2.0 * b as f64 / HBM_COPY_GBPS))
        .chain(
            PCIE_COPY_BYTES
                .iter()
                .map(|&b| (Kind::H2d, b, PCIE_LATENCY_NS + b as f64 / PCIE_GBPS.0)),
        )
        .chain(
            PCIE_COPY_BYTES
                .iter()
                .map(|&b| (Kind::D2h, b, PCIE_LATENCY_NS + b as f64 / PCIE_GBPS.1)),
        );
    for (kind, bytes, ideal) in copies {
        let row = (
            kind,
            format!("{} {bytes} B", kind.name()),
            0,
            0,
            0,
            bytes,
            ideal,
        );
        push(&mut rows, &mut rng, row);
    }
    let samples = synthetic_samples(&rows, &mut rng);
    let provenance = Provenance {
        gpu: format!(
            "SYNTHETIC {} (roofline + noise, not a measurement)",
            gpu.name
        ),
        driver: "none".into(),
        date: date.into(),
        source: "synthetic".into(),
    };
    (Measurements { provenance, rows }, samples)
}

/// One sample per [`SAMPLE_PERIOD_NS`] over the run: PCIe throughput of the copy running at
/// that time (with noise), 0 when none.
fn synthetic_samples(rows: &[Measurement], rng: &mut ChaCha8Rng) -> Vec<CounterSample> {
    let end_ns = rows.iter().filter_map(|r| r.end_ns).max().unwrap_or(0);
    (0..=end_ns / SAMPLE_PERIOD_NS)
        .map(|i| {
            let t_ns = i * SAMPLE_PERIOD_NS;
            let running = rows.iter().find(|r| {
                r.start_ns
                    .zip(r.end_ns)
                    .is_some_and(|(s, e)| (s..=e).contains(&t_ns))
            });
            let rate = |kind: Kind, rng: &mut ChaCha8Rng| match running {
                Some(r) if r.kind == kind => {
                    let noise = 1.0 + rng.random_range(-NOISE..NOISE);
                    (r.bytes as f64 / r.median_ns as f64 * 1e9 * noise) as u64
                }
                _ => 0,
            };
            CounterSample {
                t_ns,
                pcie_tx_bytes_per_s: Some(rate(Kind::D2h, rng)),
                pcie_rx_bytes_per_s: Some(rate(Kind::H2d, rng)),
                ..CounterSample::default()
            }
        })
        .collect()
}

/// A smooth roofline for synthetic GEMMs: BF16 math at [`GEMM_EFFICIENCY`] of the peak against
/// weight reads at [`HBM_EFFICIENCY`] of HBM bandwidth, rounded up to the ns. Deliberately
/// without the simulator's tile and wave quantisation (`cost::gemm`): these rows stand in for
/// what `calibrate` fits, not for the kernel model.
fn flat_roofline_ns(gpu: &GpuSpec, shape: &GemmShape, tokens: u64) -> f64 {
    // 1 TFLOP/s = 10^3 FLOP/ns; 1 GB/s = 1 byte/ns.
    let flops = 2.0 * (tokens * shape.k * shape.n) as f64;
    let compute_ns = flops / (gpu.bf16_tflops * 1e3 * GEMM_EFFICIENCY);
    let memory_ns = shape.weight_bytes() as f64 / (gpu.hbm_gbps * HBM_EFFICIENCY);
    compute_ns.max(memory_ns).ceil()
}
