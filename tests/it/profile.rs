//! `moesim profile`, `calibrate` and `validate` end to end, on the SYNTHETIC fixture in
//! tests/fixtures/profile/ (roofline plus noise, not a GPU measurement; see its README).

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{assert_fails_with, moesim, stderr, stdout};
use moesim::gpu::driver_present;
use moesim::profile::Measurements;
use moesim::profile::counters::{PcieSample, read_pcie_counters, write_counters};
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

/// Rewrites the fixture: `cargo test --test it -- --ignored profile::regenerate_synthetic_fixture`.
#[test]
#[ignore]
fn regenerate_synthetic_fixture() {
    let (measurements, samples) = generate();
    measurements
        .write_parquet(&fixture("measurements.parquet"))
        .unwrap();
    write_counters(&fixture("counters.parquet"), &samples).unwrap();
}

#[test]
fn fixture_is_what_its_generator_makes() {
    let (measurements, samples) = generate();
    let committed = Measurements::read_parquet(&fixture("measurements.parquet")).unwrap();
    assert_eq!(committed, measurements);
    assert_eq!(committed.provenance.source, "synthetic");
    assert!(committed.provenance.gpu.starts_with("SYNTHETIC"));
    // 18 preset GEMM shapes x 21 token counts + 6 HBM + 7 h2d + 7 d2h copies.
    assert_eq!(committed.rows.len(), 18 * 21 + 6 + 7 + 7);
    let pcie = read_pcie_counters(&fixture("counters.parquet")).unwrap();
    let expected: Vec<_> = samples
        .iter()
        .map(|s| PcieSample {
            t_ns: s.t_ns,
            tx_bytes_per_s: s.pcie_tx_bytes_per_s,
            rx_bytes_per_s: s.pcie_rx_bytes_per_s,
        })
        .collect();
    assert_eq!(pcie, expected);
}

#[test]
fn calibrate_then_validate_on_the_synthetic_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let calibration = dir.path().join("calibration.toml");
    let out = dir.path().join("validation");
    let measurements = fixture("measurements.parquet");
    let measurements = measurements.to_str().unwrap();
    let fit = moesim(&[
        "calibrate",
        "--measurements",
        measurements,
        "-o",
        calibration.to_str().unwrap(),
        "--fit-half",
        "even",
    ]);
    assert_eq!(fit.status.code(), Some(0), "{}", stderr(&fit));
    let text = fs::read_to_string(&calibration).unwrap();
    assert!(text.contains("source = \"synthetic\""));
    // Shapes 0, 2, ..., 16 of the 18 sorted by (k, n).
    assert_eq!(text.matches("[[gemm]]").count(), 9);
    assert!(text.contains("k = 768\nn = 2048\n"));
    assert!(!text.contains("k = 768\nn = 3072\n"));

    let run = moesim(&[
        "validate",
        "--measurements",
        measurements,
        "--calibration",
        calibration.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    // The held-out odd half: 9 shapes x 21 token counts and 3 sizes of each copy kind, within
    // 2% of the synthetic times (noise is +-2%). The largest HBM copy lies beyond the fitted
    // sizes: scaled, with one warning.
    assert!(
        stdout(&run).starts_with(
            "held-out MAPE: 1.02% over 198 points (target <= 5%); SYNTHETIC measurements\n"
        ),
        "{}",
        stdout(&run)
    );
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("validation.json")).unwrap()).unwrap();
    assert!((json["mape_pct"].as_f64().unwrap() - 1.02421).abs() < 1e-4);
    assert_eq!(json["compared_half"], "odd");
    assert_eq!(json["points"].as_array().unwrap().len(), 198);
    let gemm = &json["kinds"][0];
    assert_eq!(
        (gemm["kind"].as_str(), gemm["points"].as_u64()),
        (Some("gemm"), Some(189))
    );
    assert!((gemm["mape_pct"].as_f64().unwrap() - 1.03766).abs() < 1e-4);
    // PCIe copies whose window holds a 1 ms NVML sample: 1 MiB and up, both directions.
    let pcie = json["pcie"].as_array().unwrap();
    assert_eq!(pcie.len(), 10);
    assert!(
        pcie.iter()
            .all(|c| c["error_pct"].as_f64().unwrap().abs() < 2.0)
    );
    assert_eq!(
        json["warnings"][0],
        "hbm-copy: bytes 1073741824 outside the calibrated range 1048576..268435456; scaling the largest measured point linearly"
    );
    let strict = moesim(&[
        "validate",
        "--measurements",
        measurements,
        "--calibration",
        calibration.to_str().unwrap(),
        "-o",
        dir.path().join("strict").to_str().unwrap(),
        "--max-mape",
        "1.0",
    ]);
    assert_fails_with(&strict, &["held-out MAPE 1.02% exceeds --max-mape 1%"]);
    let md = fs::read_to_string(out.join("validation.md")).unwrap();
    assert!(md.contains("**SYNTHETIC DATA"));
    assert!(md.contains("| h2d | 1048576 | 38.82 | 39.58 | +1.94 |"));
    let mut files: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files.len(), 24, "{files:?}");
    for chart in [
        "gemm_768x3072",
        "gemm_14336x4096",
        "error_per_point",
        "pcie_counter",
    ] {
        assert!(files.contains(&format!("{chart}.png")), "{chart}");
        assert!(files.contains(&format!("{chart}.svg")), "{chart}");
    }
}

#[test]
fn profile_without_a_driver_prints_one_line_and_writes_nothing() {
    if driver_present() {
        eprintln!("skipping: an NVIDIA driver is present");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prof");
    let run = moesim(&["profile", "--out", out.to_str().unwrap()]);
    assert_fails_with(&run, &[]);
    assert_eq!(
        stderr(&run),
        "error: moesim profile needs a GPU: no NVIDIA driver found (libcuda could not be loaded)\n"
    );
    assert!(stdout(&run).is_empty());
    assert!(!out.exists());
}

#[test]
fn non_increasing_calibration_tokens_name_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let calibration = dir.path().join("bad.toml");
    fs::write(
        &calibration,
        "gpu = \"g\"\ndriver = \"d\"\ndate = \"x\"\nsource = \"synthetic\"\nfit_half = \"even\"\n\
         [[gemm]]\nk = 1\nn = 2\ntokens = [1, 4, 4]\ntime_ns = [5, 6, 7]\n",
    )
    .unwrap();
    let run = moesim(&[
        "validate",
        "--measurements",
        fixture("measurements.parquet").to_str().unwrap(),
        "--calibration",
        calibration.to_str().unwrap(),
        "-o",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert_fails_with(
        &run,
        &[
            "bad.toml",
            "`gemm[0] (1x2).tokens` must be strictly increasing: 4 then 4 at positions 1 and 2",
        ],
    );
    assert!(!dir.path().join("out").exists());
}

#[test]
fn measurements_with_a_missing_column_or_unknown_kind_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("c.toml");
    let calibrate = |path: &Path| {
        moesim(&[
            "calibrate",
            "--measurements",
            path.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ])
    };
    // The counter file is Parquet but not a measurement file.
    let counters = fixture("counters.parquet");
    assert_fails_with(
        &calibrate(&counters),
        &["counters.parquet", "missing column `kind`"],
    );

    use polars::prelude::SerReader;
    let mut frame = polars::prelude::ParquetReader::new(
        fs::File::open(fixture("measurements.parquet")).unwrap(),
    )
    .finish()
    .unwrap();
    let mut kinds = vec!["gemm"; frame.height()];
    kinds[3] = "gemv";
    frame
        .replace("kind", polars::prelude::Column::new("kind".into(), kinds))
        .unwrap();
    let bad = dir.path().join("bad.parquet");
    moesim::output::write_parquet_frame(&bad, &mut frame).unwrap();
    assert_fails_with(
        &calibrate(&bad),
        &["bad.parquet", "column `kind`, row 3: unknown kind `gemv`"],
    );
    assert!(!output.exists());
}

#[test]
fn a_scenario_with_a_calibration_times_experts_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let fit = moesim(&[
        "calibrate",
        "--measurements",
        fixture("measurements.parquet").to_str().unwrap(),
        "-o",
        dir.path().join("cal.toml").to_str().unwrap(),
        "--fit-half",
        "all",
    ]);
    assert_eq!(fit.status.code(), Some(0), "{}", stderr(&fit));
    let trace = Path::new(env!("CARGO_MANIFEST_DIR")).join("traces/quickstart.parquet");
    let scenario = |calibration: &str| {
        format!(
            "name = \"cal\"\nseed = 7\nmodel = \"olmoe-1b-7b\"\ncluster = \"dgx-h100\"\n\
             tokens_per_gpu = 256\nplacements = [\"contiguous\"]\n[trace]\nfile = {trace:?}\n\
             [sim]\noverlap = [\"none\"]\n{calibration}"
        )
    };
    let expert_ns = |name: &str, calibration: &str| {
        let path = dir.path().join(name);
        fs::write(&path, scenario(calibration)).unwrap();
        let run = moesim(&["simulate", path.to_str().unwrap(), "--json"]);
        assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
        let json: serde_json::Value = serde_json::from_str(&stdout(&run)).unwrap();
        (
            json["strategies"][0]["layers"][0]["expert_ns"]
                .as_u64()
                .unwrap(),
            stderr(&run),
        )
    };
    let (roofline, quiet) = expert_ns("roofline.toml", "");
    // Relative to the scenario file.
    let (calibrated, warnings) = expert_ns("calibrated.toml", "calibration = \"cal.toml\"\n");
    assert!(quiet.is_empty(), "{quiet}");
    // The synthetic GEMMs are the roofline plus a 3 us launch each (and +-2% noise), so the
    // calibrated experts take longer.
    assert!(calibrated > roofline, "{calibrated} vs {roofline}");
    // Attention and gate are not expert GEMMs: they stay on the kernel model, said once each.
    assert!(warnings.contains("the kernel model is used"), "{warnings}");
}
