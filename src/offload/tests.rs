//! Offloaded decode of Mixtral-8x7B on one RTX 4090 (PCIe Gen4 x16: one 32 GB/s link of
//! 400 ns) over hand-made traces, with hand-computed stalls.

use super::cache::EVICTIONS;
use super::{Mode, Offload, OffloadRun, cache_for_budget, check_cache};
use crate::model::MoeModel;
use crate::predict::PREDICTORS;
use crate::topology::Cluster;
use crate::trace::{ExpertId, LayerRouting, RoutingTrace, TokenMeta};

/// One Mixtral expert: 3 matrices of 4096 x 14336 in bf16.
const EXPERT_BYTES: u64 = 3 * 4096 * 14336 * 2;
/// Its copy alone on the link: ceil(352,321,536 B / 32 B/ns) + 400 ns.
const ONE_COPY_NS: u64 = 11_010_048 + 400;

/// A top-1 trace of Mixtral's 32 MoE layers: `expert(row, layer)` for `rows` rows.
fn trace(rows: usize, expert: impl Fn(usize, usize) -> ExpertId) -> RoutingTrace {
    let layers = (0..32)
        .map(|l| LayerRouting::fixed_k(1, (0..rows).map(|r| expert(r, l)).collect(), None).unwrap())
        .collect();
    RoutingTrace::new(8, layers, TokenMeta::default()).unwrap()
}

/// Decodes `trace` from row 1 on (row 0 warms the cache), `batch` rows a step.
fn run(trace: &RoutingTrace, batch: usize, context: u64, cache: usize, mode: Mode) -> OffloadRun {
    let model = MoeModel::preset("mixtral-8x7b").unwrap();
    let cluster = Cluster::preset("rtx4090-host").unwrap();
    let offload = Offload::new(&model, &cluster, trace, batch, context, 1, None).unwrap();
    let lru = EVICTIONS.build("lru", &Default::default()).unwrap();
    let oracle = PREDICTORS.build("oracle", &Default::default()).unwrap();
    offload
        .run(cache, mode, lru.strategy, oracle.strategy)
        .unwrap()
}

#[test]
fn one_miss_on_one_link_costs_its_bytes_over_the_bandwidth_plus_the_latency() {
    assert_eq!(
        MoeModel::preset("mixtral-8x7b")
            .unwrap()
            .expert_weight_bytes(),
        EXPERT_BYTES
    );
    // Row 0 warms expert 0 everywhere; row 1 wants expert 3 at layer 5 only.
    let t = trace(2, |row, layer| if row == 1 && layer == 5 { 3 } else { 0 });
    let all = run(&t, 1, 512, 8, Mode::OnDemand);
    let one = run(&t, 1, 512, 1, Mode::OnDemand);
    assert_eq!(
        (
            all.copies.hit_rate,
            all.copies.stall_ns,
            all.copies.demand_bytes
        ),
        (1.0, 0, 0)
    );
    assert_eq!(one.copies.stall_ns, ONE_COPY_NS);
    assert_eq!(one.time_ns - all.time_ns, ONE_COPY_NS);
    assert_eq!(
        (one.copies.demand_bytes, one.copies.prefetch_bytes),
        (EXPERT_BYTES, 0)
    );
    assert_eq!(one.copies.hit_rate, 31.0 / 32.0);
    assert_eq!(one.copies.layer_hit_rates[5], 0.0);
    assert_eq!(one.copies.layer_hit_rates[4], 1.0);
}

#[test]
fn two_misses_at_once_share_the_link() {
    // Batch of rows 1 and 2: at layer 0 they want experts 4 and 5.
    let t = trace(3, |row, layer| match (row, layer) {
        (0, _) => 0,
        (_, 0) => row as ExpertId + 3,
        _ => 0,
    });
    let shared = run(&t, 2, 512, 3, Mode::OnDemand);
    // Warm: 0, then 1 and 2 (unused, by id); experts 4 and 5 both miss, copied side by side:
    // 2 x 352,321,536 B at 32 B/ns = 22,020,096 ns, plus 400 ns.
    assert_eq!(shared.copies.stall_ns, 22_020_096 + 400);
    assert_eq!(shared.copies.demand_bytes, 2 * EXPERT_BYTES);
}

#[test]
fn a_cache_holding_every_expert_never_misses() {
    let t = trace(40, |row, layer| ((row * 7 + layer * 3) % 8) as ExpertId);
    for mode in [Mode::OnDemand, Mode::Prefetch] {
        let r = run(&t, 2, 512, 8, mode);
        assert_eq!((r.copies.hit_rate, r.copies.stall_ns), (1.0, 0), "{mode:?}");
        assert_eq!(
            (r.copies.demand_bytes, r.copies.prefetch_bytes),
            (0, 0),
            "{mode:?}"
        );
        assert!(r.copies.layer_hit_rates.iter().all(|&h| h == 1.0));
    }
}

#[test]
fn a_perfect_prefetch_never_stalls_when_compute_outlasts_a_copy() {
    // Each row walks the experts layer by layer, one expert further than the row before; row 1
    // is row 0 (which warms the cache), so its step hits everywhere and rows 2 to 4 miss at
    // every layer without prefetch.
    let t = trace(5, |row, layer| {
        ((row.saturating_sub(1) + layer) % 8) as ExpertId
    });
    // A context of 4M keys: decode attention reads 4M x 4 KiB of KV cache per layer (16 ms at
    // 1,008 GB/s), longer than one copy (11 ms).
    let context = 4 << 20;
    let prefetch = run(&t, 1, context, 1, Mode::Prefetch);
    assert_eq!(
        (prefetch.copies.stall_ns, prefetch.copies.hit_rate),
        (0, 1.0)
    );
    // 3 steps x 32 layers of experts copied ahead, each a layer early.
    assert_eq!(prefetch.copies.prefetch_bytes, 96 * EXPERT_BYTES);
    assert_eq!(
        (
            prefetch.copies.demand_bytes,
            prefetch.copies.wasted_prefetch_bytes
        ),
        (0, 0)
    );
    // On demand the same 96 copies each stall the whole copy.
    let on_demand = run(&t, 1, context, 1, Mode::OnDemand);
    assert_eq!(on_demand.copies.stall_ns, 96 * ONE_COPY_NS);
    assert_eq!(on_demand.time_ns - prefetch.time_ns, 96 * ONE_COPY_NS);
}

#[test]
fn bad_inputs_name_what_does_not_fit() {
    let model = MoeModel::preset("mixtral-8x7b").unwrap();
    let cluster = Cluster::preset("rtx4090-host").unwrap();
    let t = trace(4, |_, _| 0);
    Offload::new(&model, &cluster, &t, 1, 512, 1, None).unwrap();
    for bad in [0, 9] {
        let err = check_cache(&model, bad, "cache").unwrap_err().to_string();
        assert!(
            err.contains(&format!("`cache` = {bad}")) && err.contains("8 experts"),
            "{err}"
        );
    }
    // 24 GiB hold the 3.2 GB of non-expert weights and 2 experts x 32 layers x 352 MB.
    assert_eq!(cache_for_budget(&model, 24 << 30, "memory").unwrap(), 2);
    let err = cache_for_budget(&model, 4 << 30, "memory")
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds 0 experts"), "{err}");
    let err = cache_for_budget(&model, 200 << 30, "memory")
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than the model"), "{err}");
    // A trace of 16 experts for a model of 8.
    let layers = (0..32)
        .map(|_| LayerRouting::fixed_k(1, vec![15, 0], None).unwrap())
        .collect();
    let wide = RoutingTrace::new(16, layers, TokenMeta::default()).unwrap();
    let err = Offload::new(&model, &cluster, &wide, 1, 512, 1, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("16 experts") && err.contains("mixtral-8x7b"),
        "{err}"
    );
}
