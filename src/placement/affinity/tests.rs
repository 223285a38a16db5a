use super::*;
use crate::analysis::imbalance::max_mean;
use crate::trace::importers::{ImportFormat, import};
use crate::trace::{ExpertLoads, RoutingTrace, Trace};

/// Share of consecutive-layer transitions (every pair of a token's experts) that change GPU, as
/// `placement::evaluate` measures it.
fn cross_gpu_fraction(trace: &RoutingTrace, placement: &Placement) -> f64 {
    let trace = Trace::Tokens(trace.clone());
    crate::placement::evaluate::evaluate(
        placement,
        &trace,
        crate::placement::evaluate::EvalContext::bare(),
    )
    .unwrap()
    .summary
    .cross_gpu_fraction
    .unwrap()
}

/// Per layer, the GPU token load's max / mean.
fn layer_max_means(placement: &Placement, loads: &ExpertLoads) -> Vec<f64> {
    placement
        .gpu_loads(loads)
        .unwrap()
        .iter()
        .map(|gpu_loads| max_mean(gpu_loads))
        .collect()
}

/// The switch-base trace with `experts` experts and ExFlow's placement of it on 8 GPUs, or
/// `None` (with a notice) without the shared data.
fn switch_case(experts: usize) -> Option<(RoutingTrace, Placement)> {
    let Some(root) = std::env::var_os("MOESIM_SHARED_DATA") else {
        eprintln!("skipping: MOESIM_SHARED_DATA not set");
        return None;
    };
    let root = std::path::Path::new(&root);
    let trace_path = root.join(format!("switch-top1/switch-base-{experts}.trace.npy"));
    let Trace::Tokens(trace) = import(&trace_path, Some(ImportFormat::Npy), Some(experts)).unwrap()
    else {
        panic!("an npy trace has tokens");
    };
    let exflow_path = root.join(format!("exflow-placements/switch-exp{experts}-gpu8.json"));
    let layers: Vec<Vec<Vec<ExpertId>>> =
        serde_json::from_str(&std::fs::read_to_string(exflow_path).unwrap()).unwrap();
    let slots = layers.iter().flatten().map(Vec::len).max().unwrap();
    let layers = layers
        .into_iter()
        .map(|gpu_experts| LayerPlacement { gpu_experts })
        .collect();
    Some((trace, Placement::new(8, experts, slots, layers).unwrap()))
}

/// Places the switch trace with `ilp-affinity` (`settings`) on 8 GPUs and compares with ExFlow
/// on the same trace: returns (ours, ExFlow) cross-GPU fractions and mean per-layer max/mean
/// loads.
fn compare_with_exflow(experts: usize, settings: AffinitySettings) -> Option<[(f64, f64); 2]> {
    let (trace, exflow) = switch_case(experts)?;
    let loads = trace.expert_loads();
    let request = PlacementRequest {
        transitions: Some(&trace),
        slots_per_gpu: exflow.slots_per_gpu(),
        ..PlacementRequest::new(&loads, 8)
    };
    let strategy = IlpAffinity {
        settings,
        ..IlpAffinity::default()
    };
    let ours = strategy.place(&request).unwrap();
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    let result = [
        (
            cross_gpu_fraction(&trace, &ours),
            cross_gpu_fraction(&trace, &exflow),
        ),
        (
            mean(layer_max_means(&ours, &loads)),
            mean(layer_max_means(&exflow, &loads)),
        ),
    ];
    eprintln!("switch-base-{experts}: (ours, exflow) cross-GPU, max/mean: {result:?}");
    Some(result)
}

#[test]
fn chained_experts_share_a_gpu_under_the_load_bound() {
    // 2 layers, 4 experts, 2 GPUs x 2 slots; two tokens each on (0 -> 2), (1 -> 3), (2 -> 1),
    // (3 -> 0). Every expert has load 2 per layer, so any two experts per GPU meet the bound.
    // Placing each chain's two experts on one GPU (two chains per GPU) crosses no GPU.
    let ids = [0, 2, 0, 2, 1, 3, 1, 3, 2, 1, 2, 1, 3, 0, 3, 0];
    let trace = RoutingTrace::from_dense(4, 2, 1, &ids).unwrap();
    let loads = trace.expert_loads();
    let request = PlacementRequest {
        transitions: Some(&trace),
        ..PlacementRequest::new(&loads, 2)
    };
    let placement = IlpAffinity::default().place(&request).unwrap();
    assert_eq!(cross_gpu_fraction(&trace, &placement), 0.0);
    for layer in 0..2 {
        assert!(
            placement
                .layer(layer)
                .gpu_experts
                .iter()
                .all(|e| e.len() == 2)
        );
    }
    for (first, second) in [(0, 2), (1, 3), (2, 1), (3, 0)] {
        assert_eq!(
            placement.replicas_of(0, first),
            placement.replicas_of(1, second)
        );
    }
    // Contiguous puts 0, 1 | 2, 3 in both layers: every transition crosses.
    let contiguous = crate::placement::Contiguous.place(&request).unwrap();
    assert_eq!(cross_gpu_fraction(&trace, &contiguous), 1.0);
}

#[test]
fn missing_transitions_too_few_slots_and_bad_settings_are_named() {
    let trace = RoutingTrace::from_dense(4, 2, 1, &[0, 1, 2, 3]).unwrap();
    let loads = trace.expert_loads();
    let err = IlpAffinity::default()
        .place(&PlacementRequest::new(&loads, 2))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ilp-affinity needs token-level routing"),
        "{err}"
    );
    let request = PlacementRequest {
        transitions: Some(&trace),
        slots_per_gpu: 1,
        ..PlacementRequest::new(&loads, 2)
    };
    let err = IlpAffinity::default()
        .place(&request)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("places each of 4 experts once but 2 GPUs x 1 slots give 2 (2 short)"),
        "{err}"
    );
    let cold = IlpAffinity {
        settings: AffinitySettings {
            end_temperature: 0.0,
            ..AffinitySettings::default()
        },
        ..IlpAffinity::default()
    };
    let request = PlacementRequest {
        transitions: Some(&trace),
        ..PlacementRequest::new(&loads, 2)
    };
    let err = cold.place(&request).unwrap_err().to_string();
    assert!(
        err.contains("ilp-affinity: `end_temperature` = 0 must be positive"),
        "{err}"
    );
    let below_one: crate::registry::Settings = "max_load_ratio = 0.9".parse().unwrap();
    let err = crate::placement::STRATEGIES
        .build("ilp-affinity", &below_one)
        .err()
        .unwrap();
    assert!(
        err.contains(
            "placement strategy `ilp-affinity`: `max_load_ratio` = 0.9 must be at least 1 (a \
             perfect split); use inf for no cap"
        ),
        "{err}"
    );
    // Its knobs sit in one table with `cross_node_weight`; another strategy's knob is refused.
    let knobs: crate::registry::Settings =
        "cross_node_weight = 2.0\nload_weight = 0.5\nmax_load_ratio = inf"
            .parse()
            .unwrap();
    crate::placement::STRATEGIES
        .build("ilp-affinity", &knobs)
        .unwrap();
    let alien: crate::registry::Settings = "comm_weight = 1.0".parse().unwrap();
    let err = crate::placement::STRATEGIES
        .build("ilp-affinity", &alien)
        .err()
        .unwrap();
    assert!(err.contains("unknown field `comm_weight`"), "{err}");
}

#[test]
fn switch_8_beats_exflow_on_transitions_and_ties_on_load() {
    // One expert per GPU: every placement has the same GPU loads, so only transitions differ.
    // Measured: ours 0.4257 cross-GPU, ExFlow 0.4640.
    let Some([(ours, exflow), (ours_load, exflow_load)]) =
        compare_with_exflow(8, AffinitySettings::default())
    else {
        return;
    };
    assert!((ours - 0.4257).abs() < 1e-4, "{ours}");
    assert!((exflow - 0.4640).abs() < 1e-4, "{exflow}");
    assert!((ours_load - exflow_load).abs() < 1e-9);
}

/// Asserts `ilp-affinity` with `settings` on switch-base-`experts` reaches the `measured`
/// (cross-GPU fraction, mean max/mean) and beats ExFlow on both.
fn assert_beats_exflow(experts: usize, settings: AffinitySettings, measured: (f64, f64)) {
    let Some([(ours, exflow), (ours_load, exflow_load)]) = compare_with_exflow(experts, settings)
    else {
        return;
    };
    assert!((ours - measured.0).abs() < 1e-4, "{ours}");
    assert!((ours_load - measured.1).abs() < 1e-3, "{ours_load}");
    assert!(ours < exflow, "{ours} vs {exflow}");
    assert!(ours_load < exflow_load, "{ours_load} vs {exflow_load}");
}

#[test]
#[ignore = "switch-base-32 takes 25 s in the dev profile (2 s at opt-level 3); run with --ignored"]
fn switch_32_beats_exflow_on_transitions_and_load() {
    // Default settings. ExFlow: 0.1567 cross-GPU at mean max/mean 1.703.
    assert_beats_exflow(32, AffinitySettings::default(), (0.1543, 1.635));
}

#[test]
#[ignore = "switch-base-128 takes about 10 s at opt-level 3; run with --ignored"]
fn switch_128_beats_exflow_on_transitions_and_load_without_a_hard_cap() {
    // ExFlow's placement reaches mean max/mean 2.500 (0.1287 cross-GPU), above the default cap
    // (2): without the cap and with a lighter load term (0.1), ours is below it on both.
    let settings = AffinitySettings {
        max_load_ratio: f64::INFINITY,
        load_weight: 0.1,
        ..AffinitySettings::default()
    };
    assert_beats_exflow(128, settings, (0.1273, 2.460));
}

#[test]
#[ignore = "switch-base-128 takes about 10 s at opt-level 3; run with --ignored"]
fn switch_128_beats_exflow_under_a_cap_no_looser_than_exflows_worst_layer() {
    // ExFlow's busiest layer is 3.423 x a perfect split; capped at 3.42 ours still wins.
    let settings = AffinitySettings {
        max_load_ratio: 3.42,
        load_weight: 0.1,
        ..AffinitySettings::default()
    };
    assert_beats_exflow(128, settings, (0.1273, 2.457));
}

#[test]
fn the_registry_knows_the_ilp_strategies() {
    for name in ["ilp-balance", "ilp-affinity", "topology-aware"] {
        assert!(crate::placement::STRATEGIES.contains(name));
        assert_eq!(crate::placement::strategy(name).unwrap().name, name);
    }
}
