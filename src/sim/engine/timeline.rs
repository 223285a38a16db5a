//! What a run returns: when each task ran, and the critical path through them.

use super::graph::TaskId;

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
    /// Per [`Work::Send`](super::Work::Send) task, when the last of its flows arrived (0 for
    /// other tasks).
    pub sends_done_ns: Vec<u64>,
    /// Per link (by index), the intervals some transfer occupied it (from its start to its
    /// arrival), overlapping and touching ones merged, in time order; empty unless the run was
    /// asked to record them ([`LinkBusy::Record`](super::LinkBusy::Record)).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_critical_path_walks_back_from_the_first_task_to_finish_last() {
        // Task 0 ends at 5; 1 and 2 wait on it and end at 9 and 12; 3 waits on 1 and ends at
        // 12 too. Tasks 2 and 3 both finish last: the path ends at 2, the lower id.
        let timeline = Timeline {
            start_ns: vec![0, 5, 5, 9],
            end_ns: vec![5, 9, 12, 12],
            critical_pred: vec![None, Some(0), Some(0), Some(1)],
            sends_done_ns: vec![0; 4],
            link_busy: Vec::new(),
            events: 4,
        };
        assert_eq!(timeline.makespan_ns(), 12);
        assert_eq!(timeline.critical_path(), vec![0, 2]);
    }
}
