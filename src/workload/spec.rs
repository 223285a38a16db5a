//! The `[workload]` TOML table: a seeded synthetic workload (`arrival`, `input`, `output`,
//! stopped by `requests` or `duration_s`) or the replay of a request file (`replay`). A
//! standalone type, so that a scenario's `[serving]` table can embed it.

use std::path::Path;

use serde::Deserialize;

use super::arrival::{ARRIVALS, ArrivalProcess};
use super::generate::{Generator, Lengths, Limits};
use super::lengths::{LENGTHS, LengthDist};
use super::replay::ReplaySpec;
use super::{MAX_REQUESTS, MAX_TOKENS, RequestStream};
use crate::error::{Error, Result, parse_toml};
use crate::registry::{Named, Registry};

/// A workload: synthetic or replayed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Seed of every random draw.
    #[serde(default)]
    pub seed: u64,
    /// Stop after this many requests (at most [`MAX_REQUESTS`]).
    #[serde(default)]
    pub requests: Option<u64>,
    /// Stop at this simulated time, in seconds.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// `process = "<name>"` of [`ARRIVALS`] and its knobs.
    #[serde(default)]
    pub arrival: Option<toml::Table>,
    /// `dist = "<name>"` of [`LENGTHS`], its knobs, and `max` (the clamp).
    #[serde(default)]
    pub input: Option<toml::Table>,
    /// As `input`, for the tokens generated.
    #[serde(default)]
    pub output: Option<toml::Table>,
    /// Replay of a request file instead of the synthetic keys.
    #[serde(default)]
    pub replay: Option<ReplaySpec>,
}

/// A file holding one `[workload]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadFile {
    workload: WorkloadSpec,
}

impl WorkloadSpec {
    /// Reads and checks the `[workload]` table of `path`; the replay file is relative to its
    /// folder.
    pub fn load(path: &Path) -> Result<WorkloadSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let base = path.parent().unwrap_or(Path::new(""));
        WorkloadSpec::parse(&text, base).map_err(|message| Error::bad_file(path, message))
    }

    /// Parses and checks TOML `text` holding a `[workload]` table, a relative replay file
    /// joined to `base`; the message names the key, for the caller to attach the file's name.
    pub fn parse(text: &str, base: &Path) -> std::result::Result<WorkloadSpec, String> {
        let mut spec = parse_toml::<WorkloadFile>(text)?.workload;
        spec.resolve(base)?;
        spec.check()?;
        Ok(spec)
    }

    /// Joins a relative replay file to `base`, the folder of the file the spec was read from.
    pub fn resolve(&mut self, base: &Path) -> std::result::Result<(), String> {
        if let Some(replay) = &mut self.replay {
            if replay.file.as_os_str().is_empty() {
                return Err("`workload.replay.file` is empty; expected a file's path".into());
            }
            replay.file = base.join(&replay.file);
        }
        Ok(())
    }

    /// Checks every value; the message names the key (`workload.arrival.cv`).
    pub fn check(&self) -> std::result::Result<(), String> {
        match &self.replay {
            Some(replay) => {
                let synthetic = [
                    ("requests", self.requests.is_some()),
                    ("duration_s", self.duration_s.is_some()),
                    ("arrival", self.arrival.is_some()),
                    ("input", self.input.is_some()),
                    ("output", self.output.is_some()),
                ];
                if let Some((key, _)) = synthetic.iter().find(|(_, set)| *set) {
                    return Err(format!(
                        "`workload.{key}` cannot be combined with `workload.replay` (use its `start_s` and `duration_s`)"
                    ));
                }
                replay.check()
            }
            None => self.generator().map(drop),
        }
    }

    /// The requests, streamed in arrival order.
    pub fn open(&self) -> Result<RequestStream> {
        match &self.replay {
            Some(replay) => replay.open(),
            None => Ok(RequestStream::new(
                self.generator().map_err(Error::invalid)?,
                false,
            )),
        }
    }

    /// The synthetic workload's generator.
    fn generator(&self) -> std::result::Result<Generator, String> {
        let limits = self.limits()?;
        let table = |key: &str, table: &Option<toml::Table>| {
            table
                .clone()
                .ok_or_else(|| format!("`workload.{key}` is missing (or give `workload.replay`)"))
        };
        let arrival = build::<dyn ArrivalProcess>(
            &ARRIVALS,
            table("arrival", &self.arrival)?,
            "arrival",
            "process",
        )?;
        Ok(Generator::new(
            self.seed,
            arrival,
            lengths(table("input", &self.input)?, "input")?,
            lengths(table("output", &self.output)?, "output")?,
            limits,
        ))
    }

    /// `requests` and `duration_s`, checked; at least one is needed.
    fn limits(&self) -> std::result::Result<Limits, String> {
        if let Some(n) = self.requests
            && !(1..=MAX_REQUESTS).contains(&n)
        {
            return Err(format!(
                "`workload.requests` = {n} must be in 1..={MAX_REQUESTS}"
            ));
        }
        if let Some(d) = self.duration_s
            && !(d > 0.0 && d.is_finite())
        {
            return Err(format!(
                "`workload.duration_s` = {d} must be a positive number"
            ));
        }
        if self.requests.is_none() && self.duration_s.is_none() {
            return Err("give `workload.requests` or `workload.duration_s` (or both)".into());
        }
        Ok(Limits {
            requests: self.requests,
            duration_s: self.duration_s,
        })
    }
}

/// The plug-in named by `selector` in `table` (`[workload.<key>]`), built from the other keys.
fn build<T: ?Sized>(
    registry: &Registry<T>,
    mut table: toml::Table,
    key: &str,
    selector: &str,
) -> std::result::Result<Named<T>, String> {
    let known = || registry.names().collect::<Vec<_>>().join(", ");
    let name = match table.remove(selector) {
        Some(toml::Value::String(name)) => name,
        Some(other) => {
            return Err(format!(
                "`workload.{key}.{selector}`: expected a string, found {}",
                other.type_str()
            ));
        }
        None => {
            return Err(format!(
                "`workload.{key}.{selector}` is missing; known: {}",
                known()
            ));
        }
    };
    registry
        .build(&name, &table)
        .map_err(|message| format!("`workload.{key}`: {message}"))
}

/// The length distribution of `[workload.<key>]` with its `max` clamp (default
/// [`MAX_TOKENS`]).
fn lengths(mut table: toml::Table, key: &str) -> std::result::Result<Lengths, String> {
    let max = match table.remove("max") {
        None => MAX_TOKENS,
        Some(toml::Value::Integer(max)) if (1..=MAX_TOKENS as i64).contains(&max) => max as u64,
        Some(other) => {
            return Err(format!(
                "`workload.{key}.max` = {other} must be a whole number in 1..={MAX_TOKENS}"
            ));
        }
    };
    let dist = build::<dyn LengthDist>(&LENGTHS, table, key, "dist")?;
    Ok(Lengths { dist, max })
}
