//! Hardware counter samples (`counters.parquet`): one row per NVML sample.
//!
//! Columns: `t_ns` (u64, on the profile's host clock, see the `profile` module docs) and, each
//! nullable because a GPU or driver may not support it: `sm_clock_mhz`, `mem_clock_mhz`,
//! `power_mw`, `temperature_c`, `gpu_util_pct`, `mem_util_pct` (u32), `memory_used_bytes`,
//! `pcie_tx_bytes_per_s`, `pcie_rx_bytes_per_s` (u64; NVML's KB/s x 1024, TX = leaving the GPU),
//! `nvlink_tx_kib`, `nvlink_rx_kib` (u64, cumulative NVLink data over all links) and
//! `throttle_reasons` (u64 bitmask of NVML `nvmlClocksThrottleReason*`).

use std::path::Path;

use polars::prelude::*;

use super::measurement::{Table, read_frame};
use crate::error::{Error, Result};
use crate::output::write_parquet_frame;

/// One NVML sample; `None` where the counter is not supported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CounterSample {
    /// Host-clock time of the sample.
    pub t_ns: u64,
    /// SM clock.
    pub sm_clock_mhz: Option<u32>,
    /// Memory clock.
    pub mem_clock_mhz: Option<u32>,
    /// Board power draw.
    pub power_mw: Option<u32>,
    /// GPU temperature.
    pub temperature_c: Option<u32>,
    /// Share of the last sample period a kernel ran.
    pub gpu_util_pct: Option<u32>,
    /// Share of the last sample period device memory was read or written.
    pub mem_util_pct: Option<u32>,
    /// Device memory in use.
    pub memory_used_bytes: Option<u64>,
    /// PCIe throughput out of the GPU (device to host).
    pub pcie_tx_bytes_per_s: Option<u64>,
    /// PCIe throughput into the GPU (host to device).
    pub pcie_rx_bytes_per_s: Option<u64>,
    /// Cumulative NVLink data sent, all links.
    pub nvlink_tx_kib: Option<u64>,
    /// Cumulative NVLink data received, all links.
    pub nvlink_rx_kib: Option<u64>,
    /// Clock throttle reasons bitmask.
    pub throttle_reasons: Option<u64>,
}

/// Writes samples to `path` as Parquet, atomically.
pub fn write_counters(path: &Path, samples: &[CounterSample]) -> Result<()> {
    let small = |name: &str, get: fn(&CounterSample) -> Option<u32>| {
        Column::new(name.into(), samples.iter().map(get).collect::<Vec<_>>())
    };
    let large = |name: &str, get: fn(&CounterSample) -> Option<u64>| {
        Column::new(name.into(), samples.iter().map(get).collect::<Vec<_>>())
    };
    let mut frame = DataFrame::new(
        samples.len(),
        vec![
            Column::new(
                "t_ns".into(),
                samples.iter().map(|s| s.t_ns).collect::<Vec<_>>(),
            ),
            small("sm_clock_mhz", |s| s.sm_clock_mhz),
            small("mem_clock_mhz", |s| s.mem_clock_mhz),
            small("power_mw", |s| s.power_mw),
            small("temperature_c", |s| s.temperature_c),
            small("gpu_util_pct", |s| s.gpu_util_pct),
            small("mem_util_pct", |s| s.mem_util_pct),
            large("memory_used_bytes", |s| s.memory_used_bytes),
            large("pcie_tx_bytes_per_s", |s| s.pcie_tx_bytes_per_s),
            large("pcie_rx_bytes_per_s", |s| s.pcie_rx_bytes_per_s),
            large("nvlink_tx_kib", |s| s.nvlink_tx_kib),
            large("nvlink_rx_kib", |s| s.nvlink_rx_kib),
            large("throttle_reasons", |s| s.throttle_reasons),
        ],
    )
    .map_err(|e| Error::bad_file(path, e.to_string()))?;
    write_parquet_frame(path, &mut frame)
}

/// The PCIe throughput of one NVML sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcieSample {
    /// Host-clock time of the sample.
    pub t_ns: u64,
    /// Out of the GPU (device to host), bytes/s.
    pub tx_bytes_per_s: Option<u64>,
    /// Into the GPU (host to device), bytes/s.
    pub rx_bytes_per_s: Option<u64>,
}

/// A PCIe direction as NVML counts it, from the GPU's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcieDirection {
    /// Leaving the GPU: device-to-host copies.
    Tx,
    /// Entering the GPU: host-to-device copies.
    Rx,
}

impl PcieSample {
    /// The reading for `direction`.
    pub fn bytes_per_s(&self, direction: PcieDirection) -> Option<u64> {
        match direction {
            PcieDirection::Tx => self.tx_bytes_per_s,
            PcieDirection::Rx => self.rx_bytes_per_s,
        }
    }
}

/// Reads the time and PCIe columns of a counter file; errors name the file and column.
pub fn read_pcie_counters(path: &Path) -> Result<Vec<PcieSample>> {
    let frame = read_frame(path)?;
    let table = Table {
        frame: &frame,
        path,
    };
    let t = table.integers("t_ns")?;
    let tx = table.optional_integers("pcie_tx_bytes_per_s")?;
    let rx = table.optional_integers("pcie_rx_bytes_per_s")?;
    Ok(t.into_iter()
        .zip(tx)
        .zip(rx)
        .map(|((t_ns, tx_bytes_per_s), rx_bytes_per_s)| PcieSample {
            t_ns,
            tx_bytes_per_s,
            rx_bytes_per_s,
        })
        .collect())
}

/// Mean of the non-null `direction` readings of samples in `[start_ns, end_ns]`; `None` when
/// no sample of that window has one.
pub fn mean_in_window(
    samples: &[PcieSample],
    start_ns: u64,
    end_ns: u64,
    direction: PcieDirection,
) -> Option<f64> {
    let values: Vec<f64> = samples
        .iter()
        .filter(|s| (start_ns..=end_ns).contains(&s.t_ns))
        .filter_map(|s| s.bytes_per_s(direction).map(|v| v as f64))
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_round_trip_with_nulls_and_window_means() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters.parquet");
        let sample = |t_ns, rx| CounterSample {
            t_ns,
            pcie_rx_bytes_per_s: rx,
            power_mw: Some(350_000),
            ..CounterSample::default()
        };
        let samples = [
            sample(0, Some(100)),
            sample(10, None),
            sample(20, Some(300)),
            sample(30, Some(900)),
        ];
        write_counters(&path, &samples).unwrap();
        let pcie = read_pcie_counters(&path).unwrap();
        assert_eq!(
            pcie[1],
            PcieSample {
                t_ns: 10,
                tx_bytes_per_s: None,
                rx_bytes_per_s: None
            }
        );
        // Samples at 0..=20 with a value: 100 and 300.
        assert_eq!(mean_in_window(&pcie, 0, 20, PcieDirection::Rx), Some(200.0));
        assert_eq!(mean_in_window(&pcie, 5, 15, PcieDirection::Rx), None);
        assert_eq!(mean_in_window(&pcie, 0, 30, PcieDirection::Tx), None);
    }
}
