//! The calibration file (TOML) the simulator's cost model loads, and how `moesim calibrate`
//! fits it from measurements.
//!
//! ```toml
//! gpu = "NVIDIA H100 80GB HBM3"   # provenance, copied from the measurements
//! driver = "580.65"
//! date = "2026-11-23"
//! source = "measured"             # or "synthetic"
//! fit_half = "even"               # which half of the shapes was fitted ("all": every shape)
//!
//! [[gemm]]                        # one measured table per GEMM shape [tokens, k] x [k, n]
//! k = 4096
//! n = 28672
//! tokens = [1, 2, 4]              # strictly increasing
//! time_ns = [120000, 121000, 125000]
//!
//! [gemm_model]                    # cross-shape fit for shapes without a table, per token
//! tokens = [1, 2, 4]              # count: time = intercept_ns + ns_per_weight * k * n
//! intercept_ns = [3000.0, 3000.0, 3100.0]
//! ns_per_weight = [0.00066, 0.00066, 0.00067]
//!
//! [[copy]]                        # one table per copy kind: hbm-copy, h2d, d2h
//! kind = "h2d"
//! bytes = [65536, 262144]         # strictly increasing
//! gbps = [8.1, 25.0]              # bytes / median time (1 GB/s = 1 byte/ns)
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::measurement::{Kind, Measurement, Measurements};
use crate::error::{Error, Result, parse_toml};
use crate::output::write_bytes_atomic;
use crate::topology::DataType;

/// Which half of the shapes `moesim calibrate` fits; the other half is held out for validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FitHalf {
    /// Shapes 0, 2, 4, ... of each kind (sorted by `(k, n)` or by bytes).
    Even,
    /// Shapes 1, 3, 5, ...
    Odd,
    /// Every shape (nothing held out).
    All,
}

impl FitHalf {
    /// Whether the `index`-th shape of a kind is fitted.
    pub fn fits(self, index: usize) -> bool {
        match self {
            FitHalf::Even => index.is_multiple_of(2),
            FitHalf::Odd => !index.is_multiple_of(2),
            FitHalf::All => true,
        }
    }
}

/// Measured times of one GEMM shape by token count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GemmTable {
    /// Format the GEMM multiplies in. `moesim profile` measures BF16 (written without the key);
    /// a table with `dtype = "fp8"` (say, DeepGEMM's benchmark on the same GPU, transcribed)
    /// times the FP8 GEMMs of that shape.
    #[serde(default, skip_serializing_if = "is_bf16")]
    pub dtype: DataType,
    /// Inner dimension.
    pub k: u64,
    /// Output columns.
    pub n: u64,
    /// Token counts, strictly increasing.
    pub tokens: Vec<u64>,
    /// Median time at each token count.
    pub time_ns: Vec<u64>,
}

/// Whether a table's `dtype` is the default, left out of the TOML.
fn is_bf16(dtype: &DataType) -> bool {
    *dtype == DataType::Bf16
}

/// The cross-shape GEMM model: at each token count, `time = intercept_ns + ns_per_weight * k n`,
/// fitted over the measured shapes. Both the memory-bound time (weight reads) and the
/// compute-bound time (`2 tokens k n` FLOPs) grow with `k n` at a fixed token count; the
/// intercept is the launch and tail cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GemmModel {
    /// Token counts, strictly increasing.
    pub tokens: Vec<u64>,
    /// Fixed time at each token count.
    pub intercept_ns: Vec<f64>,
    /// Time per weight (`k n`) at each token count.
    pub ns_per_weight: Vec<f64>,
}

/// Measured bandwidth of one copy kind by size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyTable {
    /// `hbm-copy`, `h2d` or `d2h`.
    pub kind: Kind,
    /// Buffer sizes, strictly increasing.
    pub bytes: Vec<u64>,
    /// Achieved bandwidth at each size (bytes / median time), GB/s.
    pub gbps: Vec<f64>,
}

/// A calibration: measured tables plus the cross-shape fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// GPU the measurements ran on.
    pub gpu: String,
    /// Driver version of that run.
    pub driver: String,
    /// UTC date of that run.
    pub date: String,
    /// `measured` or `synthetic`.
    pub source: String,
    /// The half of the shapes fitted.
    pub fit_half: FitHalf,
    /// Per-shape GEMM tables.
    #[serde(default)]
    pub gemm: Vec<GemmTable>,
    /// Cross-shape GEMM fit (absent when no GEMM was measured).
    #[serde(default)]
    pub gemm_model: Option<GemmModel>,
    /// Per-kind copy tables.
    #[serde(default)]
    pub copy: Vec<CopyTable>,
}

impl Calibration {
    /// Fits a calibration on the `half` of `measurements`' shapes; gating rows are not fitted.
    pub fn fit(measurements: &Measurements, half: FitHalf) -> Result<Calibration> {
        let (gemm_rows, _) = split_gemm(&measurements.rows, half);
        let gemm: Vec<GemmTable> = gemm_rows
            .into_iter()
            .map(|((k, n), rows)| GemmTable {
                dtype: DataType::Bf16,
                k,
                n,
                tokens: rows.iter().map(|r| r.tokens).collect(),
                time_ns: rows.iter().map(|r| r.median_ns).collect(),
            })
            .collect();
        let gemm_model = fit_gemm_model(&gemm);
        let copy = [Kind::HbmCopy, Kind::H2d, Kind::D2h]
            .into_iter()
            .filter_map(|kind| {
                let (fitted, _) = split_copies(&measurements.rows, kind, half);
                (!fitted.is_empty()).then(|| CopyTable {
                    kind,
                    bytes: fitted.iter().map(|r| r.bytes).collect(),
                    gbps: fitted
                        .iter()
                        .map(|r| r.bytes as f64 / r.median_ns as f64)
                        .collect(),
                })
            })
            .collect();
        let calibration = Calibration {
            gpu: measurements.provenance.gpu.clone(),
            driver: measurements.provenance.driver.clone(),
            date: measurements.provenance.date.clone(),
            source: measurements.provenance.source.clone(),
            fit_half: half,
            gemm,
            gemm_model,
            copy,
        };
        calibration.check().map_err(Error::invalid)?;
        Ok(calibration)
    }

    /// Reads and checks a calibration file; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Calibration> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let calibration: Calibration =
            parse_toml(&text).map_err(|message| Error::bad_file(path, message))?;
        calibration
            .check()
            .map_err(|message| Error::bad_file(path, message))?;
        Ok(calibration)
    }

    /// Writes the calibration as TOML, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = toml::to_string(self)
            .map_err(|e| Error::invalid(format!("cannot encode calibration: {e}")))?;
        write_bytes_atomic(path, text.as_bytes())
    }

    /// Checks what serde cannot: increasing axes, matching lengths, positive values.
    pub fn check(&self) -> std::result::Result<(), String> {
        for (index, table) in self.gemm.iter().enumerate() {
            let field = format!("gemm[{index}] ({}x{})", table.k, table.n);
            check_axis(&field, "tokens", &table.tokens)?;
            check_len(&field, "time_ns", table.time_ns.len(), table.tokens.len())?;
            if table.time_ns.contains(&0) {
                return Err(format!("`{field}.time_ns` must be positive"));
            }
        }
        if let Some(model) = &self.gemm_model {
            check_axis("gemm_model", "tokens", &model.tokens)?;
            check_len(
                "gemm_model",
                "intercept_ns",
                model.intercept_ns.len(),
                model.tokens.len(),
            )?;
            check_len(
                "gemm_model",
                "ns_per_weight",
                model.ns_per_weight.len(),
                model.tokens.len(),
            )?;
            if !model
                .intercept_ns
                .iter()
                .chain(&model.ns_per_weight)
                .all(|v| v.is_finite())
            {
                return Err("`gemm_model` values must be finite".into());
            }
        }
        for (index, table) in self.copy.iter().enumerate() {
            let field = format!("copy[{index}] ({})", table.kind.name());
            if !table.kind.is_copy() {
                return Err(format!("`{field}.kind` must be hbm-copy, h2d or d2h"));
            }
            check_axis(&field, "bytes", &table.bytes)?;
            check_len(&field, "gbps", table.gbps.len(), table.bytes.len())?;
            if !table.gbps.iter().all(|&g| g.is_finite() && g > 0.0) {
                return Err(format!("`{field}.gbps` must be positive"));
            }
        }
        Ok(())
    }
}

/// Errors unless `values` is non-empty and strictly increasing.
fn check_axis(field: &str, name: &str, values: &[u64]) -> std::result::Result<(), String> {
    if values.is_empty() {
        return Err(format!("`{field}.{name}` is empty"));
    }
    match values.windows(2).position(|w| w[0] >= w[1]) {
        Some(i) => Err(format!(
            "`{field}.{name}` must be strictly increasing: {} then {} at positions {i} and {}",
            values[i],
            values[i + 1],
            i + 1
        )),
        None => Ok(()),
    }
}

fn check_len(
    field: &str,
    name: &str,
    len: usize,
    expected: usize,
) -> std::result::Result<(), String> {
    if len == expected {
        Ok(())
    } else {
        Err(format!(
            "`{field}.{name}` has {len} values for {expected} points"
        ))
    }
}

/// GEMM rows grouped by `(k, n)` (token order), split into the fitted and the held-out half.
pub type GemmGroups<'a> = BTreeMap<(u64, u64), Vec<&'a Measurement>>;

/// Splits the GEMM rows by shape: shapes sorted by `(k, n)`, alternating by `half`.
pub fn split_gemm(rows: &[Measurement], half: FitHalf) -> (GemmGroups<'_>, GemmGroups<'_>) {
    let mut groups: GemmGroups = BTreeMap::new();
    for row in rows.iter().filter(|r| r.kind == Kind::Gemm) {
        groups.entry((row.k, row.n)).or_default().push(row);
    }
    let (mut fitted, mut held_out) = (BTreeMap::new(), BTreeMap::new());
    for (index, (key, mut group)) in groups.into_iter().enumerate() {
        group.sort_by_key(|r| r.tokens);
        if half.fits(index) {
            fitted.insert(key, group);
        } else {
            held_out.insert(key, group);
        }
    }
    (fitted, held_out)
}

/// Splits the rows of one copy kind by size (sorted), alternating by `half`.
pub fn split_copies(
    rows: &[Measurement],
    kind: Kind,
    half: FitHalf,
) -> (Vec<&Measurement>, Vec<&Measurement>) {
    let mut of_kind: Vec<&Measurement> = rows.iter().filter(|r| r.kind == kind).collect();
    of_kind.sort_by_key(|r| r.bytes);
    let (mut fitted, mut held_out) = (Vec::new(), Vec::new());
    for (index, row) in of_kind.into_iter().enumerate() {
        if half.fits(index) {
            fitted.push(row);
        } else {
            held_out.push(row);
        }
    }
    (fitted, held_out)
}

/// Fits [`GemmModel`] at every token count measured for at least one shape: a least-squares line
/// of time against `k n` weighted by `1 / time^2`, so it minimises relative (not absolute)
/// error and a 10 us GEMM counts as much as a 10 ms one. With one shape (or all shapes of one
/// size) the intercept is 0 and the slope the mean time per weight.
pub fn fit_gemm_model(tables: &[GemmTable]) -> Option<GemmModel> {
    let mut points: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
    for table in tables {
        for (&tokens, &time) in table.tokens.iter().zip(&table.time_ns) {
            let weights = (table.k * table.n) as f64;
            points
                .entry(tokens)
                .or_default()
                .push((weights, time as f64));
        }
    }
    if points.is_empty() {
        return None;
    }
    let mut model = GemmModel {
        tokens: Vec::new(),
        intercept_ns: Vec::new(),
        ns_per_weight: Vec::new(),
    };
    for (tokens, pairs) in points {
        let (intercept, slope) = relative_least_squares(&pairs);
        model.tokens.push(tokens);
        model.intercept_ns.push(intercept);
        model.ns_per_weight.push(slope);
    }
    Some(model)
}

/// `(a, b)` minimising `sum ((a + b x - y) / y)^2` over `(x, y)` pairs with `y > 0`; falls back
/// to `(0, mean(y / x))` when the `x` do not vary.
fn relative_least_squares(pairs: &[(f64, f64)]) -> (f64, f64) {
    // Normal equations with weights w = 1 / y^2.
    let (mut sw, mut swx, mut swxx, mut swy, mut swxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(x, y) in pairs {
        let w = 1.0 / (y * y);
        sw += w;
        swx += w * x;
        swxx += w * x * x;
        swy += w * y;
        swxy += w * x * y;
    }
    let det = sw * swxx - swx * swx;
    if det.abs() <= 1e-12 * sw * swxx {
        let slope = pairs.iter().map(|&(x, y)| y / x).sum::<f64>() / pairs.len() as f64;
        return (0.0, slope);
    }
    let slope = (sw * swxy - swx * swy) / det;
    let intercept = (swy - slope * swx) / sw;
    (intercept, slope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::measurement::Provenance;

    fn row(kind: Kind, (k, n, tokens, bytes): (u64, u64, u64, u64), median_ns: u64) -> Measurement {
        let shape = format!("{k}x{n}");
        Measurement::test_point(kind, shape, (k, n, tokens, bytes), median_ns)
    }

    /// GEMM shapes 10x10, 10x20, 20x20 at 1 and 2 tokens; h2d at 100, 200 and 400 bytes.
    fn hand_made() -> Measurements {
        let gemm = |k, n, tokens, ns| row(Kind::Gemm, (k, n, tokens, 2 * k * n), ns);
        let h2d = |bytes, ns| row(Kind::H2d, (0, 0, 0, bytes), ns);
        Measurements {
            provenance: Provenance::hand_made(),
            rows: vec![
                gemm(20, 20, 2, 1800),
                gemm(20, 20, 1, 1400),
                gemm(10, 10, 1, 1100),
                gemm(10, 10, 2, 1200),
                gemm(10, 20, 1, 9999),
                h2d(400, 40),
                h2d(100, 10),
                h2d(200, 99),
            ],
        }
    }

    #[test]
    fn even_half_fits_shapes_zero_and_two_in_sorted_order() {
        let calibration = Calibration::fit(&hand_made(), FitHalf::Even).unwrap();
        let shapes: Vec<(u64, u64, &[u64], &[u64])> = calibration
            .gemm
            .iter()
            .map(|t| (t.k, t.n, t.tokens.as_slice(), t.time_ns.as_slice()))
            .collect();
        assert_eq!(
            shapes,
            [
                (10, 10, &[1, 2][..], &[1100, 1200][..]),
                (20, 20, &[1, 2][..], &[1400, 1800][..])
            ]
        );
        // Two shapes per token count: an exact line. 1 token: 100 weights -> 1100, 400 -> 1400:
        // slope 1, intercept 1000. 2 tokens: 1200 and 1800: slope 2, intercept 1000.
        let model = calibration.gemm_model.unwrap();
        assert_eq!(model.tokens, [1, 2]);
        for (got, want) in model.intercept_ns.iter().zip([1000.0, 1000.0]) {
            assert!((got - want).abs() < 1e-6, "{got}");
        }
        for (got, want) in model.ns_per_weight.iter().zip([1.0, 2.0]) {
            assert!((got - want).abs() < 1e-9, "{got}");
        }
        // h2d sizes 100 and 400 (the 200-byte one is held out): 10 GB/s both.
        assert_eq!(calibration.copy.len(), 1);
        assert_eq!(calibration.copy[0].bytes, [100, 400]);
        assert_eq!(calibration.copy[0].gbps, [10.0, 10.0]);
    }

    #[test]
    fn odd_half_fits_the_middle_shape_alone_with_a_pure_slope() {
        let calibration = Calibration::fit(&hand_made(), FitHalf::Odd).unwrap();
        assert_eq!(calibration.gemm.len(), 1);
        let model = calibration.gemm_model.unwrap();
        // One shape of 200 weights at 9999 ns: intercept 0, 49.995 ns per weight.
        assert_eq!(model.tokens, [1]);
        assert_eq!(model.intercept_ns, [0.0]);
        assert_eq!(model.ns_per_weight, [49.995]);
        assert_eq!(calibration.copy[0].bytes, [200]);
    }

    #[test]
    fn relative_least_squares_weights_errors_by_size() {
        // Points on y = 10 + 2x except one 10% high: minimising relative error pulls the line
        // less towards the large point than absolute least squares would.
        let (a, b) = relative_least_squares(&[(1.0, 12.0), (2.0, 14.0), (100.0, 231.0)]);
        let relative = |a: f64, b: f64| {
            [(1.0, 12.0), (2.0, 14.0), (100.0, 231.0)]
                .iter()
                .map(|&(x, y): &(f64, f64)| ((a + b * x - y) / y).powi(2))
                .sum::<f64>()
        };
        // The fitted line beats small moves of either coefficient.
        for (da, db) in [(0.01, 0.0), (-0.01, 0.0), (0.0, 0.001), (0.0, -0.001)] {
            assert!(relative(a, b) < relative(a + da, b + db));
        }
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calibration.toml");
        let calibration = Calibration::fit(&hand_made(), FitHalf::All).unwrap();
        calibration.save(&path).unwrap();
        assert_eq!(Calibration::load(&path).unwrap(), calibration);
    }

    #[test]
    fn check_names_the_field_at_fault() {
        let mut calibration = Calibration::fit(&hand_made(), FitHalf::Even).unwrap();
        calibration.gemm[1].tokens = vec![2, 2];
        assert_eq!(
            calibration.check().unwrap_err(),
            "`gemm[1] (20x20).tokens` must be strictly increasing: 2 then 2 at positions 0 and 1"
        );
        calibration.gemm[1].tokens = vec![1, 2, 3];
        assert_eq!(
            calibration.check().unwrap_err(),
            "`gemm[1] (20x20).time_ns` has 2 values for 3 points"
        );
        calibration.gemm.clear();
        calibration.copy[0].gbps = vec![10.0, 0.0];
        assert_eq!(
            calibration.check().unwrap_err(),
            "`copy[0] (h2d).gbps` must be positive"
        );
    }
}
