use super::*;

/// Loads with one row per layer (all rows as long as the first).
pub(super) fn loads(rows: Vec<Vec<f64>>) -> ExpertLoads {
    ExpertLoads::new(rows[0].len(), rows).unwrap()
}

fn layer(gpu_experts: Vec<Vec<u16>>) -> LayerPlacement {
    LayerPlacement { gpu_experts }
}

#[test]
fn baselines_give_hand_computed_gpu_loads() {
    let l = loads(vec![vec![4.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 6.0]]);
    let request = PlacementRequest::new(&l, 2);
    assert_eq!(request.slots_per_gpu, 4);

    let contiguous = strategy("contiguous").unwrap().place(&request).unwrap();
    assert_eq!(contiguous.experts_on(0, 0), &[0, 1, 2, 3]);
    // GPU 0: 4 + 3 + 2 + 1; GPU 1: 0 + 0 + 0 + 6.
    assert_eq!(contiguous.gpu_loads(&l).unwrap(), vec![vec![10.0, 6.0]]);

    let round_robin = strategy("round-robin").unwrap().place(&request).unwrap();
    assert_eq!(round_robin.experts_on(0, 1), &[1, 3, 5, 7]);
    // GPU 0: 4 + 2 + 0 + 0; GPU 1: 3 + 1 + 0 + 6.
    assert_eq!(round_robin.gpu_loads(&l).unwrap(), vec![vec![6.0, 10.0]]);
}

#[test]
fn uneven_counts_spread_by_at_most_one() {
    let l = loads(vec![vec![1.0; 6], vec![2.0; 6]]);
    let request = PlacementRequest::new(&l, 4);
    assert_eq!(request.slots_per_gpu, 2);
    let contiguous = Contiguous.place(&request).unwrap();
    // e * 4 / 6: 0, 0, 1, 2, 2, 3.
    assert_eq!(
        contiguous.layer(1).gpu_experts,
        vec![vec![0, 1], vec![2], vec![3, 4], vec![5]]
    );
    let round_robin = RoundRobin.place(&request).unwrap();
    assert_eq!(
        round_robin.layer(0).gpu_experts,
        vec![vec![0, 4], vec![1, 5], vec![2], vec![3]]
    );
    assert_eq!(round_robin.num_layers(), 2);
    assert_eq!(round_robin.replicas_of(1, 5), &[1]);
}

#[test]
fn too_few_slots_say_by_how_much() {
    let l = loads(vec![vec![1.0; 8]]);
    let request = PlacementRequest {
        slots_per_gpu: 3,
        ..PlacementRequest::new(&l, 2)
    };
    let err = Contiguous.place(&request).unwrap_err().to_string();
    assert!(
        err.contains("fullest GPU needs 4 slots but has 3 (1 short)"),
        "{err}"
    );
    let request = PlacementRequest {
        num_nodes: 3,
        ..PlacementRequest::new(&l, 2)
    };
    let err = RoundRobin.place(&request).unwrap_err().to_string();
    assert!(
        err.contains("num_nodes (3) must divide num_gpus (2)"),
        "{err}"
    );
}

#[test]
fn replicas_split_an_experts_load() {
    // Expert 0 on both GPUs; experts 1 and 2 once each.
    let placement = Placement::new(2, 3, 2, vec![layer(vec![vec![0, 1], vec![2, 0]])]).unwrap();
    assert_eq!(placement.replicas_of(0, 0), &[0, 1]);
    assert_eq!(placement.replicas_of(0, 2), &[1]);
    let l = loads(vec![vec![6.0, 1.0, 2.0]]);
    // GPU 0: 6 / 2 + 1; GPU 1: 2 + 6 / 2.
    assert_eq!(placement.gpu_loads(&l).unwrap(), vec![vec![4.0, 5.0]]);
    // Two slots of one GPU for expert 0 (as EPLB gives on tied loads): each takes a third.
    let doubled = Placement::new(2, 3, 2, vec![layer(vec![vec![0, 0], vec![1, 2, 0]])]);
    assert!(doubled.is_err(), "GPU 1 has 3 experts in 2 slots");
    let doubled = Placement::new(2, 3, 3, vec![layer(vec![vec![0, 0], vec![1, 2, 0]])]).unwrap();
    assert_eq!(doubled.replicas_of(0, 0), &[0, 0, 1]);
    // GPU 0: 6 / 3 + 6 / 3; GPU 1: 1 + 2 + 6 / 3.
    assert_eq!(doubled.gpu_loads(&l).unwrap(), vec![vec![4.0, 5.0]]);
    let wrong = loads(vec![vec![1.0; 3], vec![1.0; 3]]);
    let err = placement.gpu_loads(&wrong).unwrap_err().to_string();
    assert!(err.contains("loads cover 2 layers x 3 experts"), "{err}");
}

#[test]
fn invalid_placements_name_the_fault() {
    let cases = [
        (
            vec![vec![0, 1], vec![1]],
            "layer 0: expert 2 has no replica",
        ),
        (
            vec![vec![0, 1], vec![2, 3]],
            "GPU 1 slot 1: expert 3 is out of range (3 experts)",
        ),
        (
            vec![vec![0, 1, 2], vec![]],
            "GPU 0 holds 3 experts but has 2 slots",
        ),
        (vec![vec![0, 1, 2]], "lists 1 GPUs, expected 2"),
    ];
    for (gpu_experts, expected) in cases {
        let err = Placement::new(2, 3, 2, vec![layer(gpu_experts)])
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn placements_round_trip_through_json_and_are_checked_on_load() {
    let l = loads(vec![vec![1.0; 4]]);
    let placement = RoundRobin.place(&PlacementRequest::new(&l, 2)).unwrap();
    let json = serde_json::to_string(&placement).unwrap();
    assert_eq!(
        json,
        r#"{"num_gpus":2,"num_experts":4,"slots_per_gpu":2,"layers":[{"gpu_experts":[[0,2],[1,3]]}]}"#
    );
    let back: Placement = serde_json::from_str(&json).unwrap();
    assert_eq!(back, placement);
    assert_eq!(back.replicas_of(0, 3), &[1]);
    let broken = json.replace("[1,3]", "[1]");
    let err = serde_json::from_str::<Placement>(&broken)
        .unwrap_err()
        .to_string();
    assert!(err.contains("expert 3 has no replica"), "{err}");
}

#[test]
fn unknown_strategies_list_the_known_ones() {
    let err = strategy("random").err().unwrap().to_string();
    assert!(
        err.contains(
            "unknown placement strategy `random`; known: contiguous, round-robin, eplb, \
             ilp-balance, ilp-affinity, topology-aware"
        ),
        "{err}"
    );
    for name in STRATEGIES.names() {
        assert_eq!(strategy(name).unwrap().name, name);
    }
}

/// A file of the shared third-party data, or `None` (with a notice) when it is not available.
pub(super) fn shared_data(relative: &str) -> Option<std::path::PathBuf> {
    let Some(root) = std::env::var_os("MOESIM_SHARED_DATA") else {
        eprintln!("skipping: MOESIM_SHARED_DATA not set");
        return None;
    };
    let path = std::path::Path::new(&root).join(relative);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} not found", path.display());
        None
    }
}

#[test]
fn exflow_placements_are_valid_placements() {
    for experts in [8usize, 32, 128] {
        let Some(path) = shared_data(&format!("exflow-placements/switch-exp{experts}-gpu8.json"))
        else {
            return;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let layers: Vec<Vec<Vec<u16>>> = serde_json::from_str(&text).unwrap();
        let layers = layers.into_iter().map(layer).collect();
        let placement = Placement::new(8, experts, experts / 8, layers).unwrap();
        assert_eq!(placement.num_layers(), 6);
        // ExFlow places every expert exactly once.
        assert!((0..experts).all(|e| placement.replicas_of(5, e).len() == 1));
    }
}

#[test]
fn contiguous_deepseek_loads_are_skewed_as_published() {
    let files = [
        "decode_in1000out1000",
        "decode_in2000out100",
        "prefill_in1024",
        "prefill_in2000out100",
        "prefill_in4096",
        "prefill_in500out1500",
    ];
    for file in files {
        let Some(path) = shared_data(&format!("deepseek-v3-expert-load/{file}.json")) else {
            return;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let rows: Vec<Vec<f64>> = serde_json::from_value(value["logical_count"].clone()).unwrap();
        let mut l = ExpertLoads::new(256, rows).unwrap();
        assert_eq!(l.drop_empty_layers().len(), 58);
        let request = PlacementRequest {
            num_nodes: 4,
            ..PlacementRequest::new(&l, 32)
        };
        let placement = Contiguous.place(&request).unwrap();
        let gpu_loads = placement.gpu_loads(&l).unwrap();
        let mut imbalance: Vec<f64> = gpu_loads
            .iter()
            .enumerate()
            .map(|(layer, gpus)| {
                // Without replicas every token lands somewhere: GPU loads sum to the layer's.
                let total: f64 = gpus.iter().sum();
                assert!((total - l.layer_total(layer)).abs() < 1e-6 * total);
                gpus.iter().cloned().fold(0.0, f64::max) / (total / 32.0)
            })
            .collect();
        imbalance.sort_by(f64::total_cmp);
        // Published: contiguous EP32 leaves the busiest GPU at about 2-5x the mean.
        let median = imbalance[imbalance.len() / 2];
        assert!(
            (1.9..3.0).contains(&median),
            "{file}: median max/mean {median}"
        );
        assert!(imbalance[0] > 1.3, "{file}: min max/mean {}", imbalance[0]);
    }
}
