//! The discrete-event engine: runs a graph of tasks (compute kernels on GPU streams, transfers
//! over the network, zero-time joins) whose edges say what must finish before what starts.
//!
//! A compute task starts once its dependencies are done and its stream is free; a stream runs
//! one task at a time, in the order tasks became ready (ties to the lower task id). A transfer
//! starts as soon as its dependencies are done: its bytes become a flow on the
//! [`FlowNetwork`] and it completes the route latency after its last byte left. Every task
//! remembers the predecessor that decided its start, so the critical path can be walked back.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::binding::binding_routes;
use super::config::SimConfig;
use super::network::{FlowId, FlowNetwork};
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
    /// Nothing: completes when its dependencies do (a collective's fan-in point).
    Join,
}

/// One task and the label metrics group it under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task<L> {
    /// What it does.
    pub work: Work,
    /// Caller's label (layer, phase, micro-batch).
    pub label: L,
}

/// Tasks and their dependency edges, built in any order that lists dependencies first.
#[derive(Debug, Clone)]
pub struct TaskGraph<L> {
    tasks: Vec<Task<L>>,
    /// Every task's dependencies, one after the other (flat: a few bytes per edge rather than a
    /// vector per task, which matters with one transfer task per GPU pair per layer).
    deps: Vec<TaskId>,
    /// Per task, where its dependencies end in `deps` (they start where the previous task's end).
    deps_end: Vec<u32>,
}

impl<L: Copy> Default for TaskGraph<L> {
    fn default() -> Self {
        TaskGraph {
            tasks: Vec::new(),
            deps: Vec::new(),
            deps_end: Vec::new(),
        }
    }
}

impl<L: Copy> TaskGraph<L> {
    /// Adds a task that waits for every task in `deps` (already added).
    pub fn add(&mut self, work: Work, label: L, deps: &[TaskId]) -> TaskId {
        let id = self.tasks.len() as TaskId;
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
    fn of<L>(graph: &TaskGraph<L>) -> Successors {
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
    /// Bytes each cluster link carried, by link index.
    pub link_bytes: Vec<u64>,
    /// Events processed (task completions and flow drains).
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

/// Runs `graph` on `cluster` from time 0 until every task is done, with NVLink links at
/// `config.nvlink_efficiency` of their nominal bandwidth (other links at theirs) and bandwidth
/// re-divided within `config.rate_tolerance`.
pub fn run<L: Copy>(graph: &TaskGraph<L>, cluster: &Cluster, config: &SimConfig) -> Timeline {
    Engine::new(graph, cluster, config).run()
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

/// Engine state while a graph runs.
struct Engine<'a, L> {
    graph: &'a TaskGraph<L>,
    cluster: &'a Cluster,
    network: FlowNetwork,
    /// Per GPU pair, the links of its route that can limit a flow ([`binding_routes`]).
    binding: Vec<Vec<u32>>,
    /// Scratch: the limiting links of the transfer being started.
    flow_links: Vec<u32>,
    /// Per flow slot, the transfer task it carries now.
    flow_task: Vec<TaskId>,
    /// Streams, indexed by `gpu * streams_per_gpu + stream`.
    streams: Vec<Stream>,
    streams_per_gpu: usize,
    /// Task completions: (ns, task).
    completions: BinaryHeap<Reverse<(u64, TaskId)>>,
    waiting_deps: Vec<u32>,
    successors: Successors,
    timeline: Timeline,
}

impl<'a, L: Copy> Engine<'a, L> {
    fn new(graph: &'a TaskGraph<L>, cluster: &'a Cluster, config: &SimConfig) -> Self {
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
        Engine {
            graph,
            cluster,
            binding: binding_routes(cluster, &capacity_gbps),
            flow_links: Vec::new(),
            network: FlowNetwork::new(capacity_gbps).with_ghost_tolerance(config.rate_tolerance),
            flow_task: Vec::new(),
            streams: vec![Stream::default(); cluster.num_gpus() * streams_per_gpu],
            streams_per_gpu,
            completions: BinaryHeap::new(),
            waiting_deps: (0..n)
                .map(|t| graph.deps_end[t] - if t == 0 { 0 } else { graph.deps_end[t - 1] })
                .collect(),
            successors: Successors::of(graph),
            timeline: Timeline {
                start_ns: vec![0; n],
                end_ns: vec![0; n],
                critical_pred: vec![None; n],
                link_bytes: vec![0; cluster.num_links()],
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
            let next_completion = self.completions.peek().map(|Reverse((ns, _))| *ns);
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
                let task = self.flow_task[flow as usize];
                let latency = match self.graph.tasks[task as usize].work {
                    Work::Transfer {
                        src, dst, relay, ..
                    } => transfer_routes(self.cluster, src, dst, relay)
                        .map(|r| r.latency_ns)
                        .sum(),
                    _ => 0,
                };
                self.completions.push(Reverse((now + latency, task)));
            }
            while let Some(&Reverse((ns, task))) = self.completions.peek() {
                if ns > now {
                    break;
                }
                self.completions.pop();
                self.timeline.events += 1;
                self.complete(now, task);
            }
            self.network.settle(now);
        }
        self.timeline
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
                let gpus = self.cluster.num_gpus();
                self.flow_links.clear();
                for route in transfer_routes(self.cluster, src, dst, relay) {
                    for link in &route.links {
                        self.timeline.link_bytes[link.index()] += bytes;
                    }
                }
                for (a, b) in transfer_legs(src, dst, relay) {
                    self.flow_links
                        .extend_from_slice(&self.binding[a * gpus + b]);
                }
                if bytes == 0 || self.flow_links.is_empty() {
                    self.completions.push(Reverse((now, task)));
                } else {
                    let flow = self.network.start(now, &self.flow_links, bytes) as usize;
                    if flow == self.flow_task.len() {
                        self.flow_task.push(task);
                    } else {
                        self.flow_task[flow] = task;
                    }
                }
            }
            Work::Join => {
                self.timeline.start_ns[task as usize] = now;
                self.completions.push(Reverse((now, task)));
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
            self.completions.push(Reverse((now + duration_ns, task)));
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
