//! The device memory of one launch sequence and the kernel's pointer arguments into it.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use super::cuda;
use crate::capture::gating::GatingConfig;
use crate::capture::logits::RouterLogits;
use crate::capture::records::record_words;
use crate::error::{Error, Result};

/// The kernel's pointer arguments (the first eight parameters in gating.cu), as device addresses.
#[derive(Debug, Clone, Copy)]
pub(super) struct KernelPointers {
    pub(super) logits: u64,
    pub(super) bias: u64,
    pub(super) out_experts: u64,
    pub(super) out_weights: u64,
    pub(super) ring: u64,
    pub(super) seq_counter: u64,
    pub(super) overflow: u64,
    pub(super) expert_counts: u64,
}

/// The device buffers of one capture.
pub(super) struct Buffers {
    pub(super) logits: CudaSlice<f32>,
    pub(super) bias: Option<CudaSlice<f32>>,
    pub(super) out_experts: CudaSlice<i32>,
    pub(super) out_weights: CudaSlice<f32>,
    pub(super) ring: CudaSlice<u32>,
    pub(super) seq_counter: CudaSlice<u64>,
    pub(super) overflow: CudaSlice<u64>,
    pub(super) expert_counts: CudaSlice<u64>,
}

impl Buffers {
    /// Allocates every buffer; the ring's sequence fields start at all-ones, a value no record
    /// carries, so an unwritten slot always reads as stale.
    pub(super) fn new(
        stream: &Arc<CudaStream>,
        config: &GatingConfig,
        logits: &RouterLogits,
        bias: Option<&[Vec<f32>]>,
        ring_capacity: u64,
    ) -> Result<Self> {
        let (tokens, experts, k) = (logits.num_tokens, config.num_experts(), config.top_k());
        let ring_words = usize::try_from(ring_capacity)
            .ok()
            .and_then(|c| c.checked_mul(record_words(k)))
            .ok_or_else(|| {
                Error::invalid(format!("--ring-capacity {ring_capacity} is too large"))
            })?;
        let alloc = cuda("allocating GPU memory");
        let bias = match bias {
            Some(rows) => Some(stream.clone_htod(&rows.concat()).map_err(&alloc)?),
            None => None,
        };
        Ok(Buffers {
            logits: stream.alloc_zeros(tokens * experts).map_err(&alloc)?,
            bias,
            out_experts: stream.alloc_zeros(tokens * k).map_err(&alloc)?,
            out_weights: stream.alloc_zeros(tokens * k).map_err(&alloc)?,
            ring: stream
                .clone_htod(&vec![u32::MAX; ring_words])
                .map_err(&alloc)?,
            seq_counter: stream.alloc_zeros(1).map_err(&alloc)?,
            overflow: stream.alloc_zeros(1).map_err(&alloc)?,
            expert_counts: stream
                .alloc_zeros(logits.layers.len() * experts)
                .map_err(&alloc)?,
        })
    }

    /// The kernel's pointer block for `layer` (the bias row of that layer).
    pub(super) fn pointers(
        &self,
        stream: &Arc<CudaStream>,
        layer: usize,
        experts: usize,
    ) -> KernelPointers {
        let address = |slice: &CudaSlice<f32>| slice.device_ptr(stream).0;
        KernelPointers {
            logits: address(&self.logits),
            bias: self
                .bias
                .as_ref()
                .map_or(0, |b| address(b) + (layer * experts * 4) as u64),
            out_experts: self.out_experts.device_ptr(stream).0,
            out_weights: address(&self.out_weights),
            ring: self.ring.device_ptr(stream).0,
            seq_counter: self.seq_counter.device_ptr(stream).0,
            overflow: self.overflow.device_ptr(stream).0,
            expert_counts: self.expert_counts.device_ptr(stream).0,
        }
    }
}
