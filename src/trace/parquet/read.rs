//! Reading trace files: the header alone, the whole trace, or whole-token chunks in a stream.

use std::path::Path;

use polars::prelude::*;

use super::decode::{OptionalColumns, TokenDecoder};
use super::file::{TraceFile, col};
use super::header::{TraceHeader, TraceKind};
use crate::error::{Error, Result};
use crate::trace::{ExpertLoads, RoutingTrace, Trace};

/// Rows decoded per Parquet read while streaming: a few row groups, so polars can decode them in
/// parallel while memory stays bounded.
const READ_BATCH_ROWS: usize = 4 << 20;

/// Reads only the `moesim.*` header of a trace file (no rows are decoded).
pub fn read_header(path: &Path) -> Result<TraceHeader> {
    Ok(TraceFile::open(path)?.header().clone())
}

/// Reads a whole trace file, token-level or loads, checking its header, schema and row order.
pub fn read_trace(path: &Path) -> Result<Trace> {
    let file = TraceFile::open(path)?;
    match file.header().kind {
        TraceKind::Loads => read_loads(file).map(Trace::Loads),
        TraceKind::Tokens => {
            let mut chunks = TraceChunks::new(file, usize::MAX);
            let trace = match chunks.next() {
                Some(chunk) => chunk?.trace,
                None => chunks.empty_trace()?,
            };
            Ok(Trace::Tokens(trace))
        }
    }
}

/// Opens a token-level trace file for streaming: the returned iterator yields chunks of
/// `tokens_per_chunk` whole tokens (the last one may be shorter), reading the file a few row
/// groups at a time, so a trace larger than memory can be summarised chunk by chunk.
pub fn read_chunks(path: &Path, tokens_per_chunk: usize) -> Result<TraceChunks> {
    if tokens_per_chunk == 0 {
        return Err(Error::invalid("tokens per chunk must be at least 1"));
    }
    let file = TraceFile::open(path)?;
    if file.header().kind != TraceKind::Tokens {
        return Err(Error::bad_file(
            path,
            "holds aggregate expert loads (moesim.kind = loads), not token-level routing",
        ));
    }
    Ok(TraceChunks::new(file, tokens_per_chunk))
}

/// A run of whole tokens read from a trace file.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceChunk {
    /// Global index (in the file) of the chunk's token 0.
    pub first_token: usize,
    /// The chunk's routing; its tokens are renumbered from 0.
    pub trace: RoutingTrace,
}

/// Iterator over the whole-token chunks of a trace file; see [`read_chunks`]. After an error it
/// yields nothing more.
pub struct TraceChunks {
    file: TraceFile,
    tokens_per_chunk: usize,
    optional: OptionalColumns,
    decoder: TokenDecoder,
    /// Rows read but not yet decoded, with the global index of their first row.
    pending: Option<(DataFrame, usize)>,
    group_rows: Vec<usize>,
    next_group: usize,
    next_row: usize,
    done: bool,
}

impl TraceChunks {
    fn new(file: TraceFile, tokens_per_chunk: usize) -> Self {
        let optional = OptionalColumns {
            weight: file.has_column(col::WEIGHT),
            step: file.has_column(col::STEP),
            request_id: file.has_column(col::REQUEST_ID),
            position: file.has_column(col::POSITION),
            phase: file.has_column(col::PHASE),
            dp_rank: file.has_column(col::DP_RANK),
        };
        TraceChunks {
            decoder: new_decoder(&file, tokens_per_chunk, optional, 0),
            group_rows: file.row_group_rows(),
            file,
            tokens_per_chunk,
            optional,
            pending: None,
            next_group: 0,
            next_row: 0,
            done: false,
        }
    }

    /// The file's header.
    pub fn header(&self) -> &TraceHeader {
        self.file.header()
    }

    /// The next chunk, `None` at the end of the file.
    fn next_chunk(&mut self) -> Result<Option<TraceChunk>> {
        loop {
            if let Some((frame, first_row)) = self.pending.take() {
                let stop = self
                    .decoder
                    .first_token()
                    .saturating_add(self.tokens_per_chunk);
                let path = self.file.path();
                if let Some(at) = self.decoder.feed(path, &frame, first_row, stop)? {
                    let rest = frame.slice(at as i64, frame.height() - at);
                    self.pending = Some((rest, first_row + at));
                    return self.take_chunk(stop).map(Some);
                }
            } else if self.next_group < self.group_rows.len() {
                self.pending = Some(self.read_batch()?);
            } else {
                return self.end_of_file();
            }
        }
    }

    /// Reads the next few row groups.
    fn read_batch(&mut self) -> Result<(DataFrame, usize)> {
        let start = self.next_row;
        let mut len = 0;
        while self.next_group < self.group_rows.len() && len < READ_BATCH_ROWS {
            len += self.group_rows[self.next_group];
            self.next_group += 1;
        }
        self.next_row += len;
        Ok((self.file.read_rows(start, len)?, start))
    }

    /// Hands out the decoded tokens as a chunk and starts a decoder at `next_first_token`.
    fn take_chunk(&mut self, next_first_token: usize) -> Result<TraceChunk> {
        let fresh = new_decoder(
            &self.file,
            self.tokens_per_chunk,
            self.optional,
            next_first_token,
        );
        let decoder = std::mem::replace(&mut self.decoder, fresh);
        let first_token = decoder.first_token();
        let trace = decoder.finish(self.file.path(), self.file.header().num_experts)?;
        Ok(TraceChunk { first_token, trace })
    }

    /// Checks the token count against the header and hands out the last chunk, if any.
    fn end_of_file(&mut self) -> Result<Option<TraceChunk>> {
        let decoded = self.decoder.first_token() + self.decoder.num_tokens();
        let expected = self.file.header().num_tokens;
        if decoded != expected {
            return Err(Error::bad_file(
                self.file.path(),
                format!(
                    "metadata key `moesim.num_tokens` says {expected} tokens but the rows hold \
                     {decoded}"
                ),
            ));
        }
        if self.decoder.num_tokens() == 0 {
            return Ok(None);
        }
        self.take_chunk(decoded).map(Some)
    }

    /// The trace of a file with no tokens (its layers are kept).
    fn empty_trace(self) -> Result<RoutingTrace> {
        self.decoder
            .finish(self.file.path(), self.file.header().num_experts)
    }
}

impl Iterator for TraceChunks {
    type Item = Result<TraceChunk>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = self.next_chunk();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result.transpose()
    }
}

/// A decoder for the chunk starting at global token `first_token`, its buffers sized for the
/// chunk's share of the file's rows.
fn new_decoder(
    file: &TraceFile,
    tokens_per_chunk: usize,
    optional: OptionalColumns,
    first_token: usize,
) -> TokenDecoder {
    let header = file.header();
    let rows = file.num_rows() as u128;
    let share =
        rows * tokens_per_chunk.min(header.num_tokens) as u128 / header.num_tokens.max(1) as u128;
    TokenDecoder::new(header.num_layers, first_token, optional, share as usize)
}

/// Reads a loads file: exactly one row per (layer, expert) of the grid its header declares.
fn read_loads(mut file: TraceFile) -> Result<ExpertLoads> {
    let path = file.path().to_path_buf();
    let header = file.header().clone();
    let (num_layers, num_experts) = (header.num_layers, header.num_experts);
    let cells = num_layers * num_experts;
    if file.num_rows() != cells {
        return Err(Error::bad_file(
            &path,
            format!(
                "has {} rows but the metadata declares {num_layers} layers x {num_experts} \
                 experts = {cells}",
                file.num_rows()
            ),
        ));
    }
    let frame = file.read_rows(0, cells)?;
    let typed = |e: PolarsError| Error::bad_file(&path, e.to_string());
    let layers = frame
        .column(col::LAYER)
        .and_then(Column::u16)
        .map_err(typed)?;
    let experts = frame
        .column(col::EXPERT)
        .and_then(Column::u16)
        .map_err(typed)?;
    let loads = frame
        .column(col::LOAD)
        .and_then(Column::f64)
        .map_err(typed)?;
    let mut grid = vec![0.0; cells];
    let mut seen = vec![false; cells];
    let rows = layers.iter().zip(experts.iter()).zip(loads.iter());
    for (row, ((layer, expert), load)) in rows.enumerate() {
        let (Some(layer), Some(expert), Some(load)) = (layer, expert, load) else {
            return Err(Error::bad_file(
                &path,
                format!("row {row}: `layer`, `expert` and `load` may not be null"),
            ));
        };
        let (layer, expert) = (usize::from(layer), usize::from(expert));
        if layer >= num_layers || expert >= num_experts {
            return Err(Error::bad_file(
                &path,
                format!(
                    "row {row}: layer {layer}, expert {expert} is outside the {num_layers} x \
                     {num_experts} grid the metadata declares"
                ),
            ));
        }
        let cell = layer * num_experts + expert;
        if std::mem::replace(&mut seen[cell], true) {
            return Err(Error::bad_file(
                &path,
                format!("row {row}: layer {layer}, expert {expert} appears twice"),
            ));
        }
        grid[cell] = load;
    }
    // As many rows as cells, none repeated: every cell is filled. The header guarantees at least
    // one expert, so the chunks are never empty.
    let rows = grid.chunks(num_experts).map(<[f64]>::to_vec).collect();
    ExpertLoads::new(num_experts, rows).map_err(|e| Error::bad_file(&path, e.to_string()))
}
