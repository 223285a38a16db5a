//! Helpers shared by the integration tests: running the binary and finding the shared data.

#![allow(dead_code)]

pub mod gating_cases;

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
