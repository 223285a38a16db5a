//! Accelerator specifications: the peak numbers roofline cost models divide by.

use serde::{Deserialize, Serialize};

/// One GPU model's peak compute, memory bandwidth and capacity (vendor datasheet figures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// Marketing name, e.g. `H100 SXM`.
    pub name: String,
    /// Peak dense (no structured sparsity) BF16 tensor-core throughput, TFLOP/s.
    pub bf16_tflops: f64,
    /// Peak HBM (or GDDR) bandwidth, GB/s (1 GB = 10^9 bytes).
    pub hbm_gbps: f64,
    /// Device memory. Vendor "GB" figures are taken as GiB, which is what the driver reports.
    pub memory_bytes: u64,
    /// Streaming multiprocessors (communication kernels such as DeepEP take some of them).
    pub sm_count: u32,
}

/// GiB in bytes.
const GIB: u64 = 1 << 30;

/// Names accepted by [`GpuSpec::named`].
const NAMES: &[&str] = &["h100", "h800", "h200", "b200", "l40s"];

impl GpuSpec {
    /// A known GPU by short name (`h100`, `h800`, `h200`, `b200`, `l40s`).
    pub fn named(name: &str) -> Option<GpuSpec> {
        let spec = |name: &str, bf16_tflops, hbm_gbps, memory_gib: u64, sm_count| GpuSpec {
            name: name.to_string(),
            bf16_tflops,
            hbm_gbps,
            memory_bytes: memory_gib * GIB,
            sm_count,
        };
        Some(match name {
            // H100 SXM5: 989 TFLOP/s dense BF16, HBM3 3.35 TB/s, 80 GB, 132 SMs.
            "h100" => spec("H100 SXM", 989.0, 3350.0, 80, 132),
            // H800 SXM: H100 silicon with NVLink cut to 400 GB/s (the link, not the chip, differs).
            "h800" => spec("H800 SXM", 989.0, 3350.0, 80, 132),
            // H200 SXM: H100 compute, HBM3e 4.8 TB/s, 141 GB.
            "h200" => spec("H200 SXM", 989.0, 4800.0, 141, 132),
            // B200 as in GB200 NVL72: 2.5 PFLOP/s dense BF16 (180 PF / 72), HBM3e 8 TB/s,
            // 186 GB (13.4 TB / 72), 148 SMs.
            "b200" => spec("B200 (GB200)", 2500.0, 8000.0, 186, 148),
            // L40S: 362 TFLOP/s dense BF16 (733 with sparsity), GDDR6 864 GB/s, 48 GB, 142 SMs.
            "l40s" => spec("L40S", 362.05, 864.0, 48, 142),
            _ => return None,
        })
    }

    /// Short names accepted by [`GpuSpec::named`].
    pub fn names() -> &'static [&'static str] {
        NAMES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_resolves() {
        for name in GpuSpec::names() {
            assert!(GpuSpec::named(name).is_some(), "{name}");
        }
        assert!(GpuSpec::named("a100").is_none());
    }

    #[test]
    fn h100_and_h200_share_compute_but_not_memory() {
        let h100 = GpuSpec::named("h100").unwrap();
        let h200 = GpuSpec::named("h200").unwrap();
        assert_eq!(h100.bf16_tflops, 989.0);
        assert_eq!(h100.memory_bytes, 85_899_345_920);
        assert_eq!(h200.bf16_tflops, h100.bf16_tflops);
        assert_eq!(h200.hbm_gbps, 4800.0);
    }
}
