//! The library's error type.
//!
//! Every error that comes from bad input names the file (when there is one) and the field, row or
//! constraint at fault, so the binary can print it as one line and exit non-zero.

use std::path::{Path, PathBuf};

/// Errors raised by the moesim library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the operating system said (part of the message, so not repeated as a source).
        error: std::io::Error,
    },
    /// A file was read but its content is not what moesim expects.
    #[error("{path}: {message}")]
    BadFile {
        /// The file involved.
        path: PathBuf,
        /// What is wrong, naming the field, row or column.
        message: String,
    },
    /// A request that cannot be satisfied (bad parameters, infeasible constraints).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An I/O failure on `path`.
    pub fn io(path: impl AsRef<Path>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            error,
        }
    }

    /// Bad content in the file at `path`.
    pub fn bad_file(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// An invalid request that is not tied to one file.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    /// This error as met while working on `path` (a scenario, say): an invalid request then
    /// names that file; errors that already name their own file are kept as they are.
    pub fn in_file(self, path: impl AsRef<Path>) -> Self {
        match self {
            Error::Invalid(message) => Error::bad_file(path, message),
            other => other,
        }
    }
}

/// Parses TOML `text` into a `T`; the error is a message naming the line and the key's dotted
/// path (`line 12: `sim.rate_tolerance`: invalid type: string "x", expected f64`), for callers
/// to prefix with the file's name.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    let deserializer =
        toml::de::Deserializer::parse(text).map_err(|e| describe_toml_error(text, &e, ""))?;
    serde_path_to_error::deserialize(deserializer)
        .map_err(|e| describe_toml_error(text, e.inner(), &e.path().to_string()))
}

/// `line N: `path`: message`, leaving out what the error does not know.
fn describe_toml_error(text: &str, error: &toml::de::Error, path: &str) -> String {
    let line = error.span().map_or(String::new(), |span| {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        format!("line {line}: ")
    });
    let key = match path {
        "" | "." => String::new(),
        path => format!("`{path}`: "),
    };
    format!("{line}{key}{}", error.message())
}

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
