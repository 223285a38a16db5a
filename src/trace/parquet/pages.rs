//! The page headers of every column chunk, walked before polars decodes a page. polars sizes its
//! buffers from a page header's value count and sizes, so a flipped bit there (a negative count
//! read as 2^64 - 1, a size past the chunk) makes it reserve exabytes and abort the process; here
//! such a header fails with a message naming the row group, column and page.
//!
//! The headers are Thrift compact-protocol structs (`PageHeader`, `DataPageHeader`,
//! `DictionaryPageHeader`, `DataPageHeaderV2` in parquet-format's `parquet.thrift`); only the
//! fields checked here are read, the rest (statistics, CRC) are skipped.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use polars::prelude::FileMetadataRef;

use super::file::READ_FAILED;
use crate::error::{Error, Result};

/// Bytes read for a page header at first; a header longer than that (large statistics) is read
/// again with a window sixteen times larger, up to [`MAX_HEADER_BYTES`].
const FIRST_WINDOW: u64 = 4096;
/// The largest page header accepted.
const MAX_HEADER_BYTES: u64 = 64 << 20;
/// Nesting depth of structs and containers skipped inside a header (statistics are two deep).
const MAX_DEPTH: u32 = 16;

/// `PageType` values of parquet.thrift.
const DATA_PAGE: i32 = 0;
const INDEX_PAGE: i32 = 1;
const DICTIONARY_PAGE: i32 = 2;
const DATA_PAGE_V2: i32 = 3;

/// Walks the pages of every column chunk: each header parses, its sizes are non-negative and its
/// page lies inside the chunk, the pages tile the chunk exactly, and the data pages' value counts
/// add up to the chunk's (a version-2 page's rows to at most the row group's).
pub(super) fn check_pages(path: &Path, file: &mut File, metadata: &FileMetadataRef) -> Result<()> {
    for (group, row_group) in metadata.row_groups.iter().enumerate() {
        let rows = i64::try_from(row_group.num_rows()).unwrap_or(i64::MAX);
        for (column, meta) in row_group.parquet_columns().iter().enumerate() {
            let start = meta
                .dictionary_page_offset()
                .unwrap_or(meta.data_page_offset());
            // `layout::check_chunks` has checked both are non-negative and inside the file.
            let chunk = Chunk {
                start: start as u64,
                end: start as u64 + meta.compressed_size() as u64,
                values: meta.num_values(),
                rows,
            };
            check_chunk(file, &chunk, |page, e| match e {
                PageError::Io(e) => Error::io(path, e),
                PageError::Bad(why) => Error::bad_file(
                    path,
                    format!(
                        "{READ_FAILED}: corrupt page header: row group {group}, column \
                         {column}, page {page}: {why}"
                    ),
                ),
            })?;
        }
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(path, e))?;
    Ok(())
}

/// One column chunk: its byte range, its declared value count and its row group's rows.
struct Chunk {
    start: u64,
    end: u64,
    values: i64,
    rows: i64,
}

/// Why a page failed: a read error, or what is wrong with its header.
enum PageError {
    Io(std::io::Error),
    Bad(String),
}

/// Walks `chunk`'s pages; `error` turns a page index and its failure into the error returned.
fn check_chunk(
    file: &mut File,
    chunk: &Chunk,
    error: impl Fn(usize, PageError) -> Error,
) -> Result<()> {
    let mut at = chunk.start;
    let mut values = 0i64;
    let mut page = 0usize;
    while at < chunk.end {
        let fail = |why: String| error(page, PageError::Bad(why));
        let (header, header_len) = read_header(file, at, chunk.end).map_err(|e| error(page, e))?;
        let header = header.checked(chunk).map_err(fail)?;
        let page_end = at + header_len + header.compressed_size;
        if page_end > chunk.end {
            return Err(fail(format!(
                "its {} bytes run past the column chunk's end at byte {}",
                header.compressed_size, chunk.end
            )));
        }
        values += header.data_values;
        if values > chunk.values {
            return Err(fail(format!(
                "the data pages so far hold {values} values but the chunk declares {}",
                chunk.values
            )));
        }
        at = page_end;
        page += 1;
    }
    if values != chunk.values {
        return Err(error(
            page,
            PageError::Bad(format!(
                "the data pages hold {values} values but the chunk declares {}",
                chunk.values
            )),
        ));
    }
    Ok(())
}

/// Reads the page header at `at`, growing the window while the header runs past it. Returns the
/// header and its length in bytes.
fn read_header(
    file: &mut File,
    at: u64,
    chunk_end: u64,
) -> std::result::Result<(PageHeader, u64), PageError> {
    let mut window = FIRST_WINDOW;
    loop {
        let len = window.min(chunk_end - at);
        let mut bytes = vec![0u8; len as usize];
        file.seek(SeekFrom::Start(at)).map_err(PageError::Io)?;
        file.read_exact(&mut bytes).map_err(PageError::Io)?;
        let mut reader = Compact::new(&bytes);
        match PageHeader::read(&mut reader) {
            Ok(header) => return Ok((header, reader.at as u64)),
            Err(Short::OutOfBytes) if len == window && window < MAX_HEADER_BYTES => window *= 16,
            Err(Short::OutOfBytes) => {
                return Err(PageError::Bad(format!(
                    "the header does not end within {len} bytes"
                )));
            }
            Err(Short::Malformed(why)) => return Err(PageError::Bad(why)),
        }
    }
}

/// The fields of a `PageHeader` (and of the header of its kind) that are checked.
#[derive(Default)]
struct PageHeader {
    kind: Option<i32>,
    uncompressed_size: Option<i32>,
    compressed_size: Option<i32>,
    /// `num_values` of the data or dictionary page header, whichever is present.
    num_values: Option<i32>,
    /// `num_nulls`, `num_rows` and the two level lengths of a version-2 data page.
    v2: Option<V2Fields>,
}

#[derive(Default, Clone, Copy)]
struct V2Fields {
    num_nulls: i32,
    num_rows: i32,
    definition_bytes: i32,
    repetition_bytes: i32,
}

/// A header whose fields passed the checks.
struct CheckedHeader {
    compressed_size: u64,
    /// Values the page adds to the chunk's count (zero for dictionary and index pages).
    data_values: i64,
}

impl PageHeader {
    fn read(r: &mut Compact) -> std::result::Result<Self, Short> {
        let mut header = PageHeader::default();
        r.read_struct(0, &mut |r, id, kind| {
            match (id, kind) {
                (1, I32) => header.kind = Some(r.read_i32()?),
                (2, I32) => header.uncompressed_size = Some(r.read_i32()?),
                (3, I32) => header.compressed_size = Some(r.read_i32()?),
                // DataPageHeader and DictionaryPageHeader both start with num_values.
                (5 | 7, STRUCT) => r.read_struct(1, &mut |r, id, kind| match (id, kind) {
                    (1, I32) => {
                        header.num_values = Some(r.read_i32()?);
                        Ok(())
                    }
                    _ => r.skip(kind, 2),
                })?,
                (8, STRUCT) => {
                    let mut v2 = V2Fields::default();
                    r.read_struct(1, &mut |r, id, kind| {
                        match (id, kind) {
                            (1, I32) => header.num_values = Some(r.read_i32()?),
                            (2, I32) => v2.num_nulls = r.read_i32()?,
                            (3, I32) => v2.num_rows = r.read_i32()?,
                            (5, I32) => v2.definition_bytes = r.read_i32()?,
                            (6, I32) => v2.repetition_bytes = r.read_i32()?,
                            _ => r.skip(kind, 2)?,
                        }
                        Ok(())
                    })?;
                    header.v2 = Some(v2);
                }
                _ => r.skip(kind, 1)?,
            }
            Ok(())
        })?;
        Ok(header)
    }

    fn checked(&self, chunk: &Chunk) -> std::result::Result<CheckedHeader, String> {
        let required = |field: Option<i32>, name: &str| {
            field.ok_or_else(|| format!("the required field `{name}` is missing"))
        };
        let non_negative = |value: i32, name: &str| {
            u64::try_from(value).map_err(|_| format!("`{name}` is negative ({value})"))
        };
        let kind = required(self.kind, "type")?;
        non_negative(
            required(self.uncompressed_size, "uncompressed_page_size")?,
            "uncompressed_page_size",
        )?;
        let compressed_size = non_negative(
            required(self.compressed_size, "compressed_page_size")?,
            "compressed_page_size",
        )?;
        let data_values = match kind {
            DATA_PAGE | DATA_PAGE_V2 | DICTIONARY_PAGE => {
                let values = required(self.num_values, "num_values")?;
                let values = non_negative(values, "num_values")? as i64;
                if values > chunk.values {
                    return Err(format!(
                        "`num_values` is {values} but the whole chunk declares {}",
                        chunk.values
                    ));
                }
                if kind == DICTIONARY_PAGE { 0 } else { values }
            }
            INDEX_PAGE => 0,
            other => return Err(format!("unknown page type {other}")),
        };
        if kind == DATA_PAGE_V2 {
            let v2 = self
                .v2
                .ok_or("a version-2 data page without its DataPageHeaderV2")?;
            let nulls = non_negative(v2.num_nulls, "num_nulls")? as i64;
            let rows = non_negative(v2.num_rows, "num_rows")? as i64;
            let levels = non_negative(v2.definition_bytes, "definition_levels_byte_length")?
                + non_negative(v2.repetition_bytes, "repetition_levels_byte_length")?;
            if nulls > data_values {
                return Err(format!(
                    "`num_nulls` {nulls} exceeds `num_values` {data_values}"
                ));
            }
            if rows > chunk.rows {
                return Err(format!(
                    "`num_rows` {rows} exceeds the row group's {}",
                    chunk.rows
                ));
            }
            if levels > compressed_size {
                return Err(format!(
                    "its levels take {levels} bytes of a {compressed_size}-byte page"
                ));
            }
        }
        Ok(CheckedHeader {
            compressed_size,
            data_values,
        })
    }
}

/// Compact-protocol type codes (parquet-format uses these for fields; list elements use the same
/// codes, booleans there as one byte).
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;

/// Why the reader stopped: the bytes ran out (read more), or they cannot be a header.
enum Short {
    OutOfBytes,
    Malformed(String),
}

impl From<&str> for Short {
    fn from(why: &str) -> Self {
        Short::Malformed(why.to_string())
    }
}

/// A reader of Thrift's compact protocol over a byte slice.
struct Compact<'a> {
    bytes: &'a [u8],
    at: usize,
}

type Step = std::result::Result<(), Short>;

impl<'a> Compact<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Compact { bytes, at: 0 }
    }

    fn byte(&mut self) -> std::result::Result<u8, Short> {
        let b = *self.bytes.get(self.at).ok_or(Short::OutOfBytes)?;
        self.at += 1;
        Ok(b)
    }

    fn advance(&mut self, n: u64) -> Step {
        let end = u64::try_from(self.at)
            .ok()
            .and_then(|at| at.checked_add(n))
            .filter(|&end| end <= self.bytes.len() as u64)
            .ok_or(Short::OutOfBytes)?;
        self.at = end as usize;
        Ok(())
    }

    fn varint(&mut self) -> std::result::Result<u64, Short> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint longer than ten bytes".into())
    }

    fn zigzag(&mut self) -> std::result::Result<i64, Short> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn read_i32(&mut self) -> std::result::Result<i32, Short> {
        i32::try_from(self.zigzag()?).map_err(|_| "an i32 field out of range".into())
    }

    /// Reads the fields of a struct up to its stop byte, handing each (id, type) to `field`,
    /// which reads or skips the value.
    fn read_struct(
        &mut self,
        depth: u32,
        field: &mut dyn FnMut(&mut Self, i16, u8) -> Step,
    ) -> Step {
        if depth > MAX_DEPTH {
            return Err("structs nested too deep".into());
        }
        let mut last_id = 0i16;
        loop {
            let head = self.byte()?;
            if head == 0 {
                return Ok(());
            }
            let kind = head & 0x0f;
            let delta = head >> 4;
            let id = if delta == 0 {
                i16::try_from(self.zigzag()?).map_err(|_| Short::from("a field id out of range"))?
            } else {
                last_id.wrapping_add(i16::from(delta))
            };
            last_id = id;
            field(self, id, kind)?;
        }
    }

    /// Skips one value of type `kind` (a field's, so booleans carry no byte).
    fn skip(&mut self, kind: u8, depth: u32) -> Step {
        match kind {
            BOOL_TRUE | BOOL_FALSE => Ok(()),
            _ => self.skip_value(kind, depth),
        }
    }

    /// Skips one value of type `kind` as it appears in a container (booleans take a byte).
    fn skip_value(&mut self, kind: u8, depth: u32) -> Step {
        if depth > MAX_DEPTH {
            return Err("values nested too deep".into());
        }
        match kind {
            BOOL_TRUE | BOOL_FALSE | BYTE => self.advance(1),
            I16 | I32 | I64 => self.varint().map(drop),
            DOUBLE => self.advance(8),
            BINARY => {
                let len = self.varint()?;
                self.advance(len)
            }
            LIST | SET => {
                let head = self.byte()?;
                let len = match head >> 4 {
                    15 => self.varint()?,
                    short => u64::from(short),
                };
                self.skip_elements(len, head & 0x0f, depth)
            }
            MAP => {
                let len = self.varint()?;
                if len == 0 {
                    return Ok(());
                }
                let kinds = self.byte()?;
                self.check_room(len)?;
                for _ in 0..len {
                    self.skip_value(kinds >> 4, depth + 1)?;
                    self.skip_value(kinds & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            STRUCT => self.read_struct(depth + 1, &mut |r, _, kind| r.skip(kind, depth + 1)),
            other => Err(Short::Malformed(format!("unknown Thrift type {other}"))),
        }
    }

    /// Out of bytes unless `len` more elements could fit: every element takes at least one byte,
    /// so a corrupt length fails at once rather than after a long loop.
    fn check_room(&self, len: u64) -> Step {
        if len > (self.bytes.len() - self.at) as u64 {
            return Err(Short::OutOfBytes);
        }
        Ok(())
    }

    /// Skips `len` elements of type `kind`.
    fn skip_elements(&mut self, len: u64, kind: u8, depth: u32) -> Step {
        self.check_room(len)?;
        for _ in 0..len {
            self.skip_value(kind, depth + 1)?;
        }
        Ok(())
    }
}
