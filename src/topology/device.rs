//! Accelerator specifications: the peak numbers roofline cost models divide by, one dense
//! tensor-core peak per data type the part has tensor cores for.

use serde::{Deserialize, Serialize};

/// A number format a kernel multiplies in, narrowest last; BF16 by default.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// 16-bit brain float.
    #[default]
    Bf16,
    /// 8-bit float (E4M3 / E5M2).
    Fp8,
    /// 4-bit float (MXFP4 / NVFP4, with their block scales).
    Fp4,
}

impl DataType {
    /// The format weights stored at `bytes_per_param` bytes are multiplied in: 2 and more is
    /// BF16, 1 to 2 FP8 (1 byte, or block-scaled FP8 slightly above), below 1 FP4 (MXFP4 is
    /// 0.53125: 4 bits plus an 8-bit scale per 32 weights).
    pub fn of_bytes_per_param(bytes_per_param: f64) -> DataType {
        if bytes_per_param >= 2.0 {
            DataType::Bf16
        } else if bytes_per_param >= 1.0 {
            DataType::Fp8
        } else {
            DataType::Fp4
        }
    }

    /// The next wider format (BF16 is the widest tensor-core format every part has).
    pub fn wider(self) -> DataType {
        match self {
            DataType::Fp4 => DataType::Fp8,
            DataType::Fp8 | DataType::Bf16 => DataType::Bf16,
        }
    }

    /// Bytes of one activation element read in this format.
    pub fn activation_bytes(self) -> f64 {
        match self {
            DataType::Bf16 => 2.0,
            DataType::Fp8 => 1.0,
            DataType::Fp4 => 0.5,
        }
    }

    /// Lower-case name, as in TOML (`bf16`, `fp8`, `fp4`).
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bf16 => "bf16",
            DataType::Fp8 => "fp8",
            DataType::Fp4 => "fp4",
        }
    }
}

/// One GPU model's peak compute, memory bandwidth and capacity (vendor datasheet figures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// Marketing name, e.g. `H100 SXM`.
    pub name: String,
    /// Peak dense (no structured sparsity) BF16 tensor-core throughput, TFLOP/s.
    pub bf16_tflops: f64,
    /// Peak dense FP8 tensor-core throughput, TFLOP/s; absent on parts without FP8 tensor
    /// cores (A100), whose FP8 kernels run at the BF16 rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp8_tflops: Option<f64>,
    /// Peak dense FP4 tensor-core throughput, TFLOP/s; absent before Blackwell (FP4 kernels
    /// then run at the FP8 rate, or BF16 without FP8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp4_tflops: Option<f64>,
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
const NAMES: &[&str] = &[
    "h100", "h800", "h200", "b200", "gb200", "l40s", "rtx4090", "a100",
];

impl GpuSpec {
    /// A known GPU by short name (see [`GpuSpec::names`]). Peaks are dense (no sparsity).
    pub fn named(name: &str) -> Option<GpuSpec> {
        let spec =
            |name: &str, [bf16, fp8, fp4]: [f64; 3], hbm_gbps, memory_gib: u64, sm_count| GpuSpec {
                name: name.to_string(),
                bf16_tflops: bf16,
                fp8_tflops: (fp8 > 0.0).then_some(fp8),
                fp4_tflops: (fp4 > 0.0).then_some(fp4),
                hbm_gbps,
                memory_bytes: memory_gib * GIB,
                sm_count,
            };
        Some(match name {
            // H100 SXM5: 989 BF16 / 1,979 FP8 TFLOP/s dense, HBM3 3.35 TB/s, 80 GB, 132 SMs.
            "h100" => spec("H100 SXM", [989.0, 1979.0, 0.0], 3350.0, 80, 132),
            // H800 SXM: H100 silicon with NVLink cut to 400 GB/s (the link, not the chip, differs).
            "h800" => spec("H800 SXM", [989.0, 1979.0, 0.0], 3350.0, 80, 132),
            // H200 SXM: H100 compute, HBM3e 4.8 TB/s, 141 GB.
            "h200" => spec("H200 SXM", [989.0, 1979.0, 0.0], 4800.0, 141, 132),
            // B200 (HGX, 1 kW): ~2,250 BF16, ~4,500 FP8, ~9,000 FP4 TFLOP/s dense, HBM3e 8 TB/s,
            // 180 GB, 148 SMs.
            "b200" => spec("B200", [2250.0, 4500.0, 9000.0], 8000.0, 180, 148),
            // B200 as in GB200 NVL72 (1.2 kW): 2.5 PFLOP/s BF16 (180 PF / 72), ~5,000 FP8,
            // ~10,000 FP4, HBM3e 8 TB/s, 186 GB (13.4 TB / 72), 148 SMs.
            "gb200" => spec("B200 (GB200)", [2500.0, 5000.0, 10000.0], 8000.0, 186, 148),
            // L40S: 362 BF16 / 733 FP8 TFLOP/s dense, GDDR6 864 GB/s, 48 GB, 142 SMs.
            "l40s" => spec("L40S", [362.05, 733.0, 0.0], 864.0, 48, 142),
            // RTX 4090: ~165 BF16 / ~330 FP8 TFLOP/s dense (FP32 accumulate), GDDR6X
            // 1,008 GB/s, 24 GB, 128 SMs.
            "rtx4090" => spec("RTX 4090", [165.0, 330.0, 0.0], 1008.0, 24, 128),
            // A100 SXM 80 GB: 312 BF16 TFLOP/s dense, no FP8 tensor cores, HBM2e 2,039 GB/s,
            // 108 SMs.
            "a100" => spec("A100 SXM 80GB", [312.0, 0.0, 0.0], 2039.0, 80, 108),
            _ => return None,
        })
    }

    /// Short names accepted by [`GpuSpec::named`].
    pub fn names() -> &'static [&'static str] {
        NAMES
    }

    /// Dense tensor-core peak for `dtype`, TFLOP/s, when the part has tensor cores for it.
    pub fn peak_tflops(&self, dtype: DataType) -> Option<f64> {
        match dtype {
            DataType::Bf16 => Some(self.bf16_tflops),
            DataType::Fp8 => self.fp8_tflops,
            DataType::Fp4 => self.fp4_tflops,
        }
    }

    /// The format a `dtype` kernel runs in on this part: `dtype` itself, or the next wider
    /// format it has tensor cores for.
    pub fn supported(&self, dtype: DataType) -> DataType {
        let mut dtype = dtype;
        while self.peak_tflops(dtype).is_none() {
            dtype = dtype.wider();
        }
        dtype
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
        assert!(GpuSpec::named("v100").is_none());
    }

    #[test]
    fn h100_and_h200_share_compute_but_not_memory() {
        let h100 = GpuSpec::named("h100").unwrap();
        let h200 = GpuSpec::named("h200").unwrap();
        assert_eq!(h100.bf16_tflops, 989.0);
        assert_eq!(h100.fp8_tflops, Some(1979.0));
        assert_eq!(h100.memory_bytes, 85_899_345_920);
        assert_eq!(h200.bf16_tflops, h100.bf16_tflops);
        assert_eq!(h200.hbm_gbps, 4800.0);
    }

    #[test]
    fn missing_tensor_core_formats_fall_back_to_the_next_wider() {
        let h100 = GpuSpec::named("h100").unwrap();
        let a100 = GpuSpec::named("a100").unwrap();
        let gb200 = GpuSpec::named("gb200").unwrap();
        assert_eq!(h100.supported(DataType::Fp4), DataType::Fp8);
        assert_eq!(a100.supported(DataType::Fp4), DataType::Bf16);
        assert_eq!(a100.supported(DataType::Fp8), DataType::Bf16);
        assert_eq!(gb200.supported(DataType::Fp4), DataType::Fp4);
        assert_eq!(gb200.peak_tflops(DataType::Fp4), Some(10000.0));
        assert_eq!(DataType::of_bytes_per_param(0.53125), DataType::Fp4);
        assert_eq!(DataType::of_bytes_per_param(1.0), DataType::Fp8);
        assert_eq!(DataType::of_bytes_per_param(2.0), DataType::Bf16);
    }
}
