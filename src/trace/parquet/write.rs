//! Writing trace files in the canonical format, atomically.

use std::io::Write;
use std::path::Path;

use polars::prelude::*;

use super::file::col;
use super::header::{TraceHeader, TraceKind};
use super::{FORMAT_VERSION, ROW_GROUP_ROWS};
use crate::error::{Error, Result};
use crate::output::write_atomic;
use crate::trace::{ExpertId, ExpertLoads, MAX_EXPERTS, MAX_LAYERS, RoutingTrace, Trace};

/// Writes `trace` to `path` in the canonical Parquet format, recording `source` as its provenance.
/// The file appears whole or not at all.
pub fn write_trace(path: &Path, trace: &Trace, source: &str) -> Result<()> {
    match trace {
        Trace::Tokens(routing) => write_tokens(path, routing, source, ROW_GROUP_ROWS),
        Trace::Loads(loads) => write_loads(path, loads, source),
    }
}

/// Writes a token-level trace, `rows_per_group` rows per Parquet row group (the last one may be
/// shorter). Row groups are cut by row count alone, so a token's rows may span two of them.
pub(super) fn write_tokens(
    path: &Path,
    trace: &RoutingTrace,
    source: &str,
    rows_per_group: usize,
) -> Result<()> {
    check_writable(trace)?;
    let header = TraceHeader {
        format_version: FORMAT_VERSION,
        kind: TraceKind::Tokens,
        num_experts: trace.num_experts(),
        num_layers: trace.num_layers(),
        num_tokens: trace.num_tokens(),
        source: source.to_string(),
    };
    let empty = RowBuilders::new(trace, 0)
        .into_frame(0)
        .map_err(|e| write_error(path, e))?;
    write_atomic(path, |out| {
        let mut writer = parquet_writer(out, &header)
            .batched(empty.schema())
            .map_err(|e| write_error(path, e))?;
        let mut rows = RowBuffer::new(trace, rows_per_group);
        for token in 0..trace.num_tokens() {
            for (layer, routing) in trace.layers().iter().enumerate() {
                let experts = routing.experts_of(token);
                let weights = routing.weights_of(token);
                let routed = experts
                    .iter()
                    .enumerate()
                    .map(|(rank, &expert)| (Some(expert), weights.map(|w| w[rank])));
                let null_row = experts.is_empty().then_some((None, None));
                for (expert, weight) in null_row.into_iter().chain(routed) {
                    rows.push(token, layer, expert, weight);
                    if rows.len() == rows_per_group {
                        let frame = rows.take_frame(path)?;
                        writer
                            .write_batch(&frame)
                            .map_err(|e| write_error(path, e))?;
                    }
                }
            }
        }
        if rows.len() > 0 {
            let frame = rows.take_frame(path)?;
            writer
                .write_batch(&frame)
                .map_err(|e| write_error(path, e))?;
        }
        writer.finish().map_err(|e| write_error(path, e))?;
        Ok(())
    })
}

/// Writes an aggregate loads trace: one row per (layer, expert), layer-major.
fn write_loads(path: &Path, loads: &ExpertLoads, source: &str) -> Result<()> {
    let (num_layers, num_experts) = (loads.num_layers(), loads.num_experts());
    if num_layers > MAX_LAYERS || num_experts > MAX_EXPERTS {
        return Err(Error::invalid(format!(
            "{num_layers} layers x {num_experts} experts exceeds the format's 65536 x 65536"
        )));
    }
    let header = TraceHeader {
        format_version: FORMAT_VERSION,
        kind: TraceKind::Loads,
        num_experts,
        num_layers,
        num_tokens: 0,
        source: source.to_string(),
    };
    let cells = num_layers * num_experts;
    let layer: Vec<u16> = (0..cells).map(|i| (i / num_experts) as u16).collect();
    let expert: Vec<u16> = (0..cells).map(|i| (i % num_experts) as u16).collect();
    let load: Vec<f64> = (0..num_layers)
        .flat_map(|l| loads.layer(l).to_vec())
        .collect();
    let mut frame = DataFrame::new(
        cells,
        vec![
            UInt16Chunked::from_vec(col::LAYER.into(), layer).into_column(),
            UInt16Chunked::from_vec(col::EXPERT.into(), expert).into_column(),
            Float64Chunked::from_vec(col::LOAD.into(), load).into_column(),
        ],
    )
    .map_err(|e| write_error(path, e))?;
    write_atomic(path, |out| {
        parquet_writer(out, &header)
            .with_row_group_size(Some(ROW_GROUP_ROWS))
            .finish(&mut frame)
            .map_err(|e| write_error(path, e))?;
        Ok(())
    })
}

/// A Parquet writer carrying `header` as file-level key-value metadata.
fn parquet_writer<W: Write>(out: W, header: &TraceHeader) -> ParquetWriter<W> {
    let metadata = KeyValueMetadata::from_static(header.to_key_values());
    ParquetWriter::new(out).with_key_value_metadata(Some(metadata))
}

/// A polars failure while writing `path`.
fn write_error(path: &Path, error: PolarsError) -> Error {
    Error::io(path, std::io::Error::other(error.to_string()))
}

/// Rejects traces the format cannot hold.
fn check_writable(trace: &RoutingTrace) -> Result<()> {
    if trace.num_tokens() > u32::MAX as usize + 1 {
        return Err(Error::invalid(format!(
            "{} tokens exceed the format's u32 token index",
            trace.num_tokens()
        )));
    }
    if trace.num_layers() > MAX_LAYERS {
        return Err(Error::invalid(format!(
            "{} layers exceed the format's u16 layer index",
            trace.num_layers()
        )));
    }
    if trace.num_layers() == 0 && trace.num_tokens() > 0 {
        return Err(Error::invalid(
            "a trace with tokens but no MoE layer has no rows to write",
        ));
    }
    let weighted = trace
        .layers()
        .iter()
        .filter(|l| l.weights().is_some())
        .count();
    if weighted != 0 && weighted != trace.num_layers() {
        return Err(Error::invalid(format!(
            "gate weights are recorded at {weighted} of {} layers; a trace file holds them at \
             every layer or none",
            trace.num_layers()
        )));
    }
    Ok(())
}

/// Column builders for one row group.
struct RowBuilders {
    token: PrimitiveChunkedBuilder<UInt32Type>,
    layer: PrimitiveChunkedBuilder<UInt16Type>,
    expert: PrimitiveChunkedBuilder<UInt16Type>,
    weight: Option<PrimitiveChunkedBuilder<Float32Type>>,
    step: Option<PrimitiveChunkedBuilder<UInt32Type>>,
    request_id: Option<PrimitiveChunkedBuilder<UInt64Type>>,
    position: Option<PrimitiveChunkedBuilder<UInt32Type>>,
    phase: Option<StringChunkedBuilder>,
    dp_rank: Option<PrimitiveChunkedBuilder<UInt16Type>>,
}

impl RowBuilders {
    /// Builders for the columns `trace` needs, sized for `capacity` rows.
    fn new(trace: &RoutingTrace, capacity: usize) -> Self {
        let meta = trace.meta();
        let weighted = trace
            .layers()
            .first()
            .is_some_and(|l| l.weights().is_some());
        fn numeric<T: PolarsNumericType>(name: &str, n: usize) -> PrimitiveChunkedBuilder<T> {
            PrimitiveChunkedBuilder::new(name.into(), n)
        }
        RowBuilders {
            token: numeric(col::TOKEN, capacity),
            layer: numeric(col::LAYER, capacity),
            expert: numeric(col::EXPERT, capacity),
            weight: weighted.then(|| numeric(col::WEIGHT, capacity)),
            step: meta.step.as_ref().map(|_| numeric(col::STEP, capacity)),
            request_id: meta
                .request_id
                .as_ref()
                .map(|_| numeric(col::REQUEST_ID, capacity)),
            position: meta
                .position
                .as_ref()
                .map(|_| numeric(col::POSITION, capacity)),
            phase: meta
                .phase
                .as_ref()
                .map(|_| StringChunkedBuilder::new(col::PHASE.into(), capacity)),
            dp_rank: meta
                .dp_rank
                .as_ref()
                .map(|_| numeric(col::DP_RANK, capacity)),
        }
    }

    /// The finished columns as one frame of `height` rows.
    fn into_frame(self, height: usize) -> PolarsResult<DataFrame> {
        let mut columns = vec![
            self.token.finish().into_column(),
            self.layer.finish().into_column(),
            self.expert.finish().into_column(),
        ];
        columns.extend(self.weight.map(|b| b.finish().into_column()));
        columns.extend(self.step.map(|b| b.finish().into_column()));
        columns.extend(self.request_id.map(|b| b.finish().into_column()));
        columns.extend(self.position.map(|b| b.finish().into_column()));
        columns.extend(self.phase.map(|b| b.finish().into_column()));
        columns.extend(self.dp_rank.map(|b| b.finish().into_column()));
        DataFrame::new(height, columns)
    }
}

/// Rows waiting to be written as the next row group.
struct RowBuffer<'a> {
    trace: &'a RoutingTrace,
    capacity: usize,
    len: usize,
    builders: RowBuilders,
}

impl<'a> RowBuffer<'a> {
    fn new(trace: &'a RoutingTrace, capacity: usize) -> Self {
        RowBuffer {
            trace,
            capacity,
            len: 0,
            builders: RowBuilders::new(trace, capacity),
        }
    }

    /// Rows buffered.
    fn len(&self) -> usize {
        self.len
    }

    /// Appends one row; `expert` is `None` for a token with no routed expert at `layer`.
    fn push(&mut self, token: usize, layer: usize, expert: Option<ExpertId>, weight: Option<f32>) {
        let b = &mut self.builders;
        let meta = self.trace.meta();
        // Both indices fit: `check_writable` bounds tokens by u32 and layers by u16.
        b.token.append_value(token as u32);
        b.layer.append_value(layer as u16);
        b.expert.append_option(expert);
        if let Some(w) = &mut b.weight {
            w.append_option(weight);
        }
        if let (Some(out), Some(values)) = (&mut b.step, &meta.step) {
            out.append_value(values[token]);
        }
        if let (Some(out), Some(values)) = (&mut b.request_id, &meta.request_id) {
            out.append_value(values[token]);
        }
        if let (Some(out), Some(values)) = (&mut b.position, &meta.position) {
            out.append_value(values[token]);
        }
        if let (Some(out), Some(values)) = (&mut b.phase, &meta.phase) {
            out.append_value(values[token].as_str());
        }
        if let (Some(out), Some(values)) = (&mut b.dp_rank, &meta.dp_rank) {
            out.append_value(values[token]);
        }
        self.len += 1;
    }

    /// The buffered rows as a frame; the buffer starts empty again.
    fn take_frame(&mut self, path: &Path) -> Result<DataFrame> {
        let fresh = RowBuilders::new(self.trace, self.capacity);
        let builders = std::mem::replace(&mut self.builders, fresh);
        let height = std::mem::take(&mut self.len);
        builders
            .into_frame(height)
            .map_err(|e| write_error(path, e))
    }
}
