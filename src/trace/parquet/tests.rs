use std::fs;
use std::path::Path;

use polars::prelude::*;

use super::write::write_tokens;
use super::*;
use crate::trace::{ExpertLoads, LayerRouting, Phase, RoutingTrace, TokenMeta, Trace};

/// 3 tokens x 2 layers, 8 experts: variable k, a null-routed token at each layer, gate weights
/// and every metadata column.
fn rich_trace() -> RoutingTrace {
    let layer0 = LayerRouting::new(
        vec![0, 2, 2, 3],
        vec![5, 1, 7],
        Some(vec![0.625, 0.375, 1.0]),
    )
    .unwrap();
    let layer1 = LayerRouting::new(
        vec![0, 1, 4, 4],
        vec![2, 3, 4, 0],
        Some(vec![1.0, 0.5, 0.25, 0.25]),
    )
    .unwrap();
    let meta = TokenMeta {
        step: Some(vec![0, 0, 1]),
        request_id: Some(vec![10, 10, u64::MAX]),
        position: Some(vec![0, 1, 0]),
        phase: Some(vec![Phase::Prefill, Phase::Prefill, Phase::Decode]),
        dp_rank: Some(vec![0, 1, 0]),
    };
    RoutingTrace::new(8, vec![layer0, layer1], meta).unwrap()
}

/// A deterministic trace of `tokens` x 3 layers over 16 experts with k cycling through 0..=3
/// (an LCG picks the experts), so rows per token vary from 3 to 9.
fn lcg_trace(tokens: usize) -> RoutingTrace {
    let mut state: u64 = 12345;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u16 % 16
    };
    let layers = (0..3)
        .map(|layer| {
            let mut offsets = vec![0u32];
            let mut experts = Vec::new();
            for token in 0..tokens {
                for _ in 0..(token + layer) % 4 {
                    experts.push(next());
                }
                offsets.push(experts.len() as u32);
            }
            LayerRouting::new(offsets, experts, None).unwrap()
        })
        .collect();
    let meta = TokenMeta {
        position: Some((0..tokens as u32).collect()),
        ..TokenMeta::default()
    };
    RoutingTrace::new(16, layers, meta).unwrap()
}

/// Writes `frame` as Parquet with moesim metadata, bypassing the trace writer's checks.
fn write_raw(path: &Path, frame: &mut DataFrame, pairs: &[(&str, &str)]) {
    let metadata = KeyValueMetadata::from_static(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let file = fs::File::create(path).unwrap();
    ParquetWriter::new(file)
        .with_key_value_metadata(Some(metadata))
        .finish(frame)
        .unwrap();
}

/// Standard token-file metadata for raw test files.
fn token_metadata(layers: &str, tokens: &str) -> Vec<(&'static str, String)> {
    vec![
        ("moesim.format_version", "1".into()),
        ("moesim.kind", "tokens".into()),
        ("moesim.num_experts", "8".into()),
        ("moesim.num_layers", layers.into()),
        ("moesim.num_tokens", tokens.into()),
        ("moesim.source", "test".into()),
    ]
}

fn as_pairs<'a>(owned: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    owned.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A raw frame of token rows (no optional columns).
fn raw_rows(token: &[u32], layer: &[u16], expert: &[Option<u16>]) -> DataFrame {
    DataFrame::new(
        token.len(),
        vec![
            UInt32Chunked::from_slice("token".into(), token).into_column(),
            UInt16Chunked::from_slice("layer".into(), layer).into_column(),
            UInt16Chunked::from_iter_options("expert".into(), expert.iter().copied()).into_column(),
        ],
    )
    .unwrap()
}

fn error_of<T>(result: crate::Result<T>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn rich_trace_round_trips_with_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rich.parquet");
    let trace = Trace::Tokens(rich_trace());
    write_trace(&path, &trace, "hand-made test trace").unwrap();
    assert_eq!(read_trace(&path).unwrap(), trace);
    let header = read_header(&path).unwrap();
    assert_eq!(
        header,
        TraceHeader {
            format_version: 1,
            kind: TraceKind::Tokens,
            num_experts: 8,
            num_layers: 2,
            num_tokens: 3,
            source: "hand-made test trace".into(),
        }
    );
}

#[test]
fn rows_follow_the_documented_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rich.parquet");
    write_trace(&path, &Trace::Tokens(rich_trace()), "test").unwrap();
    let frame = ParquetReader::new(fs::File::open(&path).unwrap())
        .finish()
        .unwrap();
    let names: Vec<&str> = frame
        .get_column_names()
        .iter()
        .map(|n| n.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "token",
            "layer",
            "expert",
            "weight",
            "step",
            "request_id",
            "position",
            "phase",
            "dp_rank"
        ]
    );
    // token 0: layer 0 -> 5, 1; layer 1 -> 2. token 1: layer 0 -> none; layer 1 -> 3, 4, 0.
    // token 2: layer 0 -> 7; layer 1 -> none.
    let column = |name: &str| frame.column(name).unwrap().as_materialized_series().clone();
    let tokens: Vec<u32> = column("token").u32().unwrap().into_no_null_iter().collect();
    assert_eq!(tokens, [0, 0, 0, 1, 1, 1, 1, 2, 2]);
    let layers: Vec<u16> = column("layer").u16().unwrap().into_no_null_iter().collect();
    assert_eq!(layers, [0, 0, 1, 0, 1, 1, 1, 0, 1]);
    let experts: Vec<Option<u16>> = column("expert").u16().unwrap().iter().collect();
    assert_eq!(
        experts,
        [
            Some(5),
            Some(1),
            Some(2),
            None,
            Some(3),
            Some(4),
            Some(0),
            Some(7),
            None
        ]
    );
    let weights: Vec<Option<f32>> = column("weight").f32().unwrap().iter().collect();
    assert_eq!(weights[3], None);
    assert_eq!(weights[4], Some(0.5));
    let phases = column("phase");
    let phases: Vec<Option<&str>> = phases.str().unwrap().iter().collect();
    assert_eq!(phases[6], Some("prefill"));
    assert_eq!(phases[7], Some("decode"));
}

#[test]
fn loads_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loads.parquet");
    let loads = ExpertLoads::new(3, vec![vec![0.0, 0.0, 0.0], vec![4.5, 1.0, 1e12]]).unwrap();
    write_trace(&path, &Trace::Loads(loads.clone()), "sglang dump").unwrap();
    assert_eq!(read_trace(&path).unwrap(), Trace::Loads(loads));
    let header = read_header(&path).unwrap();
    assert_eq!(header.kind, TraceKind::Loads);
    assert_eq!((header.num_layers, header.num_experts), (2, 3));
}

#[test]
fn empty_trace_keeps_its_layers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.parquet");
    let layer = || LayerRouting::new(vec![0], vec![], None).unwrap();
    let trace = RoutingTrace::new(4, vec![layer(), layer()], TokenMeta::default()).unwrap();
    write_trace(&path, &Trace::Tokens(trace.clone()), "empty").unwrap();
    assert_eq!(read_trace(&path).unwrap(), Trace::Tokens(trace));
    assert_eq!(read_chunks(&path, 10).unwrap().count(), 0);
}

#[test]
fn truncated_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.parquet");
    write_trace(&path, &Trace::Tokens(rich_trace()), "test").unwrap();
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let message = error_of(read_trace(&path));
    assert!(message.contains("cut.parquet"), "{message}");
    assert!(message.contains("cannot read as Parquet"), "{message}");
}

#[test]
fn wrong_dtype_names_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dtype.parquet");
    let mut frame = DataFrame::new(
        1,
        vec![
            UInt32Chunked::from_slice("token".into(), &[0]).into_column(),
            UInt16Chunked::from_slice("layer".into(), &[0]).into_column(),
            Int64Chunked::from_slice("expert".into(), &[3]).into_column(),
        ],
    )
    .unwrap();
    write_raw(&path, &mut frame, &as_pairs(&token_metadata("1", "1")));
    let message = error_of(read_trace(&path));
    assert!(
        message.ends_with("column `expert` has Arrow type Int64, expected UInt16"),
        "{message}"
    );
}

#[test]
fn missing_column_and_bad_metadata_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.parquet");
    let mut rows = raw_rows(&[0], &[0], &[Some(1)]);

    let mut no_expert = rows.drop("expert").unwrap();
    write_raw(&path, &mut no_expert, &as_pairs(&token_metadata("1", "1")));
    assert!(
        error_of(read_trace(&path))
            .ends_with("missing required column `expert` for a tokens trace")
    );

    let mut future = token_metadata("1", "1");
    future[0].1 = "2".into();
    write_raw(&path, &mut rows, &as_pairs(&future));
    assert!(error_of(read_header(&path)).contains("`moesim.format_version` = 2"));

    let mut no_kind = token_metadata("1", "1");
    no_kind.remove(1);
    write_raw(&path, &mut rows, &as_pairs(&no_kind));
    assert!(error_of(read_header(&path)).contains("missing metadata key `moesim.kind`"));

    write_raw(&path, &mut rows, &as_pairs(&token_metadata("70000", "1")));
    assert!(error_of(read_header(&path)).contains("`moesim.num_layers` = 70000: at most 65536"));

    let mut odd_kind = token_metadata("1", "1");
    odd_kind[1].1 = "routes".into();
    write_raw(&path, &mut rows, &as_pairs(&odd_kind));
    assert!(error_of(read_header(&path)).contains("`moesim.kind` = 'routes'"));
}

#[test]
fn loads_file_is_not_streamed_as_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loads.parquet");
    let loads = ExpertLoads::new(2, vec![vec![1.0, 2.0]]).unwrap();
    write_trace(&path, &Trace::Loads(loads), "test").unwrap();
    assert!(error_of(read_chunks(&path, 4)).contains("not token-level routing"));
}

#[test]
fn out_of_order_rows_are_rejected_with_their_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("order.parquet");
    // Token 1 skips layer 1.
    let mut rows = raw_rows(
        &[0, 0, 1, 2],
        &[0, 1, 0, 0],
        &[Some(1), Some(2), Some(3), Some(4)],
    );
    write_raw(&path, &mut rows, &as_pairs(&token_metadata("2", "3")));
    let message = error_of(read_trace(&path));
    assert!(
        message.contains("row 3: found token 2, layer 0 where token 1, layer 1 was expected"),
        "{message}"
    );
}

#[test]
fn null_expert_beside_routed_experts_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("null.parquet");
    let mut rows = raw_rows(&[0, 0], &[0, 0], &[Some(1), None]);
    write_raw(&path, &mut rows, &as_pairs(&token_metadata("1", "1")));
    let message = error_of(read_trace(&path));
    assert!(
        message.contains("row 1: token 0 has a null `expert` row at layer 0"),
        "{message}"
    );
}

#[test]
fn token_count_must_match_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("count.parquet");
    let mut rows = raw_rows(&[0, 1], &[0, 0], &[Some(1), Some(2)]);
    write_raw(&path, &mut rows, &as_pairs(&token_metadata("1", "5")));
    let message = error_of(read_trace(&path));
    assert!(
        message.ends_with("`moesim.num_tokens` says 5 tokens but the rows hold 2"),
        "{message}"
    );
}

#[test]
fn file_ending_inside_a_token_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.parquet");
    let mut rows = raw_rows(&[0, 0, 1], &[0, 1, 0], &[Some(1), Some(2), Some(3)]);
    write_raw(&path, &mut rows, &as_pairs(&token_metadata("2", "2")));
    let message = error_of(read_trace(&path));
    assert!(
        message.contains("token 1 stops at layer 0 of 2"),
        "{message}"
    );
}

#[test]
fn small_row_groups_split_tokens_but_chunks_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chunks.parquet");
    let trace = lcg_trace(50);
    // 7-row groups cut through tokens (each token has 3 to 9 rows).
    write_tokens(&path, &trace, "lcg", 7).unwrap();
    let file = super::file::TraceFile::open(&path).unwrap();
    let groups = file.row_group_rows();
    assert!(groups.len() > 10 && groups[..groups.len() - 1].iter().all(|&g| g == 7));

    for tokens_per_chunk in [1, 6, 49, 50, 1000] {
        let chunks: Vec<TraceChunk> = read_chunks(&path, tokens_per_chunk)
            .unwrap()
            .collect::<crate::Result<_>>()
            .unwrap();
        assert_eq!(chunks.len(), 50_usize.div_ceil(tokens_per_chunk));
        for (index, chunk) in chunks.iter().enumerate() {
            let first = index * tokens_per_chunk;
            let last = (first + tokens_per_chunk).min(50);
            assert_eq!(chunk.first_token, first);
            assert_eq!(chunk.trace, trace.slice_tokens(first..last));
        }
    }
    assert_eq!(read_trace(&path).unwrap(), Trace::Tokens(trace));
}

#[test]
fn rich_trace_streams_token_by_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rich.parquet");
    let trace = rich_trace();
    write_tokens(&path, &trace, "test", 2).unwrap();
    let chunks: Vec<TraceChunk> = read_chunks(&path, 2)
        .unwrap()
        .collect::<crate::Result<_>>()
        .unwrap();
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1].first_token, 2);
    assert_eq!(chunks[1].trace.layer(0).experts(), &[7]);
    assert_eq!(chunks[1].trace.layer(1).num_entries(), 0);
    assert_eq!(
        chunks[1].trace.meta().phase.as_deref(),
        Some(&[Phase::Decode][..])
    );
    assert_eq!(chunks[0].trace, trace.slice_tokens(0..2));
}

#[test]
fn partial_weights_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.parquet");
    let weighted = LayerRouting::fixed_k(1, vec![1], Some(vec![1.0])).unwrap();
    let plain = LayerRouting::fixed_k(1, vec![2], None).unwrap();
    let trace = RoutingTrace::new(4, vec![weighted, plain], TokenMeta::default()).unwrap();
    let message = error_of(write_trace(&path, &Trace::Tokens(trace), "test"));
    assert!(message.contains("gate weights are recorded at 1 of 2 layers"));
    assert!(!path.exists());
}

#[test]
fn corrupted_pages_are_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.parquet");
    write_tokens(&path, &lcg_trace(2000), "lcg", 1000).unwrap();
    let clean = fs::read(&path).unwrap();
    // Scribble over stretches of the data pages (the footer stays intact).
    let mut errors = 0;
    let starts: Vec<usize> = (8..clean.len() / 2).step_by(97).collect();
    for &start in &starts {
        let mut bytes = clean.clone();
        for b in &mut bytes[start..start + 16] {
            *b = b.wrapping_mul(31).wrapping_add(7);
        }
        fs::write(&path, &bytes).unwrap();
        if let Err(e) = read_trace(&path) {
            assert!(e.to_string().contains("corrupt.parquet"), "{e}");
            errors += 1;
        }
    }
    assert!(errors * 2 > starts.len(), "{errors} of {}", starts.len());
}

#[test]
fn loads_file_must_cover_its_grid_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loads.parquet");
    let loads_metadata = [
        ("moesim.format_version", "1"),
        ("moesim.kind", "loads"),
        ("moesim.num_experts", "2"),
        ("moesim.num_layers", "1"),
        ("moesim.num_tokens", "0"),
        ("moesim.source", "test"),
    ];
    let frame = |experts: &[u16]| {
        DataFrame::new(
            experts.len(),
            vec![
                UInt16Chunked::from_vec("layer".into(), vec![0; experts.len()]).into_column(),
                UInt16Chunked::from_slice("expert".into(), experts).into_column(),
                Float64Chunked::from_vec("load".into(), vec![1.5; experts.len()]).into_column(),
            ],
        )
        .unwrap()
    };
    write_raw(&path, &mut frame(&[1, 0]), &loads_metadata);
    let Trace::Loads(loads) = read_trace(&path).unwrap() else {
        panic!("expected loads");
    };
    assert_eq!(loads.layer(0), &[1.5, 1.5]);
    write_raw(&path, &mut frame(&[1, 1]), &loads_metadata);
    assert!(error_of(read_trace(&path)).ends_with("row 1: layer 0, expert 1 appears twice"));
    write_raw(&path, &mut frame(&[0]), &loads_metadata);
    assert!(
        error_of(read_trace(&path))
            .contains("has 1 rows but the metadata declares 1 layers x 2 experts = 2")
    );
}

/// The end of the varint starting at `at`.
fn varint_end(bytes: &[u8], mut at: usize) -> usize {
    while bytes[at] & 0x80 != 0 {
        at += 1;
    }
    at + 1
}

/// Where the first data page header of `path`'s first column chunk keeps its `num_values`
/// varint, found by walking the compact-protocol fields `type`, `uncompressed_page_size`,
/// `compressed_page_size` (and `crc` if present) up to the `DataPageHeader` struct.
fn first_data_page_num_values(path: &Path, bytes: &[u8]) -> std::ops::Range<usize> {
    let metadata = ParquetReader::new(fs::File::open(path).unwrap())
        .get_metadata()
        .unwrap()
        .clone();
    let mut at = metadata.row_groups[0].parquet_columns()[0].data_page_offset() as usize;
    for _ in 0..3 {
        assert_eq!(bytes[at] & 0x0f, 5, "an i32 field");
        at = varint_end(bytes, at + 1);
    }
    if bytes[at] == 0x15 {
        at = varint_end(bytes, at + 1); // crc
    }
    assert_eq!(bytes[at] & 0x0f, 12, "the DataPageHeader struct");
    assert_eq!(bytes[at + 1], 0x15, "its num_values");
    at + 2..varint_end(bytes, at + 2)
}

#[test]
fn a_page_header_with_negative_values_is_named_before_polars_reserves_for_it() {
    // Found by the 100,000-input fuzz run: a data page header claiming a negative value count
    // made polars reserve 2^61 bytes for its validity bitmap and abort the process.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pages.parquet");
    write_tokens(&path, &lcg_trace(2000), "lcg", 1000).unwrap();
    let clean = fs::read(&path).unwrap();
    let field = first_data_page_num_values(&path, &clean);
    let varint = |value: i64| {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let byte = (zigzag & 0x7f) as u8;
            zigzag >>= 7;
            if zigzag == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    };
    let mut bytes = clean.clone();
    let negative = varint(-1000);
    assert_eq!(negative.len(), field.len());
    bytes.splice(field.clone(), negative);
    fs::write(&path, &bytes).unwrap();
    let message = error_of(read_trace(&path));
    let named = "pages.parquet: cannot read as Parquet: corrupt page header: row group 0, column 0";
    assert!(message.contains(named), "{message}");
    assert!(
        message.ends_with("`num_values` is negative (-1000)"),
        "{message}"
    );
    // A count above the chunk's is named too, before any page is decoded (the footer is found
    // from the file's end, so the longer varint moves nothing it needs).
    let mut bytes = clean;
    bytes.splice(field, varint(100_000));
    fs::write(&path, &bytes).unwrap();
    let message = error_of(read_trace(&path));
    assert!(message.contains(named), "{message}");
    assert!(
        message.contains("`num_values` is 100000 but the whole chunk declares 1"),
        "{message}"
    );
}
