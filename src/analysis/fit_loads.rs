//! Fitting the synthetic generator to recorded per-expert loads (an SGLang expert-distribution
//! dump: tokens per expert per layer, no token-level routing).
//!
//! What is fitted: each MoE layer's popularity, calibrated so that the generator's realised
//! per-expert shares match the recorded shares. The generator draws k distinct experts per token,
//! which flattens shares relative to the weights (a heavy expert cannot be chosen twice), so the
//! recorded shares are not used as weights directly: a fixed-point iteration
//! `w_i <- w_i * target_i / inclusion_i(w)` finds weights whose inclusion probabilities under the
//! generator's own draw ([`top_k_inclusion`], exact) equal k times the recorded shares (smoothed
//! with half a token per expert, as [`fit`](super::fit::fit) does). With a group limit the draw
//! is DeepSeek's group-limited one, whose effect on each expert's inclusion is estimated with the
//! generator's own scores and selection rule at a fixed seed ([`group_limit_ratio`]), at the
//! weights calibrated without it, and divided out of the target before calibrating again.
//! Everything is deterministic.
//!
//! What is not: loads carry no inter-layer information (nor drift), so layers are independent
//! (empty successor lists, `affinity = 0`): any inter-layer affinity of the real deployment is
//! lost. All-zero layers (the dense layers SGLang records as zero rows) are dropped.

use rayon::prelude::*;

use crate::analysis::fit::{best_zipf_exponent, significant, smoothed};
use crate::error::{Error, Result};
use crate::trace::ExpertLoads;
use crate::trace::synth::{
    FittedRouting, FittedTransitions, GroupLimit, Skew, SynthParams, group_limit_ratio,
    top_k_inclusion,
};

/// Iterations of the fixed point per calibration (it usually stops far earlier).
const MAX_ITERATIONS: usize = 500;
/// The calibration stops when every expert's inclusion is within this relative error of its
/// target.
const TOLERANCE: f64 = 1e-6;
/// Rounds of group-limit correction (each re-estimates the limit's effect at the new weights).
const GROUP_ROUNDS: usize = 1;
/// Tokens drawn per estimate of the group limit's effect.
const GROUP_TOKENS: usize = 1024;
/// The largest inclusion a group-adjusted target may ask of the plain draw (1 needs an infinite
/// weight).
const MAX_INCLUSION: f64 = 1.0 - 1e-6;

/// Generator parameters fitted to loads, and what the fit left out or could not match.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadsFit {
    /// The parameters, for `trace synth --params` (`num_tokens` is the generator's default).
    pub params: SynthParams,
    /// Indices (in the input) of the all-zero layers that were dropped.
    pub dropped_layers: Vec<usize>,
    /// The largest relative difference, over kept layers and experts, between the generator's
    /// expected share of an expert (as the calibration computes it) and its recorded share.
    pub worst_share_error: f64,
}

/// Fits the generator to `loads` for a model that routes every token to `top_k` distinct
/// experts, under `groups` when its routing is group-limited. Fails when `top_k` is 0 or more than
/// the experts, when the group limit does not fit the experts, when every layer is all zero, or
/// when an expert holds more than 1 / top_k of a layer's entries (no top-k draw can do that).
pub fn fit_loads(
    loads: &ExpertLoads,
    top_k: usize,
    groups: Option<GroupLimit>,
) -> Result<LoadsFit> {
    let experts = loads.num_experts();
    if top_k == 0 || top_k > experts {
        return Err(Error::invalid(format!(
            "top-k {top_k} must be between 1 and the {experts} experts per layer"
        )));
    }
    let mut kept = loads.clone();
    let kept_layers = kept.drop_empty_layers();
    let dropped_layers: Vec<usize> = (0..loads.num_layers())
        .filter(|l| !kept_layers.contains(l))
        .collect();
    if kept_layers.is_empty() {
        return Err(Error::invalid(
            "every layer's loads are zero: nothing to fit",
        ));
    }
    let mut params = SynthParams {
        num_experts: experts,
        num_layers: kept_layers.len(),
        top_k,
        seed: 0,
        affinity: 0.0,
        drift: 0.0,
        groups,
        fitted: None,
        ..SynthParams::default()
    };
    params.validate()?;
    let targets: Vec<Vec<f64>> = (0..kept.num_layers())
        .map(|l| {
            let shares = smoothed(kept.layer(l));
            let total: f64 = shares.iter().sum();
            shares.iter().map(|s| top_k as f64 * s / total).collect()
        })
        .collect();
    for (layer, target) in kept_layers.iter().zip(&targets) {
        if let Some(expert) = target.iter().position(|&t| t >= 1.0) {
            return Err(Error::invalid(format!(
                "layer {layer}: expert {expert} holds {:.1}% of the routed entries, more than \
                 1 / top-k = {:.1}%; a top-{top_k} router cannot (is the top-k right?)",
                100.0 * target[expert] / top_k as f64,
                100.0 / top_k as f64
            )));
        }
    }
    let calibrated: Vec<(Vec<f64>, f64)> = targets
        .par_iter()
        .enumerate()
        .map(|(layer, target)| calibrate(target, top_k, groups, layer as u64))
        .collect();
    let popularity: Vec<Vec<f64>> = calibrated
        .iter()
        .map(|(weights, _)| weights.iter().map(|&w| significant(w)).collect())
        .collect();
    let worst_share_error = calibrated.iter().map(|(_, e)| *e).fold(0.0, f64::max);
    params.skew = Skew::Zipf {
        exponent: best_zipf_exponent(&popularity),
    };
    let independent = FittedTransitions {
        successors: vec![Vec::new(); experts],
        probs: vec![Vec::new(); experts],
    };
    params.fitted = Some(FittedRouting {
        popularity,
        transitions: vec![independent; kept_layers.len() - 1],
    });
    Ok(LoadsFit {
        params,
        dropped_layers,
        worst_share_error,
    })
}

/// Weights (summing to 1) whose inclusion under the generator's draw is `target` (summing to
/// `top_k`, each below 1), and the largest relative error left. With a group limit, the limit's
/// effect is estimated on stream `seed` at the current weights and divided out of the target.
fn calibrate(
    target: &[f64],
    top_k: usize,
    groups: Option<GroupLimit>,
    seed: u64,
) -> (Vec<f64>, f64) {
    let (mut weights, mut error) = plain_fixed_point(target, top_k, target);
    let Some(groups) = groups.filter(|g| g.topk_groups < g.n_groups) else {
        return (weights, error);
    };
    for _ in 0..GROUP_ROUNDS {
        let ratio = group_limit_ratio(&weights, top_k, groups, GROUP_TOKENS, seed);
        let adjusted: Vec<f64> = target.iter().zip(&ratio).map(|(t, r)| t / r).collect();
        let scale = top_k as f64 / adjusted.iter().sum::<f64>();
        let adjusted: Vec<f64> = adjusted
            .iter()
            .map(|a| (a * scale).min(MAX_INCLUSION))
            .collect();
        (weights, _) = plain_fixed_point(&adjusted, top_k, &weights);
        let inclusion = top_k_inclusion(&weights, top_k);
        let expected: Vec<f64> = inclusion.iter().zip(&ratio).map(|(i, r)| i * r).collect();
        error = worst_relative_error(&expected, target);
    }
    (weights, error)
}

/// The fixed point `w_i <- w_i * target_i / inclusion_i(w)` of the plain top-k draw, from
/// `start`; returns the weights and the largest relative error left.
fn plain_fixed_point(target: &[f64], top_k: usize, start: &[f64]) -> (Vec<f64>, f64) {
    let mut weights = normalised(start);
    let mut error = f64::INFINITY;
    for _ in 0..MAX_ITERATIONS {
        let inclusion = top_k_inclusion(&weights, top_k);
        error = worst_relative_error(&inclusion, target);
        if error < TOLERANCE {
            break;
        }
        let next: Vec<f64> = weights
            .iter()
            .zip(target.iter().zip(&inclusion))
            .map(|(w, (t, i))| if *i > 0.0 { w * t / i } else { *w })
            .collect();
        weights = normalised(&next);
    }
    (weights, error)
}

/// `values` scaled to sum to 1.
fn normalised(values: &[f64]) -> Vec<f64> {
    let total: f64 = values.iter().sum();
    values.iter().map(|v| v / total).collect()
}

/// The largest `|actual / target - 1|`.
fn worst_relative_error(actual: &[f64], target: &[f64]) -> f64 {
    actual
        .iter()
        .zip(target)
        .map(|(a, t)| (a / t - 1.0).abs())
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::imbalance::max_mean;
    use crate::analysis::test_data::shared_data;
    use crate::trace::Trace;
    use crate::trace::synth::synthesize;

    /// Tokens synthesised from the DeepSeek fit.
    const SYNTH_TOKENS: usize = 8_000;
    /// Largest relative max/mean error allowed per layer. Measured worst: 7.0% (layer 35). It is
    /// sampling noise of the 8,000 tokens: the hot expert of a layer with max/mean 4 takes 12.5%
    /// of the tokens, so its count has an sd of 3%, and the max over near-tied experts drifts up.
    const MAX_MEAN_TOLERANCE: f64 = 0.10;

    /// Recorded layers the DeepSeek test fits: the 3 dense ones, then MoE layers.
    const RECORDED_LAYERS: [usize; 9] = [0, 1, 2, 5, 10, 26, 35, 48, 60];

    fn loads(rows: Vec<Vec<f64>>) -> ExpertLoads {
        ExpertLoads::new(rows[0].len(), rows).unwrap()
    }

    #[test]
    fn top_1_calibration_is_the_smoothed_share() {
        // Top-1 draws one expert with probability = its weight: the weights are the recorded
        // shares with half a token per expert, (6.5, 3.5, 1.5) / 11.5. The dense layer goes.
        let fit = fit_loads(&loads(vec![vec![0.0; 3], vec![6.0, 3.0, 1.0]]), 1, None).unwrap();
        assert_eq!(fit.dropped_layers, vec![0]);
        let params = &fit.params;
        assert_eq!((params.num_layers, params.top_k), (1, 1));
        assert_eq!(
            params.fitted.as_ref().unwrap().popularity,
            vec![vec![0.565217, 0.304348, 0.130435]]
        );
        assert!(fit.worst_share_error < 1e-6);
    }

    #[test]
    fn top_2_calibration_inverts_the_closed_form() {
        // Weights (0.5, 0.3, 0.2) under top-2 include expert i with p_i + sum over j != i of
        // p_j p_i / (1 - p_j): 0.5 + 0.15 / 0.7 + 0.1 / 0.8 = 0.839286, 0.3 + 0.3 + 0.06 / 0.8
        // = 0.675 and 0.2 + 0.2 + 0.06 / 0.7 = 0.485714. Loads in those proportions (large
        // enough that the half-token smoothing moves nothing at 6 digits) calibrate back to
        // (0.5, 0.3, 0.2), while the recorded shares are (0.42, 0.34, 0.24).
        let inclusion = [0.5 + 0.15 / 0.7 + 0.1 / 0.8, 0.675, 0.4 + 0.06 / 0.7];
        let rows = vec![inclusion.iter().map(|i| i * 1e9).collect()];
        let fit = fit_loads(&loads(rows), 2, None).unwrap();
        let popularity = &fit.params.fitted.as_ref().unwrap().popularity[0];
        for (fitted, truth) in popularity.iter().zip([0.5, 0.3, 0.2]) {
            assert!((fitted - truth).abs() < 2e-6, "{popularity:?}");
        }
        let transitions = &fit.params.fitted.as_ref().unwrap().transitions;
        assert!(transitions.is_empty());
    }

    /// REQUIRED: the generator fitted to a recorded DeepSeek-V3 workload reproduces its MoE
    /// layers' max/mean expert load, from the flattest layer to the most skewed.
    #[test]
    fn deepseek_loads_are_reproduced_from_flat_to_skewed_layers() {
        let Some(data) = shared_data() else {
            return;
        };
        let path = data.join("deepseek-v3-expert-load/prefill_in1024.json");
        let Ok(Trace::Loads(all)) = crate::trace::load(&path) else {
            panic!("{}: not a loads file", path.display());
        };
        // The dense layers and MoE layers of every skew, from the flattest to the most skewed
        // (layer 26, max/mean 13.7); all 58 would take a minute in a debug build.
        let rows = RECORDED_LAYERS
            .iter()
            .map(|&l| all.layer(l).to_vec())
            .collect();
        let recorded = ExpertLoads::new(all.num_experts(), rows).unwrap();
        let groups = GroupLimit {
            n_groups: 8,
            topk_groups: 4,
        };
        let fit = fit_loads(&recorded, 8, Some(groups)).unwrap();
        assert_eq!(fit.dropped_layers, vec![0, 1, 2]);
        let mut params = fit.params;
        params.num_tokens = SYNTH_TOKENS;
        params.seed = 1;
        let synthetic = synthesize(&params).unwrap().expert_loads();
        let mut worst = (0.0, 0);
        for (layer, &recorded_layer) in RECORDED_LAYERS[3..].iter().enumerate() {
            let (real, synth) = (
                max_mean(recorded.layer(layer + 3)),
                max_mean(synthetic.layer(layer)),
            );
            let error = (synth / real - 1.0).abs();
            println!("layer {recorded_layer}: max/mean {real:.3} recorded, {synth:.3} synthetic");
            if error > worst.0 {
                worst = (error, recorded_layer);
            }
        }
        println!(
            "worst max/mean error {:.2}% at layer {}; expected shares within {:.2}%",
            100.0 * worst.0,
            worst.1,
            100.0 * fit.worst_share_error
        );
        assert!(
            worst.0 < MAX_MEAN_TOLERANCE,
            "worst max/mean error {:.2}% at layer {}",
            100.0 * worst.0,
            worst.1
        );
    }

    #[test]
    fn impossible_inputs_are_refused() {
        let two = loads(vec![vec![5.0, 1.0]]);
        let err = fit_loads(&two, 3, None).unwrap_err().to_string();
        assert_eq!(err, "top-k 3 must be between 1 and the 2 experts per layer");
        // Expert 0 holds 5.5 / 9.5 = 57.9% of the entries: at top-2 it would be in 116% of
        // tokens.
        let err = fit_loads(&loads(vec![vec![5.0, 1.0, 2.0]]), 2, None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("layer 0: expert 0 holds 57.9%"), "{err}");
        let zero = loads(vec![vec![0.0; 4]]);
        assert!(
            fit_loads(&zero, 1, None)
                .unwrap_err()
                .to_string()
                .contains("zero")
        );
    }
}
