//! Runs the benchmark plan on a GPU through cudarc: bf16 GEMMs through cuBLAS, HBM copies and
//! pinned host-device copies, each timed with CUDA events (warm-up, then repetitions; median
//! and spread). Call [`crate::gpu::require_driver`] before anything here.

use std::sync::Arc;
use std::time::Instant;

use cudarc::cublas::CudaBlas;
use cudarc::cublas::result::gemm_ex;
use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaContext, CudaEvent, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use super::measurement::{Kind, Measurement};
use super::plan::{GemmShape, HBM_COPY_BYTES, PCIE_COPY_BYTES, TOKEN_COUNTS};
use crate::error::{Error, Result};

/// Repetition counts of one benchmark point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repetitions {
    /// Untimed runs first (clocks ramp up, cuBLAS picks and loads its kernel).
    pub warmup: u32,
    /// Timed runs; the median is reported.
    pub timed: u32,
}

/// What the GPU run found out about the device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRun {
    /// Device name from the CUDA driver.
    pub name: String,
    /// One row per benchmark point.
    pub rows: Vec<Measurement>,
}

/// Runs every GEMM shape at every [`TOKEN_COUNTS`] and every copy size on GPU `ordinal`, with
/// windows stamped relative to `epoch`.
pub fn run_plan(
    ordinal: usize,
    shapes: &[GemmShape],
    reps: Repetitions,
    epoch: Instant,
) -> Result<DeviceRun> {
    let ctx = CudaContext::new(ordinal).map_err(cuda("open the device"))?;
    let name = ctx.name().map_err(cuda("read the device name"))?;
    let stream = ctx.default_stream();
    let timer = Timer {
        ctx: ctx.clone(),
        stream: stream.clone(),
        reps,
        epoch,
    };
    let mut rows = Vec::new();
    let blas = CudaBlas::new(stream.clone()).map_err(|e| Error::invalid(format!("cuBLAS: {e}")))?;
    for shape in shapes {
        rows.extend(gemm_rows(&timer, &blas, shape)?);
    }
    for &bytes in &HBM_COPY_BYTES {
        let src = random_device_bits(&stream, bytes as usize / 2)?;
        let mut dst = stream
            .alloc_zeros::<u16>(bytes as usize / 2)
            .map_err(cuda("allocate"))?;
        let timing = timer.time(|| {
            stream
                .memcpy_dtod(&src, &mut dst)
                .map_err(cuda("copy device to device"))
        })?;
        rows.push(timing.row(
            Kind::HbmCopy,
            format!("hbm-copy {bytes} B"),
            (0, 0, 0),
            bytes,
        ));
    }
    for &bytes in &PCIE_COPY_BYTES {
        // SAFETY: the pinned buffer is only ever a copy source or target, never read by Rust.
        let mut host = unsafe { ctx.alloc_pinned_with_flags::<u8>(bytes as usize, 0) }
            .map_err(cuda("allocate pinned host memory"))?;
        let mut device = stream
            .alloc_zeros::<u8>(bytes as usize)
            .map_err(cuda("allocate"))?;
        let h2d = timer.time(|| {
            stream
                .memcpy_htod(&host, &mut device)
                .map_err(cuda("copy host to device"))
        })?;
        rows.push(h2d.row(Kind::H2d, format!("h2d {bytes} B"), (0, 0, 0), bytes));
        let d2h = timer.time(|| {
            stream
                .memcpy_dtoh(&device, &mut host)
                .map_err(cuda("copy device to host"))
        })?;
        rows.push(d2h.row(Kind::D2h, format!("d2h {bytes} B"), (0, 0, 0), bytes));
    }
    Ok(DeviceRun { name, rows })
}

/// One shape at every token count: `C[t, n] = A[t, k] W[k, n]`, bf16 in and out, fp32
/// accumulation (what expert FFNs run).
fn gemm_rows(timer: &Timer, blas: &CudaBlas, shape: &GemmShape) -> Result<Vec<Measurement>> {
    let stream = &timer.stream;
    let max_tokens = TOKEN_COUNTS.iter().copied().max().unwrap_or(1);
    let (k, n) = (shape.k as usize, shape.n as usize);
    let activations = random_device_bits(stream, max_tokens as usize * k)?;
    let weights = random_device_bits(stream, k * n)?;
    let mut output = stream
        .alloc_zeros::<u16>(max_tokens as usize * n)
        .map_err(cuda("allocate"))?;
    let (alpha, beta) = (1.0f32, 0.0f32);
    let mut rows = Vec::new();
    for tokens in TOKEN_COUNTS {
        let dims = [n, tokens as usize, k].map(i32::try_from);
        let [Ok(m_dim), Ok(n_dim), Ok(k_dim)] = dims else {
            return Err(Error::invalid(format!(
                "GEMM {}x{} at {tokens} tokens exceeds cuBLAS's 32-bit dimensions",
                shape.k, shape.n
            )));
        };
        let timing = timer.time(|| {
            let (w, _w_sync) = weights.device_ptr(stream);
            let (a, _a_sync) = activations.device_ptr(stream);
            let (c, _c_sync) = output.device_ptr_mut(stream);
            // Column-major view: C^T [n, t] = W^T [n, k] A^T [k, t] over row-major buffers.
            // SAFETY: the buffers hold at least k n, t k and t n elements, all on `stream`.
            unsafe {
                gemm_ex(
                    *blas.handle(),
                    cublasOperation_t::CUBLAS_OP_N,
                    cublasOperation_t::CUBLAS_OP_N,
                    m_dim,
                    n_dim,
                    k_dim,
                    (&alpha as *const f32).cast(),
                    w as *const _,
                    cudaDataType::CUDA_R_16BF,
                    m_dim,
                    a as *const _,
                    cudaDataType::CUDA_R_16BF,
                    k_dim,
                    (&beta as *const f32).cast(),
                    c as *mut _,
                    cudaDataType::CUDA_R_16BF,
                    m_dim,
                    cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
            .map_err(|e| Error::invalid(format!("cuBLAS GEMM {}x{}: {e}", shape.k, shape.n)))
        })?;
        rows.push(timing.row(
            Kind::Gemm,
            shape.label(),
            (shape.k, shape.n, tokens),
            shape.weight_bytes(),
        ));
    }
    Ok(rows)
}

/// A device buffer of `len` random bf16 values in +-[0.5, 1) (zeros would draw less power and
/// could run faster than real weights).
fn random_device_bits(stream: &Arc<CudaStream>, len: usize) -> Result<CudaSlice<u16>> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let host: Vec<u16> = (0..len)
        .map(|_| {
            // xorshift64: cheap, deterministic, plenty for filling buffers.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            0x3F00 | (state as u16 & 0x807F)
        })
        .collect();
    stream.clone_htod(&host).map_err(cuda("upload a buffer"))
}

/// Times closures with CUDA events on one stream.
struct Timer {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    reps: Repetitions,
    epoch: Instant,
}

/// Per-repetition times and the host-clock window of one benchmark point.
struct Timing {
    sorted_ns: Vec<u64>,
    start_ns: u64,
    end_ns: u64,
}

impl Timer {
    /// Runs `launch` `warmup` times, then `timed` times between events; see the `profile`
    /// module docs for how the window lands on the host clock.
    fn time(&self, mut launch: impl FnMut() -> Result<()>) -> Result<Timing> {
        for _ in 0..self.reps.warmup {
            launch()?;
        }
        let anchor_event = self.event()?;
        anchor_event.synchronize().map_err(cuda("synchronize"))?;
        let anchor_ns = self.epoch.elapsed().as_nanos() as f64;
        let mut marks = vec![anchor_event];
        for _ in 0..self.reps.timed.max(1) {
            launch()?;
            marks.push(self.event()?);
        }
        self.stream.synchronize().map_err(cuda("synchronize"))?;
        let mut sorted_ns = Vec::with_capacity(marks.len() - 1);
        for pair in marks.windows(2) {
            let ms = pair[0]
                .elapsed_ms(&pair[1])
                .map_err(cuda("read an event"))?;
            sorted_ns.push((f64::from(ms) * 1e6).round().max(1.0) as u64);
        }
        sorted_ns.sort_unstable();
        let total_ms = marks[0]
            .elapsed_ms(&marks[marks.len() - 1])
            .map_err(cuda("read an event"))?;
        Ok(Timing {
            sorted_ns,
            start_ns: anchor_ns as u64,
            end_ns: (anchor_ns + f64::from(total_ms) * 1e6) as u64,
        })
    }

    /// An event recorded now on the stream, with timing enabled.
    fn event(&self) -> Result<CudaEvent> {
        let event = self
            .ctx
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(cuda("create an event"))?;
        event
            .record(&self.stream)
            .map_err(cuda("record an event"))?;
        Ok(event)
    }
}

impl Timing {
    fn row(
        &self,
        kind: Kind,
        shape: String,
        (k, n, tokens): (u64, u64, u64),
        bytes: u64,
    ) -> Measurement {
        let len = self.sorted_ns.len();
        Measurement {
            kind,
            shape,
            k,
            n,
            tokens,
            bytes,
            reps: len as u32,
            median_ns: self.sorted_ns[len / 2],
            min_ns: self.sorted_ns[0],
            max_ns: self.sorted_ns[len - 1],
            start_ns: Some(self.start_ns),
            end_ns: Some(self.end_ns),
        }
    }
}

/// Maps a CUDA driver error to one naming the step that failed.
fn cuda(step: &'static str) -> impl Fn(cudarc::driver::DriverError) -> Error {
    move |e| Error::invalid(format!("CUDA: cannot {step}: {e}"))
}
