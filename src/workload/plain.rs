//! The plain request CSV: `arrival_s,input_tokens,output_tokens`, plus `prefix_blocks` (hashes
//! separated by spaces) when the requests carry them. Times are written in the shortest form
//! that parses back to the same `f64`, so reading the file back gives the same requests.

use std::io::Write;
use std::path::Path;

use super::RequestStream;
use super::replay::formats::PREFIX_COLUMN;
use super::summary::{Summary, SummaryBuilder};
use crate::error::{Error, Result};
use crate::output::write_atomic;

/// Writes `requests` to `path` atomically (nothing is left behind when the stream fails) and
/// returns their summary.
pub fn write_requests(path: &Path, requests: RequestStream) -> Result<Summary> {
    let mut summary = SummaryBuilder::default();
    let prefix = requests.has_prefix_blocks;
    write_atomic(path, |w| {
        let io = |e| Error::io(path, e);
        let header = "arrival_s,input_tokens,output_tokens";
        if prefix {
            writeln!(w, "{header},{PREFIX_COLUMN}").map_err(io)?;
        } else {
            writeln!(w, "{header}").map_err(io)?;
        }
        for request in requests {
            let request = request?;
            summary.add(&request);
            write!(
                w,
                "{},{},{}",
                request.arrival_s, request.input_tokens, request.output_tokens
            )
            .map_err(io)?;
            if prefix {
                let blocks = request.prefix_blocks.as_deref().unwrap_or_default();
                let blocks: Vec<String> = blocks.iter().map(u64::to_string).collect();
                write!(w, ",{}", blocks.join(" ")).map_err(io)?;
            }
            writeln!(w).map_err(io)?;
        }
        Ok(())
    })?;
    Ok(summary.finish())
}
