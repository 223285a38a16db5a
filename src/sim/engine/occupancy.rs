//! Link occupancy: when each link carried some transfer, recorded for traces on request.

/// Whether a run records when each link was busy
/// ([`Timeline::link_busy`](super::Timeline::link_busy), which a trace draws); that costs a
/// little at every transfer, so runs that need only times skip it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkBusy {
    /// Leave [`Timeline::link_busy`](super::Timeline::link_busy) empty.
    Skip,
    /// Fill [`Timeline::link_busy`](super::Timeline::link_busy).
    Record,
}

/// Per link, how many transfers occupy it and the merged intervals they occupied it.
#[derive(Debug)]
pub(super) struct LinkOccupancy {
    /// Per link, transfers whose flow has not drained yet.
    active: Vec<u32>,
    /// Per link, merged busy intervals; the last one is open while `active` > 0 and otherwise
    /// ends at the latest arrival of its transfers.
    intervals: Vec<Vec<(u64, u64)>>,
}

impl LinkOccupancy {
    /// `links` links, never occupied yet.
    pub(super) fn new(links: usize) -> Self {
        LinkOccupancy {
            active: vec![0; links],
            intervals: vec![Vec::new(); links],
        }
    }

    /// A transfer starts occupying `link` at `now`: a new interval unless the last one is
    /// still open or ended at or after `now`.
    pub(super) fn start(&mut self, link: usize, now: u64) {
        let intervals = &mut self.intervals[link];
        let continues = self.active[link] > 0 || intervals.last().is_some_and(|l| l.1 >= now);
        if !continues {
            intervals.push((now, now));
        }
        self.active[link] += 1;
    }

    /// A transfer on `link` drained; it occupies the link until it arrives at `arrival`.
    pub(super) fn drain(&mut self, link: usize, arrival: u64) {
        self.active[link] -= 1;
        if let Some(last) = self.intervals[link].last_mut() {
            last.1 = last.1.max(arrival);
        }
    }

    /// Per link, its merged busy intervals
    /// ([`Timeline::link_busy`](super::Timeline::link_busy)), once every transfer has arrived.
    pub(super) fn into_intervals(self) -> Vec<Vec<(u64, u64)>> {
        self.intervals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_links_busy_intervals_merge_while_transfers_overlap_or_touch() {
        // Link 0: A from 10 ns and B from 12; B drains and arrives at 18, A at 25: 10..25.
        // C starts at 25, as A arrives, and arrives at 32: still 10..32. D starts at 40: a new
        // interval, until it arrives at 51. Link 1 carries nothing.
        let mut occupancy = LinkOccupancy::new(2);
        occupancy.start(0, 10);
        occupancy.start(0, 12);
        occupancy.drain(0, 18);
        occupancy.drain(0, 25);
        occupancy.start(0, 25);
        occupancy.drain(0, 32);
        occupancy.start(0, 40);
        occupancy.drain(0, 51);
        assert_eq!(
            occupancy.into_intervals(),
            vec![vec![(10, 32), (40, 51)], vec![]]
        );
    }
}
