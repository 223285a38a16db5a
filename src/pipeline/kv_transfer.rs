//! KV hand-offs as flows on the simulated network: a request's KV cache runs from the GPUs of
//! its prefill rank to those of its decode rank over the cluster's links (NVLink inside a node,
//! the NICs and the spine across nodes), sharing every link max-min fairly with the other
//! transfers in flight, and lands one route latency after its last byte left. A network failure
//! (`[[failures]] kind = "network"`) reroutes the hand-offs that start after it; those already
//! in flight finish on the route they started on.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::replacement::Failures;
use crate::serve::KvTransport;
use crate::sim::LinkSettings;
use crate::sim::network::{FlowId, FlowNetwork};
use crate::topology::Cluster;

/// The prefill pool on the cluster's first GPUs and the decode pool on the GPUs after them,
/// joined by the cluster's network.
pub struct NetworkTransport {
    cluster: Cluster,
    /// Network failures still to come: each replaces `cluster` by its rerouted self.
    failures: Failures,
    network: FlowNetwork,
    prefill_gpus_per_rank: usize,
    decode_first_gpu: usize,
    decode_gpus_per_rank: usize,
    /// Per flow in flight, the ticket it carries and its route's latency.
    flows: Vec<(u64, u64)>,
    /// Per transfer in flight, its flows that have not landed.
    parts_left: BTreeMap<u64, usize>,
    /// Drained flows by the time they land: (ns, ticket).
    landing: BinaryHeap<Reverse<(u64, u64)>>,
    drained: Vec<FlowId>,
    links: Vec<u32>,
}

impl NetworkTransport {
    /// Transfers on `cluster` (links as `links` sets them) from a prefill pool of
    /// `prefill_gpus` GPUs in ranks of `prefill_gpus_per_rank` to a decode pool on the next
    /// GPUs in ranks of `decode_gpus_per_rank`, rerouted as `failures` take parts out.
    pub fn new(
        cluster: Cluster,
        failures: Failures,
        links: &LinkSettings,
        prefill_gpus: usize,
        prefill_gpus_per_rank: usize,
        decode_gpus_per_rank: usize,
    ) -> NetworkTransport {
        NetworkTransport {
            network: FlowNetwork::new(links.capacities(&cluster)),
            cluster,
            failures,
            prefill_gpus_per_rank,
            decode_first_gpu: prefill_gpus,
            decode_gpus_per_rank,
            flows: Vec::new(),
            parts_left: BTreeMap::new(),
            landing: BinaryHeap::new(),
            drained: Vec::new(),
            links: Vec::new(),
        }
    }
}

impl KvTransport for NetworkTransport {
    /// One flow per GPU pair of the two ranks (the KV is split over a rank's GPUs), each with an
    /// equal share of the bytes.
    fn start(&mut self, at_ns: u64, from: usize, to: usize, bytes: u64, ticket: u64) {
        if let Some(rerouted) = self.failures.due(at_ns) {
            self.cluster = rerouted;
        }
        let parts = self.prefill_gpus_per_rank.max(self.decode_gpus_per_rank);
        let part_bytes = bytes.div_ceil(parts as u64).max(1);
        for part in 0..parts {
            let src = from * self.prefill_gpus_per_rank + part % self.prefill_gpus_per_rank;
            let dst = self.decode_first_gpu
                + to * self.decode_gpus_per_rank
                + part % self.decode_gpus_per_rank;
            let route = self.cluster.route(src, dst);
            self.links.clear();
            self.links
                .extend(route.links.iter().map(|l| l.index() as u32));
            let flow = self.network.start(at_ns, &self.links, part_bytes) as usize;
            if flow == self.flows.len() {
                self.flows.push((ticket, route.latency_ns));
            } else {
                self.flows[flow] = (ticket, route.latency_ns);
            }
        }
        self.parts_left.insert(ticket, parts);
        self.network.settle(at_ns);
    }

    fn next_event_ns(&self) -> Option<u64> {
        let landing = self.landing.peek().map(|Reverse((ns, _))| *ns);
        [self.network.next_drain_ns(), landing]
            .into_iter()
            .flatten()
            .min()
    }

    fn advance(&mut self, now_ns: u64, landed: &mut Vec<u64>) {
        if self.network.next_drain_ns() == Some(now_ns) {
            self.drained.clear();
            self.network.drain_at(now_ns, &mut self.drained);
            for &flow in &self.drained {
                let (ticket, latency_ns) = self.flows[flow as usize];
                self.landing.push(Reverse((now_ns + latency_ns, ticket)));
            }
            self.network.settle(now_ns);
        }
        let first = landed.len();
        while let Some(&Reverse((ns, ticket))) = self.landing.peek()
            && ns <= now_ns
        {
            self.landing.pop();
            let left = self
                .parts_left
                .get_mut(&ticket)
                .expect("a landing flow belongs to a transfer in flight");
            *left -= 1;
            if *left == 0 {
                self.parts_left.remove(&ticket);
                landed.push(ticket);
            }
        }
        landed[first..].sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Failure, NetworkFailure};

    /// Drives `transport` to the end, returning (ticket, landing ns) in landing order.
    fn run(transport: &mut NetworkTransport) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut landed = Vec::new();
        while let Some(ns) = transport.next_event_ns() {
            transport.advance(ns, &mut landed);
            out.extend(landed.drain(..).map(|t| (t, ns)));
        }
        out
    }

    fn two_nodes() -> NetworkTransport {
        // Prefill on node 0 (8 GPUs, one per rank), decode on node 1.
        let cluster = Cluster::preset("dgx-h100x2").unwrap();
        NetworkTransport::new(cluster, Failures::none(), &LinkSettings::default(), 8, 1, 1)
    }

    #[test]
    fn one_transfer_takes_its_bytes_over_the_nic_plus_the_route_latency() {
        let mut transport = two_nodes();
        let route = transport.cluster.route(0, 8).clone();
        let bytes = 70_272 * 2_000; // DeepSeek-V3 MLA KV of a 2,000-token prompt
        transport.start(1_000, 0, 0, bytes, 7);
        let ns = (bytes as f64 / route.bottleneck_gbps).ceil() as u64;
        assert_eq!(run(&mut transport), [(7, 1_000 + ns + route.latency_ns)]);
    }

    #[test]
    fn transfers_into_one_decode_gpu_share_its_nic() {
        let mut transport = two_nodes();
        let route = transport.cluster.route(0, 8).clone();
        let latency = |src, dst| transport.cluster.route(src, dst).latency_ns;
        let (from_0, from_1, from_1_to_9) = (latency(0, 8), latency(1, 8), latency(1, 9));
        let bytes = 50_000_000;
        // From two prefill GPUs into decode rank 0: its NIC is shared, each gets half.
        transport.start(0, 0, 0, bytes, 1);
        transport.start(0, 1, 0, bytes, 2);
        let both = (2.0 * bytes as f64 / route.bottleneck_gbps).ceil() as u64;
        assert_eq!(
            run(&mut transport),
            [(1, both + from_0), (2, both + from_1)]
        );
        // Into two decode ranks: two NICs, no sharing.
        transport.start(0, 0, 0, bytes, 3);
        transport.start(0, 1, 1, bytes, 4);
        let one = (bytes as f64 / route.bottleneck_gbps).ceil() as u64;
        assert_eq!(
            run(&mut transport),
            [(3, one + from_0), (4, one + from_1_to_9)]
        );
    }

    #[test]
    fn after_a_decode_nic_fails_two_hand_offs_share_the_other_nic() {
        // Decode GPU 8's NIC (n1/nic0) fails at 0 s: its KV enters machine 1 by n1/nic1, the
        // NIC of decode GPU 9, so two hand-offs into ranks 0 and 1 share it: 2 B / G each
        // instead of B / G, plus the rerouted route's latency.
        let cluster = Cluster::preset("dgx-h100x2").unwrap();
        let failures = [Failure::Network(NetworkFailure {
            at_s: 0.0,
            component: "n1/nic0".into(),
        })];
        let schedule = Failures::new(&failures, &cluster).unwrap();
        let failed = Failures::new(&failures, &cluster).unwrap().due(0).unwrap();
        let g = cluster.route(0, 8).bottleneck_gbps;
        let mut transport =
            NetworkTransport::new(cluster, schedule, &LinkSettings::default(), 8, 1, 1);
        let rerouted = failed.route(0, 8);
        assert!(
            rerouted
                .links
                .iter()
                .any(|&l| failed.link(l).name.ends_with("->n1/nic1"))
        );
        let bytes = 50_000_000;
        transport.start(0, 0, 0, bytes, 1);
        transport.start(0, 1, 1, bytes, 2);
        let shared = (2.0 * bytes as f64 / g).ceil() as u64;
        assert_eq!(
            run(&mut transport),
            [
                (2, shared + failed.route(1, 9).latency_ns),
                (1, shared + rerouted.latency_ns)
            ]
        );
    }
}
