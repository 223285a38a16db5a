//! Opening a trace file: Parquet footer, `moesim.*` header and column schema, checked once so the
//! readers can trust what they decode.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::header::{TraceHeader, TraceKind};
use super::{layout, pages};
use crate::error::{Error, Result};
use crate::guard::decode_guarded;

/// Column names of the canonical format.
pub(super) mod col {
    pub const TOKEN: &str = "token";
    pub const LAYER: &str = "layer";
    pub const EXPERT: &str = "expert";
    pub const WEIGHT: &str = "weight";
    pub const STEP: &str = "step";
    pub const REQUEST_ID: &str = "request_id";
    pub const POSITION: &str = "position";
    pub const PHASE: &str = "phase";
    pub const DP_RANK: &str = "dp_rank";
    pub const LOAD: &str = "load";
}

/// One column of the schema: its name, dtype and whether every file must have it.
struct ColumnSpec {
    name: &'static str,
    dtype: DataType,
    required: bool,
}

impl ColumnSpec {
    /// Whether a column stored as `found` reads as this spec's dtype (strings in any of Arrow's
    /// three layouts).
    fn accepts(&self, found: &ArrowDataType) -> bool {
        match self.dtype {
            DataType::String => matches!(
                found,
                ArrowDataType::Utf8 | ArrowDataType::LargeUtf8 | ArrowDataType::Utf8View
            ),
            _ => *found == self.dtype.to_arrow(CompatLevel::newest()),
        }
    }
}

/// The columns a file of `kind` may hold, in file order.
fn schema_of(kind: TraceKind) -> Vec<ColumnSpec> {
    let spec = |name, dtype, required| ColumnSpec {
        name,
        dtype,
        required,
    };
    match kind {
        TraceKind::Tokens => vec![
            spec(col::TOKEN, DataType::UInt32, true),
            spec(col::LAYER, DataType::UInt16, true),
            spec(col::EXPERT, DataType::UInt16, true),
            spec(col::WEIGHT, DataType::Float32, false),
            spec(col::STEP, DataType::UInt32, false),
            spec(col::REQUEST_ID, DataType::UInt64, false),
            spec(col::POSITION, DataType::UInt32, false),
            spec(col::PHASE, DataType::String, false),
            spec(col::DP_RANK, DataType::UInt16, false),
        ],
        TraceKind::Loads => vec![
            spec(col::LAYER, DataType::UInt16, true),
            spec(col::EXPERT, DataType::UInt16, true),
            spec(col::LOAD, DataType::Float64, true),
        ],
    }
}

/// Opens the Parquet file `path` and checks its structure before polars decodes a page (the
/// ends, the column chunks inside the data, every page header: [`layout`], [`pages`]), so that
/// a corrupt file is an error naming it instead of a panic or an abort. Returns the open file,
/// its footer and its schema.
fn open_checked(path: &Path) -> Result<(File, FileMetadataRef, std::sync::Arc<ArrowSchema>)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let data_end = layout::check_ends(path, &mut file)?;
    let (metadata, schema) = decode_guarded(path, READ_FAILED, || {
        let mut reader = ParquetReader::new(&mut file);
        let metadata = reader
            .get_metadata()
            .map_err(|e| polars_error(path, e))?
            .clone();
        let schema = reader.schema().map_err(|e| polars_error(path, e))?;
        Ok((metadata, schema))
    })?;
    layout::check_chunks(path, data_end, &metadata)?;
    pages::check_pages(path, &mut file, &metadata)?;
    Ok((file, metadata, schema))
}

/// Checks that `path` is a Parquet file whose structure polars can decode without panicking
/// ([`open_checked`]): what any reader of a moesim Parquet file calls before reading it.
pub fn check_parquet(path: &Path) -> Result<()> {
    open_checked(path).map(|_| ())
}

/// An open trace file whose header and schema have been checked.
pub(super) struct TraceFile {
    path: PathBuf,
    file: File,
    metadata: FileMetadataRef,
    header: TraceHeader,
    /// Known columns present in the file, in schema order: the projection every read uses.
    columns: Vec<String>,
}

impl TraceFile {
    /// Opens `path`, reads its footer and header, and checks every known column's dtype and that
    /// the required columns of its kind are present. Unknown extra columns are ignored.
    pub(super) fn open(path: &Path) -> Result<Self> {
        let (file, metadata, schema) = open_checked(path)?;
        let pairs: Vec<(&str, Option<&str>)> = metadata
            .key_value_metadata
            .iter()
            .flatten()
            .map(|kv| (kv.key.as_str(), kv.value.as_deref()))
            .collect();
        let header = TraceHeader::from_key_values(path, &pairs)?;
        let mut columns = Vec::new();
        for spec in schema_of(header.kind) {
            match schema.get(spec.name) {
                Some(field) => {
                    // Compared as Arrow types: polars panics converting one it was built
                    // without (a Float16 column in a fuzzed file).
                    if !spec.accepts(&field.dtype) {
                        return Err(Error::bad_file(
                            path,
                            format!(
                                "column `{}` has Arrow type {:?}, expected {:?}",
                                spec.name,
                                field.dtype,
                                spec.dtype.to_arrow(CompatLevel::newest())
                            ),
                        ));
                    }
                    columns.push(spec.name.to_string());
                }
                None if spec.required => {
                    return Err(Error::bad_file(
                        path,
                        format!(
                            "missing required column `{}` for a {} trace",
                            spec.name,
                            header.kind.as_str()
                        ),
                    ));
                }
                None => {}
            }
        }
        Ok(TraceFile {
            path: path.to_path_buf(),
            file,
            metadata,
            header,
            columns,
        })
    }

    /// The file's path, for error messages.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The checked `moesim.*` header.
    pub(super) fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// Whether the file has the optional column `name`.
    pub(super) fn has_column(&self, name: &str) -> bool {
        self.columns.iter().any(|c| c == name)
    }

    /// Total rows in the file.
    pub(super) fn num_rows(&self) -> usize {
        self.metadata.num_rows
    }

    /// Rows in each row group, in file order.
    pub(super) fn row_group_rows(&self) -> Vec<usize> {
        self.metadata
            .row_groups
            .iter()
            .map(|g| g.num_rows())
            .collect()
    }

    /// Reads rows `start..start + len` of the known columns. Only the row groups overlapping the
    /// range are decoded; their chunks come back aligned across columns.
    pub(super) fn read_rows(&mut self, start: usize, len: usize) -> Result<DataFrame> {
        decode_guarded(&self.path, READ_FAILED, || {
            let mut reader = ParquetReader::new(&mut self.file)
                .with_columns(Some(self.columns.clone()))
                .with_slice(Some((start, len)));
            reader.set_metadata(self.metadata.clone());
            let mut frame = reader.finish().map_err(|e| polars_error(&self.path, e))?;
            frame.align_chunks_par();
            Ok(frame)
        })
    }
}

/// What every read failure of a trace file starts with.
pub(super) const READ_FAILED: &str = "cannot read as Parquet";

/// A polars failure while reading `path`: the file is truncated, corrupt or not Parquet.
pub(super) fn polars_error(path: &Path, error: PolarsError) -> Error {
    Error::bad_file(path, format!("{READ_FAILED}: {error}"))
}
