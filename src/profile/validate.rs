//! `moesim validate`: predicts the held-out half of a measurement file with a calibration and
//! compares, point by point.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::calibrated::CalibratedCompute;
use super::calibration::{Calibration, FitHalf, split_copies, split_gemm};
use super::counters::{PcieDirection, PcieSample, mean_in_window};
use super::measurement::{Kind, Measurement, Measurements};
use crate::charts::{ChartLabels, Series, line_chart};
use crate::error::{Error, Result};
use crate::output::write_bytes_atomic;
use crate::topology::DataType;

/// The mean absolute percentage error the calibration aims at on the held-out half.
pub const TARGET_MAPE_PCT: f64 = 5.0;

/// One held-out measurement against its prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationPoint {
    /// What was timed.
    pub kind: Kind,
    /// The measurement's shape label.
    pub shape: String,
    /// GEMM inner dimension (0 for copies).
    pub k: u64,
    /// GEMM output columns (0 for copies).
    pub n: u64,
    /// Tokens (GEMMs).
    pub tokens: u64,
    /// Bytes (copies; GEMM weight bytes).
    pub bytes: u64,
    /// Measured median.
    pub measured_ns: u64,
    /// The calibrated model's time.
    pub simulated_ns: u64,
    /// `(simulated - measured) / measured`, percent.
    pub error_pct: f64,
}

/// Error summary of one kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindSummary {
    /// The kind.
    pub kind: Kind,
    /// Held-out points of it.
    pub points: usize,
    /// Their mean absolute percentage error.
    pub mape_pct: f64,
}

/// A PCIe copy's bandwidth from CUDA events against the NVML PCIe counter over its window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PcieCheck {
    /// `h2d` (NVML RX) or `d2h` (NVML TX).
    pub kind: Kind,
    /// Buffer size.
    pub bytes: u64,
    /// `bytes / median time`.
    pub events_gbps: f64,
    /// Mean NVML throughput over the samples inside the copy's window.
    pub nvml_gbps: f64,
    /// `(nvml - events) / events`, percent.
    pub error_pct: f64,
}

/// The outcome of a validation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Validation {
    /// `measured` or `synthetic`, from the measurement file.
    pub source: String,
    /// GPU of the measurements.
    pub gpu: String,
    /// Date of the measurements.
    pub date: String,
    /// The half the calibration was fitted on.
    pub fit_half: FitHalf,
    /// The half compared here (the other one; `all` when the calibration used every shape, then
    /// the comparison is in-sample).
    pub compared_half: FitHalf,
    /// Mean absolute percentage error over all compared points.
    pub mape_pct: f64,
    /// Per kind.
    pub kinds: Vec<KindSummary>,
    /// Every compared point.
    pub points: Vec<ValidationPoint>,
    /// PCIe copies with an NVML counter reading (empty without a counter file).
    pub pcie: Vec<PcieCheck>,
    /// Measurement rows not compared (gating kernel rows have no calibrated model yet).
    pub skipped_rows: usize,
    /// Warnings of the calibrated model (queries outside the measured range).
    pub warnings: Vec<String>,
}

/// Compares the half of `measurements` that `calibration` did not fit with its predictions.
pub fn validate(
    measurements: &Measurements,
    calibration: Calibration,
    counters: Option<&[PcieSample]>,
) -> Result<Validation> {
    let fit_half = calibration.fit_half;
    let compared_half = match fit_half {
        FitHalf::Even => FitHalf::Odd,
        FitHalf::Odd => FitHalf::Even,
        FitHalf::All => FitHalf::All,
    };
    let compute = CalibratedCompute::new(calibration, &[]);
    let rows = &measurements.rows;
    let (held_gemm, _) = split_gemm(rows, compared_half);
    let mut points = Vec::new();
    for row in held_gemm.values().flatten() {
        let simulated = compute.gemm_time_ns(DataType::Bf16, row.k, row.n, row.tokens as f64);
        points.push(point(row, simulated, "a GEMM model")?);
    }
    let mut copy_rows = Vec::new();
    for kind in [Kind::HbmCopy, Kind::H2d, Kind::D2h] {
        let (held, _) = split_copies(rows, kind, compared_half);
        for row in held {
            let simulated = compute.copy_time_ns(kind, row.bytes);
            points.push(point(row, simulated, "a copy table of this kind")?);
            copy_rows.push(row);
        }
    }
    if points.is_empty() {
        return Err(Error::invalid(
            "validate: no held-out GEMM or copy rows to compare (the measurements have no shape in the half the calibration left out)",
        ));
    }
    let kinds = Kind::ALL
        .into_iter()
        .filter_map(|kind| {
            let of_kind: Vec<&ValidationPoint> = points.iter().filter(|p| p.kind == kind).collect();
            (!of_kind.is_empty()).then(|| KindSummary {
                kind,
                points: of_kind.len(),
                mape_pct: mape(of_kind.iter().copied()),
            })
        })
        .collect();
    let pcie = counters.map_or_else(Vec::new, |samples| pcie_checks(rows, samples));
    Ok(Validation {
        source: measurements.provenance.source.clone(),
        gpu: measurements.provenance.gpu.clone(),
        date: measurements.provenance.date.clone(),
        fit_half,
        compared_half,
        mape_pct: mape(points.iter()),
        kinds,
        skipped_rows: rows.iter().filter(|r| r.kind == Kind::Gating).count(),
        points,
        pcie,
        warnings: compute.warnings(),
    })
}

fn point(row: &Measurement, simulated: Option<u64>, missing: &str) -> Result<ValidationPoint> {
    let simulated_ns = simulated.ok_or_else(|| {
        Error::invalid(format!(
            "validate: the calibration has no {missing} to predict `{}`",
            row.shape
        ))
    })?;
    Ok(ValidationPoint {
        kind: row.kind,
        shape: row.shape.clone(),
        k: row.k,
        n: row.n,
        tokens: row.tokens,
        bytes: row.bytes,
        measured_ns: row.median_ns,
        simulated_ns,
        error_pct: (simulated_ns as f64 - row.median_ns as f64) / row.median_ns as f64 * 100.0,
    })
}

fn mape<'a>(points: impl Iterator<Item = &'a ValidationPoint>) -> f64 {
    let (sum, count) = points.fold((0.0, 0), |(s, c), p| (s + p.error_pct.abs(), c + 1));
    if count == 0 { 0.0 } else { sum / count as f64 }
}

/// Every PCIe copy (fitted or not: this checks the counter, not the calibration) whose window
/// holds NVML samples: h2d against RX, d2h against TX.
fn pcie_checks(rows: &[Measurement], samples: &[PcieSample]) -> Vec<PcieCheck> {
    rows.iter()
        .filter(|r| matches!(r.kind, Kind::H2d | Kind::D2h))
        .filter_map(|row| {
            let (start, end) = row.start_ns.zip(row.end_ns)?;
            let direction = if row.kind == Kind::H2d {
                PcieDirection::Rx
            } else {
                PcieDirection::Tx
            };
            let nvml_gbps = mean_in_window(samples, start, end, direction)? / 1e9;
            let events_gbps = row.bytes as f64 / row.median_ns as f64;
            Some(PcieCheck {
                kind: row.kind,
                bytes: row.bytes,
                events_gbps,
                nvml_gbps,
                error_pct: (nvml_gbps - events_gbps) / events_gbps * 100.0,
            })
        })
        .collect()
}

/// Writes `validation.json`, `validation.md` and the charts into `dir`; returns the files.
pub fn write_validation(validation: &Validation, dir: &Path) -> Result<Vec<PathBuf>> {
    let json_path = dir.join("validation.json");
    let json = serde_json::to_string_pretty(validation)
        .map_err(|e| Error::invalid(format!("cannot encode validation: {e}")))?;
    write_bytes_atomic(&json_path, json.as_bytes())?;
    let md_path = dir.join("validation.md");
    write_bytes_atomic(&md_path, markdown(validation).as_bytes())?;
    let mut files = vec![json_path, md_path];
    files.extend(write_charts(validation, dir)?);
    Ok(files)
}

fn write_charts(validation: &Validation, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut shapes: Vec<(u64, u64)> = validation
        .points
        .iter()
        .filter(|p| p.kind == Kind::Gemm)
        .map(|p| (p.k, p.n))
        .collect();
    shapes.dedup();
    for (k, n) in shapes {
        let of_shape: Vec<&ValidationPoint> = validation
            .points
            .iter()
            .filter(|p| p.kind == Kind::Gemm && (p.k, p.n) == (k, n))
            .collect();
        let micros = |f: fn(&ValidationPoint) -> u64| -> Vec<f64> {
            of_shape.iter().map(|p| f(p) as f64 / 1e3).collect()
        };
        let (measured, simulated) = (micros(|p| p.measured_ns), micros(|p| p.simulated_ns));
        let title = format!("GEMM {k}x{n}: simulated vs measured");
        let labels = ChartLabels {
            title: &title,
            x: "token-count index (tokens in validation.md)",
            y: "time (us)",
        };
        let series = [
            Series {
                name: "measured",
                values: &measured,
            },
            Series {
                name: "simulated",
                values: &simulated,
            },
        ];
        files.extend(line_chart(
            &dir.join(format!("gemm_{k}x{n}")),
            labels,
            &series,
        )?);
    }
    let errors: Vec<f64> = validation
        .points
        .iter()
        .map(|p| p.error_pct.abs())
        .collect();
    let labels = ChartLabels {
        title: "Absolute error per held-out point",
        x: "point (order of validation.md)",
        y: "|error| (%)",
    };
    files.extend(line_chart(
        &dir.join("error_per_point"),
        labels,
        &[Series {
            name: "|simulated - measured| / measured",
            values: &errors,
        }],
    )?);
    if !validation.pcie.is_empty() {
        let events: Vec<f64> = validation.pcie.iter().map(|c| c.events_gbps).collect();
        let nvml: Vec<f64> = validation.pcie.iter().map(|c| c.nvml_gbps).collect();
        let labels = ChartLabels {
            title: "PCIe copies: CUDA-event bandwidth vs NVML counter",
            x: "copy (order of validation.md)",
            y: "GB/s",
        };
        let series = [
            Series {
                name: "CUDA events",
                values: &events,
            },
            Series {
                name: "NVML PCIe counter",
                values: &nvml,
            },
        ];
        files.extend(line_chart(&dir.join("pcie_counter"), labels, &series)?);
    }
    Ok(files)
}

fn markdown(v: &Validation) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Calibration validation\n");
    if v.source == "synthetic" {
        let _ = writeln!(
            md,
            "**SYNTHETIC DATA: these measurements were generated from the roofline plus noise, \
             not measured on a GPU.**\n"
        );
    }
    let _ = writeln!(md, "- GPU: {}\n- date: {}", v.gpu, v.date);
    let _ = writeln!(
        md,
        "- fitted half: {:?}, compared half: {:?}\n- mean absolute percentage error: **{:.2}%** \
         over {} points (target <= {TARGET_MAPE_PCT}%)",
        v.fit_half,
        v.compared_half,
        v.mape_pct,
        v.points.len()
    );
    if v.skipped_rows > 0 {
        let _ = writeln!(md, "- not compared: {} gating-kernel rows", v.skipped_rows);
    }
    let _ = writeln!(md, "\n| kind | points | MAPE % |\n|---|---:|---:|");
    for s in &v.kinds {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} |",
            s.kind.name(),
            s.points,
            s.mape_pct
        );
    }
    let _ = writeln!(
        md,
        "\n## Points\n\n| shape | tokens | bytes | measured ns | simulated ns | error % |\n|---|---:|---:|---:|---:|---:|"
    );
    for p in &v.points {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:+.2} |",
            p.shape, p.tokens, p.bytes, p.measured_ns, p.simulated_ns, p.error_pct
        );
    }
    if !v.pcie.is_empty() {
        let _ = writeln!(
            md,
            "\n## PCIe: CUDA events vs NVML counter\n\n| kind | bytes | events GB/s | NVML GB/s | difference % |\n|---|---:|---:|---:|---:|"
        );
        for c in &v.pcie {
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} | {:.2} | {:+.2} |",
                c.kind.name(),
                c.bytes,
                c.events_gbps,
                c.nvml_gbps,
                c.error_pct
            );
        }
    }
    if !v.warnings.is_empty() {
        let _ = writeln!(md, "\n## Warnings\n");
        for w in &v.warnings {
            let _ = writeln!(md, "- {w}");
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::measurement::Provenance;

    fn row(kind: Kind, (k, n, tokens, bytes): (u64, u64, u64, u64), median_ns: u64) -> Measurement {
        let shape = format!("{} {k}x{n} {bytes}", kind.name());
        Measurement::test_point(kind, shape, (k, n, tokens, bytes), median_ns)
    }

    #[test]
    fn the_held_out_half_is_predicted_and_scored_by_hand() {
        let measurements = Measurements {
            provenance: Provenance::hand_made(),
            rows: vec![
                row(Kind::Gemm, (10, 10, 1, 200), 1100),
                row(Kind::Gemm, (10, 20, 1, 400), 9999),
                row(Kind::Gemm, (20, 20, 1, 800), 1400),
                row(Kind::H2d, (0, 0, 0, 100), 10),
                row(Kind::H2d, (0, 0, 0, 200), 99),
                row(Kind::H2d, (0, 0, 0, 400), 40),
                row(Kind::Gating, (2048, 64, 16, 0), 5000),
            ],
        };
        let calibration = Calibration::fit(&measurements, FitHalf::Even).unwrap();
        let validation = validate(&measurements, calibration, None).unwrap();
        assert_eq!(validation.compared_half, FitHalf::Odd);
        // 10x20 is held out: the fit through 10x10 (100 weights, 1100 ns) and 20x20 (400, 1400)
        // is 1000 + 1 ns per weight: 1200 ns against 9999, -87.9988%.
        // h2d 200 B is held out: 10 ns at 100 B and 40 ns at 400 B give 20 ns against 99, -79.798%.
        let got: Vec<(Kind, u64, u64)> = validation
            .points
            .iter()
            .map(|p| (p.kind, p.measured_ns, p.simulated_ns))
            .collect();
        assert_eq!(got, [(Kind::Gemm, 9999, 1200), (Kind::H2d, 99, 20)]);
        let want = ((9999.0 - 1200.0) / 9999.0 + (99.0 - 20.0) / 99.0) / 2.0 * 100.0;
        assert!(
            (validation.mape_pct - want).abs() < 1e-9,
            "{}",
            validation.mape_pct
        );
        assert!((validation.mape_pct - 83.8984).abs() < 1e-4);
        assert_eq!(validation.skipped_rows, 1);
        assert!(validation.pcie.is_empty());
    }
}
