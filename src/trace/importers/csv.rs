//! Hand-made CSV traces.
//!
//! Token-level: header `layer,token,expert` (any column order, optional `weight`), one row per
//! routed entry, rows in any order; ranks follow the row order within a (token, layer). An empty
//! (or negative) `expert` marks a token with no expert at that layer; a token without any row at a
//! layer has no expert there either. Tokens are numbered 0..N without gaps.
//!
//! Aggregate: header `layer,expert,load`, one row per (layer, expert); missing cells load 0.
//!
//! Errors name the 1-based line and the column.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use super::ImportOptions;
use super::routing_builder::{Refused, RoutingBuilder};
use crate::error::{Error, Result};
use crate::output::write_atomic;
use crate::trace::validate::sign_problem;
use crate::trace::{ExpertLoads, MAX_EXPERTS, MAX_LOAD_CELLS, RoutingTrace, Trace};

/// Reads the CSV trace at `path`; its header decides token-level or aggregate.
pub(super) fn import(path: &Path, options: &ImportOptions) -> Result<Trace> {
    let num_experts = options.num_experts;
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.trim().is_empty());
    let (_, header) = lines
        .next()
        .ok_or_else(|| Error::bad_file(path, "is empty: a header line is required"))?;
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let table = Table { path, names };
    if table.names.contains(&"load") {
        let columns = table.columns(&["layer", "expert", "load"], &[])?;
        read_loads(&table, &columns, lines, num_experts).map(Trace::Loads)
    } else {
        let columns = table.columns(&["layer", "token", "expert"], &["weight"])?;
        read_tokens(&table, &columns, lines, options).map(Trace::Tokens)
    }
}

/// The file and its header, for parsing fields with located errors.
struct Table<'a> {
    path: &'a Path,
    names: Vec<&'a str>,
}

impl Table<'_> {
    /// The index of each `required` column, then each `optional` one (`None` when absent).
    /// Unknown or repeated columns are errors.
    fn columns(&self, required: &[&str], optional: &[&str]) -> Result<Vec<Option<usize>>> {
        for (index, name) in self.names.iter().enumerate() {
            if !required.contains(name) && !optional.contains(name) {
                let mut expected = required.join(", ");
                if !optional.is_empty() {
                    expected += &format!(" and optionally {}", optional.join(", "));
                }
                return Err(
                    self.error(1, &format!("unknown column `{name}` (expected {expected})"))
                );
            }
            if self.names[..index].contains(name) {
                return Err(self.error(1, &format!("column `{name}` appears twice")));
            }
        }
        let position = |name: &&str| self.names.iter().position(|n| n == name);
        if let Some(missing) = required.iter().find(|name| position(name).is_none()) {
            return Err(self.error(1, &format!("missing column `{missing}`")));
        }
        Ok(required.iter().chain(optional).map(position).collect())
    }

    /// The fields of `line`, which must have one per header column.
    fn fields<'l>(&self, number: usize, line: &'l str) -> Result<Vec<&'l str>> {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != self.names.len() {
            return Err(self.error(
                number,
                &format!(
                    "{} fields but the header has {}",
                    fields.len(),
                    self.names.len()
                ),
            ));
        }
        Ok(fields)
    }

    /// Parses field `column` of a line.
    fn parse<T: FromStr>(&self, number: usize, fields: &[&str], column: usize) -> Result<T> {
        fields[column].parse().map_err(|_| {
            self.error(
                number,
                &format!(
                    "column {}: '{}' is not a valid {}",
                    self.names[column],
                    fields[column],
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    fn error(&self, line: usize, message: &str) -> Error {
        Error::bad_file(self.path, format!("line {line}: {message}"))
    }
}

/// One token-level row.
struct TokenRow {
    line: usize,
    token: u32,
    layer: u16,
    /// Negative for "no expert".
    expert: i64,
    weight: f32,
}

fn read_tokens<'a>(
    table: &Table,
    columns: &[Option<usize>],
    lines: impl Iterator<Item = (usize, &'a str)>,
    options: &ImportOptions,
) -> Result<RoutingTrace> {
    // Required columns are always found by `Table::columns`.
    let [Some(layer), Some(token), Some(expert), weight] = columns[..] else {
        return Err(Error::invalid("token CSV columns resolved wrongly"));
    };
    let mut rows = Vec::new();
    for (number, line) in lines {
        let fields = table.fields(number, line)?;
        let routed = !fields[expert].is_empty();
        let expert_id = if routed {
            table.parse(number, &fields, expert)?
        } else {
            -1
        };
        let weight = match weight {
            Some(column) if routed && expert_id >= 0 => table.parse(number, &fields, column)?,
            _ => 0.0,
        };
        rows.push(TokenRow {
            line: number,
            token: table.parse(number, &fields, token)?,
            layer: table.parse(number, &fields, layer)?,
            expert: expert_id,
            weight,
        });
    }
    rows.sort_by_key(|r| (r.token, r.layer));
    let num_tokens = rows.last().map_or(0, |r| r.token as usize + 1);
    let num_layers = rows
        .iter()
        .map(|r| usize::from(r.layer) + 1)
        .max()
        .unwrap_or(0);
    let mut builder = RoutingBuilder::new(
        table.path,
        num_layers,
        options.num_experts,
        weight.is_some(),
        rows.len(),
    )?
    .keeping_violations(options.keep_violations);
    let mut next = rows.iter().peekable();
    for token in 0..num_tokens as u32 {
        if next.peek().is_some_and(|r| r.token != token) {
            return Err(Error::bad_file(
                table.path,
                format!(
                    "token {token} has no row: tokens must be numbered 0..{num_tokens} without \
                     gaps (give a token with no expert a row with an empty expert)"
                ),
            ));
        }
        for layer in 0..num_layers as u16 {
            while let Some(row) = next.next_if(|r| (r.token, r.layer) == (token, layer)) {
                let pushed = if weight.is_some() {
                    builder.push_weighted(usize::from(layer), row.expert, row.weight)
                } else {
                    builder.push(usize::from(layer), row.expert)
                };
                pushed.map_err(|e| {
                    let column = match e {
                        Refused::Weight(_) => "weight",
                        _ => "expert",
                    };
                    table.error(row.line, &format!("column {column}: {e}"))
                })?;
            }
            builder.end_token(usize::from(layer));
        }
    }
    builder.finish(table.path)
}

fn read_loads<'a>(
    table: &Table,
    columns: &[Option<usize>],
    lines: impl Iterator<Item = (usize, &'a str)>,
    num_experts: Option<usize>,
) -> Result<ExpertLoads> {
    let [Some(layer), Some(expert), Some(load)] = columns[..] else {
        return Err(Error::invalid("loads CSV columns resolved wrongly"));
    };
    let mut cells: Vec<(usize, u16, u16, f64)> = Vec::new();
    for (number, line) in lines {
        let fields = table.fields(number, line)?;
        let value: f64 = table.parse(number, &fields, load)?;
        if let Some(problem) = sign_problem(value) {
            return Err(table.error(number, &format!("column load: {problem}")));
        }
        cells.push((
            number,
            table.parse(number, &fields, layer)?,
            table.parse(number, &fields, expert)?,
            value,
        ));
    }
    if cells.is_empty() {
        return Err(Error::bad_file(table.path, "has no load rows"));
    }
    let width = match num_experts {
        Some(n) if (1..=MAX_EXPERTS).contains(&n) => n,
        Some(n) => {
            return Err(Error::invalid(format!(
                "number of experts must be between 1 and {MAX_EXPERTS}, got {n}"
            )));
        }
        None => cells
            .iter()
            .map(|c| usize::from(c.2) + 1)
            .max()
            .unwrap_or(0),
    };
    let num_layers = cells
        .iter()
        .map(|c| usize::from(c.1) + 1)
        .max()
        .unwrap_or(0);
    if num_layers * width > MAX_LOAD_CELLS {
        return Err(Error::bad_file(
            table.path,
            format!(
                "{num_layers} layers x {width} experts exceed the {MAX_LOAD_CELLS} (layer, expert) \
                 cells a loads trace holds"
            ),
        ));
    }
    let mut grid = vec![vec![0.0; width]; num_layers];
    let mut seen = vec![vec![false; width]; num_layers];
    for (number, layer, expert, load) in cells {
        let (l, e) = (usize::from(layer), usize::from(expert));
        if e >= width {
            return Err(table.error(
                number,
                &format!("column expert: expert id {e} >= {width} experts"),
            ));
        }
        if std::mem::replace(&mut seen[l][e], true) {
            return Err(table.error(number, &format!("layer {l}, expert {e} already has a load")));
        }
        grid[l][e] = load;
    }
    ExpertLoads::new(width, grid).map_err(|e| Error::bad_file(table.path, e.to_string()))
}

/// Writes `trace` as CSV: token-level rows `layer,token,expert[,weight]` ordered by token, layer
/// and rank (an empty expert for a token with none at a layer), or `layer,expert,load` rows.
pub(super) fn write(path: &Path, trace: &Trace) -> Result<()> {
    write_atomic(path, |out| {
        let io = |e| Error::io(path, e);
        match trace {
            Trace::Tokens(routing) => {
                let weighted = routing.layers().iter().all(|l| l.weights().is_some())
                    && routing.num_layers() > 0;
                let header = if weighted {
                    "layer,token,expert,weight"
                } else {
                    "layer,token,expert"
                };
                writeln!(out, "{header}").map_err(io)?;
                for token in 0..routing.num_tokens() {
                    for (layer, routes) in routing.layers().iter().enumerate() {
                        let experts = routes.experts_of(token);
                        if experts.is_empty() {
                            let empty_weight = if weighted { "," } else { "" };
                            writeln!(out, "{layer},{token},{empty_weight}").map_err(io)?;
                        }
                        for (rank, expert) in experts.iter().enumerate() {
                            match routes.weights_of(token).filter(|_| weighted) {
                                Some(w) => writeln!(out, "{layer},{token},{expert},{}", w[rank]),
                                None => writeln!(out, "{layer},{token},{expert}"),
                            }
                            .map_err(io)?;
                        }
                    }
                }
            }
            Trace::Loads(loads) => {
                writeln!(out, "layer,expert,load").map_err(io)?;
                for layer in 0..loads.num_layers() {
                    for (expert, load) in loads.layer(layer).iter().enumerate() {
                        writeln!(out, "{layer},{expert},{load}").map_err(io)?;
                    }
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import_text(text: &str, num_experts: Option<usize>) -> Result<Trace> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        fs::write(&path, text).unwrap();
        import(&path, &ImportOptions::experts(num_experts))
    }

    fn error_of(text: &str, num_experts: Option<usize>) -> String {
        match import_text(text, num_experts) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn rows_in_any_order_are_sorted_by_token_then_layer() {
        let text = "token,layer,expert,weight\n1,0,3,0.5\n0,1,2,1\n0,0,4,0.75\n1,0,0,0.5\n0,0,1,0.25\n1,1,,\n";
        let Trace::Tokens(trace) = import_text(text, None).unwrap() else {
            panic!("expected token-level routing");
        };
        assert_eq!(trace.num_experts(), 5);
        assert_eq!(trace.num_tokens(), 2);
        assert_eq!(trace.layer(0).experts_of(0), &[4, 1]);
        assert_eq!(trace.layer(0).weights_of(0), Some(&[0.75, 0.25][..]));
        assert_eq!(trace.layer(0).experts_of(1), &[3, 0]);
        assert_eq!(trace.layer(1).experts_of(0), &[2]);
        assert_eq!(trace.layer(1).experts_of(1), &[] as &[u16]);
    }

    #[test]
    fn errors_name_line_and_column() {
        assert!(
            error_of("layer,token,expert\n0,0,1\n0,1,x\n", None)
                .ends_with("line 3: column expert: 'x' is not a valid i64")
        );
        assert!(
            error_of("layer,token,expert\n0,0,1\n0,1,9\n", Some(8))
                .ends_with("line 3: column expert: expert id 9 >= 8 experts")
        );
        assert!(
            error_of("layer,token,expert\n0,0\n", None)
                .ends_with("line 2: 2 fields but the header has 3")
        );
        assert!(
            error_of("layer,token,experts\n", None).contains("line 1: unknown column `experts`")
        );
        assert!(error_of("layer,expert\n", None).ends_with("line 1: missing column `token`"));
        assert!(
            error_of("layer,token,expert\n0,0,1\n0,2,1\n", None).contains("token 1 has no row")
        );
        assert!(
            error_of("layer,token,expert,weight\n0,0,1,\n", None)
                .ends_with("line 2: column weight: '' is not a valid f32")
        );
        assert!(
            error_of("layer,token,expert\n0,0,1\n0,0,1\n", None).ends_with(
                "line 3: column expert: expert 1 repeats rank 0 (an expert is routed at most \
                 once per token)"
            )
        );
        assert!(
            error_of("layer,token,expert,weight\n0,0,1,0.5\n0,0,2,-1\n", None)
                .ends_with("line 3: column weight: gate weight -1 is negative")
        );
    }

    #[test]
    fn loads_csv_fills_a_grid() {
        let Trace::Loads(loads) =
            import_text("layer,expert,load\n1,2,7.5\n0,0,3\n", Some(4)).unwrap()
        else {
            panic!("expected loads");
        };
        assert_eq!(loads.layer(0), &[3.0, 0.0, 0.0, 0.0]);
        assert_eq!(loads.layer(1), &[0.0, 0.0, 7.5, 0.0]);
        assert!(
            error_of("layer,expert,load\n0,0,1\n0,0,2\n", None)
                .ends_with("line 3: layer 0, expert 0 already has a load")
        );
        assert!(
            error_of("layer,expert,load\n0,0,1\n0,1,-2\n", None)
                .ends_with("line 3: column load: -2 is negative")
        );
        // One row far out would make a 65,536 x 65,536 grid.
        assert!(
            error_of("layer,expert,load\n65535,65535,1\n", None).ends_with(
                "65536 layers x 65536 experts exceed the 67108864 (layer, expert) cells a loads \
                 trace holds"
            )
        );
    }

    #[test]
    fn written_csv_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let text = "layer,token,expert,weight\n0,0,4,0.75\n0,0,1,0.25\n1,0,2,1\n0,1,,\n1,1,3,0.5\n";
        let trace = import_text(text, None).unwrap();
        let path = dir.path().join("out.csv");
        write(&path, &trace).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        let loads = Trace::Loads(trace.expert_loads());
        write(&path, &loads).unwrap();
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .starts_with("layer,expert,load\n0,0,0\n0,1,1\n")
        );
        assert_eq!(import(&path, &ImportOptions::default()).unwrap(), loads);
    }
}
