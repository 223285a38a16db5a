//! Turning canonical token rows back into CSR routing, one aligned chunk of columns at a time.
//!
//! The decoder is a small state machine over `(token, layer)` groups: rows of one group are that
//! token's routed experts at that layer in rank order, and groups must follow each other in
//! token-then-layer order with every layer of every token present. It works on typed slices of
//! each Parquet chunk (no per-row `AnyValue`), so decoding runs at memory speed.

use std::path::Path;

use polars::prelude::*;

use super::file::col;
use crate::error::{Error, Result};
use crate::trace::{ExpertId, LayerRouting, Phase, RoutingTrace, TokenMeta};

/// One layer's CSR parts while they are being filled.
struct LayerParts {
    offsets: Vec<u32>,
    experts: Vec<ExpertId>,
    weights: Option<Vec<f32>>,
}

/// Which optional columns the file has; fixed for the whole file.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct OptionalColumns {
    pub weight: bool,
    pub step: bool,
    pub request_id: bool,
    pub position: bool,
    pub phase: bool,
    pub dp_rank: bool,
}

/// Decodes consecutive rows into the routing of consecutive whole tokens.
pub(super) struct TokenDecoder {
    num_layers: usize,
    first_token: usize,
    layers: Vec<LayerParts>,
    meta: TokenMeta,
    /// Global token index of the current group (`first_token - 1` before the first row).
    cur_token: i64,
    /// Layer of the current group (the last layer before the first row).
    cur_layer: usize,
    /// Whether a group is open (rows of it have been seen and its offset is not yet pushed).
    in_group: bool,
    /// Whether the open group is a null-routing row (a token with no expert at this layer).
    group_null: bool,
}

impl TokenDecoder {
    /// A decoder whose first row must be token `first_token`, layer 0. `entries_hint` is the
    /// expected number of routed entries, used to size the buffers once.
    pub(super) fn new(
        num_layers: usize,
        first_token: usize,
        optional: OptionalColumns,
        entries_hint: usize,
    ) -> Self {
        let per_layer = entries_hint / num_layers.max(1);
        let layers = (0..num_layers)
            .map(|_| LayerParts {
                offsets: vec![0],
                experts: Vec::with_capacity(per_layer),
                weights: optional.weight.then(|| Vec::with_capacity(per_layer)),
            })
            .collect();
        TokenDecoder {
            num_layers,
            first_token,
            layers,
            meta: TokenMeta {
                step: optional.step.then(Vec::new),
                request_id: optional.request_id.then(Vec::new),
                position: optional.position.then(Vec::new),
                phase: optional.phase.then(Vec::new),
                dp_rank: optional.dp_rank.then(Vec::new),
            },
            cur_token: first_token as i64 - 1,
            cur_layer: num_layers.saturating_sub(1),
            in_group: false,
            group_null: false,
        }
    }

    /// Global index of the first token this decoder holds.
    pub(super) fn first_token(&self) -> usize {
        self.first_token
    }

    /// Tokens started so far (the last one may still be missing layers).
    pub(super) fn num_tokens(&self) -> usize {
        (self.cur_token + 1 - self.first_token as i64) as usize
    }

    /// Feeds `frame` (whose row 0 is global row `first_row`). Stops before the first row of token
    /// `stop_token`, returning that row's index in `frame`; returns `None` when all rows were taken.
    pub(super) fn feed(
        &mut self,
        path: &Path,
        frame: &DataFrame,
        first_row: usize,
        stop_token: usize,
    ) -> Result<Option<usize>> {
        if self.num_layers == 0 && frame.height() > 0 {
            return Err(Error::bad_file(
                path,
                "metadata says the trace has 0 layers, yet the file has rows",
            ));
        }
        let columns = RowColumns::of(path, frame)?;
        let stop_token = i64::try_from(stop_token).unwrap_or(i64::MAX);
        let mut offset = 0;
        for (chunk, len) in columns.token.chunk_lengths().enumerate() {
            let at = first_row + offset;
            if let Some(stop) = self.feed_chunk(path, &columns, chunk, at, stop_token)? {
                return Ok(Some(offset + stop));
            }
            offset += len;
        }
        Ok(None)
    }

    /// Feeds chunk `chunk` of every column; see [`TokenDecoder::feed`].
    fn feed_chunk(
        &mut self,
        path: &Path,
        columns: &RowColumns,
        chunk: usize,
        first_row: usize,
        stop_token: i64,
    ) -> Result<Option<usize>> {
        let token_array = chunk_of(path, columns.token, chunk)?;
        let layer_array = chunk_of(path, columns.layer, chunk)?;
        let expert_array = chunk_of(path, columns.expert, chunk)?;
        let weight_array = optional_chunk(path, columns.weight, chunk)?;
        require_no_nulls(path, col::TOKEN, token_array, first_row)?;
        require_no_nulls(path, col::LAYER, layer_array, first_row)?;
        let meta = MetaArrays {
            step: optional_chunk(path, columns.step, chunk)?,
            request_id: optional_chunk(path, columns.request_id, chunk)?,
            position: optional_chunk(path, columns.position, chunk)?,
            phase: optional_chunk(path, columns.phase, chunk)?,
            dp_rank: optional_chunk(path, columns.dp_rank, chunk)?,
        };

        let rows = token_array.len();
        let lengths = [
            Some(layer_array.len()),
            Some(expert_array.len()),
            weight_array.map(|a| a.len()),
            meta.step.map(|a| a.len()),
            meta.request_id.map(|a| a.len()),
            meta.position.map(|a| a.len()),
            meta.phase.map(|a| a.len()),
            meta.dp_rank.map(|a| a.len()),
        ];
        if lengths.into_iter().flatten().any(|len| len != rows) {
            return Err(Error::bad_file(
                path,
                format!(
                    "rows from {first_row} on: the columns decode to different lengths (the file \
                     is corrupt)"
                ),
            ));
        }
        let tokens = token_array.values().as_slice();
        let layers = layer_array.values().as_slice();
        let experts = expert_array.values().as_slice();
        let expert_validity = expert_array.validity().filter(|v| v.unset_bits() > 0);
        let weights = weight_array.map(|a| {
            (
                a.values().as_slice(),
                a.validity().filter(|v| v.unset_bits() > 0),
            )
        });
        for i in 0..tokens.len() {
            let token = i64::from(tokens[i]);
            let layer = usize::from(layers[i]);
            let routed = expert_validity.is_none_or(|v| v.get_bit(i));
            if !(self.in_group && token == self.cur_token && layer == self.cur_layer) {
                if layer == 0 && token == stop_token {
                    self.close_group(path)?;
                    self.in_group = false;
                    return Ok(Some(i));
                }
                self.open_group(path, token, layer, first_row + i)?;
                if layer == 0 {
                    self.push_meta(path, &meta, i, first_row + i)?;
                }
                self.group_null = !routed;
            } else if self.group_null || !routed {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "row {}: token {token} has a null `expert` row at layer {layer} besides \
                         routed experts (a null expert must be the only row of its layer)",
                        first_row + i
                    ),
                ));
            }
            if routed {
                let parts = &mut self.layers[layer];
                parts.experts.push(experts[i]);
                if let (Some(out), Some((values, validity))) = (&mut parts.weights, weights) {
                    if !validity.is_none_or(|v| v.get_bit(i)) {
                        return Err(Error::bad_file(
                            path,
                            format!(
                                "row {}: column `weight` is null for routed expert {}",
                                first_row + i,
                                experts[i]
                            ),
                        ));
                    }
                    out.push(values[i]);
                }
            }
        }
        Ok(None)
    }

    /// Closes the open group and opens `(token, layer)`, which must be the group right after it.
    fn open_group(&mut self, path: &Path, token: i64, layer: usize, row: usize) -> Result<()> {
        let (next_token, next_layer) = if self.cur_layer + 1 < self.num_layers {
            (self.cur_token, self.cur_layer + 1)
        } else {
            (self.cur_token + 1, 0)
        };
        if (token, layer) != (next_token, next_layer) {
            return Err(Error::bad_file(
                path,
                format!(
                    "row {row}: found token {token}, layer {layer} where token {next_token}, \
                     layer {next_layer} was expected (rows go by token, then layer, and every \
                     token has rows at all {} layers)",
                    self.num_layers
                ),
            ));
        }
        self.close_group(path)?;
        self.cur_token = token;
        self.cur_layer = layer;
        self.in_group = true;
        Ok(())
    }

    /// Ends the open group's CSR range.
    fn close_group(&mut self, path: &Path) -> Result<()> {
        if self.in_group {
            let parts = &mut self.layers[self.cur_layer];
            let end = u32::try_from(parts.experts.len()).map_err(|_| {
                Error::bad_file(
                    path,
                    format!(
                        "layer {} holds more than {} entries in one chunk; read it with \
                         smaller chunks",
                        self.cur_layer,
                        u32::MAX
                    ),
                )
            })?;
            parts.offsets.push(end);
        }
        Ok(())
    }

    /// Records the per-token metadata found on the token's first row.
    fn push_meta(&mut self, path: &Path, arrays: &MetaArrays, i: usize, row: usize) -> Result<()> {
        let meta = &mut self.meta;
        if let (Some(out), Some(a)) = (&mut meta.step, arrays.step) {
            out.push(non_null(path, a, i, col::STEP, row)?);
        }
        if let (Some(out), Some(a)) = (&mut meta.request_id, arrays.request_id) {
            out.push(non_null(path, a, i, col::REQUEST_ID, row)?);
        }
        if let (Some(out), Some(a)) = (&mut meta.position, arrays.position) {
            out.push(non_null(path, a, i, col::POSITION, row)?);
        }
        if let (Some(out), Some(a)) = (&mut meta.dp_rank, arrays.dp_rank) {
            out.push(non_null(path, a, i, col::DP_RANK, row)?);
        }
        if let (Some(out), Some(a)) = (&mut meta.phase, arrays.phase) {
            let text = non_null(path, a, i, col::PHASE, row)?;
            let phase = Phase::parse(text).ok_or_else(|| {
                Error::bad_file(
                    path,
                    format!("row {row}: column `phase` is '{text}', expected prefill or decode"),
                )
            })?;
            out.push(phase);
        }
        Ok(())
    }

    /// The routing of the tokens fed so far. The last token must have all its layers.
    pub(super) fn finish(mut self, path: &Path, num_experts: usize) -> Result<RoutingTrace> {
        self.close_group(path)?;
        if self.in_group && self.cur_layer + 1 != self.num_layers {
            return Err(Error::bad_file(
                path,
                format!(
                    "token {} stops at layer {} of {}: the file ends in the middle of a token",
                    self.cur_token, self.cur_layer, self.num_layers
                ),
            ));
        }
        let layers = self
            .layers
            .into_iter()
            .map(|p| LayerRouting::new(p.offsets, p.experts, p.weights))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| Error::bad_file(path, e.to_string()))?;
        RoutingTrace::new(num_experts, layers, self.meta)
            .map_err(|e| Error::bad_file(path, e.to_string()))
    }
}

/// The typed columns of one frame of token rows.
struct RowColumns<'a> {
    token: &'a UInt32Chunked,
    layer: &'a UInt16Chunked,
    expert: &'a UInt16Chunked,
    weight: Option<&'a Float32Chunked>,
    step: Option<&'a UInt32Chunked>,
    request_id: Option<&'a UInt64Chunked>,
    position: Option<&'a UInt32Chunked>,
    phase: Option<&'a StringChunked>,
    dp_rank: Option<&'a UInt16Chunked>,
}

impl<'a> RowColumns<'a> {
    /// Borrows the typed columns of `frame` (dtypes were checked when the file was opened).
    fn of(path: &Path, frame: &'a DataFrame) -> Result<Self> {
        let typed = |e: PolarsError| Error::bad_file(path, e.to_string());
        let required = |name: &str| frame.column(name).map_err(typed);
        let optional = |name: &str| frame.column(name).ok();
        Ok(RowColumns {
            token: required(col::TOKEN)?.u32().map_err(typed)?,
            layer: required(col::LAYER)?.u16().map_err(typed)?,
            expert: required(col::EXPERT)?.u16().map_err(typed)?,
            weight: optional(col::WEIGHT)
                .map(Column::f32)
                .transpose()
                .map_err(typed)?,
            step: optional(col::STEP)
                .map(Column::u32)
                .transpose()
                .map_err(typed)?,
            request_id: optional(col::REQUEST_ID)
                .map(Column::u64)
                .transpose()
                .map_err(typed)?,
            position: optional(col::POSITION)
                .map(Column::u32)
                .transpose()
                .map_err(typed)?,
            phase: optional(col::PHASE)
                .map(Column::str)
                .transpose()
                .map_err(typed)?,
            dp_rank: optional(col::DP_RANK)
                .map(Column::u16)
                .transpose()
                .map_err(typed)?,
        })
    }
}

/// One chunk of each metadata column.
struct MetaArrays<'a> {
    step: Option<&'a <UInt32Type as PolarsDataType>::Array>,
    request_id: Option<&'a <UInt64Type as PolarsDataType>::Array>,
    position: Option<&'a <UInt32Type as PolarsDataType>::Array>,
    phase: Option<&'a <StringType as PolarsDataType>::Array>,
    dp_rank: Option<&'a <UInt16Type as PolarsDataType>::Array>,
}

/// Chunk `chunk` of `column`; chunks are aligned across columns by the file reader.
fn chunk_of<'a, T: PolarsDataType>(
    path: &Path,
    column: &'a ChunkedArray<T>,
    chunk: usize,
) -> Result<&'a T::Array> {
    column.downcast_get(chunk).ok_or_else(|| {
        Error::bad_file(
            path,
            format!("column `{}` has no chunk {chunk}", column.name()),
        )
    })
}

/// Chunk `chunk` of an optional column.
fn optional_chunk<'a, T: PolarsDataType>(
    path: &Path,
    column: Option<&'a ChunkedArray<T>>,
    chunk: usize,
) -> Result<Option<&'a T::Array>> {
    column.map(|c| chunk_of(path, c, chunk)).transpose()
}

/// Fails, naming the first null row, if a column that may not hold nulls does.
fn require_no_nulls<A: StaticArray>(
    path: &Path,
    name: &str,
    array: &A,
    first_row: usize,
) -> Result<()> {
    if array.null_count() == 0 {
        return Ok(());
    }
    match (0..array.len()).find(|&i| array.get(i).is_none()) {
        Some(i) => Err(Error::bad_file(
            path,
            format!("row {}: column `{name}` is null", first_row + i),
        )),
        None => Ok(()),
    }
}

/// Row `i` of `array`, which must not be null.
fn non_null<'a, A: StaticArray>(
    path: &Path,
    array: &'a A,
    i: usize,
    name: &str,
    row: usize,
) -> Result<A::ValueT<'a>> {
    array
        .get(i)
        .ok_or_else(|| Error::bad_file(path, format!("row {row}: column `{name}` is null")))
}
