//! The host side of the GPU capture: loads the embedded PTX through cudarc (dynamic loading),
//! launches the gating kernel layer by layer and drains its ring buffer while the GPU works.
//!
//! Draining is double-buffered over two CUDA streams. For layer `i`, the compute stream runs the
//! instrumented kernel; the copy stream waits for it and copies the ring slots of layer `i`'s
//! sequence numbers into pinned host buffer `i % 2`; meanwhile the host decodes layer `i - 1`'s
//! buffer, and the compute stream already runs layer `i + 1`. The kernel is told the first
//! sequence number that may still be in flight to the host (`drained_seq`, the start of layer
//! `i - 1`), and layer `i + 1` starts only once layer `i - 1`'s copy finished, so a record is
//! written only into a slot the host no longer needs; when the ring is too small the record is
//! dropped and counted, deterministically (it depends only on the capacity and the layer sizes,
//! never on timing). [`Assembler`] checks the count against the slots found stale.
//!
//! Every entry point calls [`gpu::require_driver`] first: cudarc panics without libcuda.

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaStream, DevicePtr, DriverError, LaunchConfig,
    PinnedHostSlice, PushKernelArg, result as cu, sys,
};
use cudarc::nvrtc::Ptx;

mod buffers;
mod overhead;

pub use overhead::Overhead;

use buffers::{Buffers, KernelPointers};

use super::gating::GatingConfig;
use super::logits::RouterLogits;
use super::ptx;
use super::records::{Assembler, Captured, record_words};
use super::reference::{LayerDecisions, check_bias, check_logits};
use crate::error::{Error, Result};
use crate::gpu;

/// The GPU a capture ran on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceInfo {
    /// Device name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Compute capability, e.g. `9.0`.
    pub compute_capability: String,
    /// CUDA driver API version, e.g. `13.0`.
    pub driver_api: String,
}

/// Contiguous runs of ring slots `(first slot, length)` that hold the sequence numbers
/// `first_seq .. first_seq + count`, in sequence order, for a ring of `capacity` records.
pub fn ring_segments(first_seq: u64, count: u64, capacity: u64) -> Vec<(u64, u64)> {
    let mut segments = Vec::new();
    let (mut seq, end) = (first_seq, first_seq + count);
    while seq < end {
        let slot = seq % capacity;
        let len = (capacity - slot).min(end - seq);
        segments.push((slot, len));
        seq += len;
    }
    segments
}

/// A CUDA failure, naming the step.
fn cuda(step: &'static str) -> impl Fn(DriverError) -> Error {
    move |e| Error::invalid(format!("CUDA {step}: {e}"))
}

/// The per-launch scalars of the kernel.
#[derive(Debug, Clone, Copy)]
struct LaunchScalars {
    num_tokens: u32,
    layer: u32,
    ring_capacity: u64,
    drained_seq: u64,
}

/// An opened GPU with both kernels loaded.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    plain: CudaFunction,
    instrumented: CudaFunction,
    info: DeviceInfo,
}

impl Gpu {
    /// Opens GPU 0 and loads the PTX for its architecture. Fails with one line when there is no
    /// driver, no embedded PTX or no GPU.
    pub fn open(what: &str) -> Result<Self> {
        gpu::require_driver(what)?;
        let ctx = CudaContext::new(0).map_err(cuda("opening GPU 0"))?;
        // Streams are ordered by explicit events below; cudarc's automatic tracking would add
        // waits that serialise the copy stream behind the compute stream.
        // SAFETY: every buffer below is synchronised by the events this module records.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx
            .compute_capability()
            .map_err(cuda("compute capability"))?;
        let text = ptx::for_compute_capability(major, minor)?;
        let module = ctx
            .load_module(Ptx::from_src(text))
            .map_err(cuda("loading the gating PTX"))?;
        let plain = module
            .load_function(ptx::PLAIN_ENTRY)
            .map_err(cuda("finding moesim_gating"))?;
        let instrumented = module
            .load_function(ptx::INSTRUMENTED_ENTRY)
            .map_err(cuda("finding moesim_gating_instrumented"))?;
        let mut version = 0;
        // SAFETY: the driver is loaded (checked above); the call writes one int.
        let status = unsafe { sys::cuDriverGetVersion(&mut version) };
        if status != sys::CUresult::CUDA_SUCCESS {
            return Err(Error::invalid(format!("CUDA driver version: {status:?}")));
        }
        let info = DeviceInfo {
            name: ctx.name().map_err(cuda("device name"))?,
            compute_capability: format!("{major}.{minor}"),
            driver_api: format!("{}.{}", version / 1000, version % 1000 / 10),
        };
        Ok(Gpu {
            ctx,
            plain,
            instrumented,
            info,
        })
    }

    /// The device this runs on.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Captures every layer of `logits` through the instrumented kernel with a ring of
    /// `ring_capacity` records (see the module docs for the draining scheme).
    pub fn capture(
        &self,
        config: &GatingConfig,
        logits: &RouterLogits,
        bias: Option<&[Vec<f32>]>,
        ring_capacity: u64,
    ) -> Result<Captured> {
        check_inputs(config, logits, bias)?;
        if ring_capacity == 0 {
            return Err(Error::invalid("--ring-capacity must be at least 1"));
        }
        let (tokens, layers, k) = (logits.num_tokens, logits.layers.len(), config.top_k());
        let stride = record_words(k);
        let compute = self.ctx.new_stream().map_err(cuda("creating a stream"))?;
        let copy = self.ctx.new_stream().map_err(cuda("creating a stream"))?;
        let mut buffers = Buffers::new(&compute, config, logits, bias, ring_capacity)?;
        let record_len = tokens * stride;
        let pinned = || {
            // SAFETY: a pinned buffer is written by a drain copy before it is read.
            unsafe { self.ctx.alloc_pinned_with_flags::<u32>(record_len, 0) }
                .map_err(cuda("allocating pinned host memory"))
        };
        let mut host = [pinned()?, pinned()?];
        let mut assembler = Assembler::new(layers, tokens, config.num_experts(), k);
        let mut copied: Vec<CudaEvent> = Vec::with_capacity(layers);
        let base = |layer: usize| (layer * tokens) as u64;
        for (layer, values) in logits.layers.iter().enumerate() {
            if layer >= 2 {
                compute
                    .wait(&copied[layer - 2])
                    .map_err(cuda("ordering a launch after a drain"))?;
            }
            compute
                .memcpy_htod(values.as_slice(), &mut buffers.logits)
                .map_err(cuda("uploading logits"))?;
            let scalars = LaunchScalars {
                num_tokens: tokens as u32,
                layer: layer as u32,
                ring_capacity,
                drained_seq: base(layer.saturating_sub(1)),
            };
            let pointers = buffers.pointers(&compute, layer, config.num_experts());
            self.launch(&self.instrumented, &compute, pointers, config, scalars)?;
            let done = compute
                .record_event(None)
                .map_err(cuda("recording an event"))?;
            copy.wait(&done).map_err(cuda("ordering a drain"))?;
            let target = host[layer % 2]
                .as_mut_slice()
                .map_err(cuda("pinned host memory"))?;
            let (ring, _) = buffers.ring.device_ptr(&copy);
            let mut at = 0;
            for (slot, len) in ring_segments(base(layer), tokens as u64, ring_capacity) {
                let words = len as usize * stride;
                let src = ring + slot * stride as u64 * 4;
                // SAFETY: `src .. src + words * 4` lies inside the ring (slot + len <= capacity)
                // and `target[at .. at + words]` inside the pinned buffer of `tokens` records.
                unsafe {
                    cu::memcpy_dtoh_async(&mut target[at..at + words], src, copy.cu_stream())
                }
                .map_err(cuda("draining the ring buffer"))?;
                at += words;
            }
            copied.push(
                copy.record_event(None)
                    .map_err(cuda("recording an event"))?,
            );
            if layer >= 1 {
                drain(
                    &mut assembler,
                    &copied[layer - 1],
                    &host[(layer - 1) % 2],
                    base(layer - 1),
                )?;
            }
        }
        drain(
            &mut assembler,
            &copied[layers - 1],
            &host[(layers - 1) % 2],
            base(layers - 1),
        )?;
        compute.synchronize().map_err(cuda("finishing"))?;
        let overflow = compute
            .clone_dtoh(&buffers.overflow)
            .map_err(cuda("reading the overflow counter"))?;
        let counts = compute
            .clone_dtoh(&buffers.expert_counts)
            .map_err(cuda("reading the expert counters"))?;
        let expert_counts = counts
            .chunks_exact(config.num_experts())
            .map(<[u64]>::to_vec)
            .collect();
        assembler.finish(overflow[0], expert_counts)
    }

    /// Routes one layer with the plain kernel and returns its outputs (for comparison with the
    /// CPU twin).
    pub fn route_layer(
        &self,
        config: &GatingConfig,
        logits: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<LayerDecisions> {
        let single = single_layer(config, logits, bias)?;
        let bias_rows = bias.map(|b| vec![b.to_vec()]);
        let stream = self.ctx.new_stream().map_err(cuda("creating a stream"))?;
        let mut buffers = Buffers::new(&stream, config, &single, bias_rows.as_deref(), 1)?;
        stream
            .memcpy_htod(logits, &mut buffers.logits)
            .map_err(cuda("uploading logits"))?;
        let scalars = LaunchScalars {
            num_tokens: single.num_tokens as u32,
            layer: 0,
            ring_capacity: 1,
            drained_seq: 0,
        };
        let pointers = buffers.pointers(&stream, 0, config.num_experts());
        self.launch(&self.plain, &stream, pointers, config, scalars)?;
        let experts = stream
            .clone_dtoh(&buffers.out_experts)
            .map_err(cuda("reading expert ids"))?;
        let weights = stream
            .clone_dtoh(&buffers.out_weights)
            .map_err(cuda("reading weights"))?;
        let experts = experts
            .into_iter()
            .map(|e| {
                u16::try_from(e).map_err(|_| Error::invalid(format!("kernel wrote expert id {e}")))
            })
            .collect::<Result<_>>()?;
        Ok(LayerDecisions { experts, weights })
    }

    /// Launches `kernel` on `stream`.
    fn launch(
        &self,
        kernel: &CudaFunction,
        stream: &Arc<CudaStream>,
        pointers: KernelPointers,
        config: &GatingConfig,
        scalars: LaunchScalars,
    ) -> Result<()> {
        let experts = config.num_experts() as u32;
        let top_k = config.top_k() as u32;
        let scoring = config.scoring().kernel_code();
        let (groups, top_groups) = config
            .group_limit()
            .map_or((0, 0), |g| (g.groups as u32, g.top_groups as u32));
        let renormalize = u32::from(config.renormalize());
        // Whole layers per launch, so record token indices need no offset.
        let token_base = 0_u32;
        let cfg = launch_config(scalars.num_tokens, experts);
        let mut builder = stream.launch_builder(kernel);
        builder
            .arg(&pointers.logits)
            .arg(&pointers.bias)
            .arg(&pointers.out_experts)
            .arg(&pointers.out_weights)
            .arg(&pointers.ring)
            .arg(&pointers.seq_counter)
            .arg(&pointers.overflow)
            .arg(&pointers.expert_counts)
            .arg(&scalars.num_tokens)
            .arg(&experts)
            .arg(&top_k)
            .arg(&scoring)
            .arg(&groups)
            .arg(&top_groups)
            .arg(&renormalize)
            .arg(&scalars.layer)
            .arg(&token_base)
            .arg(&scalars.ring_capacity)
            .arg(&scalars.drained_seq);
        // SAFETY: the arguments match the kernel's signature in gating.cu one for one, and every
        // pointer in `pointers` addresses a live buffer of the size the kernel indexes.
        unsafe { builder.launch(cfg) }.map_err(cuda("launching the gating kernel"))?;
        Ok(())
    }
}

/// Waits for a drain and hands its records to the assembler.
fn drain(
    assembler: &mut Assembler,
    copied: &CudaEvent,
    host: &PinnedHostSlice<u32>,
    first_seq: u64,
) -> Result<()> {
    copied.synchronize().map_err(cuda("waiting for a drain"))?;
    let words = host.as_slice().map_err(cuda("pinned host memory"))?;
    assembler.absorb(first_seq, words)
}

/// Up to 8 warps (one token each) per block, as many as 48 KiB of shared memory allow (16 bytes
/// per expert per warp), and enough blocks for every token (the kernel strides past the grid).
fn launch_config(num_tokens: u32, num_experts: u32) -> LaunchConfig {
    let warps = (49_152 / (16 * num_experts)).clamp(1, 8);
    let blocks = num_tokens.div_ceil(warps).clamp(1, 1 << 20);
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (warps * 32, 1, 1),
        shared_mem_bytes: warps * 16 * num_experts,
    }
}

/// Checks logits and bias before anything reaches the GPU (the kernel assumes finite inputs).
fn check_inputs(
    config: &GatingConfig,
    logits: &RouterLogits,
    bias: Option<&[Vec<f32>]>,
) -> Result<()> {
    if logits.num_experts != config.num_experts() {
        return Err(Error::invalid(format!(
            "the logits have {} experts but the gating is configured for {}",
            logits.num_experts,
            config.num_experts()
        )));
    }
    if logits.num_tokens > u32::MAX as usize / 2 {
        return Err(Error::invalid(format!(
            "{} tokens per layer exceed the kernel's 32-bit token index",
            logits.num_tokens
        )));
    }
    for (layer, values) in logits.layers.iter().enumerate() {
        check_logits(values, logits.num_experts, &format!("layer {layer}"))?;
        if let Some(rows) = bias {
            check_bias(&rows[layer], logits.num_experts)?;
        }
    }
    Ok(())
}

/// One layer of logits as a [`RouterLogits`], checked.
fn single_layer(
    config: &GatingConfig,
    logits: &[f32],
    bias: Option<&[f32]>,
) -> Result<RouterLogits> {
    let experts = config.num_experts();
    if logits.is_empty() || !logits.len().is_multiple_of(experts) {
        return Err(Error::invalid(format!(
            "{} logits are not a whole, non-zero number of rows of {experts} experts",
            logits.len()
        )));
    }
    let single = RouterLogits {
        num_experts: experts,
        num_tokens: logits.len() / experts,
        layers: vec![logits.to_vec()],
    };
    let bias_rows = bias.map(|b| vec![b.to_vec()]);
    check_inputs(config, &single, bias_rows.as_deref())?;
    Ok(single)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_segments_split_at_the_wrap() {
        // Capacity 4: sequence numbers 3..9 live in slots 3, 0 1 2 3, 0.
        assert_eq!(ring_segments(3, 6, 4), [(3, 1), (0, 4), (0, 1)]);
        assert_eq!(ring_segments(8, 2, 4), [(0, 2)]);
        assert_eq!(ring_segments(5, 0, 4), []);
    }

    #[test]
    fn launch_config_fits_shared_memory() {
        // 64 experts: 8 warps of 1 KiB; 1024 experts: 3 warps of 16 KiB (48 KiB).
        let small = launch_config(100, 64);
        assert_eq!(
            (small.grid_dim.0, small.block_dim.0, small.shared_mem_bytes),
            (13, 256, 8_192)
        );
        let large = launch_config(7, 1024);
        assert_eq!(
            (large.grid_dim.0, large.block_dim.0, large.shared_mem_bytes),
            (3, 96, 49_152)
        );
    }

    #[test]
    fn opening_without_a_driver_names_the_command() {
        if gpu::driver_present() {
            return;
        }
        let error = Gpu::open("moesim capture").err().map(|e| e.to_string());
        assert_eq!(
            error,
            Some(format!("moesim capture needs a GPU: {}", gpu::NO_DRIVER))
        );
    }
}
