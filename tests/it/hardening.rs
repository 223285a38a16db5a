//! Regression tests for issue 15's defects on the trace side: each reproducer gives one `error:`
//! line naming the file (and the field or row), exit 1, no panic.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{assert_fails_with, moesim, shared_data, stderr};
use moesim::trace::importers::{self, ImportFormat};
use moesim::trace::parquet::{read_trace, write_trace};

/// Writes a version-1 `.npy` file of int64 `ids` with the given shape.
fn write_i64_npy(path: &Path, shape: &str, ids: &[i64]) {
    let body: Vec<u8> = ids.iter().flat_map(|v| v.to_le_bytes()).collect();
    fs::write(path, common::npy_bytes("<i8", shape, &body)).unwrap();
}

/// A top-1 trace of 6 layers over 32 experts and 4,000 tokens (ids from a fixed LCG), imported
/// from `.npy` and written as moesim Parquet into `dir`.
fn imported_parquet(dir: &Path) -> PathBuf {
    let mut state = 12345u64;
    let ids: Vec<i64> = (0..4000 * 6)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
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
        (
            "a.parquet",
            cut_before_footer(&bytes),
            "lies outside the data",
        ),
        (
            "b.parquet",
            flipped(166823, 0x10),
            // The bit is in a page header's value count; polars asserted on it while decoding,
            // the page walk now names it first.
            "corrupt page header: row group 0, column 1, page 2: the data pages so far hold \
             244808 values but the chunk declares 244800",
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

/// Runs `moesim trace import INPUT -o OUT [extra]` in a fresh folder.
fn import_cli(input: &Path, extra: &[&str]) -> (std::process::Output, PathBuf) {
    let out = input.with_extension("imported.parquet");
    let mut args = vec!["trace", "import", input.to_str().unwrap(), "-o"];
    args.push(out.to_str().unwrap());
    args.extend_from_slice(extra);
    (moesim(&args), out)
}

#[test]
fn stats_at_65536_experts_count_sparse_pairs() {
    // Issue 15 defect 2. 30,000 top-2 tokens over 2 layers of 65,536 experts: token t takes
    // {2t, 2t+1} at layer 0 and {65535 - 2t, 65534 - 2t} at layer 1, so every layer-0 expert has
    // one token, split over two successors.
    let n = 65536usize;
    let ids: Vec<u16> = (0..30000usize)
        .flat_map(|t| [2 * t, 2 * t + 1, n - 1 - 2 * t, n - 2 - 2 * t])
        .map(|id| id as u16)
        .collect();
    let trace = moesim::trace::RoutingTrace::from_dense(n, 2, 2, &ids).unwrap();
    let stats = moesim::analysis::trace_stats(&moesim::trace::Trace::Tokens(trace.clone()));
    let first = &stats.layers[0];
    assert_eq!(first.affinity_top1, Some(0.5));
    assert_eq!(first.affinity_top4, Some(1.0));
    assert_eq!(first.dead_experts, 5536);
    assert!((first.max_mean - 65536.0 / 60000.0).abs() < 1e-12);
    assert_eq!(first.coactivation[0].pair, [0, 1]);
    assert_eq!(first.coactivation[0].count, 1);
    assert_eq!(stats.layers[1].coactivation[0].pair, [5536, 5537]);
    // No expert is used twice in a layer: every LRU lookup misses.
    assert!(first.lru_hit_rates.iter().all(|h| h.hits == 0));
    // The same through the binary, streaming a Parquet file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.parquet");
    write_trace(&path, &moesim::trace::Trace::Tokens(trace), "test").unwrap();
    let output = moesim(&["trace", "stats", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = common::stdout(&output);
    assert!(
        table.starts_with("2 layers x 65536 experts, 30000 tokens, top-2"),
        "{table}"
    );
    assert!(table.contains("0+1 0.0%"), "{table}");
}

#[test]
fn npy_top_k_repeating_an_expert_is_refused_at_import() {
    // Issue 15 defect 4: int64 [0, 1, 0, 1], shape (1, 1, 4), --num-experts 2.
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("repeat.npy");
    write_i64_npy(&npy, "(1, 1, 4)", &[0, 1, 0, 1]);
    let (output, out) = import_cli(&npy, &["--num-experts", "2"]);
    assert_fails_with(
        &output,
        &["repeat.npy: row 0, layer 0, rank 2: expert 0 repeats rank 0"],
    );
    assert!(!out.exists());
}

#[test]
fn sglang_negative_count_is_refused_by_import_and_place() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("neg.json");
    fs::write(&dump, r#"{"logical_count":[[-5,1,2,3],[1,1,1,1]]}"#).unwrap();
    let (output, out) = import_cli(&dump, &[]);
    assert_fails_with(
        &output,
        &["neg.json: `logical_count[0][0]`: count -5 is negative"],
    );
    assert!(!out.exists());
    let placement = dir.path().join("p.json");
    let args = [
        "place",
        "--trace",
        dump.to_str().unwrap(),
        "--strategy",
        "eplb",
        "--gpus",
        "2",
        "-o",
        placement.to_str().unwrap(),
    ];
    assert_fails_with(&moesim(&args), &["neg.json", "count -5 is negative"]);
    assert!(!placement.exists());
}

#[test]
fn shape_and_width_errors_name_the_file() {
    // Issue 15 defect 7: npy shape (1, 244800), SGLang with 70,000 experts.
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("wide.npy");
    write_i64_npy(&npy, "(1, 244800)", &vec![1; 244800]);
    let (output, _) = import_cli(&npy, &[]);
    assert_fails_with(
        &output,
        &["wide.npy: 244800 layers exceed the 65536 a trace can hold"],
    );
    // Found by the long fuzz run: zero tokens of 2^32 - 1 layers sized a per-layer table before
    // the layer count was checked (a 64 GiB allocation, abort).
    let empty = dir.path().join("empty.npy");
    write_i64_npy(&empty, "(0, 4294967295)", &[]);
    let (output, _) = import_cli(&empty, &[]);
    assert_fails_with(
        &output,
        &["empty.npy: 4294967295 layers exceed the 65536 a trace can hold"],
    );
    let dump = dir.path().join("wide.json");
    let row = vec!["1"; 70000].join(",");
    fs::write(&dump, format!("{{\"logical_count\":[[{row}]]}}")).unwrap();
    for args in [
        vec!["trace", "import", dump.to_str().unwrap(), "-o", "x.parquet"],
        vec!["trace", "stats", dump.to_str().unwrap()],
    ] {
        assert_fails_with(
            &moesim(&args),
            &["wide.json: `logical_count` has 1 layers x 70000 experts"],
        );
    }
}

#[test]
fn synth_flag_errors_name_the_flag() {
    // Issue 15 defect 8: `--dirichlet 0` named `skew.alpha`.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.parquet");
    let base = [
        "trace",
        "synth",
        "--experts",
        "8",
        "--layers",
        "2",
        "--top-k",
        "2",
    ];
    let cases: [(&[&str], &str); 4] = [
        (
            &["--dirichlet", "0"],
            "'0' for '--dirichlet <DIRICHLET>': must be a finite number > 0",
        ),
        (
            &["--zipf=-1"],
            "'--zipf <ZIPF>': must be a finite number >= 0",
        ),
        (
            &["--affinity", "1.5"],
            "'--affinity <AFFINITY>': must be a finite number from 0 to 1",
        ),
        (
            &["--drift", "inf"],
            "'--drift <DRIFT>': must be a finite number from 0 to 1",
        ),
    ];
    for (flags, message) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(flags);
        args.extend_from_slice(&["-o", out.to_str().unwrap()]);
        let output = moesim(&args);
        assert_eq!(output.status.code(), Some(2), "{flags:?}");
        let err = stderr(&output);
        assert!(
            err.starts_with("error: invalid value") && err.contains(message),
            "{err}"
        );
    }
    let output = moesim(&[
        "trace",
        "synth",
        "--experts",
        "70000",
        "--layers",
        "1",
        "--top-k",
        "1",
        "-o",
        "x",
    ]);
    assert!(stderr(&output).contains("'--experts <EXPERTS>': must be at most 65536"));
    assert!(!out.exists());
}
