//! Helpers shared by the integration tests: running the binary and finding the shared data.

#![allow(dead_code)]

pub mod gating_cases;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `moesim` binary with `args` in `dir`.
pub fn moesim_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moesim"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the moesim binary runs")
}

/// Runs the `moesim` binary with `args` from the repository root.
pub fn moesim(args: &[&str]) -> Output {
    moesim_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A file of the shared third-party data, or `None` (with a notice) when it is not available.
pub fn shared_data(relative: &str) -> Option<PathBuf> {
    let Some(root) = std::env::var_os("MOESIM_SHARED_DATA") else {
        eprintln!("skipping: MOESIM_SHARED_DATA not set");
        return None;
    };
    let path = Path::new(&root).join(relative);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} not found", path.display());
        None
    }
}

/// Asserts the command failed with exit code 1 and an error message containing every needle.
pub fn assert_fails_with(output: &Output, needles: &[&str]) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "stderr: {err}");
    for needle in needles {
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
    }
    assert!(!err.contains("panicked"), "panic: {err}");
}

/// A folder's files (by name) and their bytes.
pub type Files = BTreeMap<String, Vec<u8>>;

/// The files of the folder `dir` (not of its subfolders), or `None` if it does not exist.
pub fn files(dir: &Path) -> Option<Files> {
    let entries = std::fs::read_dir(dir).ok()?;
    let files = entries
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap_or_default())
        })
        .collect();
    Some(files)
}

/// Writes `<name>.toml` into `dir`: OLMoE on `cluster` with the contiguous and EPLB placements,
/// over 4,096 tokens of a synthetic trace seeded with `seed` (which changes every file of
/// its report); returns its path.
pub fn synth_scenario(dir: &Path, name: &str, cluster: &str, seed: u64) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let toml = format!(
        "name = \"{name}\"\nseed = {seed}\nmodel = \"olmoe-1b-7b\"\ncluster = \"{cluster}\"\n\
         tokens_per_gpu = 256\nplacements = [\"contiguous\", \"eplb\"]\n\n\
         [trace.synth]\nnum_tokens = 4096\nseed = {seed}\n"
    );
    std::fs::write(&path, toml).unwrap();
    path
}

/// A version-1 `.npy` file as NumPy writes it: the header dictionary with dtype `descr` and
/// `shape` (a Python tuple, e.g. `(3, 2)`), padded so the data starts on a 64-byte boundary,
/// then `body`.
pub fn npy_bytes(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(body);
    bytes
}
