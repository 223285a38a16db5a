//! End-to-end checks of the analytical layer estimate against hand computations.

use super::*;
use crate::model::MoeModel;
use crate::placement::dispatch::{plan_loads, plan_tokens};
use crate::placement::{Contiguous, PlacementRequest, PlacementStrategy, RoundRobin};
use crate::topology::Cluster;
use crate::trace::{ExpertLoads, LayerRouting};

#[test]
fn mixtral_on_dgx_h100_two_hot_experts() {
    let model = MoeModel::preset("mixtral-8x7b").unwrap();
    let cluster = Cluster::preset("dgx-h100").unwrap();
    let loads = ExpertLoads::new(8, vec![vec![1.0; 8]]).unwrap();
    // Round-robin: expert e on GPU e.
    let placement = RoundRobin.place(&PlacementRequest::new(&loads, 8)).unwrap();
    // 16 tokens, 2 per GPU, every one routed to experts 0 and 1.
    let routing = LayerRouting::fixed_k(2, [0, 1].repeat(16), None).unwrap();
    let roofline = RooflineCompute::default();
    let cost = AnalyticalCost::new(&model, &cluster, &roofline, CostOptions::default());
    let plan = plan_tokens(&cluster, &placement, 0, &routing).unwrap();
    let estimate = cost.estimate(0, &plan).unwrap();
    // Dispatch: GPU 0 receives 2 tokens from each of 7 GPUs, 14 x 4096 B (FP8) = 57,344 B over
    // its 450 GB/s port: 127.4 -> 128 ns, plus 1000 ns latency.
    assert_eq!(estimate.dispatch_ns, 1128);
    // Combine: GPU 0 returns 14 x 8192 B (BF16) = 114,688 B: 254.9 -> 255 ns + 1000.
    assert_eq!(estimate.combine_ns, 1255);
    // Experts 0 and 1 each see all 16 tokens: memory-bound, BF16 weights, input rows and
    // output at 2278 B/ns: gate_up 235,929,600 B = 103,568.7 ns, down 118,030,336 B =
    // 51,813.1 ns; 155,381.8 -> 155,382 ns.
    assert_eq!(estimate.compute_ns, [155_382, 155_382, 0, 0, 0, 0, 0, 0]);
    assert_eq!(estimate.step_ns, 1128 + 155_382 + 1255);
    assert_eq!(estimate.gpu_tokens, [16, 16, 0, 0, 0, 0, 0, 0]);
    // 28 tokens cross GPUs (2 each way between GPUs 0 and 1, 4 from each of the other 6):
    // 28 x (4096 + 8192) B.
    assert_eq!(estimate.intra_node_bytes, 344_064);
    assert_eq!(estimate.inter_node_bytes, 0);
}

#[test]
fn deepseek_v3_expected_loads_on_two_h800_machines() {
    let model = MoeModel::preset("deepseek-v3").unwrap();
    let cluster = Cluster::preset("hgx-h800x2").unwrap();
    // Every expert gets 32 (token, expert) pairs: 8192 pairs, 1024 tokens, 64 per GPU.
    let loads = ExpertLoads::new(256, vec![vec![32.0; 256]]).unwrap();
    let placement = Contiguous
        .place(&PlacementRequest::new(&loads, 16))
        .unwrap();
    let roofline = RooflineCompute::default();
    let cost = AnalyticalCost::new(&model, &cluster, &roofline, CostOptions::default());
    let plan = plan_loads(&cluster, &placement, 0, loads.layer(0), model.top_k).unwrap();
    let estimate = cost.estimate(0, &plan).unwrap();
    // Each GPU sends 16 experts x 2 pairs = 32 tokens of 7168 B to every other GPU. The busiest
    // links are the NICs: 8 peers x 32 x 7168 = 1,835,008 B at 50 GB/s = 36,700.2 ns; the
    // longest route (cross-rail, via the spine) adds 3400 ns.
    assert_eq!(estimate.dispatch_ns, 36_701 + 3400);
    // Combine moves twice the bytes (BF16): 73,400.3 ns.
    assert_eq!(estimate.combine_ns, 73_401 + 3400);
    // 16 experts x 32 pairs in one grouped kernel per matrix, memory-bound at 2278 B/ns:
    // gate_up 477,626,368 B = 209,669.2 ns, down 243,269,632 B = 106,790.9 ns: 316,461 ns;
    // plus the shared expert over the GPU's 64 tokens: 13,320.1 + 6,904.6 -> 20,225 ns.
    assert!(estimate.compute_ns.iter().all(|&ns| ns == 316_461 + 20_225));
    assert_eq!(estimate.step_ns, 40_101 + 316_461 + 20_225 + 76_801);
    assert!(estimate.gpu_tokens.iter().all(|&t| t == 512));
    // Per GPU 7 intra-machine and 8 inter-machine peers, 32 x 7168 B each, dispatch + combine.
    assert_eq!(estimate.intra_node_bytes, 16 * 7 * 32 * 7168 * 3);
    assert_eq!(estimate.inter_node_bytes, 16 * 8 * 32 * 7168 * 3);
}

#[test]
fn a_plan_over_other_gpus_than_the_cluster_is_an_error() {
    let model = MoeModel::preset("mixtral-8x7b").unwrap();
    let cluster = Cluster::preset("dgx-h100").unwrap();
    let roofline = RooflineCompute::default();
    let cost = AnalyticalCost::new(&model, &cluster, &roofline, CostOptions::default());
    let mut plan = DispatchPlan::empty([1; 4]);
    plan.add_flow(0, 1, 1.0);
    let err = cost.estimate(0, &plan).unwrap_err();
    assert!(
        err.to_string()
            .contains("traffic between 4 GPUs on cluster `dgx-h100` of 8 GPUs"),
        "{err}"
    );
}
