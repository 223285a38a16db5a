//! `moesim capture`: route recorded router logits through the instrumented gating kernel (or its
//! CPU twin with `--cpu`) and write the decisions as a moesim trace.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use serde::Serialize;

use crate::capture::device::{DeviceInfo, Gpu, Overhead};
use crate::capture::gating::{GatingConfig, GroupLimit, Scoring};
use crate::capture::logits::RouterLogits;
use crate::capture::records::Captured;
use crate::capture::{cpu, summary};
use crate::gpu;
use crate::output::write_bytes_atomic;

const EXAMPLES: &str = "\
Examples:
  moesim capture --logits router_logits.npy --top-k 2 -o trace.parquet
  moesim capture --cpu --logits router_logits.npy --top-k 2 -o trace.parquet
  moesim capture --layers-from-dir logits/ --top-k 8 --scoring sigmoid --groups 8 --top-groups 4 \\
      --bias bias.npy -o ds.parquet
  moesim capture --logits l.npy --top-k 8 -o t.parquet --overhead-json capture_overhead.json";

/// Arguments of `moesim capture`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct CaptureArgs {
    /// Router logits, float32 .npy: [layers, tokens, experts] or [tokens, experts].
    #[arg(long, value_name = "NPY", required_unless_present = "layers_from_dir")]
    logits: Option<PathBuf>,
    /// A directory of per-layer [tokens, experts] float32 .npy files, in file-name order.
    #[arg(long, value_name = "DIR", conflicts_with = "logits")]
    layers_from_dir: Option<PathBuf>,
    /// Experts chosen per token.
    #[arg(long)]
    top_k: usize,
    /// How logits become scores.
    #[arg(long, value_enum, default_value = "softmax")]
    scoring: Scoring,
    /// Expert groups for group-limited routing (DeepSeek-V3: 8); needs --top-groups.
    #[arg(long, requires = "top_groups")]
    groups: Option<usize>,
    /// Groups a token may use (DeepSeek-V3: 4); needs --groups.
    #[arg(long, requires = "groups")]
    top_groups: Option<usize>,
    /// Score-correction bias, float32 .npy of [experts] or [layers, experts] (DeepSeek-V3's
    /// e_score_correction_bias): it changes which experts are chosen, not their weights.
    #[arg(long, value_name = "NPY")]
    bias: Option<PathBuf>,
    /// Keep the chosen experts' raw scores as weights instead of dividing by their sum.
    #[arg(long)]
    no_renormalize: bool,
    /// Ring-buffer capacity in records (default: two layers' worth); decisions that do not fit
    /// are lost, counted and reported.
    #[arg(long, value_name = "N", conflicts_with = "cpu")]
    ring_capacity: Option<u64>,
    /// Route with the CPU twin instead of the GPU kernel (same decisions, no GPU needed).
    #[arg(long)]
    cpu: bool,
    /// Also time the plain and the instrumented kernel on the first layer and write the
    /// overhead as JSON here (GPU only).
    #[arg(long, value_name = "FILE", conflicts_with = "cpu")]
    overhead_json: Option<PathBuf>,
    /// Launches per timed round of the overhead measurement (7 rounds per kernel).
    #[arg(long, default_value_t = 200)]
    overhead_reps: usize,
    /// Where to write the trace (moesim's Parquet); the sidecar goes to <stem>.capture.json.
    #[arg(short, long)]
    out: PathBuf,
}

/// What `--overhead-json` writes.
#[derive(Debug, Serialize)]
struct OverheadReport<'a> {
    device: &'a DeviceInfo,
    gating: String,
    num_experts: usize,
    measured_at_unix_s: u64,
    #[serde(flatten)]
    overhead: Overhead,
}

impl CaptureArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        if !self.cpu {
            gpu::require_driver("moesim capture")?;
        }
        let (logits, input) = match (&self.logits, &self.layers_from_dir) {
            (Some(file), _) => (RouterLogits::from_file(file)?, file.clone()),
            (None, Some(dir)) => (RouterLogits::from_dir(dir)?, dir.clone()),
            (None, None) => anyhow::bail!("give --logits or --layers-from-dir"),
        };
        let bias = match &self.bias {
            Some(path) => Some(logits.read_bias(path)?),
            None => None,
        };
        let group_limit = self
            .groups
            .zip(self.top_groups)
            .map(|(groups, top_groups)| GroupLimit { groups, top_groups });
        let config = GatingConfig::new(
            logits.num_experts,
            self.top_k,
            self.scoring,
            group_limit,
            !self.no_renormalize,
        )?;
        if self.cpu {
            let captured = cpu::capture(&config, &logits, bias.as_deref())?;
            return self.finish(captured, &config, "cpu twin", &input, None);
        }
        let gpu = Gpu::open("moesim capture")?;
        let ring = self.ring_capacity.unwrap_or(2 * logits.num_tokens as u64);
        let captured = gpu.capture(&config, &logits, bias.as_deref(), ring)?;
        if let Some(path) = &self.overhead_json {
            self.write_overhead(path, &gpu, &config, &logits, bias.as_deref())?;
        }
        let engine = format!("gpu: {}", gpu.info().name);
        self.finish(captured, &config, &engine, &input, Some(ring))
    }

    /// Writes the trace and sidecar and says what happened, losses included.
    fn finish(
        &self,
        captured: Captured,
        config: &GatingConfig,
        engine: &str,
        input: &Path,
        ring: Option<u64>,
    ) -> anyhow::Result<()> {
        let (layers, tokens, lost) = (
            captured.trace.num_layers(),
            captured.trace.num_tokens(),
            captured.lost_records,
        );
        let sidecar = summary::write(&self.out, captured, config, engine, input, ring)?;
        eprintln!(
            "wrote {} ({layers} layers x {tokens} tokens, {engine}) and {}",
            self.out.display(),
            sidecar.display()
        );
        if lost > 0 {
            eprintln!(
                "warning: {lost} of {} decisions were lost to a full ring buffer (raise \
                 --ring-capacity); their tokens have no experts in the trace",
                layers * tokens
            );
        }
        Ok(())
    }

    /// Times plain vs instrumented kernel on the first layer and writes the JSON report.
    fn write_overhead(
        &self,
        path: &Path,
        gpu: &Gpu,
        config: &GatingConfig,
        logits: &RouterLogits,
        bias: Option<&[Vec<f32>]>,
    ) -> anyhow::Result<()> {
        let first_bias = bias.map(|rows| rows[0].as_slice());
        let overhead =
            gpu.measure_overhead(config, &logits.layers[0], first_bias, self.overhead_reps, 7)?;
        let report = OverheadReport {
            device: gpu.info(),
            gating: config.describe(),
            num_experts: config.num_experts(),
            measured_at_unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            overhead,
        };
        let mut json = serde_json::to_string_pretty(&report)?;
        json.push('\n');
        write_bytes_atomic(path, json.as_bytes())?;
        eprintln!(
            "instrumentation overhead {:.2} % ({:.0} ns vs {:.0} ns per launch of {} tokens)",
            report.overhead.overhead_percent,
            report.overhead.instrumented_ns_per_launch,
            report.overhead.plain_ns_per_launch,
            report.overhead.tokens
        );
        Ok(())
    }
}
