//! The discrete-event engine: runs a graph of tasks (compute kernels on GPU streams, transfers
//! over the network, zero-time joins) whose edges say what must finish before what starts.
//!
//! A compute task starts once its dependencies are done and its stream is free; a stream runs
//! one task at a time, in the order tasks became ready (ties to the lower task id). A transfer
//! starts as soon as its dependencies are done: its bytes become a flow on the
//! [`FlowNetwork`] and it completes the route latency after its last byte left. Every task
//! remembers the predecessor that decided its start, so the critical path can be walked back.
//!
//! An all-to-all is a [`Collective`]: one [`Work::Send`] per sending GPU, which starts a flow
//! to every GPU it owes bytes, and one [`Work::Receive`] per receiving GPU, which completes when
//! every flow bound for it has arrived. The per-pair bytes stay in the traffic matrix the
//! collective borrows, so the graph holds a few tasks per GPU and layer rather than one per GPU
//! pair, and the network holds only the flows in flight.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::binding::binding_routes;
use super::config::SimConfig;
use super::network::{FlowId, FlowNetwork};
use super::rounding::ceil_u64;
use crate::cost::TrafficMatrix;
use crate::topology::{Cluster, LinkKind, Route};

/// Index of a task in its [`TaskGraph`].
pub type TaskId = u32;

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A kernel of `duration_ns` on stream `stream` of GPU `gpu`.
    Compute {
        /// GPU index.
        gpu: u32,
        /// Stream index on that GPU (0: compute).
        stream: u8,
        /// Time the kernel takes once it runs.
        duration_ns: u64,
    },
    /// `bytes` from GPU `src` to GPU `dst` over the cluster route between them, or through
    /// GPU `relay` (the route to it, then on), forwarded as it arrives (cut-through).
    Transfer {
        /// Sending GPU.
        src: u32,
        /// Receiving GPU.
        dst: u32,
        /// Forwarding GPU, if any.
        relay: Option<u32>,
        /// Payload.
        bytes: u64,
    },
    /// Nothing: completes when its dependencies do (a fan-in point).
    Join,
    /// GPU `src`'s part of all-to-all `collective`: a flow to every GPU it owes bytes, started
    /// together; completes at once (the collective's receives wait for the flows).
    Send {
        /// Index of the collective in its graph.
        collective: u32,
        /// Sending GPU.
        src: u32,
    },
    /// GPU `dst`'s end of all-to-all `collective`: completes once its dependencies are done and
    /// every flow of the collective bound for `dst` has arrived. On the critical path it spans
    /// the last flow to arrive, from its send.
    Receive {
        /// Index of the collective in its graph.
        collective: u32,
        /// Receiving GPU.
        dst: u32,
    },
}

/// Bytes moved from one GPU to another: a [`Work::Transfer`], or one pair of a [`Work::Send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairTransfer {
    /// Sending GPU.
    pub src: u32,
    /// Receiving GPU.
    pub dst: u32,
    /// Forwarding GPU, if any.
    pub relay: Option<u32>,
    /// Payload.
    pub bytes: u64,
}

/// An all-to-all: GPU `src` sends GPU `dst` `ceil(share x matrix[src][dst])` bytes (`src !=
/// dst`), directly or, when `hierarchical`, through the GPU of `src`'s machine on `dst`'s rail
/// ([`hierarchical_relay`]).
#[derive(Debug, Clone)]
pub struct Collective<'m> {
    matrix: &'m TrafficMatrix,
    share: f64,
    hierarchical: bool,
    /// Per receiving GPU, its [`Work::Receive`] task ([`NO_TASK`] until added).
    receives: Vec<TaskId>,
}

impl Collective<'_> {
    /// What GPU `src` sends, by receiving GPU.
    fn sends<'a>(
        &'a self,
        src: u32,
        cluster: &'a Cluster,
    ) -> impl Iterator<Item = PairTransfer> + 'a {
        let gpus = self.matrix.num_gpus();
        (0..gpus as u32).filter_map(move |dst| {
            let bytes = self.matrix.get(src as usize, dst as usize);
            (dst != src && bytes > 0).then(|| PairTransfer {
                src,
                dst,
                relay: if self.hierarchical {
                    hierarchical_relay(cluster, src, dst)
                } else {
                    None
                },
                bytes: ceil_u64(bytes as f64 * self.share),
            })
        })
    }
}

/// The GPU a hierarchical all-to-all forwards `src -> dst` through: the GPU of `src`'s machine
/// on `dst`'s rail (NVLink inside the machine, then one RDMA hop), or none within a machine or
/// when that GPU is `src` itself.
pub fn hierarchical_relay(cluster: &Cluster, src: u32, dst: u32) -> Option<u32> {
    let (src, dst) = (src as usize, dst as usize);
    let per_node = cluster.gpus_per_node();
    let relay = cluster.node_of(src) * per_node + dst % per_node;
    (cluster.node_of(src) != cluster.node_of(dst) && relay != src).then_some(relay as u32)
}

/// A task id that names no task.
const NO_TASK: TaskId = TaskId::MAX;

/// One task and the label metrics group it under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task<L> {
    /// What it does.
    pub work: Work,
    /// Caller's label (layer, phase, micro-batch).
    pub label: L,
}

/// Tasks and their dependency edges, built in any order that lists dependencies first, and the
/// all-to-alls whose traffic matrices (borrowed for `'m`) their sends and receives share.
#[derive(Debug, Clone)]
pub struct TaskGraph<'m, L> {
    tasks: Vec<Task<L>>,
    collectives: Vec<Collective<'m>>,
    /// Every task's dependencies, one after the other (flat: a few bytes per edge rather than a
    /// vector per task).
    deps: Vec<TaskId>,
    /// Per task, where its dependencies end in `deps` (they start where the previous task's end).
    deps_end: Vec<u32>,
}

impl<L: Copy> Default for TaskGraph<'_, L> {
    fn default() -> Self {
        TaskGraph {
            tasks: Vec::new(),
            collectives: Vec::new(),
            deps: Vec::new(),
            deps_end: Vec::new(),
        }
    }
}

impl<'m, L: Copy> TaskGraph<'m, L> {
    /// Adds an all-to-all moving `share` of `matrix`'s bytes (each pair rounded up), relayed
    /// when `hierarchical`; returns its index for [`Work::Send`] and [`Work::Receive`] tasks,
    /// of which it needs one per GPU that sends and one per GPU that receives.
    pub fn add_collective(
        &mut self,
        matrix: &'m TrafficMatrix,
        share: f64,
        hierarchical: bool,
    ) -> u32 {
        self.collectives.push(Collective {
            matrix,
            share,
            hierarchical,
            receives: vec![NO_TASK; matrix.num_gpus()],
        });
        (self.collectives.len() - 1) as u32
    }

    /// Adds a task that waits for every task in `deps` (already added).
    pub fn add(&mut self, work: Work, label: L, deps: &[TaskId]) -> TaskId {
        let id = self.tasks.len() as TaskId;
        if let Work::Receive { collective, dst } = work {
            self.collectives[collective as usize].receives[dst as usize] = id;
        }
        self.tasks.push(Task { work, label });
        debug_assert!(deps.iter().all(|&d| d < id), "dependencies come first");
        self.deps.extend_from_slice(deps);
        self.deps_end.push(self.deps.len() as u32);
        id
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether there are no tasks.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The task `id`.
    pub fn task(&self, id: TaskId) -> &Task<L> {
        &self.tasks[id as usize]
    }

    /// The bytes task `id` moves between GPUs: its own for a transfer, every pair for a send.
    pub fn transfers<'a>(
        &'a self,
        id: TaskId,
        cluster: &'a Cluster,
    ) -> impl Iterator<Item = PairTransfer> + 'a {
        let (single, send) = match self.tasks[id as usize].work {
            Work::Transfer {
                src,
                dst,
                relay,
                bytes,
            } => (
                Some(PairTransfer {
                    src,
                    dst,
                    relay,
                    bytes,
                }),
                None,
            ),
            Work::Send { collective, src } => (None, Some((collective, src))),
            _ => (None, None),
        };
        single.into_iter().chain(
            send.into_iter()
                .flat_map(move |(c, src)| self.collectives[c as usize].sends(src, cluster)),
        )
    }
}

/// Every task's successors (the tasks waiting on it), in one flat list indexed by task.
#[derive(Debug)]
struct Successors {
    /// Successors of task `t` are `list[start[t]..start[t + 1]]`, in the order they were added.
    list: Vec<TaskId>,
    start: Vec<u32>,
}

impl Successors {
    /// Inverts `graph`'s dependency lists (counting sort by dependency).
    fn of<L>(graph: &TaskGraph<'_, L>) -> Successors {
        let n = graph.tasks.len();
        let mut start = vec![0u32; n + 1];
        for &dep in &graph.deps {
            start[dep as usize + 1] += 1;
        }
        for t in 0..n {
            start[t + 1] += start[t];
        }
        let mut next = start.clone();
        let mut list = vec![0; graph.deps.len()];
        let mut from = 0;
        for (task, &end) in graph.deps_end.iter().enumerate() {
            for &dep in &graph.deps[from..end as usize] {
                list[next[dep as usize] as usize] = task as TaskId;
                next[dep as usize] += 1;
            }
            from = end as usize;
        }
        Successors { list, start }
    }

    /// The tasks waiting on `task`.
    fn get(&self, task: TaskId) -> &[TaskId] {
        let t = task as usize;
        &self.list[self.start[t] as usize..self.start[t + 1] as usize]
    }
}

/// When each task ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// Per task, when it started.
    pub start_ns: Vec<u64>,
    /// Per task, when it finished.
    pub end_ns: Vec<u64>,
    /// Per task, the task whose completion let it start (a dependency or the previous task on
    /// its stream); `None` for tasks that start at time 0.
    pub critical_pred: Vec<Option<TaskId>>,
    /// Per [`Work::Send`] task, when the last of its flows arrived (0 for other tasks).
    pub sends_done_ns: Vec<u64>,
    /// Per link (by index), the intervals some transfer occupied it (from its start to its
    /// arrival), overlapping and touching ones merged, in time order; empty unless the run was
    /// asked to record them ([`LinkBusy::Record`]).
    pub link_busy: Vec<Vec<(u64, u64)>>,
    /// Events processed (task completions, flow drains and arrivals).
    pub events: u64,
}

impl Timeline {
    /// When the last task finished.
    pub fn makespan_ns(&self) -> u64 {
        self.end_ns.iter().copied().max().unwrap_or(0)
    }

    /// The critical path, first task first: from the last-finishing task (lowest id on ties)
    /// back through each task's critical predecessor.
    pub fn critical_path(&self) -> Vec<TaskId> {
        let makespan = self.makespan_ns();
        let mut path = Vec::new();
        let mut at = self.end_ns.iter().position(|&e| e == makespan);
        while let Some(task) = at {
            path.push(task as TaskId);
            at = self.critical_pred[task].map(|t| t as usize);
        }
        path.reverse();
        path
    }
}

/// Whether a run records when each link was busy ([`Timeline::link_busy`], which a trace
/// draws); that costs a little at every transfer, so runs that need only times skip it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkBusy {
    /// Leave [`Timeline::link_busy`] empty.
    Skip,
    /// Fill [`Timeline::link_busy`].
    Record,
}

/// Runs `graph` on `cluster` from time 0 until every task is done, with NVLink links at
/// `config.nvlink_efficiency` of their nominal bandwidth (other links at theirs) and bandwidth
/// re-divided within `config.rate_tolerance`.
pub fn run<L: Copy>(
    graph: &TaskGraph<'_, L>,
    cluster: &Cluster,
    config: &SimConfig,
    link_busy: LinkBusy,
) -> Timeline {
    Engine::new(graph, cluster, config, link_busy).run()
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

/// Per link, how many transfers occupy it and the merged intervals they occupied it.
#[derive(Debug)]
struct LinkOccupancy {
    /// Per link, transfers whose flow has not drained yet.
    active: Vec<u32>,
    /// Per link, merged busy intervals; the last one is open while `active` > 0 and otherwise
    /// ends at the latest arrival of its transfers.
    intervals: Vec<Vec<(u64, u64)>>,
}

impl LinkOccupancy {
    fn new(links: usize) -> Self {
        LinkOccupancy {
            active: vec![0; links],
            intervals: vec![Vec::new(); links],
        }
    }

    /// A transfer starts occupying `link` at `now`: a new interval unless the last one is
    /// still open or ended at or after `now`.
    fn start(&mut self, link: usize, now: u64) {
        let intervals = &mut self.intervals[link];
        let continues = self.active[link] > 0 || intervals.last().is_some_and(|l| l.1 >= now);
        if !continues {
            intervals.push((now, now));
        }
        self.active[link] += 1;
    }

    /// A transfer on `link` drained; it occupies the link until it arrives at `arrival`.
    fn drain(&mut self, link: usize, arrival: u64) {
        self.active[link] -= 1;
        if let Some(last) = self.intervals[link].last_mut() {
            last.1 = last.1.max(arrival);
        }
    }
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
        config: &SimConfig,
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
        let capacity_gbps: Vec<f64> = cluster
            .links()
            .map(|(_, l)| match l.kind {
                LinkKind::NvLink => l.bandwidth_gbps * config.nvlink_efficiency,
                _ => l.bandwidth_gbps,
            })
            .collect();
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
            network: FlowNetwork::new(capacity_gbps).with_rate_tolerance(config.rate_tolerance),
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
            self.timeline.link_busy = occupancy.intervals;
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
