//! Whether this machine can run GPU work at all, asked before any CUDA call.
//!
//! cudarc loads libcuda dynamically and panics on first use when it is absent, so every command
//! that needs a GPU calls [`require_driver`] first and fails with one clear line instead.

use crate::error::{Error, Result};

/// The one-line message GPU commands print on a machine without an NVIDIA driver.
pub const NO_DRIVER: &str = "no NVIDIA driver found (libcuda could not be loaded)";

/// True when the CUDA driver library (libcuda) can be loaded on this machine.
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the shared library by name; no CUDA function is called.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Fails with `"<what> needs a GPU: no NVIDIA driver found ..."` when libcuda is missing.
pub fn require_driver(what: &str) -> Result<()> {
    if driver_present() {
        Ok(())
    } else {
        Err(Error::invalid(format!("{what} needs a GPU: {NO_DRIVER}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_driver_matches_driver_presence_and_names_the_command() {
        match require_driver("moesim capture") {
            Ok(()) => assert!(driver_present()),
            Err(error) => {
                assert!(!driver_present());
                assert_eq!(
                    error.to_string(),
                    format!("moesim capture needs a GPU: {NO_DRIVER}")
                );
            }
        }
    }
}
