//! The run loop: tasks start as their dependencies finish, compute on their GPU's streams and
//! transfers as flows on the network, until every task is done.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::graph::{NO_TASK, PairTransfer, Successors, TaskGraph, TaskId, Work};
use super::occupancy::{LinkBusy, LinkOccupancy};
use super::timeline::Timeline;
use crate::sim::binding::binding_routes;
use crate::sim::config::LinkSettings;
use crate::sim::network::{FlowId, FlowNetwork};
use crate::topology::{Cluster, Route};

/// Runs `graph` on `cluster` from time 0 until every task is done, with NVLink links at
/// `links.nvlink_efficiency` of their nominal bandwidth (other links at theirs) and bandwidth
/// re-divided within `links.rate_tolerance`.
pub fn run<L: Copy>(
    graph: &TaskGraph<'_, L>,
    cluster: &Cluster,
    links: &LinkSettings,
    link_busy: LinkBusy,
) -> Timeline {
    Engine::new(graph, cluster, links, link_busy).run()
}

/// The routes a transfer follows: `src -> dst`, or `src -> relay -> dst`.
pub fn transfer_routes(
    cluster: &Cluster,
    src: u32,
    dst: u32,
    relay: Option<u32>,
) -> impl Iterator<Item = &Route> {
    transfer_legs(src, dst, relay)
        .into_iter()
        .map(|(a, b)| cluster.route(a, b))
}

/// The GPU pairs a transfer's routes join (`(dst, dst)`, the empty route, when not relayed).
fn transfer_legs(src: u32, dst: u32, relay: Option<u32>) -> [(usize, usize); 2] {
    let (src, dst) = (src as usize, dst as usize);
    match relay {
        Some(relay) => [(src, relay as usize), (relay as usize, dst)],
        None => [(src, dst), (dst, dst)],
    }
}

/// A GPU stream: busy until a task finishes, with tasks queued behind it.
#[derive(Debug, Default, Clone)]
struct Stream {
    busy: bool,
    /// The task that last ran on it.
    last: Option<TaskId>,
    queue: VecDeque<TaskId>,
}

/// What a flow in flight belongs to.
#[derive(Debug, Clone, Copy)]
struct FlowOwner {
    /// The bytes and route.
    transfer: PairTransfer,
    /// The [`Work::Transfer`] or [`Work::Send`] task that started it.
    task: TaskId,
    /// For a send's flow, the receive it arrives at; [`NO_TASK`] for a transfer.
    receive: TaskId,
    /// Latency of its routes, added once its last byte has left.
    latency_ns: u64,
}

/// Engine state while a graph runs.
struct Engine<'g, 'm, L> {
    graph: &'g TaskGraph<'m, L>,
    cluster: &'g Cluster,
    network: FlowNetwork,
    /// Per GPU pair, the links of its route that can limit a flow ([`binding_routes`]).
    binding: Vec<Vec<u32>>,
    /// Scratch: the limiting links of the transfer being started.
    flow_links: Vec<u32>,
    /// Per flow slot, what the flow in it belongs to.
    flow_owner: Vec<FlowOwner>,
    /// Streams, indexed by `gpu * streams_per_gpu + stream`.
    streams: Vec<Stream>,
    streams_per_gpu: usize,
    /// Task completions `(ns, task, NO_TASK)`, and per receive the arrival of its last flow
    /// `(ns, receive, send)`.
    completions: BinaryHeap<Reverse<(u64, TaskId, TaskId)>>,
    /// Per task, dependencies it still waits for; a receive with flows bound for it counts
    /// them as one more, its last arrival.
    waiting_deps: Vec<u32>,
    /// Per receive, flows bound for it that have not drained yet.
    flows_left: Vec<u32>,
    /// Per receive, the latest arrival of its drained flows and the send that started it
    /// (the later send on ties, the order a queue of every arrival would give).
    last_arrival: Vec<(u64, TaskId)>,
    successors: Successors,
    /// Link occupancy, when recorded.
    occupancy: Option<LinkOccupancy>,
    timeline: Timeline,
}

impl<'g, 'm, L: Copy> Engine<'g, 'm, L> {
    fn new(
        graph: &'g TaskGraph<'m, L>,
        cluster: &'g Cluster,
        links: &LinkSettings,
        link_busy: LinkBusy,
    ) -> Self {
        let streams_per_gpu = graph
            .tasks
            .iter()
            .filter_map(|t| match t.work {
                Work::Compute { stream, .. } => Some(stream as usize + 1),
                _ => None,
            })
            .max()
            .unwrap_or(1);
        let n = graph.len();
        let capacity_gbps = links.capacities(cluster);
        let mut waiting_deps: Vec<u32> = (0..n)
            .map(|t| graph.deps_end[t] - if t == 0 { 0 } else { graph.deps_end[t - 1] })
            .collect();
        let mut flows_left = vec![0u32; n];
        for collective in &graph.collectives {
            for src in 0..collective.matrix.num_gpus() as u32 {
                for pair in collective.sends(src, cluster) {
                    let receive = collective.receives[pair.dst as usize];
                    assert_ne!(
                        receive, NO_TASK,
                        "a collective's GPU {} has no receive",
                        pair.dst
                    );
                    if flows_left[receive as usize] == 0 {
                        waiting_deps[receive as usize] += 1;
                    }
                    flows_left[receive as usize] += 1;
                }
            }
        }
        Engine {
            graph,
            cluster,
            binding: binding_routes(cluster, &capacity_gbps),
            flow_links: Vec::new(),
            network: FlowNetwork::new(capacity_gbps).with_rate_tolerance(links.rate_tolerance),
            flow_owner: Vec::new(),
            streams: vec![Stream::default(); cluster.num_gpus() * streams_per_gpu],
            streams_per_gpu,
            completions: BinaryHeap::new(),
            waiting_deps,
            flows_left,
            last_arrival: vec![(0, NO_TASK); n],
            successors: Successors::of(graph),
            occupancy: (link_busy == LinkBusy::Record)
                .then(|| LinkOccupancy::new(cluster.num_links())),
            timeline: Timeline {
                start_ns: vec![0; n],
                end_ns: vec![0; n],
                critical_pred: vec![None; n],
                sends_done_ns: vec![0; n],
                link_busy: Vec::new(),
                events: 0,
            },
        }
    }

    fn run(mut self) -> Timeline {
        let roots: Vec<TaskId> = (0..self.graph.len() as TaskId)
            .filter(|&t| self.waiting_deps[t as usize] == 0)
            .collect();
        for task in roots {
            self.ready(0, task, None);
        }
        self.network.settle(0);
        let mut drained: Vec<FlowId> = Vec::new();
        loop {
            let next_completion = self.completions.peek().map(|Reverse((ns, ..))| *ns);
            let now = match (next_completion, self.network.next_drain_ns()) {
                (Some(c), Some(d)) => c.min(d),
                (Some(c), None) => c,
                (None, Some(d)) => d,
                (None, None) => break,
            };
            drained.clear();
            self.network.drain_at(now, &mut drained);
            for &flow in &drained {
                self.timeline.events += 1;
                self.drained(now, self.flow_owner[flow as usize]);
            }
            while let Some(&Reverse((ns, task, via))) = self.completions.peek() {
                if ns > now {
                    break;
                }
                self.completions.pop();
                if via == NO_TASK {
                    self.timeline.events += 1;
                    self.complete(now, task);
                } else {
                    self.last_flow_arrived(now, task, via);
                }
            }
            self.network.settle(now);
        }
        if let Some(occupancy) = self.occupancy {
            self.timeline.link_busy = occupancy.into_intervals();
        }
        self.timeline
    }

    /// The flow of `owner` drained at `now`: it arrives a route latency later.
    fn drained(&mut self, now: u64, owner: FlowOwner) {
        let PairTransfer {
            src, dst, relay, ..
        } = owner.transfer;
        let arrival = now + owner.latency_ns;
        if let Some(occupancy) = &mut self.occupancy {
            for route in transfer_routes(self.cluster, src, dst, relay) {
                for link in &route.links {
                    occupancy.drain(link.index(), arrival);
                }
            }
        }
        self.arrival_at(arrival, owner.task, owner.receive);
    }

    /// Records that a transfer started by `task` arrives at `ns`: the transfer completes then;
    /// a send's flow counts towards `receive`, which is queued once its last flow is known
    /// (the arrivals in between change nothing else, so they need no place in the queue).
    fn arrival_at(&mut self, ns: u64, task: TaskId, receive: TaskId) {
        if receive == NO_TASK {
            self.completions.push(Reverse((ns, task, NO_TASK)));
            return;
        }
        self.timeline.events += 1;
        let done = &mut self.timeline.sends_done_ns[task as usize];
        *done = (*done).max(ns);
        let r = receive as usize;
        let last = &mut self.last_arrival[r];
        if (ns, task) > *last || last.1 == NO_TASK {
            *last = (ns, task);
        }
        self.flows_left[r] -= 1;
        if self.flows_left[r] == 0 {
            let (ns, send) = self.last_arrival[r];
            self.completions.push(Reverse((ns, receive, send)));
        }
    }

    /// The last flow bound for `receive`, started by `send`, arrived at `now`.
    fn last_flow_arrived(&mut self, now: u64, receive: TaskId, send: TaskId) {
        self.waiting_deps[receive as usize] -= 1;
        if self.waiting_deps[receive as usize] == 0 {
            self.ready(now, receive, Some(send));
        }
    }

    /// Starts moving `transfer` for `task` (arriving at `receive`, if any) at `now`.
    fn start_transfer(&mut self, now: u64, transfer: PairTransfer, task: TaskId, receive: TaskId) {
        let PairTransfer {
            src,
            dst,
            relay,
            bytes,
        } = transfer;
        let gpus = self.cluster.num_gpus();
        self.flow_links.clear();
        for (a, b) in transfer_legs(src, dst, relay) {
            self.flow_links
                .extend_from_slice(&self.binding[a * gpus + b]);
        }
        if bytes == 0 || self.flow_links.is_empty() {
            self.arrival_at(now, task, receive);
            return;
        }
        let latency_ns = transfer_routes(self.cluster, src, dst, relay)
            .map(|route| route.latency_ns)
            .sum();
        if let Some(occupancy) = &mut self.occupancy {
            for route in transfer_routes(self.cluster, src, dst, relay) {
                for link in &route.links {
                    occupancy.start(link.index(), now);
                }
            }
        }
        let flow = self.network.start(now, &self.flow_links, bytes) as usize;
        let owner = FlowOwner {
            transfer,
            task,
            receive,
            latency_ns,
        };
        if flow == self.flow_owner.len() {
            self.flow_owner.push(owner);
        } else {
            self.flow_owner[flow] = owner;
        }
    }

    /// `task`'s dependencies are all done at `now` (the last being `pred`).
    fn ready(&mut self, now: u64, task: TaskId, pred: Option<TaskId>) {
        self.timeline.critical_pred[task as usize] = pred;
        match self.graph.tasks[task as usize].work {
            Work::Compute { gpu, stream, .. } => {
                let s = gpu as usize * self.streams_per_gpu + stream as usize;
                self.streams[s].queue.push_back(task);
                if !self.streams[s].busy {
                    self.start_next_on(now, s);
                }
            }
            Work::Transfer {
                src,
                dst,
                relay,
                bytes,
            } => {
                self.timeline.start_ns[task as usize] = now;
                let transfer = PairTransfer {
                    src,
                    dst,
                    relay,
                    bytes,
                };
                self.start_transfer(now, transfer, task, NO_TASK);
            }
            Work::Send { collective, src } => {
                self.timeline.start_ns[task as usize] = now;
                self.timeline.end_ns[task as usize] = now;
                let collective = &self.graph.collectives[collective as usize];
                for transfer in collective.sends(src, self.cluster) {
                    let receive = collective.receives[transfer.dst as usize];
                    self.start_transfer(now, transfer, task, receive);
                }
                self.completions.push(Reverse((now, task, NO_TASK)));
            }
            Work::Receive { .. } => {
                // On the critical path a receive spans the flow that arrived last, from its send.
                let start = pred.map_or(now, |p| self.timeline.end_ns[p as usize]);
                self.timeline.start_ns[task as usize] = start;
                self.completions.push(Reverse((now, task, NO_TASK)));
            }
            Work::Join => {
                self.timeline.start_ns[task as usize] = now;
                self.completions.push(Reverse((now, task, NO_TASK)));
            }
        }
    }

    /// Starts the next queued task on stream `s`, which is idle.
    fn start_next_on(&mut self, now: u64, s: usize) {
        let Some(task) = self.streams[s].queue.pop_front() else {
            return;
        };
        let stream = &mut self.streams[s];
        stream.busy = true;
        // Queued behind an earlier kernel: that kernel, not the dependency, decided the start.
        if let Some(last) = stream.last
            && self.timeline.end_ns[last as usize] == now
            && self.timeline.critical_pred[task as usize]
                .is_none_or(|p| self.timeline.end_ns[p as usize] < now)
        {
            self.timeline.critical_pred[task as usize] = Some(last);
        }
        stream.last = Some(task);
        self.timeline.start_ns[task as usize] = now;
        if let Work::Compute { duration_ns, .. } = self.graph.tasks[task as usize].work {
            self.completions
                .push(Reverse((now + duration_ns, task, NO_TASK)));
        }
    }

    /// `task` finished at `now`: free its stream and release its successors.
    fn complete(&mut self, now: u64, task: TaskId) {
        self.timeline.end_ns[task as usize] = now;
        if let Work::Compute { gpu, stream, .. } = self.graph.tasks[task as usize].work {
            let s = gpu as usize * self.streams_per_gpu + stream as usize;
            self.streams[s].busy = false;
            self.start_next_on(now, s);
        }
        for i in 0..self.successors.get(task).len() {
            let next = self.successors.get(task)[i];
            self.waiting_deps[next as usize] -= 1;
            if self.waiting_deps[next as usize] == 0 {
                self.ready(now, next, Some(task));
            }
        }
    }
}
