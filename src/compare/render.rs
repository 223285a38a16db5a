//! A comparison as Markdown for people (a CI log, a pull-request comment) and as JSON for tools.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::{Comparison, Row, Verdict};

/// The order verdicts are listed in: what needs attention first.
const ORDER: [Verdict; 7] = [
    Verdict::Regression,
    Verdict::Worse,
    Verdict::Better,
    Verdict::Changed,
    Verdict::Added,
    Verdict::Removed,
    Verdict::Same,
];

/// A Markdown section: one sentence of counts, then a table of every metric that is not the
/// same in both runs (every metric with `all`), regressions first.
pub fn render_markdown(
    comparison: &Comparison,
    baseline: &str,
    current: &str,
    all: bool,
) -> String {
    let mut md = String::new();
    let _ = write_markdown(&mut md, comparison, baseline, current, all);
    md
}

fn write_markdown(
    md: &mut String,
    comparison: &Comparison,
    baseline: &str,
    current: &str,
    all: bool,
) -> std::fmt::Result {
    let count = |verdict| comparison.count(verdict);
    writeln!(md, "## moesim compare\n")?;
    writeln!(
        md,
        "`{baseline}` -> `{current}`: {} metrics; {} regressed past their threshold, {} worse \
         within it, {} better, {} changed (direction unknown), {} added, {} removed, {} the \
         same.\n",
        comparison.rows.len(),
        count(Verdict::Regression),
        count(Verdict::Worse),
        count(Verdict::Better),
        count(Verdict::Changed),
        count(Verdict::Added),
        count(Verdict::Removed),
        count(Verdict::Same),
    )?;
    let shown: Vec<&Row> = ORDER
        .iter()
        .filter(|&&verdict| all || verdict != Verdict::Same)
        .flat_map(|&verdict| comparison.rows.iter().filter(move |r| r.verdict == verdict))
        .collect();
    if shown.is_empty() {
        return writeln!(md, "Every metric is the same in both runs.");
    }
    writeln!(md, "| metric | baseline | current | change | verdict |")?;
    writeln!(md, "|---|---:|---:|---:|---|")?;
    for row in shown {
        let value =
            |v: &Option<serde_json::Number>| v.as_ref().map_or(String::new(), ToString::to_string);
        writeln!(
            md,
            "| `{}` | {} | {} | {} | {} |",
            row.metric,
            value(&row.baseline),
            value(&row.current),
            change(row),
            verdict(row)
        )?;
    }
    Ok(())
}

/// The change column: a signed percentage, `new` when the baseline was 0, empty for a metric
/// on one side only.
fn change(row: &Row) -> String {
    match (row.change_pct, &row.baseline, &row.current) {
        (Some(pct), _, _) => format!("{pct:+.*}%", decimals(pct)),
        (None, Some(_), Some(_)) => "from 0".to_string(),
        _ => String::new(),
    }
}

/// Decimals that show a percentage to two significant digits below 0.01 (a change of 0.0026%
/// is not printed as 0.00%), two otherwise.
fn decimals(pct: f64) -> usize {
    let magnitude = pct.abs();
    if magnitude == 0.0 || magnitude >= 0.01 {
        2
    } else {
        (1.0 - magnitude.log10().floor()).min(12.0) as usize
    }
}

/// The verdict column: an arrow for better or worse and the word.
fn verdict(row: &Row) -> String {
    let threshold = row.threshold_pct;
    match row.verdict {
        Verdict::Regression => format!("↓ REGRESSION (worse by more than {threshold}%)"),
        Verdict::Worse => format!("↓ worse (within {threshold}%)"),
        Verdict::Better => "↑ better".to_string(),
        Verdict::Changed => "~ changed (direction unknown)".to_string(),
        Verdict::Added => "+ only in current".to_string(),
        Verdict::Removed => "- only in baseline".to_string(),
        Verdict::Same => "= same".to_string(),
    }
}

/// The comparison as one JSON object: the two inputs, counts per verdict, `regressed`, and
/// `rows`, one object per metric (`metric`, `baseline`, `current`, `change_pct`, `direction`,
/// `threshold_pct`, `verdict`).
pub fn render_json(comparison: &Comparison, baseline: &str, current: &str) -> String {
    #[derive(Serialize)]
    struct Report<'a> {
        baseline: &'a str,
        current: &'a str,
        regressed: bool,
        counts: BTreeMap<Verdict, usize>,
        rows: &'a [Row],
    }
    let report = Report {
        baseline,
        current,
        regressed: comparison.regressed(),
        counts: ORDER.iter().map(|&v| (v, comparison.count(v))).collect(),
        rows: &comparison.rows,
    };
    let mut json = serde_json::to_string_pretty(&report).expect("plain data serialises");
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_changes_keep_two_significant_digits() {
        let shown = |pct: f64| format!("{pct:+.*}%", decimals(pct));
        assert_eq!(shown(10.0), "+10.00%");
        assert_eq!(shown(-0.5), "-0.50%");
        assert_eq!(shown(0.0), "+0.00%");
        assert_eq!(shown(35.0 / 1_342_000.0 * 100.0), "+0.0026%");
        assert_eq!(shown(-0.000_01), "-0.000010%");
    }
}
