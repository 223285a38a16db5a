//! Built-in clusters, one machine each, replicated with an `xN` suffix.

use super::device::GpuSpec;
use super::spec::{
    ClusterSpec, NVLINK_LATENCY_NS, NetworkSpec, NvLinkSpec, PCIE_LATENCY_NS, PcieSpec,
};
use crate::error::{Error, Result};

/// Base names accepted by [`spec`].
pub(super) const NAMES: &[&str] = &[
    "dgx-h100",
    "hgx-h800",
    "hgx-h200",
    "gb200-nvl72",
    "pcie-l40s",
    "rtx4090-host",
    "l40s-host",
    "h100-host",
];

/// PCIe Gen5 x16, per direction.
const PCIE_GEN5_GBPS: f64 = 64.0;
/// PCIe Gen4 x16, per direction.
const PCIE_GEN4_GBPS: f64 = 32.0;

/// The spec of `name`: a base name, optionally followed by `xN` for N machines.
pub(super) fn spec(name: &str) -> Result<ClusterSpec> {
    if let Some((base, count)) = name.rsplit_once('x')
        && NAMES.contains(&base)
    {
        let nodes = count.parse().map_err(|_| {
            Error::invalid(format!(
                "cluster `{name}`: `{count}` after `{base}x` is not a machine count"
            ))
        })?;
        return spec_with_nodes(base, nodes);
    }
    spec_with_nodes(name, 1)
}

/// The spec of base preset `base` over `nodes` machines.
pub(super) fn spec_with_nodes(base: &str, nodes: usize) -> Result<ClusterSpec> {
    if nodes == 0 {
        return Err(Error::invalid(format!(
            "cluster `{base}`: needs at least 1 machine"
        )));
    }
    let spec = match base {
        // NVLink4: 900 GB/s per GPU, 450 each way.
        "dgx-h100" => machine("h100", 8, Some(450.0), PCIE_GEN5_GBPS, 1),
        // H800: NVLink cut to 400 GB/s per GPU, 200 each way (DeepEP measures ~160 usable).
        "hgx-h800" => machine("h800", 8, Some(200.0), PCIE_GEN5_GBPS, 1),
        "hgx-h200" => machine("h200", 8, Some(450.0), PCIE_GEN5_GBPS, 1),
        // One NVLink domain of 72 GPUs, NVLink5 1.8 TB/s per GPU, 900 each way.
        "gb200-nvl72" => machine("gb200", 72, Some(900.0), PCIE_GEN5_GBPS, 1),
        // No NVLink: 8 GPUs on two PCIe Gen4 switches of 4, joined by the host.
        "pcie-l40s" => machine("l40s", 8, None, PCIE_GEN4_GBPS, 4),
        // One GPU in a workstation, its experts in host memory behind one PCIe x16 link
        // (expert offloading): Gen4 for the RTX 4090 and L40S, Gen5 for the H100.
        "rtx4090-host" => machine("rtx4090", 1, None, PCIE_GEN4_GBPS, 1),
        "l40s-host" => machine("l40s", 1, None, PCIE_GEN4_GBPS, 1),
        "h100-host" => machine("h100", 1, None, PCIE_GEN5_GBPS, 1),
        _ => {
            return Err(Error::invalid(format!(
                "unknown cluster `{base}`; known presets: {} (append xN for N machines) or a .toml file",
                NAMES.join(", ")
            )));
        }
    };
    let name = if nodes == 1 {
        base.to_string()
    } else {
        format!("{base}x{nodes}")
    };
    Ok(ClusterSpec {
        name,
        nodes,
        ..spec
    })
}

/// One machine of `gpus_per_node` GPUs of short name `gpu`, with NVLink of `nvlink_gbps` per
/// direction if any, PCIe links of `pcie_gbps` and `gpus_per_switch` GPUs per PCIe switch,
/// default latencies and network.
fn machine(
    gpu: &str,
    gpus_per_node: usize,
    nvlink_gbps: Option<f64>,
    pcie_gbps: f64,
    gpus_per_switch: usize,
) -> ClusterSpec {
    ClusterSpec {
        name: String::new(),
        nodes: 1,
        gpus_per_node,
        gpu: GpuSpec::named(gpu).expect("presets name built-in GPUs"),
        nvlink: nvlink_gbps.map(|gbps| NvLinkSpec {
            gbps,
            latency_ns: NVLINK_LATENCY_NS,
        }),
        pcie: PcieSpec {
            gbps: pcie_gbps,
            gpus_per_switch,
            latency_ns: PCIE_LATENCY_NS,
        },
        network: NetworkSpec::default(),
    }
}
