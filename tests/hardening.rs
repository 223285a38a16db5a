//! Regression tests for issue 15's defects on the trace side: each reproducer gives one `error:`
//! line naming the file (and the field or row), exit 1, no panic.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{assert_fails_with, moesim, shared_data, stderr};
use moesim::trace::importers::{self, ImportFormat};
use moesim::trace::parquet::{read_trace, write_trace};

/// Writes a version-1 `.npy` file of int64 `ids` with the given shape.
fn write_i64_npy(path: &Path, shape: &str, ids: &[i64]) {
    let mut header = format!("{{'descr': '<i8', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(ids.iter().flat_map(|v| v.to_le_bytes()));
    fs::write(path, bytes).unwrap();
}

/// A top-1 trace of 6 layers over 32 experts and 4,000 tokens (ids from a fixed LCG), imported
/// from `.npy` and written as moesim Parquet into `dir`.
fn imported_parquet(dir: &Path) -> PathBuf {
    let mut state = 12345u64;
    let ids: Vec<i64> = (0..4000 * 6)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) % 32) as i64
        })
        .collect();
    let npy = dir.join("routing.npy");
    write_i64_npy(&npy, "(4000, 6)", &ids);
    let trace = importers::import(&npy, None, Some(32)).unwrap();
    let parquet = dir.join("s32.parquet");
    write_trace(&parquet, &trace, "test").unwrap();
    parquet
}

/// The footer length the file's trailer declares.
fn footer_len(bytes: &[u8]) -> usize {
    u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap()) as usize
}

/// Issue 15 reproducer 1a: the bytes before an intact footer cut away.
fn cut_before_footer(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.len() - 8 - footer_len(bytes);
    [b"PAR1", &bytes[start..]].concat()
}

/// Asserts `trace stats`, `trace validate` and `place` on `path` each fail with exactly one
/// `error:` line naming the file and containing `needle`.
fn assert_every_reader_names(path: &Path, needle: &str) {
    let file = path.to_str().unwrap();
    let out = path.with_extension("placement.json");
    for args in [
        vec!["trace", "stats", file],
        vec!["trace", "validate", file, "--num-experts", "32"],
        vec![
            "place",
            "--trace",
            file,
            "--strategy",
            "contiguous",
            "--gpus",
            "4",
            "-o",
            out.to_str().unwrap(),
        ],
    ] {
        let output = moesim(&args);
        assert_fails_with(&output, &[file, needle]);
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
    }
    assert!(!out.exists());
}

#[test]
fn parquet_cut_before_its_footer_is_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fs::read(imported_parquet(dir.path())).unwrap();
    let cut = dir.path().join("a.parquet");
    fs::write(&cut, cut_before_footer(&bytes)).unwrap();
    assert_every_reader_names(&cut, "lies outside the data (bytes 4..4)");
}

#[test]
fn parquet_reproducers_of_issue_15_on_the_switch_trace() {
    let Some(npy) = shared_data("switch-top1/switch-base-32.trace.npy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s32 = dir.path().join("s32.parquet");
    let trace = importers::import(&npy, Some(ImportFormat::Npy), Some(32)).unwrap();
    let source = importers::provenance(&npy, ImportFormat::Npy);
    write_trace(&s32, &trace, &source).unwrap();
    let bytes = fs::read(&s32).unwrap();
    assert_eq!(bytes.len(), 183959, "the file the issue's offsets refer to");
    let flipped = |at: usize, bit: u8| {
        let mut b = bytes.clone();
        b[at] ^= bit;
        b
    };
    let cases = [
        ("a.parquet", cut_before_footer(&bytes), "lies outside the data"),
        (
            "b.parquet",
            flipped(166823, 0x10),
            "cannot read as Parquet: the file is corrupt (assertion failed",
        ),
        (
            "c.parquet",
            flipped(183318, 0x20),
            "cannot read as Parquet: the file is corrupt (thrift bool field)",
        ),
    ];
    for (name, content, needle) in cases {
        let path = dir.path().join(name);
        fs::write(&path, content).unwrap();
        assert_every_reader_names(&path, needle);
    }
}

#[test]
fn every_bit_flip_in_a_footer_is_an_error_naming_the_file_or_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let path = imported_parquet(dir.path());
    let bytes = fs::read(&path).unwrap();
    let footer_start = bytes.len() - 8 - footer_len(&bytes);
    let mutated = dir.path().join("m.parquet");
    let mut errors = 0;
    for at in footer_start..bytes.len() {
        let mut b = bytes.clone();
        b[at] ^= 0x20;
        fs::write(&mutated, &b).unwrap();
        match read_trace(&mutated) {
            // A flip in statistics or in an unused field reads fine.
            Ok(_) => {}
            Err(e) => {
                errors += 1;
                assert!(e.to_string().starts_with(mutated.to_str().unwrap()), "{e}");
            }
        }
    }
    assert!(errors > 100, "only {errors} flips were caught");
}
