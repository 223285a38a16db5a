//! How much worse a metric may get before it counts as a regression.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result, parse_toml};

/// The threshold, in percent, of metrics no rule names.
pub const DEFAULT_THRESHOLD_PCT: f64 = 5.0;

/// Per-metric regression thresholds in percent: a default and rules by metric path, where `*`
/// stands for any run of characters (`simulated.strategies.*.step_ns`, `trace.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    default_pct: f64,
    rules: Vec<(String, f64)>,
}

/// The thresholds file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdsFile {
    /// Percent for metrics no rule names.
    default: Option<f64>,
    /// Metric path or pattern -> percent.
    #[serde(default)]
    metrics: BTreeMap<String, f64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            default_pct: DEFAULT_THRESHOLD_PCT,
            rules: Vec::new(),
        }
    }
}

impl Thresholds {
    /// Reads a thresholds TOML: `default = PCT` and a `[metrics]` table of `"path" = PCT`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text).map_err(|message| Error::bad_file(path, message))
    }

    /// Parses the thresholds TOML `text`; the error names the line or key at fault.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let file: ThresholdsFile = parse_toml(text)?;
        let default_pct = file.default.unwrap_or(DEFAULT_THRESHOLD_PCT);
        check_pct("default", default_pct)?;
        for (pattern, &pct) in &file.metrics {
            check_pct(&format!("metrics.\"{pattern}\""), pct)?;
        }
        Ok(Thresholds {
            default_pct,
            rules: file.metrics.into_iter().collect(),
        })
    }

    /// The threshold of the metric at `path`: the rule matching it with the most literal
    /// characters (an exact path beats any pattern), else the default.
    pub fn for_metric(&self, path: &str) -> f64 {
        self.rules
            .iter()
            .filter(|(pattern, _)| matches(pattern, path))
            .max_by_key(|(pattern, _)| pattern.chars().filter(|&c| c != '*').count())
            .map_or(self.default_pct, |&(_, pct)| pct)
    }
}

fn check_pct(key: &str, pct: f64) -> std::result::Result<(), String> {
    if pct.is_finite() && pct >= 0.0 {
        Ok(())
    } else {
        Err(format!(
            "`{key}`: a threshold is a percentage >= 0, not {pct}"
        ))
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters, dots included.
fn matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let middle: Vec<&str> = parts.collect();
    let Some((last, middle)) = middle.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_match_any_run_of_characters() {
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.bc"));
        assert!(matches("trace.*", "trace.layers.0.cv"));
        assert!(matches("*.step_ns", "strategies.eplb.step_ns"));
        assert!(!matches("*.step_ns", "strategies.eplb.p99_step_ns"));
        assert!(matches("s.*.layers.*.ns", "s.eplb.layers.3.ns"));
        assert!(!matches("a*b*c", "acb"));
        assert!(matches("ab*b", "abb"));
        assert!(!matches("ab*b", "ab"));
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let t = Thresholds::parse(
            "default = 1.0\n[metrics]\n\"trace.*\" = 50\n\"trace.layers.*.cv\" = 20\n\"trace.num_tokens\" = 0\n",
        )
        .unwrap();
        assert_eq!(t.for_metric("steps"), 1.0);
        assert_eq!(t.for_metric("trace.top_k"), 50.0);
        assert_eq!(t.for_metric("trace.layers.2.cv"), 20.0);
        assert_eq!(t.for_metric("trace.num_tokens"), 0.0);
        assert_eq!(Thresholds::default().for_metric("x"), 5.0);
    }

    #[test]
    fn bad_thresholds_name_their_key() {
        let err = Thresholds::parse("[metrics]\n\"a.b\" = -1\n").unwrap_err();
        assert!(
            err.contains("`metrics.\"a.b\"`") && err.contains("-1"),
            "{err}"
        );
        let err = Thresholds::parse("defualt = 1\n").unwrap_err();
        assert!(err.contains("line 1") && err.contains("defualt"), "{err}");
        let err = Thresholds::parse("[metrics]\nx = \"5%\"\n").unwrap_err();
        assert!(err.contains("metrics.x"), "{err}");
    }
}
