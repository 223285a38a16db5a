//! All-to-all algorithms: how dispatch and combine move tokens between GPUs. Each is a plug-in in
//! [`ALL_TO_ALLS`], selected by name in `[sim] all_to_all` and tuned in its own table
//! (`[sim.low-latency] fixed_ns = 40000`).

use serde::Deserialize;

use crate::plugin_entry;
use crate::registry::{Plugin, Registry};
use crate::topology::Cluster;

/// What an algorithm decides about an all-to-all: the path of each GPU pair's bytes, the SMs its
/// kernels hold and what each kernel costs beyond moving bytes.
pub trait AllToAllAlgorithm: Send + Sync + std::fmt::Debug {
    /// The GPU that forwards `src -> dst` bytes as they arrive, if any (none: the cluster's
    /// route between them).
    fn relay(&self, _cluster: &Cluster, _src: u32, _dst: u32) -> Option<u32> {
        None
    }

    /// SMs its kernels take from the GEMMs they overlap.
    fn sms_taken(&self) -> u32;

    /// Fixed cost of each of its kernels on a GPU's communication stream before its bytes
    /// move (launch, doorbells, completion signalling); 0 for none.
    fn kernel_fixed_ns(&self) -> u64 {
        0
    }

    /// Whether a token crosses to another machine once however many of its GPUs it is bound
    /// for, fanning out over NVLink there (the step then moves the plan's per-machine bytes).
    fn per_machine(&self) -> bool {
        false
    }
}

/// Every all-to-all algorithm, by name.
pub static ALL_TO_ALLS: Registry<dyn AllToAllAlgorithm> = Registry {
    kind: "all-to-all algorithm",
    entries: &[
        plugin_entry!(AllToAllAlgorithm, Direct),
        plugin_entry!(AllToAllAlgorithm, Hierarchical),
        plugin_entry!(AllToAllAlgorithm, DeepEpNormal),
        plugin_entry!(AllToAllAlgorithm, LowLatency),
    ],
};

/// SMs DeepEP's normal kernels hold while they overlap GEMMs: about 20 of an H800's 132.
const DEEPEP_NORMAL_SMS: u32 = 20;

/// Every GPU pair at once over the cluster's route between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Direct {
    /// SMs the communication kernels occupy while they overlap GEMMs.
    pub comm_sms: u32,
}

impl Default for Direct {
    fn default() -> Self {
        Direct {
            comm_sms: DEEPEP_NORMAL_SMS,
        }
    }
}

impl AllToAllAlgorithm for Direct {
    fn sms_taken(&self) -> u32 {
        self.comm_sms
    }
}

impl Plugin for Direct {
    const NAME: &'static str = "direct";
    type Settings = Direct;

    fn with_settings(settings: Direct) -> Result<Self, String> {
        Ok(settings)
    }
}

/// Between machines, first NVLink to the GPU on the destination's rail in the sender's
/// machine, then RDMA on that rail (DeepEP normal kernels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hierarchical {
    /// SMs the communication kernels occupy while they overlap GEMMs.
    pub comm_sms: u32,
}

impl Default for Hierarchical {
    fn default() -> Self {
        Hierarchical {
            comm_sms: DEEPEP_NORMAL_SMS,
        }
    }
}

impl AllToAllAlgorithm for Hierarchical {
    /// The GPU of `src`'s machine on `dst`'s rail (NVLink inside the machine, then one RDMA
    /// hop), or none within a machine or when that GPU is `src` itself.
    fn relay(&self, cluster: &Cluster, src: u32, dst: u32) -> Option<u32> {
        let (src, dst) = (src as usize, dst as usize);
        let per_node = cluster.gpus_per_node();
        let relay = cluster.node_of(src) * per_node + dst % per_node;
        (cluster.node_of(src) != cluster.node_of(dst) && relay != src).then_some(relay as u32)
    }

    fn sms_taken(&self) -> u32 {
        self.comm_sms
    }
}

impl Plugin for Hierarchical {
    const NAME: &'static str = "hierarchical";
    type Settings = Hierarchical;

    fn with_settings(settings: Hierarchical) -> Result<Self, String> {
        Ok(settings)
    }
}

/// DeepEP's normal (high-throughput) kernels between machines: a token goes once over RDMA to
/// the GPU on the sender's rail in each destination machine, which forwards it over NVLink to
/// the token's GPUs there; results come back the same way, reduced in the machine first. The
/// forward carries the machine's deduplicated bytes too (NVLink has about 9x the NIC's bandwidth,
/// so that leg rarely binds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepEpNormal {
    /// SMs the communication kernels occupy while they overlap GEMMs.
    pub comm_sms: u32,
}

impl Default for DeepEpNormal {
    fn default() -> Self {
        DeepEpNormal {
            comm_sms: DEEPEP_NORMAL_SMS,
        }
    }
}

impl AllToAllAlgorithm for DeepEpNormal {
    /// The GPU of `dst`'s machine on `src`'s rail (one RDMA hop, then NVLink), or none within a
    /// machine or when that GPU is `dst` itself.
    fn relay(&self, cluster: &Cluster, src: u32, dst: u32) -> Option<u32> {
        let (src, dst) = (src as usize, dst as usize);
        let per_node = cluster.gpus_per_node();
        let relay = cluster.node_of(dst) * per_node + src % per_node;
        (cluster.node_of(src) != cluster.node_of(dst) && relay != dst).then_some(relay as u32)
    }

    fn sms_taken(&self) -> u32 {
        self.comm_sms
    }

    fn per_machine(&self) -> bool {
        true
    }
}

impl Plugin for DeepEpNormal {
    const NAME: &'static str = "deepep-normal";
    type Settings = DeepEpNormal;

    fn with_settings(settings: DeepEpNormal) -> Result<Self, String> {
        Ok(settings)
    }
}

/// Fixed cost of a DeepEP low-latency kernel: DeepEP's H800 figures (128 tokens, top-8,
/// hidden 7168) are all close to this plus the bytes over the NIC (or NVLink for EP8): for
/// example EP16 dispatch 118 us for 3.7 MB over 50 GB/s RDMA (73 us), EP64 173 us for 6.4 MB
/// (128 us).
pub const LOW_LATENCY_FIXED_NS: u64 = 40_000;

/// Direct pairs, issued by the NIC without taking SMs (DeepEP low-latency kernels with a
/// receive hook). Intra-machine pairs still use the NVLink route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LowLatency {
    /// Fixed cost of one kernel on each GPU beyond moving its bytes, run on the communication
    /// stream; the default, [`LOW_LATENCY_FIXED_NS`], is fitted to DeepEP's H800 latencies.
    pub fixed_ns: u64,
}

impl Default for LowLatency {
    fn default() -> Self {
        LowLatency {
            fixed_ns: LOW_LATENCY_FIXED_NS,
        }
    }
}

impl AllToAllAlgorithm for LowLatency {
    fn sms_taken(&self) -> u32 {
        0
    }

    fn kernel_fixed_ns(&self) -> u64 {
        self.fixed_ns
    }
}

impl Plugin for LowLatency {
    const NAME: &'static str = "low-latency";
    type Settings = LowLatency;

    fn with_settings(settings: LowLatency) -> Result<Self, String> {
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Settings;

    #[test]
    fn each_algorithm_is_built_by_its_name_with_its_own_knobs() {
        let names: Vec<&str> = ALL_TO_ALLS.names().collect();
        assert_eq!(
            names,
            ["direct", "hierarchical", "deepep-normal", "low-latency"]
        );
        let none = Settings::new();
        assert_eq!(ALL_TO_ALLS.build("direct", &none).unwrap().sms_taken(), 20);
        let sms: Settings = "comm_sms = 24".parse().unwrap();
        assert_eq!(
            ALL_TO_ALLS.build("hierarchical", &sms).unwrap().sms_taken(),
            24
        );
        let low = ALL_TO_ALLS.build("low-latency", &none).unwrap();
        assert_eq!((low.sms_taken(), low.kernel_fixed_ns()), (0, 40_000));
        let err = ALL_TO_ALLS.build("low-latency", &sms).unwrap_err();
        assert!(err.contains("all-to-all algorithm `low-latency`") && err.contains("comm_sms"));
    }

    #[test]
    fn hierarchical_relays_through_the_senders_gpu_on_the_receivers_rail() {
        // Two machines of 8: 1 -> 13 goes through GPU 5 (machine 0, rail 13 mod 8 = 5); within a
        // machine, or when the sender is on the rail already, nothing relays.
        let cluster = Cluster::preset("hgx-h800x2").unwrap();
        let hierarchical = ALL_TO_ALLS.build("hierarchical", &Settings::new()).unwrap();
        assert_eq!(hierarchical.relay(&cluster, 1, 13), Some(5));
        assert_eq!(hierarchical.relay(&cluster, 5, 13), None);
        assert_eq!(hierarchical.relay(&cluster, 1, 3), None);
        let direct = ALL_TO_ALLS.build("direct", &Settings::new()).unwrap();
        assert_eq!(direct.relay(&cluster, 1, 13), None);
        // DeepEP normal: RDMA to the sender's rail in the destination machine (1 -> 9), then
        // NVLink to 13; nothing relays when that GPU is the destination or within a machine.
        let normal = ALL_TO_ALLS
            .build("deepep-normal", &Settings::new())
            .unwrap();
        assert_eq!(normal.relay(&cluster, 1, 13), Some(9));
        assert_eq!(normal.relay(&cluster, 5, 13), None);
        assert_eq!(normal.relay(&cluster, 1, 3), None);
        assert!(normal.per_machine() && !hierarchical.per_machine());
    }
}
