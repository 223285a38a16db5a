use super::*;
use crate::trace::ExpertLoads;

fn one_layer(loads: &[f64]) -> ExpertLoads {
    ExpertLoads::new(loads.len(), vec![loads.to_vec()]).unwrap()
}

fn request(loads: &ExpertLoads, gpus: usize, slots: usize) -> PlacementRequest<'_> {
    PlacementRequest {
        slots_per_gpu: slots,
        ..PlacementRequest::new(loads, gpus)
    }
}

fn quick() -> IlpBalance {
    IlpBalance {
        time_limit_s: 5.0,
        ..IlpBalance::default()
    }
}

#[test]
fn one_replica_of_the_hot_expert_reaches_the_perfect_split() {
    // Total 16 on 2 GPUs: no placement beats 8 per GPU. Expert 0 (10) must be split: one
    // replica per GPU (5 + 5), then three 1s each: 8 and 8 in 4 + 5 slots.
    let l = one_layer(&[10.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
    let (placement, report) = quick().solve(&request(&l, 2, 5), None).unwrap();
    assert_eq!(placement.gpu_loads(&l).unwrap(), vec![vec![8.0, 8.0]]);
    assert_eq!(placement.replicas_of(0, 0), &[0, 1]);
    let solve = &report.layers[0];
    assert_eq!(
        (solve.max_load, solve.lower_bound, solve.gap),
        (8.0, 8.0, 0.0)
    );
    assert_eq!(solve.outcome, SolveOutcome::AtBound);
}

#[test]
fn highs_replicates_a_cold_expert_where_the_greedy_cannot() {
    // 2 GPUs x 2 slots, loads 1 3 3 (total 7, bound 3.5). The greedy only replicates the expert
    // with the highest load per replica: without a replica 3 + 1 | 3 = 4; replicating a 3
    // gives 3 + 1.5 | 1.5 + 1 = 4.5 (no swap helps). Replicating the cold expert 0 splits it 0.5 +
    // 0.5 next to each 3: 3.5 and 3.5, which HiGHS finds (replica counts are its variables).
    let l = one_layer(&[1.0, 3.0, 3.0]);
    assert_eq!(
        greedy::best_packing(l.layer(0), 2, 2).unwrap().max_load,
        4.0
    );
    let (placement, report) = quick().solve(&request(&l, 2, 2), None).unwrap();
    assert_eq!(placement.gpu_loads(&l).unwrap(), vec![vec![3.5, 3.5]]);
    assert_eq!(placement.replicas_of(0, 0), &[0, 1]);
    assert_eq!(report.layers[0].max_load, 3.5);
    assert_eq!(report.layers[0].gap, 0.0);
    assert_eq!(report.layers[0].outcome, SolveOutcome::Optimal);
}

#[test]
fn a_better_warm_start_is_kept_and_never_worsened() {
    let l = one_layer(&[1.0, 3.0, 3.0]);
    let warm = Placement::new(
        2,
        3,
        2,
        vec![LayerPlacement {
            gpu_experts: vec![vec![0, 2], vec![0, 1]],
        }],
    )
    .unwrap();
    let (placement, report) = quick().solve(&request(&l, 2, 2), Some(&warm)).unwrap();
    assert_eq!(placement, warm);
    assert_eq!(report.layers[0].outcome, SolveOutcome::IncumbentKept);
    assert_eq!(report.layers[0].max_load, 3.5);

    let wrong_shape = Placement::new(
        3,
        3,
        2,
        vec![LayerPlacement {
            gpu_experts: vec![vec![0], vec![1], vec![2]],
        }],
    )
    .unwrap();
    let err = quick()
        .solve(&request(&l, 2, 2), Some(&wrong_shape))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("warm start: 1 layers x 3 experts on 3 GPUs, but the request has 1 x 3 on 2"),
        "{err}"
    );
}

#[test]
fn no_time_still_returns_the_best_placement_with_its_gap() {
    let l = one_layer(&[1.0, 3.0, 3.0]);
    let solver = IlpBalance {
        time_limit_s: 0.0,
        ..IlpBalance::default()
    };
    let (placement, report) = solver.solve(&request(&l, 2, 2), None).unwrap();
    // HiGHS gets no time: the greedy's 3 + 1 | 3 stands, 4 / 3.5 - 1 = 1 / 7 above the bound.
    assert_eq!(report.layers[0].max_load, 4.0);
    assert!((report.layers[0].gap - 1.0 / 7.0).abs() < 1e-12);
    assert_eq!(placement.gpu_loads(&l).unwrap(), vec![vec![4.0, 3.0]]);
    assert!((report.mean_gap() - 1.0 / 7.0).abs() < 1e-12);
}

#[test]
fn infeasible_requests_name_the_constraint_and_the_shortfall() {
    let l = one_layer(&[1.0; 8]);
    let err = quick()
        .solve(&request(&l, 2, 3), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("slots: 8 experts need 8 slots but 2 GPUs x 3 slots give 6 (2 short)"),
        "{err}"
    );
}

#[test]
fn lower_bound_counts_the_spare_slots_for_the_hottest_expert() {
    // 4 experts on 4 GPUs x 1 slot: no spare slot, expert 0 stays whole: max(10 / 4, 7 / 1).
    assert_eq!(lower_bound(&[7.0, 1.0, 1.0, 1.0], 4, 1), 7.0);
    // 2 GPUs x 3 slots, two spare: expert 0 on both GPUs (7 / 2), then an expert of load 1
    // (at most one replica per GPU); the perfect split 10 / 2 is higher.
    assert_eq!(lower_bound(&[7.0, 1.0, 1.0, 1.0], 2, 3), 5.0);
    // 6 GPUs x 1 slot, two spare: expert 0 (8 -> 4), then expert 1 (6 > 4 -> 3): 4, above the
    // perfect split 16 / 6 and the hottest expert over three replicas 8 / 3.
    assert_eq!(lower_bound(&[8.0, 6.0, 1.0, 1.0], 6, 1), 4.0);
}

#[test]
fn one_slot_per_gpu_is_solved_by_the_bound_without_highs() {
    // Issue 15 defect 9: 64 experts on 72 GPUs x 1 slot ran HiGHS to its time limit although
    // the incumbent was optimal. With one slot per GPU the apportionment bound is the optimum,
    // so the greedy meets it and HiGHS is skipped.
    let loads: Vec<f64> = (0..64).map(|e| f64::from((e * 37) % 64 + 1)).collect();
    let l = one_layer(&loads);
    let started = std::time::Instant::now();
    let (_, report) = quick().solve(&request(&l, 72, 1), None).unwrap();
    let solve = &report.layers[0];
    assert_eq!(solve.outcome, SolveOutcome::AtBound, "{solve:?}");
    // The 8 spare slots go to the experts of load 64 down to 57: each split in two, the
    // largest per-replica load left is the unsplit 56.
    assert_eq!((solve.max_load, solve.lower_bound), (56.0, 56.0));
    assert!(started.elapsed().as_secs_f64() < 1.0);
}

#[test]
fn a_deepseek_layer_lands_within_two_percent_of_the_bound() {
    let Some(root) = std::env::var_os("MOESIM_SHARED_DATA") else {
        eprintln!("skipping: MOESIM_SHARED_DATA not set");
        return;
    };
    let path = std::path::Path::new(&root).join("deepseek-v3-expert-load/prefill_in1024.json");
    let trace = crate::trace::importers::import(&path, None, None).unwrap();
    let all = trace.expert_loads();
    let l = one_layer(all.layer(30));
    let request = PlacementRequest {
        num_nodes: 4,
        num_groups: 8,
        ..request(&l, 32, 9)
    };
    let solver = IlpBalance {
        time_limit_s: 3.0,
        ..IlpBalance::default()
    };
    let (placement, report) = solver.solve(&request, None).unwrap();
    let solve = &report.layers[0];
    let loads = &placement.gpu_loads(&l).unwrap()[0];
    let mean = l.layer_total(0) / 32.0;
    let max_mean = crate::analysis::imbalance::max_mean(loads);
    assert!((max_mean - solve.max_load / mean).abs() < 1e-9);
    assert!(solve.gap <= 0.02, "{solve:?}");
    assert!(solve.max_load >= solve.lower_bound);
}

#[test]
fn cross_node_tokens_count_the_machines_without_a_replica() {
    // 2 machines x 2 GPUs. Expert 0 (load 4) on both machines: 0. Expert 1 (load 6) only on
    // machine 0: half its tokens start on machine 1, 3. Expert 2 (load 2) twice on machine 1: 1.
    let gpu_experts = vec![vec![0, 1], vec![], vec![2, 0], vec![2]];
    assert_eq!(cross_node_tokens(&[4.0, 6.0, 2.0], &gpu_experts, 2), 4.0);
}

#[test]
fn a_communication_weight_spreads_replicas_over_machines() {
    // 4 experts of load 4 on 2 machines x 2 GPUs x 2 slots: one expert per GPU already gives
    // every GPU the bound, 4, so balance alone stops at the greedy packing [[0], [1], [2], [3]]:
    // each expert on one machine, half of its tokens start on the other, 4 x 4 / 2 = 8 cross.
    // With weight 1 the optimum is each expert once per machine (two replicas of 2 tokens):
    // still 4 per GPU, and no token crosses.
    let l = one_layer(&[4.0; 4]);
    let request = PlacementRequest {
        num_nodes: 2,
        ..request(&l, 4, 2)
    };
    let crossing = |p: &Placement| cross_node_tokens(l.layer(0), &p.layer(0).gpu_experts, 2);
    let balance_only = quick().place(&request).unwrap();
    assert_eq!(balance_only, IlpBalance::default().place(&request).unwrap());
    assert_eq!(
        balance_only.layer(0).gpu_experts,
        vec![vec![0], vec![1], vec![2], vec![3]]
    );
    assert_eq!(crossing(&balance_only), 8.0);
    let weighted = IlpBalance {
        comm_weight: 1.0,
        ..quick()
    };
    let from_settings = crate::placement::STRATEGIES
        .build(
            "ilp-balance",
            &"comm_weight = 1.0\ntime_limit_s = 5.0".parse().unwrap(),
        )
        .unwrap();
    for placement in [
        weighted.place(&request).unwrap(),
        from_settings.place(&request).unwrap(),
    ] {
        assert_eq!(crossing(&placement), 0.0);
        assert_eq!(placement.gpu_loads(&l).unwrap(), vec![vec![4.0; 4]]);
    }
}
