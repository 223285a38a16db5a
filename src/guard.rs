//! Containing panics of third-party decoders at the input boundary.
//!
//! polars can panic on a corrupt Parquet file (an out-of-range slice, a failed assertion) instead
//! of returning an error. Readers validate what is cheap first; [`decode_guarded`] catches what is
//! left, so a bad file ends in one error naming it instead of a crash. The panic message is kept
//! in the error and the default hook is silenced for the call, so nothing else is printed.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};

thread_local! {
    /// Whether this thread is inside [`decode_guarded`].
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Guarded calls in progress on any thread.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Name prefix of polars' worker threads, which decode on behalf of a guarded call.
const POLARS_WORKER: &str = "polars-";

/// Runs `decode` (which reads the file at `path`), turning a panic inside it into
/// `path: <what>: the file is corrupt (<panic message>)`. The panic hook stays silent for panics on this thread
/// or on a polars worker while the call runs; other panics are reported as usual.
pub fn decode_guarded<T>(path: &Path, what: &str, decode: impl FnOnce() -> Result<T>) -> Result<T> {
    install_quiet_hook();
    let outer = GUARDED.replace(true);
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    let result = panic::catch_unwind(AssertUnwindSafe(decode));
    ACTIVE.fetch_sub(1, Ordering::SeqCst);
    GUARDED.set(outer);
    result.unwrap_or_else(|payload| {
        Err(Error::bad_file(
            path,
            format!("{what}: the file is corrupt ({})", panic_message(&*payload)),
        ))
    })
}

/// Wraps the current panic hook once, so it skips panics that a guarded call will report.
fn install_quiet_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !silenced() {
                previous(info);
            }
        }));
    });
}

/// Whether a panic on the current thread belongs to a guarded call.
fn silenced() -> bool {
    GUARDED.get()
        || (ACTIVE.load(Ordering::SeqCst) > 0
            && std::thread::current()
                .name()
                .is_some_and(|name| name.starts_with(POLARS_WORKER)))
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_naming_the_file() {
        let error = decode_guarded(Path::new("t.parquet"), "cannot decode", || -> Result<u8> {
            let v: Vec<u8> = Vec::new();
            let i = v.len() + 3;
            Ok(v[i])
        })
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "t.parquet: cannot decode: the file is corrupt (index out of bounds: the len is 0 \
             but the index is 3)"
        );
        assert!(!GUARDED.get());
    }

    #[test]
    fn results_pass_through() {
        assert_eq!(decode_guarded(Path::new("x"), "r", || Ok(7)).unwrap(), 7);
        let error = decode_guarded(Path::new("x"), "r", || -> Result<()> {
            Err(Error::invalid("plain"))
        });
        assert_eq!(error.unwrap_err().to_string(), "plain");
    }
}
