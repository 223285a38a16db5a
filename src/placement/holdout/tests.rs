use super::*;
use crate::placement::tests::shared_data;
use crate::trace::RoutingTrace;

#[test]
fn round_robin_on_a_split_tiny_trace_is_hand_computed() {
    // Tokens (layer 0 expert, layer 1 expert): (0 0) (0 2) | (0 3) (1 1).
    let all = Trace::Tokens(RoutingTrace::from_dense(4, 2, 1, &[0, 0, 0, 2, 0, 3, 1, 1]).unwrap());
    let fit = token_part(&all, TokenPart::First(0.5)).unwrap();
    let held_out = token_part(&all, TokenPart::Rest(0.5)).unwrap();
    assert_eq!(fit.tokens().unwrap().layer(1).experts(), &[0, 2]);
    assert_eq!(held_out.tokens().unwrap().layer(1).experts(), &[3, 1]);
    let case = HoldoutCase {
        name: "tiny".into(),
        fit: &fit,
        held_out: &held_out,
        num_gpus: 2,
        slots_per_gpu: 2,
        num_nodes: 1,
        num_groups: 1,
    };
    let rows = compare(&case, &["round-robin"]).unwrap();
    // Experts 0, 2 on GPU 0. In sample both layers load [2 0] and nothing crosses; out of
    // sample layer 0 loads [1 1], layer 1 [0 2], and token (0 -> 3) crosses.
    assert_eq!(
        markdown_table(&rows).lines().nth(2),
        Some("| tiny | round-robin | 2.0000 | 1.5000 | 0.0000 | 0.5000 |")
    );
}

#[test]
fn bad_splits_say_why() {
    let all = Trace::Tokens(RoutingTrace::from_dense(2, 1, 1, &[0, 1, 1]).unwrap());
    let cases = [
        (TokenPart::First(0.0), "got 0"),
        (TokenPart::Rest(1.0), "got 1"),
        (TokenPart::First(0.2), "0.2 of 3 tokens leaves no tokens"),
    ];
    for (part, expected) in cases {
        let err = token_part(&all, part).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
    // floor(0.5 x 3) = 1: one token fitted, two held out.
    assert_eq!(
        token_part(&all, TokenPart::Rest(0.5))
            .unwrap()
            .tokens()
            .unwrap()
            .num_tokens(),
        2
    );
    let loads = Trace::Loads(all.expert_loads());
    let err = token_part(&loads, TokenPart::First(0.5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs a token-level trace"), "{err}");
}

#[test]
fn eplb_advantage_shrinks_out_of_sample_but_stays_ahead() {
    let Some(root) = shared_data("") else {
        return;
    };
    let rows = example_rows(&root, false).unwrap();
    // The committed example report shows exactly these numbers (beside the solvers' rows).
    let committed = include_str!("../../../reports/placement-example/report.md");
    for row in &rows {
        assert!(
            committed.contains(&markdown_row(row)),
            "regenerate the example report: {row:?}"
        );
    }
    let get = |case: usize, strategy: usize| &rows[case * 3 + strategy];
    for case in 0..2 {
        let (contiguous, round_robin, eplb) = (get(case, 0), get(case, 1), get(case, 2));
        assert!(
            eplb.in_sample_max_mean < eplb.out_of_sample_max_mean,
            "{eplb:?}"
        );
        let best_baseline = contiguous
            .out_of_sample_max_mean
            .min(round_robin.out_of_sample_max_mean);
        assert!(eplb.out_of_sample_max_mean < best_baseline, "{rows:?}");
    }
    // Measured: DeepSeek EPLB 1.166 in sample -> 1.498 out (round-robin 1.91, contiguous
    // 3.04); switch-base-128 EPLB 1.001 -> 1.045 (contiguous 2.17, round-robin 2.20).
    let pinned = [
        (0, 2, 1.16, 1.18, 1.48, 1.52),
        (0, 0, 2.27, 2.31, 3.02, 3.06),
        (1, 2, 1.0, 1.01, 1.03, 1.06),
        (1, 0, 2.15, 2.25, 2.14, 2.19),
    ];
    for (case, strategy, in_lo, in_hi, out_lo, out_hi) in pinned {
        let row = get(case, strategy);
        assert!((in_lo..in_hi).contains(&row.in_sample_max_mean), "{row:?}");
        assert!(
            (out_lo..out_hi).contains(&row.out_of_sample_max_mean),
            "{row:?}"
        );
    }
}
