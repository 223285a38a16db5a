//! Custom clusters from TOML files.
//!
//! The file is a [`ClusterSpec`]; unknown keys are errors. Example (also
//! `tests/fixtures/clusters/two-node-a100.toml`):
//!
//! ```toml
//! name = "two-node-a100"
//! nodes = 2                  # machines; default 1
//! gpus_per_node = 8
//!
//! # A known GPU by short name (h100, h800, h200, b200, gb200, l40s, rtx4090, a100) ...
//! # gpu = "h100"
//! # ... or a full table:
//! [gpu]
//! name = "A100 SXM 80GB"
//! bf16_tflops = 312.0        # dense BF16, TFLOP/s
//! # fp8_tflops = 1979.0      # dense FP8, TFLOP/s; omit where the part has no FP8 tensor cores
//! # fp4_tflops = 9000.0      # dense FP4, TFLOP/s; omit where it has none
//! hbm_gbps = 2039.0          # GB/s
//! memory_bytes = 85899345920
//! sm_count = 108
//!
//! [nvlink]                   # omit for PCIe-only machines
//! gbps = 300.0               # per GPU and direction
//! latency_ns = 500           # per GPU <-> NVSwitch link; default 500
//!
//! [pcie]
//! gbps = 32.0                # per link and direction
//! gpus_per_switch = 2        # default 1
//! latency_ns = 400           # default 400
//!
//! [network]                  # all keys optional
//! nic_gbps = 25.0            # per NIC and direction; default 50 (400 Gb/s)
//! nic_latency_ns = 600       # NIC <-> leaf; default 600
//! spine_latency_ns = 300     # leaf <-> spine; default 300
//! oversubscription = 2.0     # leaf downlink / uplink capacity; default 1
//! ```

use std::path::Path;

use super::spec::ClusterSpec;
use crate::error::{Error, Result, parse_toml};

/// Reads and checks the cluster spec in the TOML file at `path`; errors name the file and key.
pub fn read_spec(path: &Path) -> Result<ClusterSpec> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let spec: ClusterSpec = parse_toml(&text).map_err(|message| Error::bad_file(path, message))?;
    spec.validate()
        .map_err(|e| Error::bad_file(path, e.to_string()))?;
    Ok(spec)
}
