//! Router configurations and seeded logits shared by the kernel tests (GPU and emulated).

use moesim::capture::gating::{GatingConfig, GroupLimit, Scoring};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `tokens x experts` seeded logits in [-4, 4); with `coarse`, rounded to quarters so that many
/// scores tie exactly and the lower-id rule is exercised.
pub fn logits(seed: u64, tokens: usize, experts: usize, coarse: bool) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..tokens * experts)
        .map(|_| {
            let x: f32 = rng.random_range(-4.0..4.0);
            if coarse { (x * 4.0).round() / 4.0 } else { x }
        })
        .collect()
}

/// One configuration to check: the gating, an optional bias, and whether logits are coarse.
pub struct Case {
    pub config: GatingConfig,
    pub bias: Option<Vec<f32>>,
    pub coarse: bool,
}

/// Every case of [`cases`] with seeded logits for `tokens` tokens (the case's position is the
/// seed).
pub fn cases_with_logits(tokens: usize) -> Vec<(Case, Vec<f32>)> {
    cases()
        .into_iter()
        .enumerate()
        .map(|(index, case)| {
            let values = logits(index as u64, tokens, case.config.num_experts(), case.coarse);
            (case, values)
        })
        .collect()
}

/// Asserts that two weight vectors are equal bit for bit, naming `what` when they are not.
pub fn assert_same_bits(got: &[f32], expected: &[f32], what: &str) {
    let bits = |w: &[f32]| w.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(got), bits(expected), "{what}");
}

/// Mixtral-, OLMoE-, Qwen2-MoE-, DeepSeek-V3-like routers, k = E, 1024 experts, and one
/// without renormalisation.
pub fn cases() -> Vec<Case> {
    let config = |e, k, scoring, groups: Option<(usize, usize)>, renormalize| {
        let limit = groups.map(|(groups, top_groups)| GroupLimit { groups, top_groups });
        GatingConfig::new(e, k, scoring, limit, renormalize).unwrap()
    };
    let bias: Vec<f32> = logits(9, 1, 256, false).iter().map(|b| b / 40.0).collect();
    let case = |config, bias, coarse| Case {
        config,
        bias,
        coarse,
    };
    vec![
        case(config(8, 2, Scoring::Softmax, None, true), None, false),
        case(config(8, 2, Scoring::Softmax, None, true), None, true),
        case(config(64, 8, Scoring::Softmax, None, true), None, false),
        case(config(60, 4, Scoring::Softmax, None, true), None, true),
        case(config(16, 16, Scoring::Softmax, None, true), None, false),
        case(
            config(256, 8, Scoring::Sigmoid, Some((8, 4)), true),
            Some(bias),
            false,
        ),
        case(config(1024, 4, Scoring::Softmax, None, true), None, false),
        case(config(128, 8, Scoring::Softmax, None, false), None, false),
    ]
}
