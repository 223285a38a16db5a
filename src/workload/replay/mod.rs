//! Replay of request traces in their own formats ([`formats`]), streamed row by row: rows are
//! checked (times non-negative and sorted, lengths in range), cut to a time window, shifted so
//! the window starts at 0 and compressed by `rate_scale`.

mod datetime;
pub mod formats;
mod lines;

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use formats::Format;
use formats::RowParser;
use lines::Lines;

use super::{MAX_REQUESTS, Request, RequestStream};
use crate::error::{Error, Result};

/// The `[workload.replay]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySpec {
    /// The request file (relative to the spec's folder when read from a file).
    pub file: PathBuf,
    /// Its format; detected from the extension (`.jsonl`) and header when left out.
    #[serde(default)]
    pub format: Option<Format>,
    /// Time compression: 2 replays the trace twice as fast (arrivals at half the times).
    #[serde(default = "one")]
    pub rate_scale: f64,
    /// Start of the window, in the trace's seconds; requests before it are skipped.
    #[serde(default)]
    pub start_s: f64,
    /// Length of the window in the trace's seconds; the whole rest of the trace when left out.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// BurstGPT only: replay the rows of this `Model` (`ChatGPT`, `GPT-4`) alone.
    #[serde(default)]
    pub model: Option<String>,
}

fn one() -> f64 {
    1.0
}

impl ReplaySpec {
    /// A replay of the whole of `file`, at its own pace.
    pub fn of(file: impl Into<PathBuf>) -> Self {
        ReplaySpec {
            file: file.into(),
            format: None,
            rate_scale: 1.0,
            start_s: 0.0,
            duration_s: None,
            model: None,
        }
    }

    /// Checks the knobs; the message names the key under `workload.replay`.
    pub fn check(&self) -> std::result::Result<(), String> {
        let key = |k: &str, rule: &str, v: f64| format!("`workload.replay.{k}` = {v} {rule}");
        if !(self.rate_scale > 0.0 && self.rate_scale.is_finite()) {
            return Err(key(
                "rate_scale",
                "must be a positive number",
                self.rate_scale,
            ));
        }
        if !(self.start_s >= 0.0 && self.start_s.is_finite()) {
            return Err(key(
                "start_s",
                "must be a non-negative number",
                self.start_s,
            ));
        }
        if let Some(d) = self.duration_s
            && !(d > 0.0 && d.is_finite())
        {
            return Err(key("duration_s", "must be a positive number", d));
        }
        Ok(())
    }

    /// The requests of the file, streamed; errors name the file, the line and the field.
    pub fn open(&self) -> Result<RequestStream> {
        self.check().map_err(|m| Error::bad_file(&self.file, m))?;
        let path = &self.file;
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut lines = Lines::new(BufReader::new(file));
        let bad = |message: String| Error::bad_file(path, message);
        let first = match lines.next() {
            Some(line) => line.map_err(bad)?,
            None => {
                return Err(bad(
                    "line 1: empty file; expected a header or a JSON row".into()
                ));
            }
        };
        let jsonl = path.extension().is_some_and(|e| e == "jsonl");
        let (parser, first_is_row) =
            RowParser::detect(&first.1, self.format, jsonl, self.model.clone()).map_err(bad)?;
        if self.model.is_some() && parser.format != Format::Burstgpt {
            return Err(bad(format!(
                "`workload.replay.model` filters BurstGPT files only, not {:?}",
                parser.format
            )));
        }
        let has_prefix_blocks = parser.has_prefix_blocks();
        let replay = Replay {
            path: path.clone(),
            pending: first_is_row.then_some(first),
            lines,
            parser,
            rate_scale: self.rate_scale,
            start_s: self.start_s,
            end_s: self.duration_s.map(|d| self.start_s + d),
            previous_s: 0.0,
            next_id: 0,
            done: false,
        };
        Ok(RequestStream::new(replay, has_prefix_blocks))
    }
}

/// The rows of one request file as [`Request`]s.
struct Replay {
    path: PathBuf,
    /// The first line when it was a row, not a header.
    pending: Option<(usize, String)>,
    lines: Lines<BufReader<File>>,
    parser: RowParser,
    rate_scale: f64,
    start_s: f64,
    end_s: Option<f64>,
    previous_s: f64,
    next_id: u64,
    /// Set after the window's end or an error: the stream is over.
    done: bool,
}

impl Replay {
    /// The next request in the window, `None` past it or at the file's end.
    fn next_request(&mut self) -> std::result::Result<Option<Request>, String> {
        loop {
            let Some(line) = self.pending.take().map(Ok).or_else(|| self.lines.next()) else {
                return Ok(None);
            };
            let (number, text) = line?;
            let Some(row) = self.parser.parse(number, &text)? else {
                continue;
            };
            let column = self.parser.format.time_column();
            if row.time_s < 0.0 {
                return Err(format!(
                    "line {number}, `{column}`: negative time {}",
                    row.time_s
                ));
            }
            if row.time_s < self.previous_s {
                return Err(format!(
                    "line {number}, `{column}`: time {} is before the previous row's {} (rows must be sorted by time)",
                    row.time_s, self.previous_s
                ));
            }
            self.previous_s = row.time_s;
            if row.time_s < self.start_s {
                continue;
            }
            if self.end_s.is_some_and(|end| row.time_s >= end) {
                return Ok(None);
            }
            if self.next_id == MAX_REQUESTS {
                return Err(format!("line {number}: more than {MAX_REQUESTS} requests"));
            }
            let id = self.next_id;
            self.next_id += 1;
            return Ok(Some(Request {
                id,
                arrival_s: (row.time_s - self.start_s) / self.rate_scale,
                input_tokens: row.input_tokens,
                output_tokens: row.output_tokens,
                prefix_blocks: row.prefix_blocks,
            }));
        }
    }
}

impl Iterator for Replay {
    type Item = Result<Request>;

    fn next(&mut self) -> Option<Result<Request>> {
        if self.done {
            return None;
        }
        let next = self.next_request().transpose();
        if !matches!(next, Some(Ok(_))) {
            self.done = true;
        }
        next.map(|r| r.map_err(|m| Error::bad_file(&self.path, m)))
    }
}

/// The requests of `file` replayed whole at their own pace, format detected.
pub fn open(file: &Path) -> Result<RequestStream> {
    ReplaySpec::of(file).open()
}
