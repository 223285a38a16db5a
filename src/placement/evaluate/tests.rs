use super::*;
use crate::placement::LayerPlacement;
use crate::placement::tests::shared_data;
use crate::trace::RoutingTrace;

fn placement(gpus: usize, experts: usize, slots: usize, layers: Vec<Vec<Vec<u16>>>) -> Placement {
    let layers = layers
        .into_iter()
        .map(|gpu_experts| LayerPlacement { gpu_experts })
        .collect();
    Placement::new(gpus, experts, slots, layers).unwrap()
}

fn bare() -> EvalContext<'static> {
    EvalContext::bare()
}

#[test]
fn top2_with_a_replica_is_hand_computed() {
    // Layer 0: GPU 0 [0 1], GPU 1 [2 0] (expert 0 on both); layer 1: GPU 0 [0], GPU 1 [1 2].
    let p = placement(
        2,
        3,
        2,
        vec![vec![vec![0, 1], vec![2, 0]], vec![vec![0], vec![1, 2]]],
    );
    // Token 0: [0 2] then [1 2]; token 1: [1 2] then [0 1].
    let ids = [0, 2, 1, 2, 1, 2, 0, 1];
    let trace = Trace::Tokens(RoutingTrace::from_dense(3, 2, 2, &ids).unwrap());
    let eval = evaluate(&p, &trace, bare()).unwrap();
    // Layer 0 loads e = [1 1 2]: GPU 0 = 1/2 + 1, GPU 1 = 2 + 1/2; max/mean 2.5 / 2.
    assert_eq!(eval.layers[0].gpu_loads, vec![1.5, 2.5]);
    assert_eq!(eval.layers[0].max_mean, 1.25);
    // Layer 1 loads e = [1 2 1]: GPU 0 = 1, GPU 1 = 3.
    assert_eq!(eval.layers[1].gpu_loads, vec![1.0, 3.0]);
    assert_eq!(eval.summary.mean_max_mean, (1.25 + 1.5) / 2.0);
    // Token 0's four pairs all share GPU 1 (expert 0 has a replica there). Token 1: (1,0) on
    // GPU 0 and (2,1) on GPU 1 stay; (1,1) and (2,0) cross: 2 of 8.
    assert_eq!(eval.layers[0].cross_gpu_fraction, Some(0.25));
    assert_eq!(eval.layers[1].cross_gpu_fraction, None);
    assert_eq!(eval.summary.cross_gpu_fraction, Some(0.25));
    assert_eq!(eval.summary.num_tokens, Some(2));
    // Aggregate loads: same GPU loads, no transitions.
    let loads = Trace::Loads(trace.expert_loads());
    let eval = evaluate(&p, &loads, bare()).unwrap();
    assert_eq!(eval.layers[1].gpu_loads, vec![1.0, 3.0]);
    assert_eq!(
        (
            eval.summary.cross_gpu_fraction,
            eval.layers[0].cross_gpu_fraction
        ),
        (None, None)
    );
    let json = serde_json::to_string(&eval.layers[0]).unwrap();
    assert_eq!(json, r#"{"layer":0,"gpu_loads":[1.5,2.5],"max_mean":1.25}"#);
}

#[test]
fn cluster_and_model_add_nodes_and_memory() {
    // 16 experts, one per GPU, on two 8-GPU H800 machines; 3 top-1 tokens over 2 layers:
    // 0 -> 8 (other machine), 1 -> 2 (same machine), 3 -> 3 (same GPU).
    let one_each: Vec<Vec<u16>> = (0..16).map(|e| vec![e]).collect();
    let p = placement(16, 16, 1, vec![one_each.clone(), one_each]);
    let trace = Trace::Tokens(RoutingTrace::from_dense(16, 2, 1, &[0, 8, 1, 2, 3, 3]).unwrap());
    let model = MoeModel::preset("switch-base-16").unwrap();
    let cluster = Cluster::preset("hgx-h800x2").unwrap();
    let context = EvalContext {
        model: Some(&model),
        cluster: Some(&cluster),
    };
    let eval = evaluate(&p, &trace, context).unwrap();
    let layer = &eval.layers[0];
    assert_eq!(layer.cross_gpu_fraction, Some(2.0 / 3.0));
    assert_eq!(layer.cross_node_fraction, Some(1.0 / 3.0));
    // Three tokens on 16 GPUs: the busiest GPU has 1, the mean 3/16.
    assert_eq!(layer.max_mean, 16.0 / 3.0);
    // One BF16 ReLU expert: 2 matrices x 768 x 3072 x 2 bytes.
    assert_eq!(layer.peak_memory_bytes, Some(9_437_184));
    assert_eq!(eval.summary.gpu_memory_bytes, Some(vec![2 * 9_437_184; 16]));
}

#[test]
fn mismatched_shapes_are_named() {
    let p = placement(2, 3, 2, vec![vec![vec![0, 1], vec![2]]]);
    let trace = Trace::Tokens(RoutingTrace::from_dense(3, 2, 1, &[0, 1]).unwrap());
    let err = evaluate(&p, &trace, bare()).unwrap_err().to_string();
    assert!(
        err.contains("the trace has 2 layers x 3 experts but the placement 1 x 3"),
        "{err}"
    );
    let cluster = Cluster::preset("dgx-h100").unwrap();
    let trace = Trace::Tokens(RoutingTrace::from_dense(3, 1, 1, &[0, 1]).unwrap());
    let context = EvalContext {
        cluster: Some(&cluster),
        ..bare()
    };
    let err = evaluate(&p, &trace, context).unwrap_err().to_string();
    assert!(err.contains("has 8 GPUs but the placement 2"), "{err}");
}

#[test]
fn exflow_placements_measure_as_computed_independently() {
    // Cross-GPU transitions per layer and the busiest GPU's tokens per layer, computed with
    // numpy from the same files (40,800 tokens, 5 transitions each; mean GPU load 5100).
    let expected: [(usize, [u64; 5], [u64; 6]); 3] = [
        (
            8,
            [13410, 18766, 20658, 18213, 23614],
            [7092, 10811, 11523, 12897, 12456, 9927],
        ),
        (
            32,
            [6027, 6412, 7283, 5390, 6854],
            [6688, 8578, 7147, 9322, 8983, 11387],
        ),
        (
            128,
            [3989, 4894, 6322, 7555, 3492],
            [9118, 9038, 10576, 13185, 17458, 17115],
        ),
    ];
    for (experts, cross, busiest) in expected {
        let Some(placement_path) =
            shared_data(&format!("exflow-placements/switch-exp{experts}-gpu8.json"))
        else {
            return;
        };
        let Some(trace_path) = shared_data(&format!("switch-top1/switch-base-{experts}.trace.npy"))
        else {
            return;
        };
        let text = std::fs::read_to_string(placement_path).unwrap();
        let layers: Vec<Vec<Vec<u16>>> = serde_json::from_str(&text).unwrap();
        let p = placement(8, experts, experts / 8, layers);
        let trace = crate::trace::load(&trace_path).unwrap();
        let eval = evaluate(&p, &trace, bare()).unwrap();
        for (layer, &count) in cross.iter().enumerate() {
            assert_eq!(
                eval.layers[layer].cross_gpu_fraction,
                Some(count as f64 / 40_800.0),
                "switch-{experts} layer {layer}"
            );
        }
        for (layer, &tokens) in busiest.iter().enumerate() {
            assert_eq!(eval.layers[layer].max_mean, tokens as f64 / 5100.0);
        }
        let total: u64 = cross.iter().sum();
        assert_eq!(
            eval.summary.cross_gpu_fraction,
            Some(total as f64 / 204_000.0)
        );
    }
}

#[test]
fn empty_layers_do_not_dilute_the_mean() {
    let p = placement(2, 3, 2, vec![vec![vec![0, 1], vec![2, 0]]; 2]);
    let loads = crate::trace::ExpertLoads::new(3, vec![vec![1.0, 0.0, 3.0], vec![0.0; 3]]).unwrap();
    let eval = evaluate(&p, &Trace::Loads(loads), bare()).unwrap();
    // Layer 0: GPU 0 = 1/2, GPU 1 = 3 + 1/2: 3.5 / 2. Layer 1 is empty (max/mean 1).
    assert_eq!(eval.layers[0].max_mean, 1.75);
    assert_eq!(eval.layers[1].max_mean, 1.0);
    assert_eq!(eval.summary.mean_max_mean, 1.75);
}
