//! `moesim profile`, `calibrate` and `validate` end to end, on the SYNTHETIC fixture in
//! tests/fixtures/profile/ (roofline plus noise, not a GPU measurement; see its README).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{assert_fails_with, moesim, stderr, stdout};
use moesim::gpu::driver_present;
use moesim::profile::Measurements;
use moesim::profile::counters::{read_pcie_counters, write_counters};
use moesim::profile::plan::preset_gemm_shapes;
use moesim::profile::synthetic::synthetic_run;
use moesim::topology::GpuSpec;

/// Seed and date the committed fixture was generated with.
const FIXTURE_SEED: u64 = 5;
const FIXTURE_DATE: &str = "2026-11-23";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/profile")
        .join(name)
}

fn generate() -> (Measurements, Vec<moesim::profile::counters::CounterSample>) {
    let h100 = GpuSpec::named("h100").unwrap();
    synthetic_run(&h100, &preset_gemm_shapes(), FIXTURE_SEED, FIXTURE_DATE)
}

/// Rewrites the fixture: `cargo test --test profile -- --ignored regenerate_synthetic_fixture`.
#[test]
#[ignore]
fn regenerate_synthetic_fixture() {
    let (measurements, samples) = generate();
    measurements
        .write_parquet(&fixture("measurements.parquet"))
        .unwrap();
    write_counters(&fixture("counters.parquet"), &samples).unwrap();
}
