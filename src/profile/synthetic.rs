//! SYNTHETIC measurements: the roofline plus seeded noise, in the shape `moesim profile` writes.
//! They are NOT GPU measurements; they exist so CI can exercise `calibrate` and `validate` on a
//! machine without a GPU (the fixture under `tests/fixtures/profile/` is made by
//! [`synthetic_run`], see its README). Every file they land in says `source = synthetic`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::counters::CounterSample;
use super::measurement::{Kind, Measurement, Measurements, Provenance};
use super::plan::{GemmShape, HBM_COPY_BYTES, PCIE_COPY_BYTES, TOKEN_COUNTS};
use crate::cost::compute::{ComputeCost, RooflineCompute};
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
    let roofline = RooflineCompute::default();
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
        let ffn = crate::model::Ffn {
            params: shape.k * shape.n,
            bytes_per_param: 2.0,
        };
        for tokens in TOKEN_COUNTS {
            let ideal = GEMM_LAUNCH_NS + roofline.ffn_time_ns(gpu, &ffn, tokens as f64) as f64;
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
