//! The measurement file (`measurements.parquet`): one row per (kind, shape, tokens or bytes),
//! written by `moesim profile` and read by `moesim calibrate` and `moesim validate`.
//!
//! Columns (every row carries the provenance columns, so a single row names its GPU and date):
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `kind` | str | `gemm`, `hbm-copy`, `h2d`, `d2h` or `gating` ([`Kind`]) |
//! | `shape` | str | human label: `gemm 4096x28672 (mixtral-8x7b gate_up)`, `h2d 1048576 B` |
//! | `k` | u64 | GEMM inner dimension (hidden size for gate/up); gating: hidden size; copies 0 |
//! | `n` | u64 | GEMM output columns; gating: experts; copies 0 |
//! | `tokens` | u64 | GEMM / gating rows (tokens); copies 0 |
//! | `bytes` | u64 | copies: the buffer size (an HBM copy reads and writes it, moving twice that); GEMM: the bf16 weights `2 k n` |
//! | `reps` | u32 | timed repetitions (after warm-up) |
//! | `median_ns`, `min_ns`, `max_ns` | u64 | median and spread of one repetition |
//! | `start_ns`, `end_ns` | u64, null | host-clock window of the repetitions, on the clock the NVML samples use (see `profile` module docs); null when unknown |
//! | `gpu`, `driver`, `date`, `source` | str | GPU name, driver version, UTC date, `measured` or `synthetic` |

use std::fs;
use std::path::Path;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::output::write_parquet_frame;

/// What a measurement row timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// One bf16 GEMM `[tokens, k] x [k, n]` (an expert projection) through cuBLAS.
    Gemm,
    /// Device-to-device copy of `bytes` (HBM read + write).
    HbmCopy,
    /// Host (pinned) to device copy over PCIe.
    H2d,
    /// Device to host (pinned) copy over PCIe.
    D2h,
    /// The gating kernel over `tokens` tokens (`k` hidden, `n` experts), measured by the capture
    /// half's script; kept in the file, not calibrated here.
    Gating,
}

impl Kind {
    /// Every kind, in file order.
    pub const ALL: [Kind; 5] = [
        Kind::Gemm,
        Kind::HbmCopy,
        Kind::H2d,
        Kind::D2h,
        Kind::Gating,
    ];

    /// The name used in files.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Gemm => "gemm",
            Kind::HbmCopy => "hbm-copy",
            Kind::H2d => "h2d",
            Kind::D2h => "d2h",
            Kind::Gating => "gating",
        }
    }

    /// The kind called `name`, if any.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Whether the kind is a memory copy (timed by bytes rather than tokens).
    pub fn is_copy(self) -> bool {
        matches!(self, Kind::HbmCopy | Kind::H2d | Kind::D2h)
    }
}

/// Where a measurement file came from: the GPU and the day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// GPU name as the driver reports it.
    pub gpu: String,
    /// Driver version.
    pub driver: String,
    /// UTC date (`YYYY-MM-DD`).
    pub date: String,
    /// `measured` for a GPU run, `synthetic` for generated data.
    pub source: String,
}

/// One timed benchmark point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// What was timed.
    pub kind: Kind,
    /// Human label of the shape.
    pub shape: String,
    /// GEMM inner dimension (gating: hidden size; copies 0).
    pub k: u64,
    /// GEMM output columns (gating: experts; copies 0).
    pub n: u64,
    /// Rows (tokens); 0 for copies.
    pub tokens: u64,
    /// Bytes moved (copies) or bf16 weight bytes (GEMM).
    pub bytes: u64,
    /// Timed repetitions.
    pub reps: u32,
    /// Median time of one repetition.
    pub median_ns: u64,
    /// Fastest repetition.
    pub min_ns: u64,
    /// Slowest repetition.
    pub max_ns: u64,
    /// Host-clock start of the repetitions (shared with the NVML samples), when known.
    pub start_ns: Option<u64>,
    /// Host-clock end of the repetitions, when known.
    pub end_ns: Option<u64>,
}

/// A measurement file: its provenance and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurements {
    /// GPU, driver, date and source shared by all rows.
    pub provenance: Provenance,
    /// The rows.
    pub rows: Vec<Measurement>,
}

impl Measurements {
    /// Writes the file atomically.
    pub fn write_parquet(&self, path: &Path) -> Result<()> {
        let rows = &self.rows;
        let text = |value: &str| vec![value.to_string(); rows.len()];
        let p = &self.provenance;
        let mut frame = DataFrame::new(
            rows.len(),
            vec![
                Column::new(
                    "kind".into(),
                    rows.iter().map(|r| r.kind.name()).collect::<Vec<_>>(),
                ),
                Column::new(
                    "shape".into(),
                    rows.iter().map(|r| r.shape.as_str()).collect::<Vec<_>>(),
                ),
                Column::new("k".into(), rows.iter().map(|r| r.k).collect::<Vec<_>>()),
                Column::new("n".into(), rows.iter().map(|r| r.n).collect::<Vec<_>>()),
                Column::new(
                    "tokens".into(),
                    rows.iter().map(|r| r.tokens).collect::<Vec<_>>(),
                ),
                Column::new(
                    "bytes".into(),
                    rows.iter().map(|r| r.bytes).collect::<Vec<_>>(),
                ),
                Column::new(
                    "reps".into(),
                    rows.iter().map(|r| r.reps).collect::<Vec<_>>(),
                ),
                Column::new(
                    "median_ns".into(),
                    rows.iter().map(|r| r.median_ns).collect::<Vec<_>>(),
                ),
                Column::new(
                    "min_ns".into(),
                    rows.iter().map(|r| r.min_ns).collect::<Vec<_>>(),
                ),
                Column::new(
                    "max_ns".into(),
                    rows.iter().map(|r| r.max_ns).collect::<Vec<_>>(),
                ),
                Column::new(
                    "start_ns".into(),
                    rows.iter().map(|r| r.start_ns).collect::<Vec<_>>(),
                ),
                Column::new(
                    "end_ns".into(),
                    rows.iter().map(|r| r.end_ns).collect::<Vec<_>>(),
                ),
                Column::new("gpu".into(), text(&p.gpu)),
                Column::new("driver".into(), text(&p.driver)),
                Column::new("date".into(), text(&p.date)),
                Column::new("source".into(), text(&p.source)),
            ],
        )
        .map_err(|e| Error::bad_file(path, e.to_string()))?;
        write_parquet_frame(path, &mut frame)
    }

    /// Reads and checks a measurement file; errors name the file and the column or row.
    pub fn read_parquet(path: &Path) -> Result<Measurements> {
        let frame = read_frame(path)?;
        let table = Table {
            frame: &frame,
            path,
        };
        let kinds = table.text("kind")?;
        let shapes = table.text("shape")?;
        let [k, n, tokens, bytes, median, min, max] =
            ["k", "n", "tokens", "bytes", "median_ns", "min_ns", "max_ns"]
                .map(|name| table.integers(name));
        let reps = table.integers("reps")?;
        let start = table.optional_integers("start_ns")?;
        let end = table.optional_integers("end_ns")?;
        let provenance = Provenance {
            gpu: table.single_text("gpu")?,
            driver: table.single_text("driver")?,
            date: table.single_text("date")?,
            source: table.single_text("source")?,
        };
        let (k, n, tokens, bytes) = (k?, n?, tokens?, bytes?);
        let (median, min, max) = (median?, min?, max?);
        let mut rows = Vec::with_capacity(frame.height());
        for row in 0..frame.height() {
            let kind = Kind::parse(&kinds[row]).ok_or_else(|| {
                Error::bad_file(
                    path,
                    format!(
                        "column `kind`, row {row}: unknown kind `{}` (known: gemm, hbm-copy, h2d, d2h, gating)",
                        kinds[row]
                    ),
                )
            })?;
            if median[row] == 0 || min[row] > median[row] || median[row] > max[row] {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "row {row}: need 0 < min_ns <= median_ns <= max_ns, got {} / {} / {}",
                        min[row], median[row], max[row]
                    ),
                ));
            }
            let reps = u32::try_from(reps[row]).map_err(|_| {
                Error::bad_file(path, format!("column `reps`, row {row}: too large"))
            })?;
            rows.push(Measurement {
                kind,
                shape: shapes[row].clone(),
                k: k[row],
                n: n[row],
                tokens: tokens[row],
                bytes: bytes[row],
                reps,
                median_ns: median[row],
                min_ns: min[row],
                max_ns: max[row],
                start_ns: start[row],
                end_ns: end[row],
            });
        }
        Ok(Measurements { provenance, rows })
    }
}

/// Typed column access with errors that name the file and column.
/// Reads a whole Parquet file; errors name the file.
pub(crate) fn read_frame(path: &Path) -> Result<DataFrame> {
    let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    crate::guard::decode_guarded(path, "not a Parquet file", || {
        ParquetReader::new(file)
            .finish()
            .map_err(|e| Error::bad_file(path, format!("not a Parquet file: {e}")))
    })
}

pub(crate) struct Table<'a> {
    /// The frame read.
    pub frame: &'a DataFrame,
    /// Its file, for error messages.
    pub path: &'a Path,
}

impl Table<'_> {
    fn column(&self, name: &str) -> Result<&Column> {
        self.frame
            .column(name)
            .map_err(|_| Error::bad_file(self.path, format!("missing column `{name}`")))
    }

    fn cast(&self, name: &str, dtype: &DataType) -> Result<Column> {
        self.column(name)?.cast(dtype).map_err(|e| {
            Error::bad_file(
                self.path,
                format!("column `{name}` has the wrong type: {e}"),
            )
        })
    }

    /// A string column with no nulls.
    pub fn text(&self, name: &str) -> Result<Vec<String>> {
        let column = self.cast(name, &DataType::String)?;
        let values = column
            .str()
            .map_err(|e| Error::bad_file(self.path, e.to_string()))?;
        values
            .iter()
            .enumerate()
            .map(|(row, value)| {
                value.map(str::to_string).ok_or_else(|| {
                    Error::bad_file(self.path, format!("column `{name}`, row {row}: null"))
                })
            })
            .collect()
    }

    /// The one value a provenance column holds ("" for an empty file).
    fn single_text(&self, name: &str) -> Result<String> {
        let values = self.text(name)?;
        let first = values.first().cloned().unwrap_or_default();
        match values.iter().position(|value| *value != first) {
            Some(row) => Err(Error::bad_file(
                self.path,
                format!(
                    "column `{name}`, row {row}: `{}` differs from `{first}`; one file holds one run",
                    values[row]
                ),
            )),
            None => Ok(first),
        }
    }

    /// A non-negative integer column that may hold nulls.
    pub fn optional_integers(&self, name: &str) -> Result<Vec<Option<u64>>> {
        let column = self.cast(name, &DataType::UInt64)?;
        let values = column
            .u64()
            .map_err(|e| Error::bad_file(self.path, e.to_string()))?;
        Ok(values.iter().collect())
    }

    /// A non-negative integer column with no nulls.
    pub fn integers(&self, name: &str) -> Result<Vec<u64>> {
        self.optional_integers(name)?
            .into_iter()
            .enumerate()
            .map(|(row, value)| {
                value.ok_or_else(|| {
                    Error::bad_file(self.path, format!("column `{name}`, row {row}: null"))
                })
            })
            .collect()
    }
}

#[cfg(test)]
impl Measurement {
    /// A test point of `kind` timed at `median_ns` in 5 repetitions with no spread.
    pub(crate) fn test_point(
        kind: Kind,
        shape: String,
        (k, n, tokens, bytes): (u64, u64, u64, u64),
        median_ns: u64,
    ) -> Measurement {
        Measurement {
            kind,
            shape,
            k,
            n,
            tokens,
            bytes,
            reps: 5,
            median_ns,
            min_ns: median_ns,
            max_ns: median_ns,
            start_ns: None,
            end_ns: None,
        }
    }
}

#[cfg(test)]
impl Provenance {
    /// The provenance of hand-made test measurements.
    pub(crate) fn hand_made() -> Provenance {
        Provenance {
            gpu: "test".into(),
            driver: "none".into(),
            date: "2026-11-23".into(),
            source: "synthetic".into(),
        }
    }
}
