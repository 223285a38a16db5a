//! One `moesim profile` run: the NVML sampler around the benchmark plan, then the three files
//! (`measurements.parquet`, `counters.parquet`, `gpu.json`), written only when all succeeded.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::bench::{Repetitions, run_plan};
use super::counters::write_counters;
use super::measurement::{Measurements, Provenance};
use super::nvml_sampler::{NvmlSampler, device_info};
use super::plan::preset_gemm_shapes;
use crate::error::{Error, Result};
use crate::gpu::require_driver;
use crate::output::write_bytes_atomic;

/// Settings of a profile run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileOptions {
    /// CUDA / NVML device index.
    pub device: u32,
    /// Warm-up and timed repetitions per point.
    pub reps: Repetitions,
    /// NVML sample period.
    pub sample_period: Duration,
}

/// `gpu.json`: the device and the run's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuInfo {
    /// Name from the CUDA driver.
    pub name: String,
    /// Driver version from NVML (`unknown` when NVML cannot say).
    pub driver: String,
    /// Device memory from NVML.
    pub memory_bytes: Option<u64>,
    /// UTC date of the run.
    pub date: String,
    /// Device index profiled.
    pub device: u32,
    /// Warm-up runs per point.
    pub warmup: u32,
    /// Timed runs per point.
    pub reps: u32,
    /// NVML sample period.
    pub sample_period_ms: u64,
    /// NVML samples taken.
    pub samples: usize,
}

/// Profiles GPU `options.device` and writes the three files into `out`; returns their paths.
/// Fails with one line, before touching the GPU or `out`, when no NVIDIA driver is present.
/// When NVML cannot start, the benchmarks still run (with a warning) and `counters.parquet`
/// has no rows.
pub fn run_profile(out: &Path, options: ProfileOptions) -> Result<Vec<PathBuf>> {
    require_driver("moesim profile")?;
    let epoch = Instant::now();
    // The benchmarks stand on their own: without NVML they run, and the counter file is empty.
    let sampler = NvmlSampler::start(options.device, options.sample_period, epoch)
        .inspect_err(|e| eprintln!("warning: no NVML counters: {e}"))
        .ok();
    let ordinal = options.device as usize;
    let run = run_plan(ordinal, &preset_gemm_shapes(), options.reps, epoch);
    let samples = sampler.map_or(Ok(Vec::new()), NvmlSampler::stop)?;
    let run = run?;
    let (nvml_name, driver, memory_bytes) = device_info(options.device).unwrap_or_default();
    let info = GpuInfo {
        name: nvml_name.unwrap_or(run.name),
        driver: driver.unwrap_or_else(|| "unknown".into()),
        memory_bytes,
        date: utc_date(SystemTime::now()),
        device: options.device,
        warmup: options.reps.warmup,
        reps: options.reps.timed,
        sample_period_ms: options.sample_period.as_millis() as u64,
        samples: samples.len(),
    };
    let measurements = Measurements {
        provenance: Provenance {
            gpu: info.name.clone(),
            driver: info.driver.clone(),
            date: info.date.clone(),
            source: "measured".into(),
        },
        rows: run.rows,
    };
    let files = [
        out.join("measurements.parquet"),
        out.join("counters.parquet"),
        out.join("gpu.json"),
    ];
    measurements.write_parquet(&files[0])?;
    write_counters(&files[1], &samples)?;
    let json = serde_json::to_string_pretty(&info)
        .map_err(|e| Error::invalid(format!("cannot encode gpu.json: {e}")))?;
    write_bytes_atomic(&files[2], json.as_bytes())?;
    Ok(files.to_vec())
}

/// `YYYY-MM-DD` of `time` in UTC (civil-from-days over the Unix day count).
pub fn utc_date(time: SystemTime) -> String {
    let days = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Howard Hinnant's days-to-civil algorithm, eras of 400 years from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_by_hand() {
        let at = |secs| utc_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01");
        // 2000-02-29 00:00 UTC = 951,782,400 s (leap day of a 400-year leap year).
        assert_eq!(at(951_782_400), "2000-02-29");
        // 2026-11-23 13:58 UTC.
        assert_eq!(at(1_795_442_280), "2026-11-23");
    }
}
