//! Cheap structural checks of a Parquet file, before polars decodes any page: the `PAR1` magic at
//! both ends, a footer that fits between them, every column chunk inside the data area and row
//! counts that add up. A file cut short, spliced or with a corrupt footer offset fails here with
//! a message naming what is wrong. The page headers inside each chunk are walked next
//! ([`super::pages`]); a flipped bit inside a page's data is left to the decoder and
//! [`crate::guard::decode_guarded`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use polars::prelude::FileMetadataRef;

use super::file::READ_FAILED;
use crate::error::{Error, Result};

/// The magic at the start and the end of every Parquet file.
const MAGIC: &[u8; 4] = b"PAR1";
/// The footer's trailer: a 4-byte little-endian footer length, then the magic.
const TRAILER: u64 = 8;

/// Checks the magic at both ends and that the footer fits after the leading magic. Returns the
/// end of the data area (where the footer starts).
pub(super) fn check_ends(path: &Path, file: &mut File) -> Result<u64> {
    let io = |e| Error::io(path, e);
    let len = file.seek(SeekFrom::End(0)).map_err(io)?;
    let unreadable = |why: &str| Error::bad_file(path, format!("{READ_FAILED}: {why}"));
    if len < MAGIC.len() as u64 + TRAILER {
        return Err(unreadable(&format!("{len} bytes is too short")));
    }
    let mut head = [0u8; 4];
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.read_exact(&mut head).map_err(io)?;
    file.seek(SeekFrom::End(-(TRAILER as i64))).map_err(io)?;
    file.read_exact(&mut tail).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    if &head != MAGIC || &tail[4..] != MAGIC {
        return Err(unreadable(
            "the PAR1 magic is missing at its start or end (not Parquet, or truncated)",
        ));
    }
    let footer = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    let room = len - MAGIC.len() as u64 - TRAILER;
    if footer > room {
        return Err(unreadable(&format!(
            "corrupt footer: it claims {footer} bytes but the file has room for {room} \
             (truncated file?)"
        )));
    }
    Ok(len - TRAILER - footer)
}

/// Checks every column chunk lies inside the data area `4..data_end`, and that the row groups'
/// rows add up to the file's.
pub(super) fn check_chunks(path: &Path, data_end: u64, metadata: &FileMetadataRef) -> Result<()> {
    let corrupt = |message: String| {
        Error::bad_file(path, format!("{READ_FAILED}: corrupt footer: {message}"))
    };
    let mut rows = 0usize;
    for (group, row_group) in metadata.row_groups.iter().enumerate() {
        rows = rows.saturating_add(row_group.num_rows());
        for (index, column) in row_group.parquet_columns().iter().enumerate() {
            let start = column
                .dictionary_page_offset()
                .unwrap_or(column.data_page_offset());
            let size = column.compressed_size();
            let end = u64::try_from(start)
                .ok()
                .zip(u64::try_from(size).ok())
                .and_then(|(start, size)| start.checked_add(size).filter(|_| start >= 4));
            if end.is_none_or(|end| end > data_end) {
                return Err(corrupt(format!(
                    "row group {group}, column {index}: chunk at offset {start} of {size} bytes \
                     lies outside the data (bytes 4..{data_end})"
                )));
            }
            if column.num_values() < 0 {
                return Err(corrupt(format!(
                    "row group {group}, column {index}: negative value count {}",
                    column.num_values()
                )));
            }
        }
    }
    if rows != metadata.num_rows {
        return Err(corrupt(format!(
            "the row groups hold {rows} rows but the file declares {}",
            metadata.num_rows
        )));
    }
    Ok(())
}
