//! The parameters a cluster graph is built from: node shape, NVLink, PCIe, network.
//!
//! Every cluster moesim builds has the same shape, parameterised by [`ClusterSpec`]:
//! `nodes` machines of `gpus_per_node` GPUs. Inside a machine the GPUs hang off an NVSwitch
//! (a non-blocking crossbar with one port link per GPU and direction) when the machine has
//! NVLink, and off PCIe switches (`gpus_per_switch` GPUs each) joined by the host CPU. With more
//! than one machine, each GPU has its own NIC on its PCIe switch, NIC `i` of every machine sits on
//! leaf switch ("rail") `i`, and the leaves are joined by one spine layer, modelled as a single
//! switch whose link to each leaf carries that leaf's whole downlink capacity divided by the
//! `oversubscription` ratio.
//!
//! Latencies are modelling assumptions (per link, one direction); they include the fixed
//! overheads of starting a transfer, so an NVLink GPU-to-GPU path costs about 1 us and a
//! same-rail RDMA path about 2.8 us, in line with the small-message latencies NCCL and DeepEP
//! report.

use serde::{Deserialize, Deserializer, Serialize};

use super::device::GpuSpec;
use crate::error::{Error, Result};

/// Latency of one GPU <-> NVSwitch link: a GPU-to-GPU NVLink transfer crosses two (1 us).
pub const NVLINK_LATENCY_NS: u64 = 500;
/// Latency of one PCIe link (GPU or NIC <-> PCIe switch, switch <-> host).
pub const PCIE_LATENCY_NS: u64 = 400;
/// Latency of one NIC <-> leaf switch link, including the NIC's RDMA processing.
pub const NIC_LATENCY_NS: u64 = 600;
/// Latency of one leaf <-> spine link, including the switch traversal.
pub const SPINE_LATENCY_NS: u64 = 300;
/// InfiniBand NDR / ConnectX-7: 400 Gb/s = 50 GB/s per NIC and direction.
pub const NDR_NIC_GBPS: f64 = 50.0;
/// The most GPUs a cluster may have: routes are precomputed for every GPU pair (4M at this size).
pub const MAX_GPUS: usize = 2048;

/// A cluster's parameters; see the module docs for the shape built from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Name shown in reports.
    pub name: String,
    /// Machines (NVLink / PCIe domains) joined by the network.
    #[serde(default = "one")]
    pub nodes: usize,
    /// GPUs per machine.
    pub gpus_per_node: usize,
    /// The GPU model. In TOML either a known short name (`gpu = "h100"`) or a full table.
    #[serde(deserialize_with = "gpu_by_name_or_table")]
    pub gpu: GpuSpec,
    /// NVLink through an NVSwitch; absent when GPUs talk over PCIe only.
    #[serde(default)]
    pub nvlink: Option<NvLinkSpec>,
    /// PCIe attachment of GPUs and NICs.
    pub pcie: PcieSpec,
    /// Scale-out network (used when `nodes > 1`).
    #[serde(default)]
    pub network: NetworkSpec,
}

/// Bandwidths (GB/s) and compute rates (TFLOPS) a cluster may state: 1 MB/s to 1 EB/s. Past
/// these the route costs (integer nanoseconds) would overflow.
const RATE_RANGE: (f64, f64) = (1e-3, 1e9);

/// Leaf downlink over uplink capacity a network may have.
const OVERSUBSCRIPTION_RANGE: (f64, f64) = (1e-3, 1e3);

/// The longest latency one link may have: one second.
const MAX_LATENCY_NS: u64 = 1_000_000_000;

/// NVLink through a machine-wide NVSwitch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvLinkSpec {
    /// Bandwidth of each GPU's NVLink in one direction, GB/s (H100: 450 of 900 total).
    pub gbps: f64,
    /// Latency of one GPU <-> NVSwitch link.
    #[serde(default = "nvlink_latency")]
    pub latency_ns: u64,
}

/// PCIe switches joining GPUs, NICs and the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcieSpec {
    /// Bandwidth of each PCIe link in one direction, GB/s (Gen5 x16: 64, Gen4 x16: 32).
    pub gbps: f64,
    /// GPUs sharing one PCIe switch (1 in HGX boards, where each GPU pairs with its own NIC).
    #[serde(default = "one")]
    pub gpus_per_switch: usize,
    /// Latency of one PCIe link.
    #[serde(default = "pcie_latency")]
    pub latency_ns: u64,
}

/// A rail-optimised leaf / spine network with one NIC per GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// NIC bandwidth per direction, GB/s.
    #[serde(default = "ndr_nic")]
    pub nic_gbps: f64,
    /// Latency of one NIC <-> leaf link.
    #[serde(default = "nic_latency")]
    pub nic_latency_ns: u64,
    /// Latency of one leaf <-> spine link.
    #[serde(default = "spine_latency")]
    pub spine_latency_ns: u64,
    /// Leaf downlink capacity over uplink capacity (1 = non-blocking).
    #[serde(default = "one_f64")]
    pub oversubscription: f64,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            nic_gbps: NDR_NIC_GBPS,
            nic_latency_ns: NIC_LATENCY_NS,
            spine_latency_ns: SPINE_LATENCY_NS,
            oversubscription: 1.0,
        }
    }
}

impl ClusterSpec {
    /// Checks counts are positive and bandwidths positive and finite; names the field at fault.
    pub fn validate(&self) -> Result<()> {
        let counts = [
            ("nodes", self.nodes),
            ("gpus_per_node", self.gpus_per_node),
            ("pcie.gpus_per_switch", self.pcie.gpus_per_switch),
        ];
        if let Some((field, _)) = counts.iter().find(|(_, v)| *v == 0) {
            return Err(self.error(format!("`{field}` must be at least 1")));
        }
        if self.num_gpus() > MAX_GPUS {
            return Err(self.error(format!(
                "{} GPUs ({} nodes x {}) exceed the {MAX_GPUS} whose pairwise routes moesim precomputes",
                self.num_gpus(),
                self.nodes,
                self.gpus_per_node
            )));
        }
        let rates = [
            ("gpu.bf16_tflops", self.gpu.bf16_tflops, RATE_RANGE),
            (
                "gpu.fp8_tflops",
                self.gpu.fp8_tflops.unwrap_or(1.0),
                RATE_RANGE,
            ),
            (
                "gpu.fp4_tflops",
                self.gpu.fp4_tflops.unwrap_or(1.0),
                RATE_RANGE,
            ),
            ("gpu.hbm_gbps", self.gpu.hbm_gbps, RATE_RANGE),
            ("pcie.gbps", self.pcie.gbps, RATE_RANGE),
            ("network.nic_gbps", self.network.nic_gbps, RATE_RANGE),
            (
                "network.oversubscription",
                self.network.oversubscription,
                OVERSUBSCRIPTION_RANGE,
            ),
            (
                "nvlink.gbps",
                self.nvlink.as_ref().map_or(1.0, |n| n.gbps),
                RATE_RANGE,
            ),
        ];
        if let Some((field, value, (low, high))) = rates
            .iter()
            .find(|(_, v, (low, high))| !(low..=high).contains(&v))
        {
            return Err(self.error(format!(
                "`{field}` must be a number from {low} to {high}, got {value:?}"
            )));
        }
        let latencies = [
            ("pcie.latency_ns", self.pcie.latency_ns),
            ("network.nic_latency_ns", self.network.nic_latency_ns),
            ("network.spine_latency_ns", self.network.spine_latency_ns),
            (
                "nvlink.latency_ns",
                self.nvlink.as_ref().map_or(0, |n| n.latency_ns),
            ),
        ];
        if let Some((field, value)) = latencies.iter().find(|(_, v)| *v > MAX_LATENCY_NS) {
            return Err(self.error(format!(
                "`{field}` must be at most {MAX_LATENCY_NS} ns, got {value}"
            )));
        }
        Ok(())
    }

    /// Total GPUs.
    pub fn num_gpus(&self) -> usize {
        // Saturating: `validate` refuses what does not fit, but it asks this first.
        self.nodes.saturating_mul(self.gpus_per_node)
    }

    /// An error about this spec.
    fn error(&self, message: String) -> Error {
        Error::invalid(format!("cluster `{}`: {message}", self.name))
    }
}

/// Reads `gpu` as a known short name or as a full [`GpuSpec`] table.
fn gpu_by_name_or_table<'de, D: Deserializer<'de>>(deserializer: D) -> Result<GpuSpec, D::Error> {
    use serde::de::Error as _;
    match toml::Value::deserialize(deserializer)? {
        toml::Value::String(name) => GpuSpec::named(&name).ok_or_else(|| {
            D::Error::custom(format!(
                "unknown gpu `{name}`; known: {} (or give a table with name, bf16_tflops, optional fp8_tflops and fp4_tflops, hbm_gbps, memory_bytes, sm_count)",
                GpuSpec::names().join(", ")
            ))
        }),
        table => GpuSpec::deserialize(table).map_err(D::Error::custom),
    }
}

fn one() -> usize {
    1
}
fn one_f64() -> f64 {
    1.0
}
fn ndr_nic() -> f64 {
    NDR_NIC_GBPS
}
fn nvlink_latency() -> u64 {
    NVLINK_LATENCY_NS
}
fn pcie_latency() -> u64 {
    PCIE_LATENCY_NS
}
fn nic_latency() -> u64 {
    NIC_LATENCY_NS
}
fn spine_latency() -> u64 {
    SPINE_LATENCY_NS
}
