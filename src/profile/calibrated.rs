//! [`CalibratedCompute`]: expert times from a calibration instead of the roofline.
//!
//! Interpolation is piecewise linear in tokens (and in bytes for copies). A GEMM's time is flat
//! while it is memory-bound (the weights are read whatever the token count) and affine once it
//! is compute-bound, so linear interpolation is exact inside either regime and errs only in the
//! one segment holding the knee; log-log interpolation would bend the affine part (an intercept
//! plus a slope is not a power law). Outside the measured range a query is clamped below (the
//! memory-bound floor: fewer tokens never read fewer weights) and scaled linearly above (the
//! compute-bound regime), and a warning is recorded once per shape.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::calibration::{Calibration, CopyTable, GemmModel, GemmTable};
use super::measurement::Kind;
use super::plan::ffn_gemms;
use crate::cost::compute::{ComputeCost, RooflineCompute};
use crate::model::{Ffn, MoeModel};
use crate::topology::{DataType, GpuSpec};

/// The GEMMs behind one FFN the simulator asks about, recognised by its weights.
#[derive(Debug, Clone, PartialEq)]
struct FfnShape {
    ffn: Ffn,
    gemms: Vec<(u64, u64)>,
}

/// Expert compute times from a [`Calibration`] (see the module docs); FFNs it cannot recognise
/// or measured in another precision fall back to the roofline, with a warning.
#[derive(Debug)]
pub struct CalibratedCompute {
    calibration: Calibration,
    ffns: Vec<FfnShape>,
    roofline: RooflineCompute,
    /// First warning per label (shape, copy kind or FFN), keyed by the label.
    warnings: Mutex<BTreeMap<String, String>>,
}

impl CalibratedCompute {
    /// A cost model for the experts of `models`: each routed expert and fused shared experts
    /// are mapped to their bf16 GEMMs (gate/up and down) so [`ComputeCost::ffn_time_ns`] can
    /// sum their calibrated times. With no models only the GEMM and copy queries answer.
    pub fn new(calibration: Calibration, models: &[MoeModel]) -> CalibratedCompute {
        let mut ffns = Vec::new();
        for model in models {
            let mut widths = vec![(model.routed_expert(), model.expert_ffn_size)];
            if let Some(shared) = model.shared_experts() {
                widths.push((
                    shared,
                    model.num_shared_experts * model.shared_expert_ffn_size,
                ));
            }
            for (ffn, width) in widths {
                let gemms = ffn_gemms(model.hidden_size as u64, width as u64, model.gated_ffn);
                ffns.push(FfnShape {
                    ffn,
                    gemms: gemms.iter().map(|&(_, k, n)| (k, n)).collect(),
                });
            }
        }
        CalibratedCompute {
            calibration,
            ffns,
            roofline: RooflineCompute::default(),
            warnings: Mutex::new(BTreeMap::new()),
        }
    }

    /// The calibration in use.
    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    /// Time of one GEMM `[tokens, k] x [k, n]` in `dtype`: the table of that shape and type when
    /// there is one, else (BF16 only: what was measured) the cross-shape model; `None` when the
    /// calibration has neither.
    pub fn gemm_time_ns(&self, dtype: DataType, k: u64, n: u64, tokens: f64) -> Option<u64> {
        if tokens <= 0.0 {
            return Some(0);
        }
        let label = match dtype {
            DataType::Bf16 => format!("gemm {k}x{n}"),
            other => format!("gemm {} {k}x{n}", other.name()),
        };
        if let Some(table) = self.table(dtype, k, n) {
            return Some(self.table_time(&label, table, tokens));
        }
        let model = self
            .calibration
            .gemm_model
            .as_ref()
            .filter(|_| dtype == DataType::Bf16)?;
        Some(self.model_time(&label, model, (k * n) as f64, tokens))
    }

    /// The measured table of GEMM shape `k x n` in `dtype`.
    fn table(&self, dtype: DataType, k: u64, n: u64) -> Option<&GemmTable> {
        self.calibration
            .gemm
            .iter()
            .find(|t| (t.dtype, t.k, t.n) == (dtype, k, n))
    }

    /// Time to copy `bytes` with a copy `kind`; `None` when the calibration has no table for it.
    pub fn copy_time_ns(&self, kind: Kind, bytes: u64) -> Option<u64> {
        let table = self.calibration.copy.iter().find(|t| t.kind == kind)?;
        Some(self.copy_table_time(table, bytes))
    }

    /// Warnings recorded so far, one per label, sorted by label.
    pub fn warnings(&self) -> Vec<String> {
        self.lock_warnings().values().cloned().collect()
    }

    fn table_time(&self, label: &str, table: &GemmTable, tokens: f64) -> u64 {
        let times: Vec<f64> = table.time_ns.iter().map(|&t| t as f64).collect();
        self.interpolate(label, "tokens", &table.tokens, &times, tokens)
    }

    fn model_time(&self, label: &str, model: &GemmModel, weights: f64, tokens: f64) -> u64 {
        let times: Vec<f64> = model
            .intercept_ns
            .iter()
            .zip(&model.ns_per_weight)
            .map(|(a, b)| a + b * weights)
            .collect();
        self.interpolate(label, "tokens", &model.tokens, &times, tokens)
    }

    fn copy_table_time(&self, table: &CopyTable, bytes: u64) -> u64 {
        let times: Vec<f64> = table
            .bytes
            .iter()
            .zip(&table.gbps)
            .map(|(&b, g)| b as f64 / g)
            .collect();
        self.interpolate(
            table.kind.name(),
            "bytes",
            &table.bytes,
            &times,
            bytes as f64,
        )
    }

    /// Piecewise-linear `y(x)` through `(xs, ys)` (xs strictly increasing, checked on load),
    /// clamped below and proportional above the range, at least 1 ns; warns once per `label`
    /// when `x` is outside.
    fn interpolate(&self, label: &str, axis: &str, xs: &[u64], ys: &[f64], x: f64) -> u64 {
        let (Some(&first), Some(&last)) = (xs.first(), xs.last()) else {
            return 0;
        };
        let (first, last) = (first as f64, last as f64);
        let y = if x < first || x > last {
            self.warn(
                label,
                format!(
                    "{axis} {x} outside the calibrated range {first}..{last}; {}",
                    if x < first {
                        "using the smallest measured point"
                    } else {
                        "scaling the largest measured point linearly"
                    }
                ),
            );
            let end = ys.len() - 1;
            if x < first { ys[0] } else { ys[end] * x / last }
        } else {
            let upper = xs.partition_point(|&v| (v as f64) < x).min(xs.len() - 1);
            if upper == 0 {
                ys[0]
            } else {
                let (x0, x1) = (xs[upper - 1] as f64, xs[upper] as f64);
                let share = (x - x0) / (x1 - x0);
                ys[upper - 1] + share * (ys[upper] - ys[upper - 1])
            }
        };
        y.round().max(1.0) as u64
    }

    /// Records `label: message` and prints it to stderr, the first time `label` warns only.
    fn warn(&self, label: &str, message: String) {
        self.lock_warnings()
            .entry(label.to_string())
            .or_insert_with(|| {
                let line = format!("{label}: {message}");
                eprintln!("warning: {line}");
                line
            });
    }

    fn lock_warnings(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // A panic while holding the lock leaves the set itself intact.
        self.warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl CalibratedCompute {
    /// `ffn`'s data type and GEMMs, when it is an FFN of the calibrated models whose every GEMM
    /// has a table in its data type (or, for BF16, the cross-shape fit). An FFN stored in FP8 or
    /// MXFP4 is another kernel than the BF16 one `moesim profile` measures, so the calibration
    /// is keyed by shape and type.
    fn calibrated_gemms(&self, ffn: &Ffn) -> Option<(DataType, &[(u64, u64)])> {
        let shape = self.ffns.iter().find(|shape| shape.ffn == *ffn)?;
        let dtype = DataType::of_bytes_per_param(ffn.bytes_per_param);
        let fitted = dtype == DataType::Bf16 && self.calibration.gemm_model.is_some();
        let measured = |&(k, n): &(u64, u64)| fitted || self.table(dtype, k, n).is_some();
        shape
            .gemms
            .iter()
            .all(measured)
            .then_some((dtype, &shape.gemms[..]))
    }

    /// Warns (once per FFN) that `ffn` falls back to the roofline.
    fn warn_uncalibrated(&self, ffn: &Ffn) {
        let label = format!(
            "ffn of {} params at {} bytes/param",
            ffn.params, ffn.bytes_per_param
        );
        self.warn(
            &label,
            format!(
                "not calibrated (not an expert of this model, or a GEMM with no {} table nor, \
                 for bf16, the cross-shape fit); the kernel model is used",
                DataType::of_bytes_per_param(ffn.bytes_per_param).name()
            ),
        );
    }
}

impl ComputeCost for CalibratedCompute {
    fn ffn_time_ns(&self, gpu: &GpuSpec, ffn: &Ffn, tokens: f64) -> u64 {
        if tokens <= 0.0 {
            return 0;
        }
        match self.calibrated_gemms(ffn) {
            Some((dtype, gemms)) => gemms
                .iter()
                .filter_map(|&(k, n)| self.gemm_time_ns(dtype, k, n, tokens))
                .sum(),
            None => {
                self.warn_uncalibrated(ffn);
                self.roofline.ffn_time_ns(gpu, ffn, tokens)
            }
        }
    }

    /// Calibrated experts one after another (each measured alone); the others as the
    /// roofline's one grouped kernel.
    fn grouped_ffn_time_ns(&self, gpu: &GpuSpec, ffn: &Ffn, expert_tokens: &[f64]) -> u64 {
        if self.calibrated_gemms(ffn).is_some() {
            return expert_tokens
                .iter()
                .map(|&tokens| self.ffn_time_ns(gpu, ffn, tokens))
                .sum();
        }
        if expert_tokens.iter().any(|&t| t > 0.0) {
            self.warn_uncalibrated(ffn);
        }
        self.roofline.grouped_ffn_time_ns(gpu, ffn, expert_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::calibration::FitHalf;

    /// One measured GEMM shape (100x200), a cross-shape model and an h2d table.
    fn hand_made() -> Calibration {
        Calibration {
            gpu: "test".into(),
            driver: "none".into(),
            date: "2026-11-23".into(),
            source: "synthetic".into(),
            fit_half: FitHalf::All,
            gemm: vec![GemmTable {
                dtype: DataType::Bf16,
                k: 100,
                n: 200,
                tokens: vec![1, 64, 128],
                time_ns: vec![1000, 1000, 3000],
            }],
            gemm_model: Some(GemmModel {
                tokens: vec![1, 128],
                intercept_ns: vec![500.0, 1000.0],
                ns_per_weight: vec![0.01, 0.1],
            }),
            copy: vec![CopyTable {
                kind: Kind::H2d,
                bytes: vec![1000, 3000],
                gbps: vec![1.0, 2.0],
            }],
        }
    }

    #[test]
    fn measured_shapes_interpolate_linearly_in_tokens() {
        let compute = CalibratedCompute::new(hand_made(), &[]);
        assert_eq!(
            compute.gemm_time_ns(DataType::Bf16, 100, 200, 1.0),
            Some(1000)
        );
        assert_eq!(
            compute.gemm_time_ns(DataType::Bf16, 100, 200, 64.0),
            Some(1000)
        );
        // Halfway from 64 (1000 ns) to 128 (3000 ns).
        assert_eq!(
            compute.gemm_time_ns(DataType::Bf16, 100, 200, 96.0),
            Some(2000)
        );
        assert_eq!(compute.gemm_time_ns(DataType::Bf16, 100, 200, 0.0), Some(0));
        assert!(compute.warnings().is_empty());
    }

    #[test]
    fn unmeasured_shapes_use_the_cross_shape_model() {
        let compute = CalibratedCompute::new(hand_made(), &[]);
        // 10 x 30 = 300 weights: 500 + 3 = 503 ns at 1 token, 1000 + 30 = 1030 ns at 128;
        // 64.5 tokens is halfway: 766.5 -> 767.
        assert_eq!(compute.gemm_time_ns(DataType::Bf16, 10, 30, 1.0), Some(503));
        assert_eq!(
            compute.gemm_time_ns(DataType::Bf16, 10, 30, 64.5),
            Some(767)
        );
        let without_model = Calibration {
            gemm_model: None,
            ..hand_made()
        };
        let compute = CalibratedCompute::new(without_model, &[]);
        assert_eq!(compute.gemm_time_ns(DataType::Bf16, 10, 30, 1.0), None);
    }

    #[test]
    fn out_of_range_queries_clamp_below_scale_above_and_warn_once_per_shape() {
        let compute = CalibratedCompute::new(hand_made(), &[]);
        // Above 128 tokens: 3000 ns x 256 / 128.
        assert_eq!(
            compute.gemm_time_ns(DataType::Bf16, 100, 200, 256.0),
            Some(6000)
        );
        assert_eq!(
            compute.gemm_time_ns(DataType::Bf16, 100, 200, 512.0),
            Some(12000)
        );
        assert_eq!(
            compute.warnings(),
            [
                "gemm 100x200: tokens 256 outside the calibrated range 1..128; scaling the largest measured point linearly"
            ]
        );
        // Below 1 token: the 1-token time; a second shape warns on its own.
        assert_eq!(compute.gemm_time_ns(DataType::Bf16, 10, 30, 0.5), Some(503));
        assert_eq!(compute.warnings().len(), 2);
    }

    #[test]
    fn copies_interpolate_time_by_bytes() {
        let compute = CalibratedCompute::new(hand_made(), &[]);
        // 1000 B at 1 GB/s = 1000 ns, 3000 B at 2 GB/s = 1500 ns; 2000 B halfway.
        assert_eq!(compute.copy_time_ns(Kind::H2d, 2000), Some(1250));
        assert_eq!(compute.copy_time_ns(Kind::D2h, 2000), None);
    }

    /// A gated model of width 100 whose experts are 100 wide (GEMMs 100x200 and 100x100),
    /// weights stored at `expert_bytes_per_param`.
    fn small_model(expert_bytes_per_param: f64) -> MoeModel {
        MoeModel {
            hidden_size: 100,
            expert_ffn_size: 100,
            num_shared_experts: 0,
            gated_ffn: true,
            expert_bytes_per_param,
            ..MoeModel::preset("mixtral-8x7b").unwrap()
        }
    }

    #[test]
    fn model_experts_sum_their_gemms_and_other_ffns_fall_back_to_the_roofline() {
        let model = small_model(2.0);
        let compute = CalibratedCompute::new(hand_made(), std::slice::from_ref(&model));
        let gpu = GpuSpec::named("h100").unwrap();
        let expert = model.routed_expert();
        // gate_up 100x200 from its table (2000 ns at 96 tokens) + down 100x100 from the model
        // (10,000 weights: 600 ns at 1 token, 2000 at 128; 96 tokens: 600 + 95/127 x 1400 =
        // 1647.2 -> 1647).
        assert_eq!(compute.ffn_time_ns(&gpu, &expert, 96.0), 2000 + 1647);
        assert_eq!(compute.ffn_time_ns(&gpu, &expert, 0.0), 0);
        assert!(compute.warnings().is_empty());
        let fp8 = Ffn {
            bytes_per_param: 1.0,
            ..expert
        };
        let roofline = RooflineCompute::default().ffn_time_ns(&gpu, &fp8, 96.0);
        assert_eq!(compute.ffn_time_ns(&gpu, &fp8, 96.0), roofline);
        assert_eq!(
            compute.warnings(),
            [
                "ffn of 30000 params at 1 bytes/param: not calibrated (not an expert of this model, or a GEMM with no fp8 table nor, for bf16, the cross-shape fit); the kernel model is used"
            ]
        );
    }

    #[test]
    fn fp8_experts_take_fp8_tables_and_never_the_bf16_fit() {
        let model = small_model(1.0);
        let fp8_table = |k, n, time_ns| GemmTable {
            dtype: DataType::Fp8,
            k,
            n,
            tokens: vec![1, 128],
            time_ns,
        };
        let gpu = GpuSpec::named("h800").unwrap();
        let expert = model.routed_expert();
        // Only gate_up (100x200) has an FP8 table: the bf16 cross-shape fit must not stand in
        // for the FP8 down GEMM, so the expert keeps the kernel model.
        let mut calibration = hand_made();
        calibration.gemm.push(fp8_table(100, 200, vec![400, 800]));
        let compute = CalibratedCompute::new(calibration.clone(), std::slice::from_ref(&model));
        let model_ns = RooflineCompute::default().ffn_time_ns(&gpu, &expert, 64.0);
        assert_eq!(compute.ffn_time_ns(&gpu, &expert, 64.0), model_ns);
        assert_eq!(compute.warnings().len(), 1);
        // With down (100x100) too, both GEMMs come from the FP8 tables: at 64 tokens
        // 400 + 63/127 x 400 = 598.4 -> 598 and 300 + 63/127 x 200 = 399.2 -> 399.
        calibration.gemm.push(fp8_table(100, 100, vec![300, 500]));
        let compute = CalibratedCompute::new(calibration, std::slice::from_ref(&model));
        assert_eq!(compute.ffn_time_ns(&gpu, &expert, 64.0), 598 + 399);
        assert_eq!(
            compute.gemm_time_ns(DataType::Fp8, 100, 200, 64.0),
            Some(598)
        );
        // The BF16 query of the same shape still reads the BF16 table.
        assert_eq!(
            compute.gemm_time_ns(DataType::Bf16, 100, 200, 64.0),
            Some(1000)
        );
        assert!(compute.warnings().is_empty());
    }
}
