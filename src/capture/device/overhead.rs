//! Timing the instrumented kernel against the plain one (the instrumentation's overhead).

use cudarc::driver::{CudaFunction, sys};

use super::buffers::Buffers;
use super::{Gpu, LaunchScalars, cuda, single_layer};
use crate::capture::gating::GatingConfig;
use crate::error::{Error, Result};

impl Gpu {
    /// Times the plain and the instrumented kernel on one layer of logits: `rounds` rounds of
    /// `reps` back-to-back launches of each, alternating, with CUDA events; the median round.
    pub fn measure_overhead(
        &self,
        config: &GatingConfig,
        logits: &[f32],
        bias: Option<&[f32]>,
        reps: usize,
        rounds: usize,
    ) -> Result<Overhead> {
        if reps == 0 || rounds == 0 {
            return Err(Error::invalid(format!(
                "overhead timing needs at least one launch and one round (got {reps} and {rounds})"
            )));
        }
        let single = single_layer(config, logits, bias)?;
        let tokens = single.num_tokens as u64;
        let bias_rows = bias.map(|b| vec![b.to_vec()]);
        let stream = self.ctx.new_stream().map_err(cuda("creating a stream"))?;
        let mut buffers = Buffers::new(&stream, config, &single, bias_rows.as_deref(), tokens)?;
        stream
            .memcpy_htod(logits, &mut buffers.logits)
            .map_err(cuda("uploading logits"))?;
        let pointers = buffers.pointers(&stream, 0, config.num_experts());
        let mut instrumented_launches = 0_u64;
        let mut time_round = |kernel: &CudaFunction, launches: usize| -> Result<f64> {
            let flags = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
            let start = stream.record_event(flags).map_err(cuda("timing"))?;
            for _ in 0..launches {
                // Each instrumented launch takes `tokens` new sequence numbers; passing the first
                // of them as drained keeps every record (the ring holds one launch).
                let scalars = LaunchScalars {
                    num_tokens: tokens as u32,
                    layer: 0,
                    ring_capacity: tokens,
                    drained_seq: instrumented_launches * tokens,
                };
                self.launch(kernel, &stream, pointers, config, scalars)?;
                if std::ptr::eq(kernel, &self.instrumented) {
                    instrumented_launches += 1;
                }
            }
            let end = stream.record_event(flags).map_err(cuda("timing"))?;
            end.synchronize().map_err(cuda("timing"))?;
            let ms = start.elapsed_ms(&end).map_err(cuda("timing"))?;
            Ok(f64::from(ms) * 1e6 / launches as f64)
        };
        time_round(&self.plain, reps.min(10))?;
        time_round(&self.instrumented, reps.min(10))?;
        let (mut plain, mut instrumented) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            plain.push(time_round(&self.plain, reps)?);
            instrumented.push(time_round(&self.instrumented, reps)?);
        }
        let plain_ns = median(&mut plain);
        let instrumented_ns = median(&mut instrumented);
        Ok(Overhead {
            tokens: single.num_tokens,
            reps,
            rounds,
            plain_ns_per_launch: plain_ns,
            instrumented_ns_per_launch: instrumented_ns,
            overhead_percent: (instrumented_ns / plain_ns - 1.0) * 100.0,
        })
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// Plain vs instrumented kernel time, as measured by [`Gpu::measure_overhead`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Overhead {
    /// Tokens per launch.
    pub tokens: usize,
    /// Launches per timed round.
    pub reps: usize,
    /// Timed rounds per kernel.
    pub rounds: usize,
    /// Median over rounds of the plain kernel's time per launch.
    pub plain_ns_per_launch: f64,
    /// The same for the instrumented kernel.
    pub instrumented_ns_per_launch: f64,
    /// `(instrumented / plain - 1) x 100`.
    pub overhead_percent: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
