//! Serving workloads: which requests arrive when, with how many input and output tokens.
//!
//! A workload is a stream of [`Request`]s in arrival order ([`RequestStream`]), generated from a
//! seeded arrival process and length distributions ([`generate`]) or replayed from a request
//! trace ([`replay`]). A serving engine pulls from the stream as simulated time advances, so
//! millions of requests never sit in memory at once. [`spec::WorkloadSpec`] is the `[workload]`
//! TOML table that chooses one; [`plain`] writes a stream in the plain CSV format that replays it
//! exactly.

pub mod arrival;
pub mod generate;
pub mod lengths;
pub mod plain;
pub mod replay;
pub mod spec;
pub mod summary;

use crate::error::Result;

/// Most tokens one request may have as input or output: longer is a corrupt row, not a request
/// (the longest context windows are about 10^7 tokens).
pub const MAX_TOKENS: u64 = 10_000_000;

/// Most requests one workload may yield, generated or replayed: a bound on time and on what a
/// consumer keeps per request (a week of the busiest public trace is about 10^7).
pub const MAX_REQUESTS: u64 = 100_000_000;

/// One request: when it arrives and how long its prompt and answer are.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Its position in the stream, from 0.
    pub id: u64,
    /// Arrival time in seconds from the start of the workload.
    pub arrival_s: f64,
    /// Prompt length in tokens, in 1..=[`MAX_TOKENS`].
    pub input_tokens: u64,
    /// Tokens to generate, in 1..=[`MAX_TOKENS`].
    pub output_tokens: u64,
    /// Hashes of the prompt's 512-token blocks (Mooncake `hash_ids`), for prefix caching.
    pub prefix_blocks: Option<Vec<u64>>,
}

/// Requests in arrival order; an error ends the stream (the file, row and field it names).
pub struct RequestStream {
    requests: Box<dyn Iterator<Item = Result<Request>> + Send>,
    /// Whether requests carry prefix blocks (the plain CSV then has a `prefix_blocks` column).
    pub has_prefix_blocks: bool,
}

impl RequestStream {
    /// A stream over `requests`.
    pub fn new(
        requests: impl Iterator<Item = Result<Request>> + Send + 'static,
        has_prefix_blocks: bool,
    ) -> Self {
        RequestStream {
            requests: Box::new(requests),
            has_prefix_blocks,
        }
    }
}

impl Iterator for RequestStream {
    type Item = Result<Request>;

    fn next(&mut self) -> Option<Result<Request>> {
        self.requests.next()
    }
}
