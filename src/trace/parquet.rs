//! The canonical on-disk form of a trace: one Parquet file, format version 1.
//!
//! Token-level files ("tokens" kind) hold one row per routing entry, ordered by token, then layer,
//! then rank inside the token's top-k. A token that passed a layer with no routed expert keeps one
//! row there with a null `expert`, so zero-expert tokens survive a round trip. Optional columns
//! (`weight` and the per-token metadata) are present only when the trace has them.
//!
//! Aggregate files ("loads" kind) hold one row per (layer, expert) with its load.
//!
//! File-level key-value metadata (`moesim.*` keys) carries the format version, the kind, the
//! trace's shape and its provenance; see [`TraceHeader`]. `traces/README.md` documents the schema
//! for users and notebook authors.

mod decode;
mod file;
mod header;
mod layout;
mod pages;
mod read;
mod write;

pub use file::check_parquet;
pub use header::{TraceHeader, TraceKind};
pub use read::{TraceChunk, TraceChunks, read_chunks, read_header, read_trace};
pub use write::write_trace;

/// The version of the file format written by this build, and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Rows per Parquet row group when writing: big enough for fast columnar decoding, small enough
/// that a streaming reader holds only a few tens of megabytes at a time.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

#[cfg(test)]
mod tests;
