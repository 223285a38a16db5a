//! Engine and step tests with hand-computed times on the DGX H100 preset: every GPU has one
//! NVLink port per direction to the NVSwitch at 450 GB/s (450 B/ns), 500 ns latency each, so a
//! GPU-to-GPU route is two links and 1000 ns.

use super::engine::{self, LinkBusy, TaskGraph, Work};
use super::step::{LayerWork, StepSpec};
use super::*;
use crate::cost::{TrafficMatrix, all_to_all};
use crate::model::MoeModel;
use crate::registry::Named;
use crate::topology::Cluster;

fn transfer(src: u32, dst: u32, bytes: u64) -> Work {
    Work::Transfer {
        src,
        dst,
        relay: None,
        bytes,
    }
}

/// Links that re-divide bandwidth at every drain (exact max-min), NVLink at `efficiency`.
fn exact(nvlink_efficiency: f64) -> LinkSettings {
    LinkSettings {
        nvlink_efficiency,
        rate_tolerance: 0.0,
    }
}

/// The simulator set-up of a `[sim]` table.
pub(super) fn sim_setup(table: &str) -> SimSetup {
    toml::from_str::<SimConfig>(table)
        .unwrap()
        .resolve()
        .unwrap()
}

/// The step of `layers` on `cluster` with `costs`, run as `setup` says.
pub(super) fn spec<'a>(
    cluster: &'a Cluster,
    costs: &'a kernels::KernelCosts,
    layers: &'a [LayerWork],
    setup: &'a SimSetup,
) -> StepSpec<'a> {
    StepSpec {
        cluster,
        costs,
        attention: Default::default(),
        layers,
        all_to_all: &*setup.all_to_all,
        links: setup.links,
    }
}

/// The overlap strategy `name` with its default settings.
fn overlap(name: &str) -> Named<dyn OverlapStrategy> {
    OVERLAPS.build(name, &Default::default()).unwrap()
}

/// Runs one transfer per pair of `traffic`, all at time 0; returns the makespan.
fn all_to_all_ns(cluster: &Cluster, traffic: &TrafficMatrix) -> u64 {
    let mut graph = TaskGraph::default();
    for (src, dst, bytes) in traffic.pairs() {
        graph.add(transfer(src as u32, dst as u32, bytes), (), &[]);
    }
    engine::run(&graph, cluster, &exact(1.0), LinkBusy::Skip).makespan_ns()
}

#[test]
fn a_lone_transfer_takes_latency_plus_bytes_over_bandwidth() {
    let cluster = Cluster::preset("dgx-h100").unwrap();
    let mut graph = TaskGraph::default();
    // 450,000 B at 450 B/ns: 1000 ns, plus the 1000 ns route latency.
    graph.add(transfer(0, 1, 450_000), (), &[]);
    // 1 B more: 1000.002 ns, rounded up.
    graph.add(transfer(2, 3, 450_001), (), &[]);
    let timeline = engine::run(&graph, &cluster, &exact(1.0), LinkBusy::Skip);
    assert_eq!(timeline.end_ns, vec![2000, 2001]);
}

#[test]
fn uniform_all_to_all_on_nvswitch_matches_the_closed_form_and_the_analytical_tier() {
    let cluster = Cluster::preset("dgx-h100").unwrap();
    let per_pair = 450_000;
    let mut traffic = TrafficMatrix::zeros(8);
    for src in 0..8 {
        for dst in 0..8 {
            traffic.add(src, dst, per_pair);
        }
    }
    // Each port carries 7 flows at 450 / 7 B/ns: 7 x 1000 ns, plus 1000 ns latency.
    let simulated = all_to_all_ns(&cluster, &traffic);
    assert_eq!(simulated, 8000);
    let analytical = all_to_all(&cluster, &traffic).unwrap().time_ns;
    assert!(
        simulated.abs_diff(analytical) * 20 <= analytical,
        "{simulated} vs {analytical}"
    );
}

#[test]
fn shared_ports_make_the_simulator_slower_than_the_analytical_bound() {
    // Sizes in units of 450,000 B (1000 ns at a full port). Flows 2->0 (3), 2->3 (2), 3->0 (2),
    // 3->1 (1), 3->2 (1). Busiest ports carry 5 units: the analytical tier says 5000 + 1000 ns.
    // Max-min: GPU 3's egress splits three ways (1/3 each); 2->0 and 2->3 get 1/2. At 3000 ns
    // 3->1 and 3->2 drain; 2->3 drains at 4000; 3->0 shares GPU 0's ingress at 1/2 and drains
    // at 5000; 2->0 then runs alone and drains at 5500: 6500 ns with latency.
    let cluster = Cluster::preset("dgx-h100").unwrap();
    let unit = 450_000;
    let mut traffic = TrafficMatrix::zeros(8);
    for (src, dst, units) in [(2, 0, 3), (2, 3, 2), (3, 0, 2), (3, 1, 1), (3, 2, 1)] {
        traffic.add(src, dst, units * unit);
    }
    assert_eq!(all_to_all(&cluster, &traffic).unwrap().time_ns, 6000);
    assert_eq!(all_to_all_ns(&cluster, &traffic), 6500);
}

#[test]
fn a_collective_receive_waits_for_every_flow_bound_for_it_and_spans_the_last() {
    // 0->1 and 0->2 (450,000 B each) split GPU 0's egress; 0->1 and 2->1 (900,000 B) split
    // GPU 1's ingress: all three run at 225 B/ns and 0->1, 0->2 drain at 2000 ns; 2->1 then has
    // 450,000 B left at 450 B/ns and drains at 3000 ns. Each arrives 1000 ns later.
    let cluster = Cluster::preset("dgx-h100").unwrap();
    let mut traffic = TrafficMatrix::zeros(3);
    for (src, dst, bytes) in [(0, 1, 450_000), (0, 2, 450_000), (2, 1, 900_000)] {
        traffic.add(src, dst, bytes);
    }
    let mut graph = TaskGraph::default();
    let direct = sim_setup("");
    let collective = graph.add_collective(&traffic, 1.0, &*direct.all_to_all);
    let sends: Vec<u32> = (0..3)
        .map(|src| graph.add(Work::Send { collective, src }, (), &[]))
        .collect();
    let receives: Vec<u32> = (0..3)
        .map(|dst| graph.add(Work::Receive { collective, dst }, (), &[]))
        .collect();
    let bytes: Vec<u64> = graph
        .transfers(sends[0], &cluster)
        .map(|t| t.bytes)
        .collect();
    assert_eq!(bytes, vec![450_000, 450_000]);
    let timeline = engine::run(&graph, &cluster, &exact(1.0), LinkBusy::Record);
    let ends: Vec<u64> = receives
        .iter()
        .map(|&r| timeline.end_ns[r as usize])
        .collect();
    assert_eq!(ends, vec![0, 4000, 3000]);
    // GPU 1's receive spans 2->1 from its send; the sends end as they start.
    assert_eq!(timeline.critical_path(), vec![sends[2], receives[1]]);
    assert_eq!(timeline.start_ns[receives[1] as usize], 0);
    assert_eq!(timeline.sends_done_ns[sends[0] as usize], 3000);
    assert_eq!(timeline.sends_done_ns[sends[2] as usize], 4000);
    // Ports are busy from the first start to the last arrival through them.
    let route = &cluster.route(0, 1).links;
    assert_eq!(timeline.link_busy[route[0].index()], vec![(0, 3000)]);
    assert_eq!(timeline.link_busy[route[1].index()], vec![(0, 4000)]);
}

#[test]
fn a_relayed_transfer_crosses_nvlink_then_the_rail_cut_through() {
    // Two H800 machines. GPU 0 -> GPU 9 (machine 1, rail 1) relays through GPU 1 (machine 0,
    // rail 1): NVLink (200 B/ns, 1000 ns) then the rail-1 RDMA route (NIC 50 B/ns, 2800 ns).
    // Cut-through: the slowest link sets the rate, both latencies add: 50,000 B in
    // 1000 + 1000 + 2800 ns.
    let cluster = Cluster::preset("hgx-h800x2").unwrap();
    let mut graph = TaskGraph::default();
    let work = Work::Transfer {
        src: 0,
        dst: 9,
        relay: Some(1),
        bytes: 50_000,
    };
    graph.add(work, (), &[]);
    let timeline = engine::run(&graph, &cluster, &exact(1.0), LinkBusy::Record);
    assert_eq!(timeline.end_ns, vec![4800]);
    // Half-speed NVLink (100 B/ns) is still faster than the NIC: same time.
    assert_eq!(
        engine::run(&graph, &cluster, &exact(0.5), LinkBusy::Skip).end_ns,
        vec![4800]
    );
    let nic_links = timeline
        .link_busy
        .iter()
        .zip(cluster.links())
        .filter(|(busy, (_, link))| !busy.is_empty() && link.name.contains("nic1"))
        .count();
    assert_eq!(nic_links, 4);
}

#[test]
fn a_stream_runs_one_kernel_at_a_time_and_the_critical_path_follows_it() {
    let cluster = Cluster::preset("dgx-h100").unwrap();
    let mut graph = TaskGraph::default();
    let kernel = |ns| Work::Compute {
        gpu: 0,
        stream: 0,
        duration_ns: ns,
    };
    let a = graph.add(kernel(10), (), &[]);
    let b = graph.add(kernel(20), (), &[]);
    let send = graph.add(transfer(0, 1, 450), (), &[a]);
    let c = graph.add(kernel(5), (), &[send]);
    let timeline = engine::run(&graph, &cluster, &exact(1.0), LinkBusy::Skip);
    // b waits for a; the send (1 ns + 1000 ns) ends at 1011; c queues behind nothing then.
    assert_eq!(timeline.start_ns, vec![0, 10, 10, 1011]);
    assert_eq!(timeline.end_ns, vec![10, 30, 1011, 1016]);
    assert_eq!(timeline.critical_path(), vec![a, send, c]);
    assert_eq!(timeline.critical_pred[b as usize], Some(a));
}

/// DeepSeek-V3 on one H800 machine: `layers` layers of uniform traffic, `tokens` per GPU.
pub(super) fn uniform_layers(cluster: &Cluster, layers: usize, tokens: u64) -> Vec<LayerWork> {
    let gpus = cluster.num_gpus();
    // Each token goes to 8 experts, one per GPU: every pair carries the token once.
    let mut dispatch = TrafficMatrix::zeros(gpus);
    let mut combine = TrafficMatrix::zeros(gpus);
    for src in 0..gpus {
        for dst in 0..gpus {
            dispatch.add(src, dst, tokens * 7168);
            combine.add(src, dst, tokens * 7168 * 2);
        }
    }
    let work = LayerWork {
        dispatch,
        combine,
        tp_reduce: TrafficMatrix::zeros(gpus),
        // 32 experts per GPU, 1024 (token, expert) pairs per GPU: 32 each.
        expert_tokens: vec![vec![tokens as f64 / 4.0; 32]; gpus],
        source_tokens: vec![tokens as f64; gpus],
        per_node: None,
        weights: TrafficMatrix::zeros(gpus),
        tally: Default::default(),
        speculative: None,
    };
    vec![work; layers]
}

#[test]
fn the_step_breakdown_adds_up_and_runs_are_deterministic() {
    let cluster = Cluster::preset("hgx-h800").unwrap();
    let model = MoeModel::preset("deepseek-v3").unwrap();
    let costs = kernels::KernelCosts::new(&model, cluster.gpu_spec(0));
    let layers = uniform_layers(&cluster, 2, 128);
    let setup = SimSetup::default();
    let spec = spec(&cluster, &costs, &layers, &setup);
    for overlap in &setup.overlaps {
        let sim = simulate_step(&spec, overlap, "p");
        let parts: u64 = sim
            .layers
            .iter()
            .map(|l| l.attention_ns + l.dispatch_ns + l.expert_ns + l.combine_ns)
            .sum();
        assert_eq!(parts, sim.step_ns, "{}", overlap.name);
        let again = simulate_step(&spec, overlap, "p");
        assert_eq!(
            serde_json::to_string(&sim).unwrap(),
            serde_json::to_string(&again).unwrap()
        );
    }
}

#[test]
fn without_overlap_a_layer_is_attention_then_dispatch_experts_combine() {
    let cluster = Cluster::preset("hgx-h800").unwrap();
    let model = MoeModel::preset("deepseek-v3").unwrap();
    let costs = kernels::KernelCosts::new(&model, cluster.gpu_spec(0));
    let layers = uniform_layers(&cluster, 1, 128);
    let setup = SimSetup::default();
    let sim = simulate_step(
        &spec(&cluster, &costs, &layers, &setup),
        &overlap("none"),
        "p",
    );
    let layer = &sim.layers[0];
    assert_eq!(
        layer.attention_ns,
        costs.attention_ns(128.0, &Default::default())
    );
    // Dispatch: each H800 port (200 B/ns) carries 7 x 917,504 B: 32,112.64 -> 32,113 ns + 1 us.
    assert_eq!(layer.dispatch_ns, 32_113 + 1000);
    // The shared expert runs on the stream while the dispatch is in flight (it is shorter), so
    // only the routed grouped GEMM is on the path: 32 experts x 32 rows, memory-bound at
    // 2278 B/ns: gate_up 955,252,736 B = 419,338.3 ns, down 486,539,264 B = 213,581.8 ns;
    // 632,920.1 -> 632,921 ns + launch.
    assert!(costs.shared_ns(128.0) < layer.dispatch_ns);
    assert_eq!(layer.expert_ns, costs.routed_ns(vec![32.0; 32]));
    assert_eq!(layer.expert_ns, 632_921 + 2_000);
    // Combine: twice the bytes: 64,225.28 -> 64,226 ns + 1 us.
    assert_eq!(layer.combine_ns, 64_226 + 1000);
    assert_eq!(layer.exposed_comm_ns, layer.dispatch_ns + layer.combine_ns);
    // Every GPU does the same work: busy = attention + shared + routed; idle = the rest.
    let busy = layer.attention_ns + costs.shared_ns(128.0) + layer.expert_ns;
    assert_eq!(layer.gpus[3].busy_ns, busy);
    assert_eq!(layer.gpus[3].idle_ns, sim.step_ns - busy);
    assert_eq!(sim.inter_node_bytes, 0);
    assert_eq!(sim.intra_node_bytes, 56 * 128 * 7168 * 3);
}

/// The four strategies' step times for `layers` of `tokens` per GPU under `setup`.
fn step_times(tokens: u64, setup: &SimSetup) -> Vec<(&'static str, u64, u64)> {
    let cluster = Cluster::preset("hgx-h800").unwrap();
    let model = MoeModel::preset("deepseek-v3").unwrap();
    let costs = kernels::KernelCosts::new(&model, cluster.gpu_spec(0));
    let layers = uniform_layers(&cluster, 3, tokens);
    let spec = spec(&cluster, &costs, &layers, setup);
    setup
        .overlaps
        .iter()
        .map(|o| {
            let sim = simulate_step(&spec, o, "p");
            (o.name, sim.step_ns, sim.exposed_comm_ns)
        })
        .collect()
}

#[test]
fn prefill_overlap_hides_communication_and_sms_taken_by_it_cost_compute() {
    let times = step_times(4096, &sim_setup("[direct]\ncomm_sms = 0"));
    let (_, none_ns, none_comm) = times[0];
    for &(overlap, step_ns, comm_ns) in &times[1..] {
        assert!(step_ns < none_ns, "{overlap}: {step_ns} vs {none_ns}");
        assert!(comm_ns < none_comm, "{overlap}");
    }
    // 20 of 132 SMs taken by communication slow every overlapped kernel by 132 / 112.
    let taxed = step_times(4096, &SimSetup::default());
    assert_eq!(taxed[0].1, none_ns);
    for (free, taxed) in times.iter().zip(&taxed).skip(1) {
        assert!(taxed.1 > free.1, "{}", free.0);
    }
}

#[test]
fn in_decode_splitting_the_batch_re_reads_expert_weights() {
    // 32 memory-bound experts per GPU: a second micro-batch or a second chunk reads all their
    // weights again, which costs more than the communication it hides; fine-grained tiles of
    // one fused kernel do not.
    let times = step_times(128, &sim_setup("all_to_all = \"low-latency\""));
    let step = |name: &str| times.iter().find(|t| t.0 == name).unwrap().1;
    assert!(step("dual-batch") > step("none"));
    assert!(step("chunked") > step("none"));
    assert!(step("fine-grained") < step("none"));
}

/// A balanced DeepSeek-V3-shaped layer as DeepEP benchmarks it, simulated on `ep` H800s:
/// `tokens` per GPU, hidden 7168, top-8 of 256 experts, FP8 dispatch and BF16 combine
/// (every (token, expert) pair sent once), contiguous placement. Returns the layer's traffic
/// and simulated times.
fn deepep_layer(ep: usize, tokens: f64, algorithm: &str) -> (LayerWork, metrics::LayerTimes) {
    use crate::placement::dispatch::plan_loads;
    use crate::placement::{self, PlacementRequest};
    use crate::trace::ExpertLoads;

    let cluster = Cluster::preset_with_nodes("hgx-h800", ep / 8).unwrap();
    let model = MoeModel::preset("deepseek-v3").unwrap();
    let loads = ExpertLoads::new(256, vec![vec![tokens * ep as f64 * 8.0 / 256.0; 256]]).unwrap();
    let mut request = PlacementRequest::new(&loads, ep);
    request.num_nodes = ep / 8;
    let placement = placement::strategy("contiguous")
        .unwrap()
        .place(&request)
        .unwrap();
    let plan = plan_loads(&cluster, &placement, 0, loads.layer(0), 8).unwrap();
    let layers = vec![LayerWork::from_plan(&plan, 7168.0, 2.0 * 7168.0)];
    let costs = kernels::KernelCosts::new(&model, cluster.gpu_spec(0));
    // Calibration: DeepEP reaches about 160 of the H800's 200 GB/s NVLink per direction.
    let setup = sim_setup(&format!(
        "all_to_all = \"{algorithm}\"\nnvlink_efficiency = 0.8"
    ));
    let spec = spec(&cluster, &costs, &layers, &setup);
    let layer = simulate_step(&spec, &overlap("none"), "contiguous").layers[0].clone();
    (layers.into_iter().next().unwrap(), layer)
}

/// DeepEP's bottleneck bandwidths (dispatch, combine) in GB/s for 4096 tokens per GPU: GPU 0's
/// bytes over the link kind DeepEP reports (NVLink within one machine, RDMA across machines)
/// divided by the simulated collective time.
fn deepep_bandwidths(ep: usize, algorithm: &str) -> (f64, f64) {
    let (work, layer) = deepep_layer(ep, 4096.0, algorithm);
    let cluster = Cluster::preset_with_nodes("hgx-h800", ep / 8).unwrap();
    let reported = |matrix: &TrafficMatrix| -> f64 {
        (1..ep)
            .filter(|&dst| (ep == 8) == (cluster.node_of(dst) == 0))
            .map(|dst| matrix.get(0, dst) as f64)
            .sum()
    };
    // DeepEP's normal kernels count the bytes they move: once per destination machine.
    let (dispatch, combine) = match (&work.per_node, algorithm) {
        (Some((dispatch, combine)), "deepep-normal") => (dispatch, combine),
        _ => (&work.dispatch, &work.combine),
    };
    (
        reported(dispatch) / layer.dispatch_ns as f64,
        reported(combine) / layer.combine_ns as f64,
    )
}

#[test]
fn deepep_low_latency_kernel_latencies_are_reproduced_within_15_percent() {
    // Published dispatch / combine latencies, microseconds, 128 tokens per GPU.
    for (ep, published) in [
        (8, (77.0, 114.0)),
        (16, (118.0, 195.0)),
        (32, (155.0, 273.0)),
        (64, (173.0, 314.0)),
        (128, (192.0, 369.0)),
        (256, (194.0, 360.0)),
    ] {
        let (_, layer) = deepep_layer(ep, 128.0, "low-latency");
        let simulated = (
            layer.dispatch_ns as f64 / 1e3,
            layer.combine_ns as f64 / 1e3,
        );
        eprintln!("EP{ep}: simulated {simulated:?} us, published {published:?}");
        for (sim, real) in [(simulated.0, published.0), (simulated.1, published.1)] {
            assert!(
                (sim - real).abs() <= 0.15 * real,
                "EP{ep}: {sim:.1} vs {real} us"
            );
        }
    }
}

#[test]
fn deepep_normal_sends_a_token_to_a_machine_once() {
    use crate::cost::DispatchPlan;
    // GPU 0 sends the same 4096 tokens to GPUs 8 and 9 of the other machine.
    let cluster = Cluster::preset("hgx-h800x2").unwrap();
    let model = MoeModel::preset("deepseek-v3").unwrap();
    let mut plan = DispatchPlan::empty(vec![1; 16]);
    plan.count_per_node(8);
    plan.add_flow(0, 8, 4096.0);
    plan.add_flow(0, 9, 4096.0);
    plan.add_node_tokens(0, 1, 4096.0);
    let layers = [LayerWork::from_plan(&plan, 7168.0, 2.0 * 7168.0)];
    let costs = kernels::KernelCosts::new(&model, cluster.gpu_spec(0));
    let dispatch_ns = |algorithm: &str| {
        let setup = sim_setup(&format!("all_to_all = \"{algorithm}\""));
        let spec = spec(&cluster, &costs, &layers, &setup);
        simulate_step(&spec, &overlap("none"), "p").layers[0].dispatch_ns
    };
    // Direct: 2 x 29,360,128 B through GPU 0's 50 GB/s NIC; DeepEP normal: once, then NVLink
    // from GPU 8 to GPU 9. Each is its bytes over the NIC plus the same route latency, so the
    // difference is one copy's 587,203 ns.
    let (direct, normal) = (dispatch_ns("direct"), dispatch_ns("deepep-normal"));
    let one_copy = (29_360_128.0_f64 / 50.0).ceil() as u64;
    assert!(
        direct.abs_diff(normal + one_copy) < 2_000,
        "{direct} vs {normal}"
    );
    assert!(normal.abs_diff(one_copy) < 20_000, "{normal} vs {one_copy}");
}

#[test]
fn deepep_normal_kernel_bandwidths_are_reproduced_within_15_percent() {
    for (ep, algorithm, published) in [
        (8, "direct", (153.0, 158.0)),
        (32, "hierarchical", (58.0, 57.0)),
        (64, "hierarchical", (51.0, 50.0)),
        (32, "deepep-normal", (58.0, 57.0)),
        (64, "deepep-normal", (51.0, 50.0)),
    ] {
        let simulated = deepep_bandwidths(ep, algorithm);
        eprintln!("EP{ep}: simulated {simulated:?} GB/s, published {published:?}");
        for (sim, real) in [(simulated.0, published.0), (simulated.1, published.1)] {
            assert!(
                (sim - real).abs() <= 0.15 * real,
                "EP{ep}: {sim:.1} vs {real}"
            );
        }
    }
}

#[test]
fn tp2_halves_the_expert_gemm_and_adds_a_reduce_scatter_over_nvswitch() {
    use crate::placement::{LayerPlacement, Placement};
    use crate::trace::LayerRouting;
    // DeepSeek-V3 on one DGX H100: 4 ranks of 2 GPUs, 64 experts per rank. Token t (of
    // 1024, 128 on each GPU) picks experts 8(t mod 32) .. 8(t mod 32) + 7, all on rank
    // (t mod 32) / 8: each rank gets 256 tokens, each expert 32.
    let cluster = Cluster::preset("dgx-h100").unwrap();
    let model = MoeModel::preset("deepseek-v3").unwrap();
    let ranks = Placement::new(
        4,
        256,
        64,
        vec![LayerPlacement {
            gpu_experts: (0..4u16)
                .map(|rank| (rank * 64..rank * 64 + 64).collect())
                .collect(),
        }],
    )
    .unwrap();
    let placement = crate::placement::tp_expand(&ranks, 2).unwrap();
    let experts: Vec<u16> = (0..1024u16)
        .flat_map(|t| (0..8).map(move |j| 8 * (t % 32) + j))
        .collect();
    let routing = LayerRouting::fixed_k(8, experts, None).unwrap();
    let plan = crate::placement::dispatch::plan_tokens(&cluster, &placement, 0, &routing).unwrap();
    let hidden = 7168.0;
    let work = [LayerWork::from_plan_tp(
        &plan,
        hidden,
        2.0 * hidden,
        2,
        true,
    )];
    assert_eq!(work[0].expert_tokens[5], vec![32.0; 64]);
    let base = kernels::KernelCosts::new(&model, cluster.gpu_spec(0));
    let costs = base.clone().with_expert_tp(2);
    let setup = SimSetup::default();
    let spec = spec(&cluster, &costs, &work, &setup);
    let layer = simulate_step(&spec, &overlap("none"), "p").layers.remove(0);
    // Each GPU reads half of each expert's weights (width 1024), memory-bound at 2278 B/ns:
    // gate_up 962,592,768 B = 422,560.5 ns, down 501,219,328 B = 220,026.0 ns: 642,587 ns +
    // launch; a little over half the whole experts' 1,265,841 ns, since every GPU still reads
    // all the rank's input rows and writes their (partial) outputs.
    let launch = crate::sim::kernels::KERNEL_LAUNCH_NS;
    let routed_ns = costs.routed_ns(vec![32.0; 64]);
    assert_eq!(routed_ns, 642_587 + launch);
    assert_eq!(base.routed_ns(vec![32.0; 64]), 1_265_841 + launch);
    // GPU 5 runs attention, the (unsplit) shared expert and its half of the routed experts.
    let busy = costs.attention_ns(128.0, &Default::default()) + costs.shared_ns(128.0) + routed_ns;
    assert_eq!(layer.gpus[5].busy_ns, busy);
    // Reduce-scatter: each GPU sends its peer half of its 256 partial BF16 outputs,
    // 256 x 7168 x 2 / 2 = 1,835,008 B over its own 450 GB/s ports: 4,077.8 -> 4,078 ns,
    // plus the 1,000 ns GPU-to-GPU latency.
    assert_eq!(work[0].tp_reduce.get(4, 5), 1_835_008);
    assert_eq!(work[0].tp_reduce.get(4, 6), 0);
    assert_eq!(layer.tp_reduce_ns, 4_078 + 1_000);
    // Combine: each GPU returns its half of the outputs of the 32 tokens a GPU sent it.
    assert_eq!(work[0].combine.get(5, 0), 32 * 7168);
    assert_eq!(
        layer.exposed_comm_ns,
        layer.dispatch_ns + layer.tp_reduce_ns + layer.combine_ns
    );
}

#[test]
fn borrowed_expert_weights_take_bytes_over_bandwidth_plus_latency_before_the_borrowers_gemm() {
    let cluster = Cluster::preset("dgx-h100").unwrap();
    let model = MoeModel::preset("deepseek-v3").unwrap();
    let costs = kernels::KernelCosts::new(&model, cluster.gpu_spec(0));
    // No tokens to dispatch; GPU 0 lends GPU 1 45 MB of expert weights: 100,000 ns at
    // 450 B/ns plus the 1000 ns route latency.
    let mut layers = uniform_layers(&cluster, 1, 0);
    layers[0].weights.add(0, 1, 45_000_000);
    let setup = SimSetup::default();
    let spec = spec(&cluster, &costs, &layers, &setup);
    let graph = step::build(&spec, &*overlap("none"));
    let timeline = engine::run(&graph, &cluster, &exact(1.0), LinkBusy::Skip);
    let ids = 0..graph.len() as u32;
    // The weights are the layer's first collective.
    let receive = ids
        .clone()
        .find(|&id| {
            graph.task(id).work
                == Work::Receive {
                    collective: 0,
                    dst: 1,
                }
        })
        .unwrap() as usize;
    assert_eq!(
        timeline.end_ns[receive] - timeline.start_ns[receive],
        101_000
    );
    // GPU 1's routed GEMM (its last expert kernel) starts as the weights land.
    let routed = ids
        .filter(|&id| {
            let task = graph.task(id);
            task.label.phase == step::Phase::Expert
                && matches!(task.work, Work::Compute { gpu: 1, .. })
        })
        .max()
        .unwrap() as usize;
    assert_eq!(timeline.start_ns[routed], timeline.end_ns[receive]);
}
