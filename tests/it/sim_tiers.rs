//! The analytical tier and the discrete-event simulator on the same trace steps, all-to-all by
//! all-to-all: the analytical time is the busiest link's bytes over its bandwidth plus the
//! longest route latency, a bound the simulator's max-min fair flows reach when every flow's
//! bottleneck is its own NVSwitch port, and exceed where flows with different bottlenecks
//! share links (NICs and PCIe switches).

use crate::common;

use moesim::cost::all_to_all;
use moesim::model::MoeModel;
use moesim::pipeline::steps::{Step, step_plans};
use moesim::placement::{self, PlacementRequest};
use moesim::sim::LinkSettings;
use moesim::sim::engine::{self, LinkBusy, TaskGraph, Work};
use moesim::sim::step::LayerWork;
use moesim::topology::Cluster;
use moesim::trace::{self, Trace};

/// For each of `layers`, (simulated, analytical) ns of the dispatch and of the combine
/// all-to-all of the first `tokens` tokens of `trace` under the contiguous placement (FP8
/// dispatch, BF16 combine), every pair's transfer starting at time 0.
fn all_to_all_times(
    model: &MoeModel,
    cluster: &Cluster,
    trace: &Trace,
    tokens: usize,
    layers: std::ops::Range<usize>,
) -> Vec<[(u64, u64); 2]> {
    let loads = trace.expert_loads();
    let mut request = PlacementRequest::new(&loads, cluster.num_gpus());
    request.num_nodes = cluster.num_nodes();
    let placement = placement::strategy("contiguous")
        .and_then(|s| s.place(&request))
        .unwrap();
    let hidden = model.hidden_size as f64;
    // Exact max-min at every instant (no rate tolerance), nominal NVLink.
    let exact = LinkSettings {
        rate_tolerance: 0.0,
        ..LinkSettings::default()
    };
    let first = Step {
        phase: None,
        first_token: 0,
        tokens,
    };
    let policy = Default::default();
    let plans = step_plans(cluster, &placement, trace, &first, model.top_k, &policy).unwrap();
    plans[layers]
        .iter()
        .map(|plan| {
            let work = LayerWork::from_plan(plan, hidden, 2.0 * hidden);
            [&work.dispatch, &work.combine].map(|traffic| {
                let mut graph = TaskGraph::default();
                for (src, dst, bytes) in traffic.pairs() {
                    let (src, dst) = (src as u32, dst as u32);
                    let transfer = Work::Transfer {
                        src,
                        dst,
                        relay: None,
                        bytes,
                    };
                    graph.add(transfer, (), &[]);
                }
                let simulated = engine::run(&graph, cluster, &exact, LinkBusy::Skip).makespan_ns();
                (simulated, all_to_all(cluster, traffic).unwrap().time_ns)
            })
        })
        .collect()
}

#[test]
fn on_one_nvswitch_node_the_tiers_agree_within_5_percent_per_layer() {
    let Some(path) = common::shared_data("switch-top1/switch-base-128.trace.npy") else {
        return;
    };
    let trace = trace::load(&path).unwrap();
    let model = MoeModel::preset("switch-base-128").unwrap();
    let cluster = Cluster::preset("dgx-h100").unwrap();
    for (layer, times) in all_to_all_times(&model, &cluster, &trace, 4096, 0..6)
        .into_iter()
        .enumerate()
    {
        for (simulated, analytical) in times {
            println!("layer {layer}: simulated {simulated} ns, analytical {analytical} ns");
            let gap = (simulated as f64 - analytical as f64).abs() / analytical as f64;
            assert!(gap < 0.05, "layer {layer}: {simulated} vs {analytical} ns");
        }
    }
}

#[test]
fn where_flows_share_links_the_event_simulator_is_slower() {
    // Four L40S machines: four GPUs per PCIe switch share its uplink, and a GPU's flows to other
    // machines cross its switch, the host and the NIC. Max-min fair sharing leaves the busiest
    // link idle at times while its flows wait on other bottlenecks, so the layer-6 combine
    // of the quickstart trace's first 1024 tokens takes about 13% longer than the busiest
    // link's bound, while the lighter dispatch still meets it.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/traces/quickstart.parquet");
    let trace = trace::load(std::path::Path::new(path)).unwrap();
    let model = MoeModel::preset("olmoe-1b-7b").unwrap();
    let cluster = Cluster::preset("pcie-l40sx4").unwrap();
    let [dispatch, combine] = all_to_all_times(&model, &cluster, &trace, 1024, 6..7)[0];
    println!("dispatch {dispatch:?} ns, combine {combine:?} ns (simulated, analytical)");
    assert!(dispatch.0.abs_diff(dispatch.1) <= 2, "{dispatch:?}");
    let (simulated, analytical) = combine;
    assert!(simulated as f64 > 1.1 * analytical as f64, "{combine:?}");
}
