//! The flows' pending drain instants: a binary min-heap holding one entry per flow, indexed by
//! flow so that a re-rated flow moves its entry instead of leaving a stale one behind.
//!
//! An all-to-all re-rates thousands of flows at every start and re-division; a heap of stale
//! entries grew to tens of thousands and most of its pops were discarded. Here the heap never
//! holds more entries than flows in flight.

/// [`DrainQueue::set_all`] rebuilds the heap when it moves more than one entry in this many.
const REBUILD_SHARE: usize = 4;

/// Where a flow sits in the heap, or that it is not queued.
const NOT_QUEUED: u32 = u32::MAX;

/// Pending drains, earliest first; ties go to the lower flow.
#[derive(Debug, Clone, Default)]
pub struct DrainQueue {
    /// Heap of [`entry`]s.
    heap: Vec<u128>,
    /// Per flow, its position in `heap` or [`NOT_QUEUED`].
    position: Vec<u32>,
}

impl DrainQueue {
    /// Queues `flow` to drain at `ns`, moving its entry if it has one.
    pub fn set(&mut self, flow: u32, ns: u64) {
        let at = self.position_of(flow);
        let new = entry(ns, flow);
        if at == NOT_QUEUED {
            self.heap.push(new);
            self.sift_up(self.heap.len() - 1);
        } else {
            let at = at as usize;
            let old = self.heap[at];
            self.heap[at] = new;
            if new < old {
                self.sift_up(at);
            } else {
                self.sift_down(at);
            }
        }
    }

    /// Queues each `(flow, ns)` of `drains` (flows distinct) as [`DrainQueue::set`] would.
    /// When they are many for the heap, their entries are written in place and the heap is
    /// rebuilt once: a re-division of a whole all-to-all moves most entries, and one rebuild
    /// (linear) costs less than as many sifts.
    pub fn set_all(&mut self, drains: &[(u32, u64)]) {
        if drains.len() * REBUILD_SHARE <= self.heap.len() {
            for &(flow, ns) in drains {
                self.set(flow, ns);
            }
            return;
        }
        for &(flow, ns) in drains {
            let at = self.position_of(flow);
            if at == NOT_QUEUED {
                self.position[flow as usize] = self.heap.len() as u32;
                self.heap.push(entry(ns, flow));
            } else {
                self.heap[at as usize] = entry(ns, flow);
            }
        }
        for at in (0..self.heap.len() / 2).rev() {
            self.sift_down(at);
        }
    }

    /// The earliest drain, if any.
    pub fn peek(&self) -> Option<(u64, u32)> {
        self.heap.first().map(|&e| ((e >> 32) as u64, e as u32))
    }

    /// Removes and returns the earliest drain if it is due at or before `now_ns`.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<u32> {
        let (ns, flow) = self.peek()?;
        if ns > now_ns {
            return None;
        }
        let last = self.heap.pop().expect("non-empty");
        self.position[flow as usize] = NOT_QUEUED;
        if !self.heap.is_empty() {
            self.put(0, last);
            self.sift_down(0);
        }
        Some(flow)
    }

    fn sift_up(&mut self, mut at: usize) {
        let entry = self.heap[at];
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.heap[parent] <= entry {
                break;
            }
            self.put(at, self.heap[parent]);
            at = parent;
        }
        self.put(at, entry);
    }

    fn sift_down(&mut self, mut at: usize) {
        let entry = self.heap[at];
        let len = self.heap.len();
        loop {
            let left = 2 * at + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = left + usize::from(right < len && self.heap[right] < self.heap[left]);
            if entry <= self.heap[child] {
                break;
            }
            self.put(at, self.heap[child]);
            at = child;
        }
        self.put(at, entry);
    }

    /// Where `flow` sits in the heap, or [`NOT_QUEUED`] (growing the index to hold it).
    fn position_of(&mut self, flow: u32) -> u32 {
        let f = flow as usize;
        if f >= self.position.len() {
            self.position.resize(f + 1, NOT_QUEUED);
        }
        self.position[f]
    }

    /// Stores `entry` at heap position `at` and records where its flow is.
    fn put(&mut self, at: usize, entry: u128) {
        self.heap[at] = entry;
        self.position[entry as u32 as usize] = at as u32;
    }
}

/// A heap entry: a flow's drain instant in the high bits and the flow in the low 32, so that
/// one integer comparison orders by instant, then flow.
fn entry(ns: u64, flow: u32) -> u128 {
    (u128::from(ns) << 32) | u128::from(flow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_all(queue: &mut DrainQueue) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        while let Some((ns, _)) = queue.peek() {
            out.push((ns, queue.pop_due(ns).unwrap()));
        }
        out
    }

    #[test]
    fn moved_entries_drain_in_their_new_order_once_each() {
        let mut queue = DrainQueue::default();
        for (flow, ns) in [(0, 50), (1, 10), (2, 30), (3, 30), (4, 70)] {
            queue.set(flow, ns);
        }
        queue.set(1, 60); // later
        queue.set(4, 5); // earlier
        assert_eq!(queue.pop_due(4), None);
        assert_eq!(
            drain_all(&mut queue),
            vec![(5, 4), (30, 2), (30, 3), (50, 0), (60, 1)]
        );
        queue.set(2, 7);
        assert_eq!(drain_all(&mut queue), vec![(7, 2)]);
    }

    #[test]
    fn a_batch_of_moves_drains_like_the_same_moves_one_by_one() {
        let initial = [
            (0, 50),
            (1, 10),
            (2, 30),
            (3, 30),
            (4, 70),
            (5, 20),
            (6, 90),
            (7, 40),
        ];
        // One move among eight entries is sifted; five (one of them a new flow) rebuild.
        for moves in [
            vec![(6, 15)],
            vec![(0, 5), (1, 95), (3, 25), (7, 25), (8, 1)],
        ] {
            let (mut batch, mut one_by_one) = (DrainQueue::default(), DrainQueue::default());
            for (flow, ns) in initial {
                batch.set(flow, ns);
                one_by_one.set(flow, ns);
            }
            batch.set_all(&moves);
            for &(flow, ns) in &moves {
                one_by_one.set(flow, ns);
            }
            let expected = drain_all(&mut one_by_one);
            assert_eq!(drain_all(&mut batch), expected);
            assert_eq!(expected.len(), 8 + usize::from(moves.len() == 5));
        }
        let mut queue = DrainQueue::default();
        queue.set_all(&[(2, 7), (0, 7), (1, 3)]);
        assert_eq!(drain_all(&mut queue), vec![(3, 1), (7, 0), (7, 2)]);
    }
}
