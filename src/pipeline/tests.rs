//! The pipeline end to end on the quickstart scenario and on hand-made set-ups.

use std::path::{Path, PathBuf};

use super::evaluate::evaluate_placement;
use super::*;
use crate::placement::LayerPlacement;
use crate::placement::dispatch::plan_tokens;
use crate::placement::{Placement, strategy};
use crate::scenario::QUICKSTART_TOML;
use crate::trace::{RoutingTrace, Trace};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// The quickstart scenario with `extra` appended after its top-level keys.
fn quickstart_with(extra: &str) -> Scenario {
    let text = QUICKSTART_TOML.replace("seed = 7", &format!("seed = 7\n{extra}"));
    Scenario::parse(&text, &scenarios_dir()).unwrap()
}

#[test]
fn tp_must_divide_the_gpus_and_a_machine() {
    let err = Setup::from_scenario(&quickstart_with("tp = 3"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("`tp` = 3 must divide the 8"), "{err}");
}

#[test]
fn the_analytical_estimate_and_the_simulation_price_the_same_steps() {
    // 4096 tokens on 8 GPUs, schedule prefill 64/GPU then 3 x decode 8/GPU: cycles of
    // 512 + 3 x 64 = 704 tokens, five whole ones (3520) and then prefill 512, decode 64: 22
    // steps, whose boundaries are listed here by hand.
    let scenario = quickstart_with(
        "schedule = [{ phase = \"prefill\", tokens_per_gpu = 64 }, \
         { phase = \"decode\", tokens_per_gpu = 8, repeat = 3 }]",
    );
    let scenario = Scenario {
        placements: vec!["contiguous".into()],
        sim: crate::sim::SimConfig {
            overlap: vec!["none".into()],
            ..Default::default()
        },
        ..scenario
    };
    let result = run(&scenario).unwrap();
    assert_eq!(result.steps, 22);
    assert_eq!(result.simulated.steps, 22);
    let mut bounds = Vec::new();
    for cycle in 0..6 {
        let start = cycle * 704;
        bounds.extend([start, start + 512, start + 576, start + 640]);
    }
    bounds.truncate(22);
    bounds.push(4096);
    let setup = Setup::from_scenario(&scenario).unwrap();
    let placement = strategy("contiguous")
        .unwrap()
        .place(&crate::placement::PlacementRequest::new(
            &setup.trace.expert_loads(),
            8,
        ))
        .unwrap();
    let cost = setup.analytical_cost();
    let Trace::Tokens(routing) = &setup.trace else {
        panic!("the quickstart trace is token-level");
    };
    for layer in [0, 15] {
        let total: u64 = bounds
            .windows(2)
            .map(|pair| {
                let tokens = routing.slice_tokens(pair[0]..pair[1]);
                let plan = plan_tokens(&setup.cluster, &placement, layer, tokens.layer(layer));
                cost.estimate(layer, &plan.unwrap()).unwrap().step_ns
            })
            .sum();
        assert_eq!(
            result.strategies[0].layers[layer].step_ns,
            total.div_ceil(22),
            "layer {layer}"
        );
    }
    let sim = &result.simulated.strategies[0];
    assert_eq!(sim.steps.len(), 22);
    let tokens: Vec<usize> = sim.steps.iter().map(|s| s.tokens).collect();
    assert_eq!(tokens[..5], [512, 64, 64, 64, 512]);
    assert_eq!(tokens[20..], [512, 64]);
}

#[test]
fn place_eval_prices_the_steps_of_its_set_up_with_bytes_per_link() {
    // 16 experts, one per GPU, on two 8-GPU H800 machines; 3 top-1 tokens over 2 layers:
    // 0 -> 8 (other machine), 1 -> 2 (same machine), 3 -> 3 (same GPU). One step of 16 x 1
    // tokens holds all three.
    let one_each: Vec<Vec<u16>> = (0..16).map(|e| vec![e]).collect();
    let layers = vec![
        LayerPlacement {
            gpu_experts: one_each.clone(),
        };
        2
    ];
    let placement = Placement::new(16, 16, 1, layers).unwrap();
    let trace = Trace::Tokens(RoutingTrace::from_dense(16, 2, 1, &[0, 8, 1, 2, 3, 3]).unwrap());
    let text = "name = \"t\"\nmodel = \"switch-base-16\"\ncluster = \"hgx-h800x2\"\n\
                tokens_per_gpu = 1\nplacements = [\"contiguous\"]\n[trace]\nfile = \"x\"\n\
                [sim]\noverlap = [\"none\", \"dual-batch\"]\n";
    let scenario = Scenario::parse(text, Path::new("")).unwrap();
    let setup = Setup::new(&scenario, trace, "t".into()).unwrap();
    let report = evaluate_placement(&placement, &setup).unwrap();
    assert_eq!(report.steps, Some(1));
    let layer = &report.layers[0];
    assert_eq!(layer.placement.cross_node_fraction, Some(1.0 / 3.0));
    // Token t starts on GPU t * 16 / 3: token 1 on GPU 5 goes to expert 1 on GPU 1 over
    // NVLink: 768 FP8 bytes there, 1536 BF16 bytes back.
    let bytes = |name: &str| {
        let links = layer.link_bytes.as_ref().unwrap();
        links.iter().find(|l| l.link == name).map(|l| l.bytes)
    };
    assert_eq!(bytes("n0/gpu5->n0/nvswitch"), Some(768));
    assert_eq!(bytes("n0/nvswitch->n0/gpu5"), Some(1536));
    assert_eq!(
        bytes("n0/gpu0->n0/nvswitch"),
        None,
        "token 0 stays on GPU 0"
    );
    assert!(layer.step_ns.is_some_and(|ns| ns > 0));
    let simulated = report.simulated.unwrap();
    let overlaps: Vec<&str> = simulated.iter().map(|s| s.overlap.as_str()).collect();
    assert_eq!(overlaps, ["none", "dual-batch"]);
    // One step: the mean is the step and its 99th percentile.
    assert!(simulated.iter().all(|s| s.step_ns == s.p99_step_ns));
    let json = serde_json::to_value(&report.layers[1]).unwrap();
    assert!(
        json.get("cross_gpu_fraction").is_none(),
        "the last layer has no transitions"
    );
    assert!(json["step_ns"].as_u64().is_some());
}
