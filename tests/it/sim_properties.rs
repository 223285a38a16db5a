//! Property tests of the discrete-event engine on random small clusters (2-16 GPUs on one or
//! two machines, random NVLink, PCIe and NIC bandwidths) and random sparse traffic, exact and
//! with a rate tolerance: an all-to-all is never shorter than its busiest link needs (on one
//! machine, the analytical tier's bound), and in a collective every GPU is sent its column of
//! the traffic matrix and its receive completes when the last flow bound for it arrives.
//!
//! The flow network's own invariants (no link over its capacity, every byte drained) are
//! checked in `src/sim/network/properties.rs`. Each property runs proptest's default number of
//! cases; `PROPTEST_CASES=10000 cargo test --release --test it sim_properties::` runs a long budget.

use moesim::cost::{TrafficMatrix, all_to_all};
use moesim::registry::Settings;
use moesim::sim::engine::{self, LinkBusy, TaskGraph, Timeline, Work};
use moesim::sim::{ALL_TO_ALLS, LinkSettings};
use moesim::topology::{
    Cluster, ClusterSpec, GpuSpec, LinkId, NetworkSpec, NvLinkSpec, PcieSpec, spec,
};
use proptest::prelude::*;

/// A cluster of one or two machines and 2 to 16 GPUs, bandwidths random within sane ranges.
fn cluster_spec() -> impl Strategy<Value = ClusterSpec> {
    let machines = (1..=2usize, 1..=8usize).prop_filter("2 to 16 GPUs", |(m, g)| m * g >= 2);
    let pcie = (8.0..128.0f64, 1..=4usize);
    let network = (10.0..100.0f64, 1.0..4.0f64);
    (machines, prop::option::of(50.0..900.0f64), pcie, network).prop_map(
        |((nodes, gpus_per_node), nvlink, (pcie_gbps, gpus_per_switch), (nic_gbps, over))| {
            ClusterSpec {
                name: "random".into(),
                nodes,
                gpus_per_node,
                gpu: GpuSpec::named("h100").unwrap(),
                nvlink: nvlink.map(|gbps| NvLinkSpec {
                    gbps,
                    latency_ns: spec::NVLINK_LATENCY_NS,
                }),
                pcie: PcieSpec {
                    gbps: pcie_gbps,
                    gpus_per_switch,
                    latency_ns: spec::PCIE_LATENCY_NS,
                },
                network: NetworkSpec {
                    nic_gbps,
                    oversubscription: over,
                    ..NetworkSpec::default()
                },
            }
        },
    )
}

/// A cluster and up to 40 `(src, dst, bytes)` entries between its GPUs (the diagonal
/// included, which costs nothing), small and large.
fn cluster_and_traffic() -> impl Strategy<Value = (ClusterSpec, Vec<(usize, usize, u64)>)> {
    cluster_spec().prop_flat_map(|spec| {
        let gpus = spec.num_gpus();
        let bytes = prop_oneof![1..10_000u64, 1..50_000_000u64];
        let entries = prop::collection::vec((0..gpus, 0..gpus, bytes), 1..=40);
        (Just(spec), entries)
    })
}

/// Exact max-min, or a random rate tolerance.
fn rate_tolerance() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), 0.001..0.95f64]
}

/// The traffic matrix of `entries` on `gpus` GPUs.
fn traffic(gpus: usize, entries: &[(usize, usize, u64)]) -> TrafficMatrix {
    let mut traffic = TrafficMatrix::zeros(gpus);
    for &(src, dst, bytes) in entries {
        traffic.add(src, dst, bytes);
    }
    traffic
}

/// Links at their nominal bandwidth, re-divided within `rate_tolerance`.
fn links(rate_tolerance: f64) -> LinkSettings {
    LinkSettings {
        nvlink_efficiency: 1.0,
        rate_tolerance,
    }
}

/// When link `link` was last busy in `timeline` (0 if never).
fn busy_until(timeline: &Timeline, link: LinkId) -> u64 {
    timeline.link_busy[link.index()]
        .last()
        .map_or(0, |&(_, end)| end)
}

proptest! {
    // A failure is minimised and kept as a regular test, not in a regressions file.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// Every pair's bytes start at 0 as one transfer. A link of `C` B/ns carrying `B` bytes in
    /// all lets the last of them leave no earlier than `B / C`, and they arrive a route latency
    /// later: the run takes at least that, for every link. On one machine every route has the
    /// same latency and this is the analytical tier's time (the busiest link's bytes over its
    /// bandwidth plus the longest latency). A drain instant may round 1 ns down (float noise).
    #[test]
    fn an_all_to_all_is_never_shorter_than_its_busiest_link_needs(
        (spec, entries) in cluster_and_traffic(),
        tolerance in rate_tolerance(),
    ) {
        let cluster = Cluster::from_spec(spec).unwrap();
        let traffic = traffic(cluster.num_gpus(), &entries);
        let mut graph = TaskGraph::default();
        let mut least_latency = vec![u64::MAX; cluster.num_links()];
        let mut latencies = Vec::new();
        for (src, dst, bytes) in traffic.pairs() {
            let transfer = Work::Transfer { src: src as u32, dst: dst as u32, relay: None, bytes };
            graph.add(transfer, (), &[]);
            let route = cluster.route(src, dst);
            for link in &route.links {
                let least = &mut least_latency[link.index()];
                *least = (*least).min(route.latency_ns);
            }
            latencies.push(route.latency_ns);
        }
        let simulated = engine::run(&graph, &cluster, &links(tolerance), LinkBusy::Skip)
            .makespan_ns();
        let cost = all_to_all(&cluster, &traffic).unwrap();
        for (id, link) in cluster.links() {
            let bytes = cost.link_bytes[id.index()];
            if bytes == 0 {
                continue;
            }
            let needs = (bytes as f64 / link.bandwidth_gbps).ceil() as u64
                + least_latency[id.index()];
            prop_assert!(
                simulated + 1 >= needs,
                "{} ns simulated, but {} carries {} B: {} ns", simulated, link.name, bytes, needs
            );
        }
        if latencies.iter().all(|&l| l == latencies[0]) {
            prop_assert!(simulated + 1 >= cost.time_ns, "{} < {} ns", simulated, cost.time_ns);
        }
    }

    /// Each GPU's send starts after a random delay (a kernel before it). Whatever the
    /// all-to-all algorithm relays, the sends put `ceil(share x bytes)` of each pair on flows to
    /// its receiving GPU, so each receive is sent its column of the traffic matrix. With direct
    /// routes, only a GPU's flows cross its ports: its receive completes exactly when its
    /// ingress links were last busy (the arrival of its last flow) and its send is done when
    /// its egress links were.
    #[test]
    fn each_receive_gets_its_column_and_completes_with_its_last_arrival(
        (spec, entries) in cluster_and_traffic(),
        tolerance in rate_tolerance(),
        share in prop_oneof![Just(1.0), 0.01..1.0f64],
        algorithm in prop::sample::select(vec!["direct", "hierarchical", "low-latency"]),
        delays in prop::collection::vec(prop_oneof![Just(0u64), 0..20_000u64], 16),
    ) {
        let cluster = Cluster::from_spec(spec).unwrap();
        let gpus = cluster.num_gpus();
        let traffic = traffic(gpus, &entries);
        let algorithm = ALL_TO_ALLS.build(algorithm, &Settings::new()).unwrap();
        let mut graph = TaskGraph::default();
        let collective = graph.add_collective(&traffic, share, &*algorithm);
        let sends: Vec<u32> = (0..gpus as u32)
            .map(|src| {
                let delay = Work::Compute { gpu: src, stream: 0, duration_ns: delays[src as usize] };
                let delay = graph.add(delay, (), &[]);
                graph.add(Work::Send { collective, src }, (), &[delay])
            })
            .collect();
        let receives: Vec<u32> = (0..gpus as u32)
            .map(|dst| graph.add(Work::Receive { collective, dst }, (), &[]))
            .collect();
        let mut column = vec![0u64; gpus];
        for (src, &send) in sends.iter().enumerate() {
            for transfer in graph.transfers(send, &cluster) {
                prop_assert_eq!(transfer.src as usize, src);
                column[transfer.dst as usize] += transfer.bytes;
            }
        }
        for (dst, &got) in column.iter().enumerate() {
            let owed: u64 = (0..gpus)
                .filter(|&src| src != dst && traffic.get(src, dst) > 0)
                .map(|src| (traffic.get(src, dst) as f64 * share).ceil() as u64)
                .sum();
            prop_assert_eq!(got, owed, "GPU {} is sent {} B of its column's {}", dst, got, owed);
        }
        let timeline = engine::run(&graph, &cluster, &links(tolerance), LinkBusy::Record);
        if algorithm.name != "direct" {
            return Ok(());
        }
        for gpu in 0..gpus {
            let (mut ingress, mut egress) = (0, 0);
            for other in (0..gpus).filter(|&other| other != gpu) {
                let into = cluster.route(other, gpu).links.last().copied();
                let out = cluster.route(gpu, other).links.first().copied();
                ingress = ingress.max(into.map_or(0, |l| busy_until(&timeline, l)));
                egress = egress.max(out.map_or(0, |l| busy_until(&timeline, l)));
            }
            let receive = receives[gpu] as usize;
            prop_assert_eq!(timeline.end_ns[receive], ingress, "receive of GPU {}", gpu);
            prop_assert_eq!(timeline.sends_done_ns[sends[gpu] as usize], egress, "send of GPU {}", gpu);
        }
    }
}
