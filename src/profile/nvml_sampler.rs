//! NVML counters sampled on a background thread at a fixed period, stamped on the profile's host
//! clock (nanoseconds since a shared [`Instant`], see the `profile` module docs).
//!
//! A counter the GPU or driver does not support reads as `None` (a null in `counters.parquet`),
//! never an error; only initialising NVML or finding the device can fail.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nvml_wrapper::Device;
use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{Clock, PcieUtilCounter, TemperatureSensor};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id::{
    NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
};

use super::counters::CounterSample;
use crate::error::{Error, Result};

/// A running sampler; [`NvmlSampler::stop`] ends it and returns the samples.
pub struct NvmlSampler {
    stop: Sender<()>,
    thread: JoinHandle<Vec<CounterSample>>,
}

impl NvmlSampler {
    /// Starts sampling GPU `index` every `period`, timestamps relative to `epoch`. Call
    /// [`crate::gpu::require_driver`] first.
    pub fn start(index: u32, period: Duration, epoch: Instant) -> Result<NvmlSampler> {
        let nvml = init_nvml()?;
        // Fail here, not in the thread, when the device is missing.
        nvml.device_by_index(index)
            .map_err(|e| Error::invalid(format!("NVML: no GPU {index}: {e}")))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            let Ok(device) = nvml.device_by_index(index) else {
                return samples;
            };
            loop {
                samples.push(sample(&device, epoch));
                match stopped.recv_timeout(period) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            samples.push(sample(&device, epoch));
            samples
        });
        Ok(NvmlSampler { stop, thread })
    }

    /// Stops the thread, waits for it and returns its samples in time order.
    pub fn stop(self) -> Result<Vec<CounterSample>> {
        // A send error means the thread already ended; joining still returns its samples.
        let _ = self.stop.send(());
        self.thread
            .join()
            .map_err(|_| Error::invalid("NVML sampler thread panicked"))
    }
}

/// NVML, initialised; the error says why not.
pub fn init_nvml() -> Result<Nvml> {
    Nvml::init().map_err(|e| Error::invalid(format!("cannot initialise NVML: {e}")))
}

/// The GPU's name, driver version and memory size as NVML reports them (`None` when not).
pub fn device_info(index: u32) -> Result<(Option<String>, Option<String>, Option<u64>)> {
    let nvml = init_nvml()?;
    let device = nvml
        .device_by_index(index)
        .map_err(|e| Error::invalid(format!("NVML: no GPU {index}: {e}")))?;
    Ok((
        device.name().ok(),
        nvml.sys_driver_version().ok(),
        device.memory_info().ok().map(|m| m.total),
    ))
}

/// One reading of every counter; unsupported ones are `None`.
fn sample(device: &Device, epoch: Instant) -> CounterSample {
    let t_ns = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let utilization = device.utilization_rates().ok();
    let kib_per_s_to_bytes = |kib: u32| u64::from(kib) * 1024;
    let nvlink = device
        .field_values_for(&[
            FieldId(NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX),
            FieldId(NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX),
        ])
        .ok();
    let nvlink_value = |index: usize| {
        let value = nvlink
            .as_ref()?
            .get(index)?
            .as_ref()
            .ok()?
            .value
            .as_ref()
            .ok()?;
        match *value {
            SampleValue::U64(v) => Some(v),
            SampleValue::U32(v) => Some(u64::from(v)),
            _ => None,
        }
    };
    CounterSample {
        t_ns,
        sm_clock_mhz: device.clock_info(Clock::SM).ok(),
        mem_clock_mhz: device.clock_info(Clock::Memory).ok(),
        power_mw: device.power_usage().ok(),
        temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
        gpu_util_pct: utilization.as_ref().map(|u| u.gpu),
        mem_util_pct: utilization.as_ref().map(|u| u.memory),
        memory_used_bytes: device.memory_info().ok().map(|m| m.used),
        pcie_tx_bytes_per_s: device
            .pcie_throughput(PcieUtilCounter::Send)
            .ok()
            .map(kib_per_s_to_bytes),
        pcie_rx_bytes_per_s: device
            .pcie_throughput(PcieUtilCounter::Receive)
            .ok()
            .map(kib_per_s_to_bytes),
        nvlink_tx_kib: nvlink_value(0),
        nvlink_rx_kib: nvlink_value(1),
        throttle_reasons: device.current_throttle_reasons().ok().map(|r| r.bits()),
    }
}
