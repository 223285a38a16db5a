//! The request-file formats replayed, their columns, and the parsing of one row.

use serde::Deserialize;

use super::datetime;
use crate::workload::MAX_TOKENS;

/// A request-file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Azure LLM inference traces: CSV `TIMESTAMP,ContextTokens,GeneratedTokens`.
    Azure,
    /// BurstGPT: CSV `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`.
    Burstgpt,
    /// Mooncake: JSON lines with `timestamp` (ms), `input_length`, `output_length`, `hash_ids`.
    Mooncake,
    /// moesim's own CSV: `arrival_s,input_tokens,output_tokens[,prefix_blocks]`.
    Plain,
}

/// The CSV formats, in the order detection tries them.
const CSV_FORMATS: [Format; 3] = [Format::Plain, Format::Azure, Format::Burstgpt];

/// The plain format's optional column: block hashes separated by spaces.
pub const PREFIX_COLUMN: &str = "prefix_blocks";

impl Format {
    /// The columns a CSV format requires: time, input tokens, output tokens first.
    fn columns(self) -> &'static [&'static str] {
        match self {
            Format::Azure => &["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
            Format::Burstgpt => &[
                "Timestamp",
                "Request tokens",
                "Response tokens",
                "Model",
                "Total tokens",
                "Log Type",
            ],
            Format::Plain => &["arrival_s", "input_tokens", "output_tokens"],
            Format::Mooncake => &["timestamp", "input_length", "output_length"],
        }
    }

    /// The name of the column holding arrival times.
    pub fn time_column(self) -> &'static str {
        self.columns()[0]
    }
}

/// One row of a request file, before windowing.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Arrival in the trace's seconds.
    pub time_s: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub prefix_blocks: Option<Vec<u64>>,
}

/// What a row became: a request, or a row the replay leaves out.
pub type Parsed = Result<Option<Row>, String>;

/// Parses the rows of one file: a CSV format with its columns located from the header, or
/// Mooncake's JSON lines.
#[derive(Debug)]
pub struct RowParser {
    pub format: Format,
    /// Index of each of the format's columns in a row (CSV only).
    index: Vec<usize>,
    /// Cells per row (CSV only).
    width: usize,
    /// Index of the plain format's `prefix_blocks` column, when the file has one.
    prefix: Option<usize>,
    /// BurstGPT rows of other models are left out.
    model: Option<String>,
    /// Azure: the first row's whole seconds and fraction, the origin of arrival times.
    origin_s: Option<(i64, f64)>,
}

impl RowParser {
    /// The parser for a file whose first non-blank line is `first`: `format` when given, else
    /// Mooncake when the line is a JSON object or `jsonl` is set, else the CSV format whose
    /// columns the header holds. The pair's `bool`: whether `first` is a row (else a header).
    pub fn detect(
        first: &str,
        format: Option<Format>,
        jsonl: bool,
        model: Option<String>,
    ) -> Result<(RowParser, bool), String> {
        let json = first.trim_start().starts_with('{');
        let format = match format {
            Some(format) => format,
            None if json || jsonl => Format::Mooncake,
            None => detect_csv(&cells(first))?,
        };
        let mut parser = RowParser {
            format,
            index: Vec::new(),
            width: 0,
            prefix: None,
            model,
            origin_s: None,
        };
        if format == Format::Mooncake {
            return Ok((parser, true));
        }
        let header = cells(first);
        for column in &header {
            let known = format.columns().contains(column)
                || (format == Format::Plain && *column == PREFIX_COLUMN);
            if !known {
                return Err(format!(
                    "line 1: unknown column `{column}` for the {format:?} format; its columns: {}",
                    format.columns().join(",")
                ));
            }
        }
        for column in format.columns() {
            let at = header.iter().position(|c| c == column).ok_or_else(|| {
                format!("line 1: missing column `{column}` of the {format:?} format")
            })?;
            parser.index.push(at);
        }
        parser.prefix = header.iter().position(|c| *c == PREFIX_COLUMN);
        parser.width = header.len();
        Ok((parser, false))
    }

    /// Whether rows carry prefix block hashes.
    pub fn has_prefix_blocks(&self) -> bool {
        self.format == Format::Mooncake || self.prefix.is_some()
    }

    /// Row `line` of the file.
    pub fn parse(&mut self, line: usize, text: &str) -> Parsed {
        if self.format == Format::Mooncake {
            return mooncake(line, text);
        }
        let cells = cells(text);
        if cells.len() != self.width {
            return Err(format!(
                "line {line}: {} fields, expected {} (a malformed row)",
                cells.len(),
                self.width
            ));
        }
        let columns = self.format.columns();
        let cell = |i: usize| (columns[i], cells[self.index[i]]);
        let time_s = match self.format {
            Format::Azure => azure_time(&mut self.origin_s, line, cell(0))?,
            _ => number(line, cell(0))?,
        };
        if self.format == Format::Burstgpt {
            let (_, model) = cell(3);
            let other_model = self.model.as_deref().is_some_and(|m| m != model);
            // A zero response is a failed request in BurstGPT: never served, so not replayed.
            if other_model || cell(2).1 == "0" {
                return Ok(None);
            }
        }
        let prefix_blocks = match self.prefix {
            Some(at) => blocks(line, cells[at])?,
            None => None,
        };
        Ok(Some(Row {
            time_s,
            input_tokens: tokens(line, cell(1))?,
            output_tokens: tokens(line, cell(2))?,
            prefix_blocks,
        }))
    }
}

/// An Azure `TIMESTAMP`, in seconds since the first row's (`origin_s`, set by the first).
fn azure_time(
    origin_s: &mut Option<(i64, f64)>,
    line: usize,
    (column, cell): (&str, &str),
) -> Result<f64, String> {
    let (whole, fraction) = datetime::parse(cell).ok_or_else(|| {
        field(
            line,
            column,
            format!("`{cell}` is not a date and time like 2023-11-16 18:15:46.68"),
        )
    })?;
    let (origin, origin_fraction) = *origin_s.get_or_insert((whole, fraction));
    Ok((whole - origin) as f64 + (fraction - origin_fraction))
}

/// The CSV format whose columns `header` holds all of; else an error naming what the closest
/// one misses.
fn detect_csv(header: &[&str]) -> Result<Format, String> {
    let shared = |f: Format| f.columns().iter().filter(|c| header.contains(c)).count();
    if let Some(format) = CSV_FORMATS
        .into_iter()
        .find(|&f| shared(f) == f.columns().len())
    {
        return Ok(format);
    }
    let closest = CSV_FORMATS
        .into_iter()
        .max_by_key(|&f| shared(f))
        .expect("formats");
    if shared(closest) == 0 {
        return Err(format!(
            "line 1: unknown columns `{}`; expected the header of a request file (plain: {}; azure: {}; burstgpt: {}) or Mooncake JSON lines",
            header.join(","),
            Format::Plain.columns().join(","),
            Format::Azure.columns().join(","),
            Format::Burstgpt.columns().join(",")
        ));
    }
    let missing: Vec<&str> = closest
        .columns()
        .iter()
        .filter(|c| !header.contains(c))
        .copied()
        .collect();
    Err(format!(
        "line 1: missing column `{}` of the {closest:?} format",
        missing.join("`, `")
    ))
}

/// The cells of CSV line `text`, trimmed and unquoted (cells hold no commas in these formats).
fn cells(text: &str) -> Vec<&str> {
    text.split(',')
        .map(|cell| {
            let cell = cell.trim();
            cell.strip_prefix('"')
                .and_then(|c| c.strip_suffix('"'))
                .unwrap_or(cell)
        })
        .collect()
}

/// `line N, `column`: what`.
fn field(line: usize, column: &str, what: impl std::fmt::Display) -> String {
    format!("line {line}, `{column}`: {what}")
}

/// A finite number of seconds.
fn number(line: usize, (column, cell): (&str, &str)) -> Result<f64, String> {
    cell.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| field(line, column, format!("`{cell}` is not a finite number")))
}

/// A token count in 1..=[`MAX_TOKENS`].
fn tokens(line: usize, (column, cell): (&str, &str)) -> Result<u64, String> {
    let count: u64 = cell.parse().map_err(|_| {
        field(
            line,
            column,
            format!("`{cell}` is not a whole number of tokens"),
        )
    })?;
    check_tokens(line, column, count)?;
    Ok(count)
}

/// `Ok` when `count` is in 1..=[`MAX_TOKENS`].
fn check_tokens(line: usize, column: &str, count: u64) -> Result<(), String> {
    if (1..=MAX_TOKENS).contains(&count) {
        Ok(())
    } else {
        Err(field(
            line,
            column,
            format!("{count} tokens; must be in 1..={MAX_TOKENS}"),
        ))
    }
}

/// The plain format's `prefix_blocks` cell: hashes separated by spaces; empty is none.
fn blocks(line: usize, cell: &str) -> Result<Option<Vec<u64>>, String> {
    let hashes = cell
        .split_whitespace()
        .map(|h| {
            h.parse()
                .map_err(|_| field(line, PREFIX_COLUMN, format!("`{h}` is not a block hash")))
        })
        .collect::<Result<Vec<u64>, String>>()?;
    Ok((!hashes.is_empty()).then_some(hashes))
}

/// One Mooncake row.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MooncakeRow {
    /// Milliseconds.
    timestamp: f64,
    input_length: u64,
    output_length: u64,
    #[serde(default)]
    hash_ids: Vec<u64>,
}

/// Mooncake JSON line `text`.
fn mooncake(line: usize, text: &str) -> Parsed {
    let mut json = serde_json::Deserializer::from_str(text);
    let row: MooncakeRow = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        match e.path().to_string().as_str() {
            "." => format!("line {line}: {}", e.inner()),
            path => field(line, path, e.inner()),
        }
    })?;
    json.end().map_err(|e| format!("line {line}: {e}"))?;
    if !row.timestamp.is_finite() {
        return Err(field(line, "timestamp", "not a finite number"));
    }
    check_tokens(line, "input_length", row.input_length)?;
    check_tokens(line, "output_length", row.output_length)?;
    Ok(Some(Row {
        time_s: row.timestamp / 1000.0,
        input_tokens: row.input_length,
        output_tokens: row.output_length,
        prefix_blocks: (!row.hash_ids.is_empty()).then_some(row.hash_ids),
    }))
}
