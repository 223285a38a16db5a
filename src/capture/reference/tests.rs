use super::*;
use crate::capture::gating::GroupLimit;

fn config(
    e: usize,
    k: usize,
    scoring: Scoring,
    limit: Option<(usize, usize)>,
    renorm: bool,
) -> GatingConfig {
    let limit = limit.map(|(groups, top_groups)| GroupLimit { groups, top_groups });
    GatingConfig::new(e, k, scoring, limit, renorm).unwrap()
}

/// Routes the tokens of `logits` and returns (experts, weights).
fn route(config: &GatingConfig, logits: &[f32], bias: Option<&[f32]>) -> (Vec<ExpertId>, Vec<f32>) {
    let decisions = route_layer(config, logits, bias, "test").unwrap();
    (decisions.experts, decisions.weights)
}

fn assert_close(actual: &[f32], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            (f64::from(*a) - e).abs() < 1e-6,
            "{actual:?} vs {expected:?}"
        );
    }
}

#[test]
fn exp_is_exact_at_zero_and_within_two_ulp_elsewhere() {
    assert_eq!(exp_f32(0.0), 1.0);
    assert_eq!(exp_f32(-87.5), 0.0);
    assert_eq!(exp_f32(88.5), f32::INFINITY);
    let mut x = -86.9_f32;
    while x < 87.9 {
        let exact = f64::from(x).exp();
        let relative = (f64::from(exp_f32(x)) - exact).abs() / exact;
        assert!(relative < 2.5e-7, "exp({x}): relative error {relative}");
        x += 0.0137;
    }
}

#[test]
fn sigmoid_of_zero_is_one_half_and_saturates_to_exact_zero() {
    assert_eq!(sigmoid_f32(0.0), 0.5);
    assert_eq!(sigmoid_f32(-90.0), 0.0);
    assert_eq!(sigmoid_f32(90.0), 1.0);
}

#[test]
fn the_softmax_sum_follows_the_warp_butterfly_not_the_expert_order() {
    // Lanes 0 and 16 cancel at the first butterfly step (offset 16) before the 1s are added:
    // 15 pairs of 1 + 1 remain, 30. A left-to-right sum loses the 1s under 1e8 and gives 15.
    let mut partial = [1.0_f32; WARP_LANES];
    partial[0] = 1e8;
    partial[16] = -1e8;
    assert_eq!(butterfly_sum(partial), 30.0);
    assert_eq!(partial.iter().fold(0.0_f32, |s, &p| s + p), 15.0);
}

#[test]
fn softmax_top1_renormalized_has_weight_one() {
    // softmax([0, ln 3]) = [1/4, 3/4].
    let logits = [0.0, 3.0_f32.ln()];
    let (experts, weights) = route(&config(2, 1, Scoring::Softmax, None, true), &logits, None);
    assert_eq!(experts, [1]);
    assert_eq!(weights, [1.0]);
    let (_, raw) = route(&config(2, 1, Scoring::Softmax, None, false), &logits, None);
    assert_close(&raw, &[0.75]);
}

#[test]
fn equal_scores_go_to_the_lower_expert_id() {
    // Experts 1 and 3 tie at logit 3: both chosen, 1 first; renormalized w / (w + w) = 1/2
    // exactly. Unnormalized: e^3 / (e + 2 e^3 + e^2) = 0.3994863.
    let logits = [1.0, 3.0, 2.0, 3.0];
    let (experts, weights) = route(&config(4, 2, Scoring::Softmax, None, true), &logits, None);
    assert_eq!(experts, [1, 3]);
    assert_eq!(weights, [0.5, 0.5]);
    let (_, raw) = route(&config(4, 2, Scoring::Softmax, None, false), &logits, None);
    assert_close(&raw, &[0.399_486_3, 0.399_486_3]);
    let (experts, _) = route(&config(4, 1, Scoring::Softmax, None, true), &logits, None);
    assert_eq!(experts, [1]);
}

#[test]
fn sigmoid_scores_are_renormalized_over_the_chosen_experts() {
    // sigmoid([0, 2, -1]) = [0.5, 0.8807971, 0.2689414]; top-2 = experts 1, 0;
    // 0.8807971 / 1.3807971 = 0.6378903, 0.5 / 1.3807971 = 0.3621097.
    let logits = [0.0, 2.0, -1.0];
    let (experts, weights) = route(&config(3, 2, Scoring::Sigmoid, None, true), &logits, None);
    assert_eq!(experts, [1, 0]);
    assert_close(&weights, &[0.637_890_3, 0.362_109_7]);
}

#[test]
fn top_k_equal_to_the_expert_count_orders_every_expert() {
    // softmax([1, 3, 2]) = [0.0900306, 0.6652410, 0.2447285]: order 1, 2, 0.
    let (experts, weights) = route(
        &config(3, 3, Scoring::Softmax, None, true),
        &[1.0, 3.0, 2.0],
        None,
    );
    assert_eq!(experts, [1, 2, 0]);
    assert_close(&weights, &[0.665_241_0, 0.244_728_5, 0.090_030_6]);
}

#[test]
fn the_bias_chooses_the_experts_but_not_their_weights() {
    // Every score is sigmoid(0) = 0.5; the bias ranks expert 3, then 1.
    let bias = [0.0, 0.1, -0.1, 0.2];
    let sigmoid = config(4, 2, Scoring::Sigmoid, None, false);
    let (experts, weights) = route(&sigmoid, &[0.0; 4], Some(&bias));
    assert_eq!(experts, [3, 1]);
    assert_eq!(weights, [0.5, 0.5]);
}

#[test]
fn group_limited_selection_keeps_the_groups_with_the_best_top2_sums() {
    // Scores 0.5 + bias: [1.0, 0.5 | 0.75, 0.75 | 0.875, 0.5 | 0.625, 0.625];
    // group scores 1.5, 1.5, 1.375, 1.25. Top-2 groups: 0 and 1, so expert 4 (0.875, second
    // best overall) is excluded: top-2 = expert 0, then 2 (ties 3, lower id wins).
    let bias = [0.5, 0.0, 0.25, 0.25, 0.375, 0.0, 0.125, 0.125];
    let logits = [0.0; 8];
    let limited = config(8, 2, Scoring::Sigmoid, Some((4, 2)), true);
    let (experts, weights) = route(&limited, &logits, Some(&bias));
    assert_eq!(experts, [0, 2]);
    assert_eq!(weights, [0.5, 0.5]);
    let unlimited = config(8, 2, Scoring::Sigmoid, None, true);
    assert_eq!(route(&unlimited, &logits, Some(&bias)).0, [0, 4]);
    // Groups 0 and 1 tie at 1.5: with one group allowed, the lower id (0) is kept.
    let one_group = config(8, 2, Scoring::Sigmoid, Some((4, 1)), true);
    assert_eq!(route(&one_group, &logits, Some(&bias)).0, [0, 1]);
}

#[test]
fn excluded_experts_stay_excluded_when_every_score_is_negative() {
    // All selection scores are 0.5 - 1 = -0.5, so all groups tie and group 0 is kept. Masking
    // excluded experts with 0.0 (instead of -inf) would pick experts of other groups here.
    let bias = [-1.0; 8];
    let one_group = config(8, 2, Scoring::Sigmoid, Some((4, 1)), true);
    assert_eq!(route(&one_group, &[0.0; 8], Some(&bias)).0, [0, 1]);
}

#[test]
fn a_layer_routes_token_after_token() {
    let logits = [0.0, 3.0_f32.ln(), 3.0_f32.ln(), 0.0];
    let top1 = config(2, 1, Scoring::Softmax, None, true);
    let decisions = route_layer(&top1, &logits, None, "l").unwrap();
    assert_eq!(decisions.experts, [1, 0]);
    assert_eq!(decisions.weights, [1.0, 1.0]);
}

#[test]
fn bad_logits_and_bias_are_named() {
    let softmax = config(2, 1, Scoring::Softmax, None, true);
    let error =
        |result: Result<LayerDecisions>| result.err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        error(route_layer(
            &softmax,
            &[0.0, 1.0, f32::NAN, 0.0],
            None,
            "x.npy layer 0"
        )),
        "x.npy layer 0: token 1 expert 0: logit NaN is not finite"
    );
    assert_eq!(
        error(route_layer(&softmax, &[0.0, 1.0, 2.0], None, "x.npy")),
        "x.npy: 3 logits are not a whole number of rows of 2 experts"
    );
    assert_eq!(
        error(route_layer(&softmax, &[0.0, 1.0], Some(&[0.0]), "x.npy")),
        "the score-correction bias has 1 values for 2 experts"
    );
    assert_eq!(
        error(route_layer(
            &softmax,
            &[0.0, 1.0],
            Some(&[0.0, f32::INFINITY]),
            "x.npy"
        )),
        "the score-correction bias of expert 1 is inf, not finite"
    );
}
