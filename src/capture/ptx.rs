//! The gating kernel's PTX, embedded at build time when build.rs found nvcc (cfg `moesim_ptx`).

use crate::error::{Error, Result};

/// Why the GPU path cannot run when the crate was built without nvcc.
pub const NOT_COMPILED: &str = "kernel not compiled: no nvcc at build time (set MOESIM_NVCC)";

/// The plain kernel's entry name.
pub const PLAIN_ENTRY: &str = "moesim_gating";
/// The instrumented kernel's entry name.
pub const INSTRUMENTED_ENTRY: &str = "moesim_gating_instrumented";

/// PTX for one GPU architecture.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedPtx {
    /// The architecture name, e.g. `sm_90`.
    pub arch: &'static str,
    /// Its compute capability's major number.
    pub major: i32,
    /// The PTX text.
    pub text: &'static str,
}

#[cfg(moesim_ptx)]
const EMBEDDED: &[EmbeddedPtx] = &[
    EmbeddedPtx {
        arch: "sm_80",
        major: 8,
        text: include_str!(concat!(env!("OUT_DIR"), "/gating_sm_80.ptx")),
    },
    EmbeddedPtx {
        arch: "sm_90",
        major: 9,
        text: include_str!(concat!(env!("OUT_DIR"), "/gating_sm_90.ptx")),
    },
];
#[cfg(not(moesim_ptx))]
const EMBEDDED: &[EmbeddedPtx] = &[];

/// The embedded PTX, oldest architecture first; empty when built without nvcc.
pub fn embedded() -> &'static [EmbeddedPtx] {
    EMBEDDED
}

/// The PTX to load on a GPU of compute capability `major.minor`: the newest embedded
/// architecture not newer than the GPU (the driver JIT-compiles it for the GPU).
pub fn for_compute_capability(major: i32, minor: i32) -> Result<&'static str> {
    if EMBEDDED.is_empty() {
        return Err(Error::invalid(NOT_COMPILED));
    }
    EMBEDDED
        .iter()
        .filter(|ptx| ptx.major <= major)
        .max_by_key(|ptx| ptx.major)
        .map(|ptx| ptx.text)
        .ok_or_else(|| {
            Error::invalid(format!(
                "the gating kernel was compiled for sm_80 and sm_90; this GPU is sm_{major}{minor}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI sets `MOESIM_REQUIRE_PTX=1` after installing nvcc: the kernel must then have compiled
    /// for both architectures with both entries.
    #[test]
    fn ptx_is_embedded_for_both_architectures_when_required() {
        let embedded = embedded();
        if std::env::var_os("MOESIM_REQUIRE_PTX").is_none_or(|v| v != "1") {
            if embedded.is_empty() {
                assert_eq!(
                    for_compute_capability(9, 0).err().map(|e| e.to_string()),
                    Some(NOT_COMPILED.to_string())
                );
            }
            return;
        }
        let arches: Vec<&str> = embedded.iter().map(|ptx| ptx.arch).collect();
        assert_eq!(arches, ["sm_80", "sm_90"]);
        for ptx in embedded {
            assert!(ptx.text.contains(&format!(".target {}", ptx.arch)));
            for entry in [PLAIN_ENTRY, INSTRUMENTED_ENTRY] {
                let declaration = format!(".entry {entry}(");
                assert!(ptx.text.contains(&declaration), "{}: {entry}", ptx.arch);
            }
        }
    }

    #[test]
    fn the_newest_architecture_not_newer_than_the_gpu_is_chosen() {
        if embedded().is_empty() {
            return;
        }
        let text = |major| for_compute_capability(major, 0).map(|t| t.contains(".target sm_90"));
        assert_eq!(text(9).ok(), Some(true));
        assert_eq!(text(10).ok(), Some(true));
        assert_eq!(text(8).ok(), Some(false));
        assert!(text(7).is_err());
    }
}
