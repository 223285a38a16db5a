//! The task graph: tasks, their dependencies, and the all-to-alls whose sends and receives
//! share one traffic matrix.

use crate::cost::TrafficMatrix;
use crate::sim::all_to_all::AllToAllAlgorithm;
use crate::sim::rounding::ceil_u64;
use crate::topology::Cluster;

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
/// dst`), directly or through the GPU `algorithm` relays the pair through.
#[derive(Debug, Clone)]
pub struct Collective<'m> {
    pub(super) matrix: &'m TrafficMatrix,
    share: f64,
    algorithm: &'m dyn AllToAllAlgorithm,
    /// Per receiving GPU, its [`Work::Receive`] task ([`NO_TASK`] until added).
    pub(super) receives: Vec<TaskId>,
}

impl Collective<'_> {
    /// What GPU `src` sends, by receiving GPU.
    pub(super) fn sends<'a>(
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
                relay: self.algorithm.relay(cluster, src, dst),
                bytes: ceil_u64(bytes as f64 * self.share),
            })
        })
    }
}

/// A task id that names no task.
pub(super) const NO_TASK: TaskId = TaskId::MAX;

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
    pub(super) tasks: Vec<Task<L>>,
    pub(super) collectives: Vec<Collective<'m>>,
    /// Every task's dependencies, one after the other (flat: a few bytes per edge rather than a
    /// vector per task).
    deps: Vec<TaskId>,
    /// Per task, where its dependencies end in `deps` (they start where the previous task's end).
    pub(super) deps_end: Vec<u32>,
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
    /// Adds an all-to-all moving `share` of `matrix`'s bytes (each pair rounded up), each pair
    /// relayed as `algorithm` says; returns its index for [`Work::Send`] and [`Work::Receive`]
    /// tasks, of which it needs one per GPU that sends and one per GPU that receives.
    pub fn add_collective(
        &mut self,
        matrix: &'m TrafficMatrix,
        share: f64,
        algorithm: &'m dyn AllToAllAlgorithm,
    ) -> u32 {
        self.collectives.push(Collective {
            matrix,
            share,
            algorithm,
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
pub(super) struct Successors {
    /// Successors of task `t` are `list[start[t]..start[t + 1]]`, in the order they were added.
    list: Vec<TaskId>,
    start: Vec<u32>,
}

impl Successors {
    /// Inverts `graph`'s dependency lists (counting sort by dependency).
    pub(super) fn of<L>(graph: &TaskGraph<'_, L>) -> Successors {
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
    pub(super) fn get(&self, task: TaskId) -> &[TaskId] {
        let t = task as usize;
        &self.list[self.start[t] as usize..self.start[t + 1] as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successors_list_the_tasks_waiting_on_each_in_the_order_they_were_added() {
        // 1 and 2 wait on 0, 3 on 2 and 1 (in that order), 4 on 0.
        let mut graph = TaskGraph::default();
        let root = graph.add(Work::Join, (), &[]);
        let a = graph.add(Work::Join, (), &[root]);
        let b = graph.add(Work::Join, (), &[root]);
        let c = graph.add(Work::Join, (), &[b, a]);
        let d = graph.add(Work::Join, (), &[root]);
        let successors = Successors::of(&graph);
        assert_eq!(successors.get(root), [a, b, d]);
        assert_eq!(successors.get(a), [c]);
        assert_eq!(successors.get(b), [c]);
        assert!(successors.get(c).is_empty() && successors.get(d).is_empty());
    }
}
