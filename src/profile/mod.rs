//! GPU profiling and calibration: micro-benchmarks and NVML counters measured on a GPU, a
//! calibration fitted from them, and its validation against held-out measurements.
//!
//! - [`plan`]: which GEMM shapes, token counts and copy sizes are measured (pure logic).
//! - [`measurement`]: the measurement file (`measurements.parquet`, schema in its docs).
//! - [`counters`]: NVML samples (`counters.parquet`); [`nvml_sampler`] takes them on a
//!   background thread.
//! - [`bench`]: runs the plan on the GPU through cudarc (cuBLAS GEMMs, copies, CUDA events);
//!   [`session`]: one `moesim profile` run (sampler around the benchmarks, the three files).
//! - [`calibration`]: the calibration TOML and how it is fitted; [`calibrated`]: the
//!   [`ComputeCost`](crate::cost::compute::ComputeCost) that uses it.
//! - [`validate`]: predicts the held-out half and compares.
//! - [`synthetic`]: SYNTHETIC measurements (roofline plus noise) for CI without a GPU.
//!
//! # One clock for kernels and counters
//! A profile run fixes one host epoch (a monotonic [`std::time::Instant`]); NVML samples are
//! stamped with nanoseconds since it. CUDA events only measure time between events on the
//! GPU, so each benchmark records a start event, waits for it to complete and reads the host
//! clock (`anchor`); the repetitions' window is then `anchor + elapsed(start event, event)`,
//! exact up to the synchronisation latency (a few microseconds, far below NVML's sample period
//! of milliseconds). `start_ns` / `end_ns` in the measurement file are on this clock.

pub mod bench;
pub mod calibrated;
pub mod calibration;
pub mod counters;
pub mod measurement;
pub mod nvml_sampler;
pub mod plan;
pub mod session;
pub mod synthetic;
pub mod validate;

pub use calibrated::CalibratedCompute;
pub use calibration::{Calibration, FitHalf};
pub use measurement::{Kind, Measurement, Measurements, Provenance};
