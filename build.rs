//! Compiles the CUDA gating kernel to PTX for sm_80 and sm_90 when an nvcc is available, and
//! embeds it (cfg `moesim_ptx`). Without nvcc the crate still builds; the GPU path then says the
//! kernel was not compiled.
//!
//! nvcc is `$MOESIM_NVCC` when set (a failed compile then fails the build), else `nvcc` on the
//! PATH (a failed compile is then a warning and the kernel is left out).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const KERNEL: &str = "src/capture/kernels/gating.cu";
/// The GPU architectures the PTX is generated for (A100 and H100/H200).
const ARCHES: [&str; 2] = ["sm_80", "sm_90"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(moesim_ptx)");
    println!("cargo::rerun-if-changed={KERNEL}");
    println!("cargo::rerun-if-env-changed=MOESIM_NVCC");
    println!("cargo::rerun-if-env-changed=PATH");
    let explicit = env::var_os("MOESIM_NVCC").filter(|v| !v.is_empty());
    let required = explicit.is_some();
    let nvcc = match explicit {
        Some(path) => PathBuf::from(path),
        None => match find_on_path("nvcc") {
            Some(path) => path,
            None => return,
        },
    };
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for arch in ARCHES {
        let ptx = out_dir.join(format!("gating_{arch}.ptx"));
        if let Err(message) = compile(&nvcc, arch, &ptx) {
            if required {
                panic!("MOESIM_NVCC={}: {message}", nvcc.display());
            }
            println!("cargo::warning=gating kernel not compiled ({message}); GPU capture disabled");
            return;
        }
    }
    println!("cargo::rustc-cfg=moesim_ptx");
}

/// Runs nvcc on the kernel for `arch`, writing PTX to `ptx`.
fn compile(nvcc: &Path, arch: &str, ptx: &Path) -> Result<(), String> {
    let output = Command::new(nvcc)
        .args([
            "-ptx",
            "-fmad=false",
            "-O3",
            &format!("-arch={arch}"),
            KERNEL,
            "-o",
        ])
        .arg(ptx)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", nvcc.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nvcc failed for {arch}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The first executable called `name` in a PATH directory.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
