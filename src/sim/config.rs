//! The `[sim]` table of a scenario: how the simulated step is scheduled.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How communication and computation of a layer overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overlap {
    /// Attention, dispatch, experts and combine one after another.
    None,
    /// Two micro-batches of half the tokens; one's all-to-all runs under the other's compute
    /// (DeepSeek's dual micro-batch overlap).
    DualBatch,
    /// Tokens split into `chunks` chunks, pipelined dispatch -> experts -> combine, each chunk a
    /// separate grouped GEMM that re-reads its experts' weights (Tutel-style).
    Chunked,
    /// Tile-level overlap inside one fused kernel (Comet-style): the experts' work is split into
    /// `tiles` equal pieces that start as their tokens arrive; weights are read once.
    FineGrained,
}

impl Overlap {
    /// The name used in scenarios and outputs.
    pub fn name(self) -> &'static str {
        match self {
            Overlap::None => "none",
            Overlap::DualBatch => "dual-batch",
            Overlap::Chunked => "chunked",
            Overlap::FineGrained => "fine-grained",
        }
    }
}

/// How the all-to-all moves tokens between GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllToAll {
    /// Every GPU pair at once over the cluster's route between them.
    Direct,
    /// Between machines, first NVLink to the GPU on the destination's rail in the sender's
    /// machine, then RDMA on that rail (DeepEP normal kernels).
    Hierarchical,
    /// Direct pairs, issued by the NIC without taking SMs (DeepEP low-latency kernels with a
    /// receive hook). Intra-machine pairs still use the NVLink route.
    LowLatency,
}

impl AllToAll {
    /// The name used in scenarios and outputs.
    pub fn name(self) -> &'static str {
        match self {
            AllToAll::Direct => "direct",
            AllToAll::Hierarchical => "hierarchical",
            AllToAll::LowLatency => "low-latency",
        }
    }
}

/// Fixed cost of a DeepEP low-latency kernel: DeepEP's H800 figures (128 tokens, top-8,
/// hidden 7168) are all close to this plus the bytes over the NIC (or NVLink for EP8): for
/// example EP16 dispatch 118 us for 3.7 MB over 50 GB/s RDMA (73 us), EP64 173 us for 6.4 MB
/// (128 us).
pub const LOW_LATENCY_FIXED_NS: u64 = 40_000;

/// Simulation settings of a scenario (all optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Overlap strategies to compare, side by side.
    pub overlap: Vec<Overlap>,
    /// Pipelining degree of `chunked`.
    pub chunks: u32,
    /// Pieces `fine-grained` splits each GPU's expert work into.
    pub tiles: u32,
    /// All-to-all algorithm.
    pub all_to_all: AllToAll,
    /// SMs the communication kernels occupy while they overlap GEMMs (DeepEP normal kernels:
    /// about 20 of 132); ignored by `low-latency`, which takes none.
    pub comm_sms: u32,
    /// Share of nominal NVLink bandwidth transfers reach. Default 1.0 (nominal); DeepEP's H800
    /// measurements (about 160 of 200 GB/s usable per direction) suggest 0.8.
    pub nvlink_efficiency: f64,
    /// Calibration TOML (`moesim calibrate`) timing the experts with measured GEMMs instead of
    /// the roofline; relative to the scenario file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<PathBuf>,
    /// Share of the bandwidth in use that drained flows may go on holding before it is
    /// re-divided among the others (see [`super::network`]): 0 re-divides at every drain
    /// (exact max-min, slow for all-to-alls of thousands of flows). With a tolerance, the flows
    /// a late re-division raises are credited the bytes their links left idle meanwhile, so
    /// the default 0.2 keeps steps within about 0.5% of exact max-min while making
    /// large all-to-alls hundreds of times cheaper.
    pub rate_tolerance: f64,
    /// Fixed cost of one `low-latency` all-to-all kernel on each GPU beyond moving its bytes
    /// (launch, per-message doorbells, completion signalling), run on the communication stream.
    /// The default, LOW_LATENCY_FIXED_NS, is fitted to DeepEP's published H800 latencies.
    pub low_latency_fixed_ns: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            overlap: vec![
                Overlap::None,
                Overlap::DualBatch,
                Overlap::Chunked,
                Overlap::FineGrained,
            ],
            chunks: 4,
            tiles: 8,
            all_to_all: AllToAll::Direct,
            comm_sms: 20,
            nvlink_efficiency: 1.0,
            calibration: None,
            rate_tolerance: 0.2,
            low_latency_fixed_ns: LOW_LATENCY_FIXED_NS,
        }
    }
}

impl SimConfig {
    /// Checks values serde cannot; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        if self.overlap.is_empty() {
            return Err("`sim.overlap` must name at least one strategy".into());
        }
        if !(self.nvlink_efficiency > 0.0 && self.nvlink_efficiency <= 1.0) {
            return Err("`sim.nvlink_efficiency` must be in (0, 1]".into());
        }
        if !(0.0..1.0).contains(&self.rate_tolerance) {
            return Err("`sim.rate_tolerance` must be in [0, 1)".into());
        }
        if self.chunks == 0 || self.tiles == 0 {
            return Err("`sim.chunks` and `sim.tiles` must be at least 1".into());
        }
        Ok(())
    }
}
