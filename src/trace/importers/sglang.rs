//! SGLang's expert-distribution recorder dump: `{"logical_count": [layers][experts]}`, tokens
//! routed to each logical expert (token x top-k slots). Dense layers recorded as all-zero rows
//! are kept as they are; dropping them is an analysis choice, not an import one.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::output::write_bytes_atomic;
use crate::trace::ExpertLoads;

/// The dump's JSON shape; other keys SGLang may add are ignored.
#[derive(Serialize, Deserialize)]
struct ExpertDistribution {
    logical_count: Vec<Vec<f64>>,
}

/// Reads the dump at `path`. `num_experts`, when given, must equal the dump's width.
pub(super) fn import(path: &Path, num_experts: Option<usize>) -> Result<ExpertLoads> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let dump: ExpertDistribution = serde_json::from_slice(&bytes).map_err(|e| {
        Error::bad_file(
            path,
            format!(
                "not an SGLang expert-distribution dump {{\"logical_count\": [layers][experts]}}: \
                 {e}"
            ),
        )
    })?;
    let width = dump.logical_count.first().map_or(0, Vec::len);
    if width == 0 {
        return Err(Error::bad_file(
            path,
            "`logical_count` has no layer or no expert",
        ));
    }
    if let Some((layer, row)) = dump
        .logical_count
        .iter()
        .enumerate()
        .find(|(_, row)| row.len() != width)
    {
        return Err(Error::bad_file(
            path,
            format!(
                "`logical_count` layer {layer} has {} experts but layer 0 has {width}",
                row.len()
            ),
        ));
    }
    if let Some(n) = num_experts.filter(|&n| n != width) {
        return Err(Error::bad_file(
            path,
            format!("`logical_count` has {width} experts per layer but the model has {n}"),
        ));
    }
    ExpertLoads::new(width, dump.logical_count).map_err(|e| Error::bad_file(path, e.to_string()))
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
            message.ends_with("layer 1 has 1 experts but layer 0 has 2"),
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
