//! SGLang's expert-distribution recorder dump: `{"logical_count": [layers][experts]}`, tokens
//! routed to each logical expert (token x top-k slots). The recorder's own dump keeps one grid per
//! recorded step, `[buffer_steps][layers][experts]`; such a 3-D `logical_count` is summed over
//! its steps (the torch `.pt` dump converts to this JSON with `python/sglang_dump_to_json.py`).
//! Dense layers recorded as all-zero rows are kept as they are; dropping them is an analysis
//! choice, not an import one. Counts must be finite and non-negative, as `trace validate` checks.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::output::write_bytes_atomic;
use crate::trace::validate::sign_problem;
use crate::trace::{ExpertLoads, MAX_EXPERTS, MAX_LAYERS};

/// The key holding the counts.
const KEY: &str = "logical_count";

/// The dump's JSON shape as written; other keys SGLang may add are ignored on reading.
#[derive(Serialize)]
struct ExpertDistribution {
    logical_count: Vec<Vec<f64>>,
}

/// The dump as read: `logical_count` of any nesting, checked by [`counts_of`].
#[derive(Deserialize)]
struct RawDump {
    logical_count: Value,
}

/// Reads the dump at `path`. `num_experts`, when given, must equal the dump's width.
pub(super) fn import(path: &Path, num_experts: Option<usize>) -> Result<ExpertLoads> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let dump: RawDump = serde_json::from_slice(&bytes).map_err(|e| {
        Error::bad_file(
            path,
            format!("not an SGLang expert-distribution dump {{\"{KEY}\": [layers][experts]}}: {e}"),
        )
    })?;
    let rows = counts_of(&dump.logical_count).map_err(|m| Error::bad_file(path, m))?;
    let width = rows[0].len();
    if let Some(n) = num_experts.filter(|&n| n != width) {
        return Err(Error::bad_file(
            path,
            format!("`{KEY}` has {width} experts per layer but the model has {n}"),
        ));
    }
    ExpertLoads::new(width, rows).map_err(|e| Error::bad_file(path, e.to_string()))
}

/// The `[layers][experts]` counts of a 2-D `logical_count`, or of a 3-D one summed over its
/// first (step) axis. Errors name the position, e.g. "`logical_count`[2][0][7]: ...".
fn counts_of(value: &Value) -> std::result::Result<Vec<Vec<f64>>, String> {
    let outer = array(value, KEY)?;
    let steps: Vec<(String, &[Value])> = if outer.first().is_some_and(|v| v.is_array())
        && array(&outer[0], KEY)?.first().is_some_and(Value::is_array)
    {
        outer
            .iter()
            .enumerate()
            .map(|(step, grid)| {
                let at = format!("{KEY}[{step}]");
                array(grid, &at).map(|layers| (at, layers))
            })
            .collect::<std::result::Result<_, _>>()?
    } else {
        vec![(KEY.to_string(), outer)]
    };
    let (first_at, first) = &steps[0];
    let layers = first.len();
    let width = match first.first() {
        Some(row) => array(row, &format!("{first_at}[0]"))?.len(),
        None => 0,
    };
    if layers == 0 || width == 0 {
        return Err(format!("`{KEY}` has no layer or no expert"));
    }
    if layers > MAX_LAYERS || width > MAX_EXPERTS {
        return Err(format!(
            "`{KEY}` has {layers} layers x {width} experts; a trace holds at most {MAX_LAYERS} x \
             {MAX_EXPERTS}"
        ));
    }
    let mut totals = vec![vec![0.0; width]; layers];
    for (at, grid) in &steps {
        if grid.len() != layers {
            return Err(format!(
                "`{at}` has {} layers but the first step has {layers}",
                grid.len()
            ));
        }
        for (layer, (row, total)) in grid.iter().zip(&mut totals).enumerate() {
            let at = format!("{at}[{layer}]");
            let row = array(row, &at)?;
            if row.len() != width {
                return Err(format!(
                    "`{at}` has {} experts but layer 0 has {width}",
                    row.len()
                ));
            }
            for (expert, (cell, sum)) in row.iter().zip(total.iter_mut()).enumerate() {
                let count = cell
                    .as_f64()
                    .ok_or_else(|| format!("`{at}[{expert}]`: {cell} is not a number"))?;
                if let Some(problem) = sign_problem(count) {
                    return Err(format!("`{at}[{expert}]`: count {problem}"));
                }
                *sum += count;
            }
        }
    }
    Ok(totals)
}

/// `value` as an array, or an error naming its position `at`.
fn array<'v>(value: &'v Value, at: &str) -> std::result::Result<&'v [Value], String> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| format!("`{at}` must be an array, found {}", kind_of(value)))
}

/// A JSON value's kind, for error messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Writes `loads` as an SGLang dump.
pub(super) fn write(path: &Path, loads: &ExpertLoads) -> Result<()> {
    let dump = ExpertDistribution {
        logical_count: (0..loads.num_layers())
            .map(|l| loads.layer(l).to_vec())
            .collect(),
    };
    let json = serde_json::to_vec(&dump).map_err(|e| Error::invalid(e.to_string()))?;
    write_bytes_atomic(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_round_trips_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dump.json");
        let text = r#"{"logical_count":[[0.0,0.0,0.0],[12.0,0.5,3.0]]}"#;
        fs::write(&path, text).unwrap();
        let loads = import(&path, Some(3)).unwrap();
        assert_eq!(loads.num_layers(), 2);
        assert_eq!(loads.layer(1), &[12.0, 0.5, 3.0]);
        let out = dir.path().join("out.json");
        write(&out, &loads).unwrap();
        assert_eq!(fs::read_to_string(&out).unwrap(), text);
    }

    #[test]
    fn ragged_or_mismatched_dumps_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dump.json");
        fs::write(&path, r#"{"logical_count":[[1.0,2.0],[3.0]]}"#).unwrap();
        let message = import(&path, None).unwrap_err().to_string();
        assert!(
            message.ends_with("`logical_count[1]` has 1 experts but layer 0 has 2"),
            "{message}"
        );
        fs::write(&path, r#"{"logical_count":[[1.0,2.0]]}"#).unwrap();
        let message = import(&path, Some(4)).unwrap_err().to_string();
        assert!(
            message.ends_with("has 2 experts per layer but the model has 4"),
            "{message}"
        );
        fs::write(&path, r#"{"physical_count":[[1.0]]}"#).unwrap();
        let message = import(&path, None).unwrap_err().to_string();
        assert!(
            message.contains("missing field `logical_count`"),
            "{message}"
        );
    }

    fn error_of(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dump.json");
        fs::write(&path, text).unwrap();
        import(&path, None).unwrap_err().to_string()
    }

    #[test]
    fn recorder_steps_are_summed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dump.json");
        // 2 steps x 2 layers x 3 experts.
        let text = r#"{"logical_count":[[[1,0,2],[0,0,0]],[[3,1,0],[4,0,1]]]}"#;
        fs::write(&path, text).unwrap();
        let loads = import(&path, Some(3)).unwrap();
        assert_eq!(loads.layer(0), &[4.0, 1.0, 2.0]);
        assert_eq!(loads.layer(1), &[4.0, 0.0, 1.0]);
        assert!(
            error_of(r#"{"logical_count":[[[1,0]],[[1,0],[2,2]]]}"#)
                .ends_with("`logical_count[1]` has 2 layers but the first step has 1")
        );
    }

    #[test]
    fn counts_must_be_finite_non_negative_numbers() {
        // Issue 15 defect 4's reproducer.
        let message = error_of(r#"{"logical_count":[[-5,1,2,3],[1,1,1,1]]}"#);
        assert!(
            message.ends_with("dump.json: `logical_count[0][0]`: count -5 is negative"),
            "{message}"
        );
        assert!(
            error_of(r#"{"logical_count":[[1,"x"]]}"#)
                .ends_with("`logical_count[0][1]`: \"x\" is not a number")
        );
        assert!(
            error_of(r#"{"logical_count":[[[1],[2]],[[1],3]]}"#)
                .ends_with("`logical_count[1][1]` must be an array, found a number")
        );
        assert!(error_of(r#"{"logical_count":[[]]}"#).ends_with("has no layer or no expert"));
    }

    #[test]
    fn too_many_experts_are_refused_naming_the_file() {
        // Issue 15 defect 7: 70,000 experts.
        let message = error_of(&format!(
            "{{\"logical_count\":[[{}1]]}}",
            "1,".repeat(69999)
        ));
        assert!(
            message.ends_with(
                "dump.json: `logical_count` has 1 layers x 70000 experts; a trace holds at most \
                 65536 x 65536"
            ),
            "{message}"
        );
    }

    #[test]
    fn real_deepseek_dump_keeps_its_dense_layers() {
        let Some(dir) = crate::trace::importers::tests::shared_data() else {
            return;
        };
        let path = dir.join("deepseek-v3-expert-load/prefill_in1024.json");
        let loads = import(&path, Some(256)).unwrap();
        assert_eq!((loads.num_layers(), loads.num_experts()), (61, 256));
        for dense in 0..3 {
            assert_eq!(loads.layer_total(dense), 0.0);
        }
        // Figures computed from the raw JSON: 2^26 slots per MoE layer, expert 81 the busiest.
        assert_eq!(loads.layer_total(3), 67108864.0);
        assert_eq!(loads.layer_total(60), 67108864.0);
        assert_eq!(
            &loads.layer(3)[..4],
            &[391534.0, 266707.0, 219476.0, 1023790.0]
        );
        assert_eq!(loads.layer(3)[81], 1360993.0);
    }
}
