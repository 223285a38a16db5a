//! Predictors judged on small hand-made traces with hand-counted answers.

use super::PREDICTORS;
use super::evaluate::{Evaluation, evaluate};
use crate::registry::Settings;
use crate::trace::{ExpertId, LayerRouting, Phase, RoutingTrace, TokenMeta};

fn trace(k: usize, experts: usize, layers: Vec<Vec<ExpertId>>, meta: TokenMeta) -> RoutingTrace {
    let layers = layers
        .into_iter()
        .map(|l| LayerRouting::fixed_k(k, l, None).unwrap())
        .collect();
    RoutingTrace::new(experts, layers, meta).unwrap()
}

fn run(name: &str, settings: &str, trace: &RoutingTrace, fit: f64) -> Evaluation {
    let settings: Settings = toml::from_str(settings).unwrap();
    let mut predictor = PREDICTORS.build(name, &settings).unwrap();
    evaluate(name, predictor.strategy.as_mut(), trace, fit).unwrap()
}

/// Layer 1's expert is layer 0's plus one (mod 4): learnt from tokens 0..4, right on 4..8.
#[test]
fn transition_learns_a_deterministic_map() {
    let first: Vec<ExpertId> = (0..8).map(|t| t % 4).collect();
    let second = first.iter().map(|e| (e + 1) % 4).collect();
    let eval = run(
        "transition",
        "",
        &trace(1, 4, vec![first, second], TokenMeta::default()),
        0.5,
    );
    assert_eq!((eval.fit_tokens, eval.eval_tokens), (4, 4));
    // Layer 0 has no layer before it: all 4 judged tokens unpredicted.
    assert_eq!((eval.layers[0].tokens, eval.layers[0].unpredicted), (4, 4));
    assert_eq!(eval.layers[0].top1_hit_rate, None);
    assert_eq!(eval.layers[1].unpredicted, 0);
    assert_eq!(eval.layers[1].top1_hit_rate, Some(1.0));
    assert_eq!(eval.overall.topk_hit_rate, Some(1.0));
    assert_eq!(eval.overall.recall, Some(1.0));
    assert_eq!((eval.overall.tokens, eval.overall.unpredicted), (8, 4));
}

/// Fitted: expert 0 went on to 1 twice and to 2 once, so 0 predicts 1; expert 3 was never seen.
#[test]
fn transition_predicts_the_most_frequent_successor() {
    let first = vec![0, 0, 0, 0, 0, 3];
    let second = vec![1, 1, 2, 1, 2, 0];
    let eval = run(
        "transition",
        "",
        &trace(1, 4, vec![first, second], TokenMeta::default()),
        0.5,
    );
    // Judged tokens 3, 4, 5: 0 -> 1 (hit), 0 -> 2 (miss), 3 -> unseen (unpredicted).
    assert_eq!(eval.layers[1].unpredicted, 1);
    assert_eq!(eval.layers[1].top1_hit_rate, Some(0.5));
}

fn top2_trace() -> RoutingTrace {
    let layer: Vec<ExpertId> = (0..20).flat_map(|t| [t % 8, (t + 3) % 8]).collect();
    trace(2, 8, vec![layer.clone(), layer], TokenMeta::default())
}

#[test]
fn oracle_accuracy_one_is_always_right_and_zero_always_wrong() {
    let right = run("oracle", "accuracy = 1.0", &top2_trace(), 0.5);
    assert_eq!(right.overall.top1_hit_rate, Some(1.0));
    assert_eq!(right.overall.topk_hit_rate, Some(1.0));
    assert_eq!((right.overall.tokens, right.overall.unpredicted), (20, 0));
    let wrong = run("oracle", "accuracy = 0.0", &top2_trace(), 0.5);
    assert_eq!(wrong.overall.topk_hit_rate, Some(0.0));
    assert_eq!(wrong.overall.recall, Some(0.0));
}

#[test]
fn oracle_is_reproducible_by_seed() {
    let half = |seed| {
        run(
            "oracle",
            &format!("accuracy = 0.5\nseed = {seed}"),
            &top2_trace(),
            0.5,
        )
    };
    assert_eq!(half(7), half(7));
    let rate = half(7).overall.topk_hit_rate.unwrap();
    assert!((0.2..=0.8).contains(&rate), "{rate}");
}

/// Rows (request, position, phase, expert); judged from row 1 on.
#[test]
fn history_repeats_the_previous_decode_step() {
    let rows = [
        (1, 0, Phase::Prefill, 0),
        (1, 1, Phase::Decode, 0),  // previous row 0: 0, hit
        (2, 0, Phase::Prefill, 1), // prefill: unpredicted
        (1, 2, Phase::Decode, 2),  // previous row 1: 0, miss
        (2, 1, Phase::Decode, 1),  // previous row 2: 1, hit
        (3, 5, Phase::Decode, 3),  // no position 4 of request 3: unpredicted
    ];
    let meta = TokenMeta {
        request_id: Some(rows.iter().map(|r| r.0).collect()),
        position: Some(rows.iter().map(|r| r.1).collect()),
        phase: Some(rows.iter().map(|r| r.2).collect()),
        ..TokenMeta::default()
    };
    let experts = rows.iter().map(|r| r.3).collect();
    let eval = run("history", "", &trace(1, 4, vec![experts], meta), 0.2);
    assert_eq!((eval.fit_tokens, eval.eval_tokens), (1, 5));
    assert_eq!((eval.overall.tokens, eval.overall.unpredicted), (5, 2));
    assert_eq!(eval.overall.top1_hit_rate, Some(2.0 / 3.0));
}

#[test]
fn bad_settings_and_traces_are_named() {
    let no_meta = top2_trace();
    let mut history = PREDICTORS.build("history", &Settings::new()).unwrap();
    let err = evaluate("history", history.strategy.as_mut(), &no_meta, 0.5).unwrap_err();
    assert!(err.contains("request_id"), "{err}");
    for fit in [0.0, 1.0, 0.01] {
        let err = evaluate("history", history.strategy.as_mut(), &no_meta, fit).unwrap_err();
        assert!(err.contains("fit fraction"), "{err}");
    }
    let settings: Settings = toml::from_str("accuracy = 1.5").unwrap();
    let err = PREDICTORS.build("oracle", &settings).err().unwrap();
    assert!(err.contains("accuracy"), "{err}");
    assert!(PREDICTORS.build("psychic", &Settings::new()).is_err());
}
