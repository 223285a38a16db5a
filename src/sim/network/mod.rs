//! Flow-level network: every transfer is a flow over a fixed list of directed links, and the
//! flows crossing a link share its bandwidth max-min fairly (progressive filling).
//!
//! The pieces, each readable alone: [`max_min`] computes the exact max-min fair rates, only
//! over the flows a change touches; [`rate_tolerance`] says when a re-division may wait
//! (drained flows kept as ghosts, deferred starts, kept raises) and [`idle_credit`] gives the
//! flows a late re-division raises the bytes their links left idle meanwhile; [`progress`]
//! follows each flow's bytes to its drain instant, and [`drain_queue`] orders the drains.
//! [`FlowNetwork`] settles each instant's starts and drains through them; with a rate tolerance
//! of 0 the allocation is exactly max-min fair at all times.
//!
//! Time is integer nanoseconds. A flow's bytes drain at its current rate; its drain instant is
//! rounded **up** to the next whole nanosecond (a flow never finishes early), and the bandwidth
//! it held in that last fraction of a nanosecond is not handed to the others. Propagation latency
//! is not modelled here: the engine adds the route latency once the last byte has left, so a
//! lone flow of `B` bytes over a link of `G` GB/s with latency `L` takes `L + ceil(B / G)` ns.

use drain_queue::DrainQueue;
use idle_credit::IdleCredit;
use max_min::{Filling, MaxMin};
use progress::Progress;
use rate_tolerance::{DeferredStart, RateTolerance};

mod drain_queue;
mod idle_credit;
mod max_min;
mod progress;
mod rate_tolerance;

#[cfg(test)]
mod properties;

/// Index of a flow in its [`FlowNetwork`]; reused by a later flow once the flow has drained
/// and given its bandwidth back, so the network's memory follows the flows in flight.
pub type FlowId = u32;

/// Links with their capacities and the flows crossing them, plus the flows' drain events.
#[derive(Debug, Clone)]
pub struct FlowNetwork {
    /// The flows on their links and their max-min fair rates.
    max_min: MaxMin,
    /// When drained flows give their bandwidth back and starts are re-divided.
    tolerance: RateTolerance,
    /// The bytes links leave idle, credited to flows a late re-division raises; only with a
    /// rate tolerance (exact max-min is never late).
    idle: Option<IdleCredit>,
    /// Per flow, the bytes it has left.
    progress: Vec<Progress>,
    /// Pending drain instants of the active flows.
    drains: DrainQueue,
    /// Scratch: the flows a settle re-rates and their new rates.
    changes: Vec<(FlowId, f64)>,
    /// Scratch: those flows and their new drain instants.
    moved_drains: Vec<(FlowId, u64)>,
}

impl FlowNetwork {
    /// A network of links with the given bandwidths (GB/s, i.e. bytes per ns), all idle,
    /// exactly max-min fair.
    pub fn new(bandwidth_gbps: impl IntoIterator<Item = f64>) -> FlowNetwork {
        FlowNetwork {
            max_min: MaxMin::new(bandwidth_gbps),
            tolerance: RateTolerance::new(0.0),
            idle: None,
            progress: Vec::new(),
            drains: DrainQueue::default(),
            changes: Vec::new(),
            moved_drains: Vec::new(),
        }
    }

    /// The same network, keeping drained flows as ghosts until they hold more than
    /// `rate_tolerance` (a share in [0, 1)) of the bandwidth in use, keeping a flow's rate when
    /// its new share is at most a twentieth of `rate_tolerance` above it, deferring the
    /// re-division a start needs within that tolerance, and crediting raised flows with idle
    /// bytes; see [`rate_tolerance`] and [`idle_credit`].
    pub fn with_rate_tolerance(mut self, rate_tolerance: f64) -> FlowNetwork {
        self.tolerance = RateTolerance::new(rate_tolerance);
        self.idle = (rate_tolerance > 0.0).then(|| IdleCredit::new(self.max_min.capacities()));
        self
    }

    /// Starts a flow of `bytes` (> 0) over `links` (non-empty, valid indices) at `now_ns`. Its
    /// rate is set at the next [`FlowNetwork::settle`], which must run before time advances.
    pub fn start(&mut self, now_ns: u64, links: &[u32], bytes: u64) -> FlowId {
        let id = self.max_min.add(links);
        let progress = Progress::new(bytes as f64, now_ns);
        if id as usize == self.progress.len() {
            self.progress.push(progress);
        } else {
            self.progress[id as usize] = progress;
        }
        id
    }

    /// The earliest instant the network changes by itself, if any: a pending drain, or the
    /// deadline of a deferred re-division (see [`rate_tolerance`]).
    pub fn next_drain_ns(&self) -> Option<u64> {
        let drain = self.drains.peek().map(|(ns, _)| ns);
        match self.tolerance.deadline_ns() {
            None => drain,
            Some(deadline) => Some(drain.map_or(deadline, |d| d.min(deadline))),
        }
    }

    /// Finishes every flow that drains at `now_ns` and appends it to `drained` (in flow order).
    /// Call [`FlowNetwork::settle`] afterwards to hand their bandwidth to the others.
    pub fn drain_at(&mut self, now_ns: u64, drained: &mut Vec<FlowId>) {
        let first = drained.len();
        while let Some(flow) = self.drains.pop_due(now_ns) {
            let rate = self.max_min.drain(flow);
            self.tolerance.drained(rate);
            if let Some(idle) = &mut self.idle {
                idle.drained(self.max_min.links(flow), now_ns, rate);
            }
            drained.push(flow);
        }
        drained[first..].sort_unstable();
    }

    /// Recomputes the max-min fair rates of the flows connected to links changed since the last
    /// call, and schedules their drains. Flows whose rate is unchanged keep their drain event.
    /// Drained flows give their bandwidth back here, unless no flow started and they are
    /// ghosts within the tolerance (see [`rate_tolerance`]).
    pub fn settle(&mut self, now_ns: u64) {
        let ghosts_due = self.tolerance.ghosts_due();
        let redivide_due = ghosts_due || self.tolerance.deferral_due(now_ns);
        // Starts alone, nothing due: rated from spare bandwidth if that is fair (or may wait).
        if !self.max_min.started().is_empty()
            && !redivide_due
            && self.rate_starts_from_spare(now_ns)
        {
            self.max_min.starts_settled();
            return;
        }
        // Otherwise every change waiting joins the re-division: deferred starts, then ghosts.
        if (redivide_due || self.max_min.has_changed_links()) && self.tolerance.has_deferred() {
            self.max_min
                .mark_for_redivision(self.tolerance.end_deferral());
        }
        if self.max_min.has_drained() && (ghosts_due || self.max_min.has_changed_links()) {
            let tolerance = &mut self.tolerance;
            self.max_min
                .release_drained(|rate| tolerance.released(rate));
            self.tolerance.ghosts_released(self.max_min.holds_nothing());
        }
        if self.max_min.has_changed_links() {
            self.max_min
                .redivide(self.tolerance.kept_raise(), &mut self.changes);
            self.apply_changes(now_ns);
        }
    }

    /// The current rate of `flow`, bytes per ns (0 once drained).
    pub fn rate(&self, flow: FlowId) -> f64 {
        if self.max_min.is_active(flow) {
            self.max_min.rate(flow)
        } else {
            0.0
        }
    }

    /// Rates the flows started since the last settle from the bandwidth their links have spare
    /// when that is max-min fair, and returns whether it did; otherwise it changes nothing,
    /// unless the network has a tolerance: then the new flows keep what the spare bandwidth
    /// gives them (less than their fair share, maybe nothing) until a deferred re-division
    /// ([`RateTolerance::defer_starts`]), and it returns true.
    fn rate_starts_from_spare(&mut self, now_ns: u64) -> bool {
        let may_defer = self.tolerance.defers_starts();
        let filling = if may_defer {
            Filling::StartsFromSpare
        } else {
            Filling::StartsIfFair
        };
        let kept_raise = self.tolerance.kept_raise();
        let fair = self
            .max_min
            .rate_starts_from_spare(filling, kept_raise, &mut self.changes);
        if !fair && !may_defer {
            return false;
        }
        self.apply_changes(now_ns);
        if !fair {
            let starts = self.max_min.started().iter().map(|&flow| DeferredStart {
                guaranteed: self.max_min.guaranteed_share(flow),
                rate: self.max_min.rate(flow),
                bytes: self.progress[flow as usize].remaining_bytes(),
            });
            self.tolerance
                .defer_starts(now_ns, starts, self.max_min.changed_links());
        }
        true
    }

    /// Gives every flow in `changes` its new rate (see [`FlowNetwork::change_rate`]), crediting
    /// raised ones their idle bytes first, and moves their drains, all at once; the links
    /// re-divided (those of every flow in `changes` among them) then count their idle bytes
    /// afresh.
    fn apply_changes(&mut self, now_ns: u64) {
        let changes = std::mem::take(&mut self.changes);
        if let Some(idle) = &mut self.idle {
            idle.credit(now_ns, &changes, &self.max_min, &mut self.progress);
        }
        let mut drains = std::mem::take(&mut self.moved_drains);
        drains.clear();
        drains.extend(
            changes
                .iter()
                .map(|&(flow, rate)| (flow, self.change_rate(now_ns, flow, rate))),
        );
        self.drains.set_all(&drains);
        if let Some(idle) = &mut self.idle {
            idle.restart(self.max_min.component_links(), now_ns);
        }
        self.moved_drains = drains;
        self.changes = changes;
    }

    /// Brings `flow`'s progress up to `now_ns`, gives it `rate` and returns when it drains.
    fn change_rate(&mut self, now_ns: u64, flow: FlowId, rate: f64) -> u64 {
        let old = self.max_min.rate(flow);
        let progress = &mut self.progress[flow as usize];
        progress.advance(now_ns, old);
        self.tolerance.rate_changed(rate - old);
        let links = self.max_min.set_rate(flow, rate);
        if let Some(idle) = &mut self.idle {
            idle.rerated(links, rate - old);
        }
        progress.drain_ns(rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the network to quiescence and returns each flow's drain instant.
    fn run(net: &mut FlowNetwork, starts: &[(u64, Vec<u32>, u64)]) -> Vec<u64> {
        let mut done = vec![0; starts.len()];
        let mut next_start = 0;
        let mut drained = Vec::new();
        loop {
            let start_ns = starts.get(next_start).map(|s| s.0);
            let now = match (start_ns, net.next_drain_ns()) {
                (Some(s), Some(d)) => s.min(d),
                (Some(s), None) => s,
                (None, Some(d)) => d,
                (None, None) => break,
            };
            drained.clear();
            net.drain_at(now, &mut drained);
            for &flow in &drained {
                done[flow as usize] = now;
            }
            while next_start < starts.len() && starts[next_start].0 == now {
                let (_, links, bytes) = &starts[next_start];
                net.start(now, links, *bytes);
                next_start += 1;
            }
            net.settle(now);
        }
        done
    }

    #[test]
    fn a_lone_flow_takes_bytes_over_bandwidth_rounded_up() {
        let mut net = FlowNetwork::new([50.0]);
        // 1000 B at 50 B/ns: 20 ns exactly; 1001 B: 20.02 ns, rounded up to 21.
        assert_eq!(run(&mut net, &[(0, vec![0], 1000)]), vec![20]);
        let mut net = FlowNetwork::new([50.0]);
        assert_eq!(run(&mut net, &[(5, vec![0], 1001)]), vec![26]);
    }

    #[test]
    fn two_flows_share_a_link_and_a_third_re_divides() {
        // Link 0 at 90 B/ns. Flows A and B (900 B each) start at 0: 45 B/ns each.
        // At 10 ns each has 450 B left; C (300 B) joins: 30 B/ns each.
        // C drains at 10 + 300/30 = 20 ns; A and B have 150 B left, now 45 B/ns each:
        // 20 + 150/45 = 23.33 -> 24 ns.
        let mut net = FlowNetwork::new([90.0]);
        let done = run(
            &mut net,
            &[(0, vec![0], 900), (0, vec![0], 900), (10, vec![0], 300)],
        );
        assert_eq!(done, vec![24, 24, 20]);
    }

    #[test]
    fn max_min_gives_a_flow_bottlenecked_elsewhere_only_its_share() {
        // Link 0: 100 B/ns shared by A (links 0, 1) and B (link 0); link 1: 20 B/ns.
        // A is held to 20 by link 1; B gets the other 80 of link 0.
        let mut net = FlowNetwork::new([100.0, 20.0]);
        let a = net.start(0, &[0, 1], 2000);
        let b = net.start(0, &[0], 8000);
        net.settle(0);
        assert_eq!((net.rate(a), net.rate(b)), (20.0, 80.0));
        assert_eq!(net.next_drain_ns(), Some(100));
        let mut drained = Vec::new();
        net.drain_at(100, &mut drained);
        net.settle(100);
        assert_eq!(drained, vec![a, b]);
        assert_eq!(net.next_drain_ns(), None);
    }

    #[test]
    fn ghosts_hold_their_bandwidth_until_they_exceed_the_tolerance() {
        // Link 0 at 90 B/ns; A (450 B), B and C (900 B) start at 0 at 30 B/ns each; A drains
        // at 15 ns, when B and C have 450 B left. Re-divided (A's 30 of 90 B/ns is over a 20%
        // tolerance): 45 B/ns each, 15 + 10 = 25 ns. Kept as a ghost (within 50%): 30 ns.
        let starts = [(0, vec![0], 450), (0, vec![0], 900), (0, vec![0], 900)];
        let mut net = FlowNetwork::new([90.0]).with_rate_tolerance(0.2);
        assert_eq!(run(&mut net, &starts), vec![15, 25, 25]);
        let mut net = FlowNetwork::new([90.0]).with_rate_tolerance(0.5);
        assert_eq!(run(&mut net, &starts), vec![15, 30, 30]);
        // D (90 B) starts at 15 ns on the full link: it gets nothing until the deferred
        // re-division, due after half the 4 ns it is sure to take (90 B at 90 / 4 B/ns), at
        // 17 ns, which also releases A's ghost: 30 B/ns each. D, raised from 0, is credited the
        // 60 B it would have sent at 30 B/ns since 15 ns, which the link left idle (A's ghost
        // held 30 B/ns of it for 2 ns): 30 B left, D drains at 18 ns, as it would have under
        // exact max-min. Then D is the ghost, within the tolerance, so B and C go on at 30 B/ns
        // and drain at 30 ns.
        let mut net = FlowNetwork::new([90.0]).with_rate_tolerance(0.5);
        let mut with_d = starts.to_vec();
        with_d.push((15, vec![0], 90));
        assert_eq!(run(&mut net, &with_d), vec![15, 30, 30, 18]);
    }

    #[test]
    fn a_start_that_is_not_fair_from_spare_waits_for_a_deferred_re_division() {
        // Link 0 at 100 B/ns carries A (10,000 B) alone from 0 ns. B (1,000 B) starts at 10 ns:
        // exactly, A and B get 50 B/ns each, B drains at 30 ns and A at 110 ns.
        let starts = [(0, vec![0], 10_000), (10, vec![0], 1_000)];
        assert_eq!(run(&mut FlowNetwork::new([100.0]), &starts), vec![110, 30]);
        // With a tolerance of 0.6, B runs on the spare bandwidth (none) until the re-division
        // due 0.6 x 20 ns later (1,000 B at the 50 B/ns it is sure of), at 22 ns: B drains at
        // 42 ns; A has 7,800 B left at 22 ns and its 50 B/ns, as B's ghost holds 50 of 100
        // B/ns, within the tolerance: 22 + 156 = 178 ns.
        let mut net = FlowNetwork::new([100.0]).with_rate_tolerance(0.6);
        assert_eq!(run(&mut net, &starts), vec![178, 42]);
        // With 0.4, C (200 B on link 1) starting with B drains at 12 ns; its ghost's 100 B/ns
        // plus B's 50 B/ns shortfall are over 0.4 of the 200 B/ns in use: re-divided at 12 ns,
        // B drains at 32 ns, its ghost is over the tolerance, and A (7,800 B left) ends at 110.
        let mut with_c = starts.to_vec();
        with_c.push((10, vec![1], 200));
        let mut net = FlowNetwork::new([100.0, 100.0]).with_rate_tolerance(0.4);
        assert_eq!(run(&mut net, &with_c), vec![110, 32, 12]);
    }

    #[test]
    fn a_late_re_division_credits_raised_flows_with_the_bytes_their_links_left_idle() {
        // Link 0 at 90 B/ns: A (450 B), B and C (900 B) at 30 B/ns each; A drains at 15 ns and
        // its ghost is kept (30 of 90 B/ns, within 0.5). D and E (90 B each) start at 15 ns on
        // the full link with nothing; their re-division is due after half the 5 ns they are
        // sure to take (90 B at 90 / 5 B/ns), rounded up: at 18 ns. Then all four get 22.5
        // B/ns. D and E each ask 22.5 x 3 = 67.5 B for 15..18 ns, 135 B in all, but the link
        // left only 90 B idle (A's 30 B/ns for 3 ns): each is credited 2/3, 45 B, and drains
        // 45 B later at 22.5 B/ns, at 20 ns (exact max-min: 19 ns; no credit: 22 ns). B and C
        // have 360 B left at 18 ns: 18 + 16 = 34 ns (D's and E's ghosts are within 0.5).
        let mut net = FlowNetwork::new([90.0]).with_rate_tolerance(0.5);
        let starts = [
            (0, vec![0], 450),
            (0, vec![0], 900),
            (0, vec![0], 900),
            (15, vec![0], 90),
            (15, vec![0], 90),
        ];
        assert_eq!(run(&mut net, &starts), vec![15, 34, 34, 20, 20]);
    }

    #[test]
    fn a_start_takes_spare_bandwidth_only_when_that_is_fair() {
        // Link 0: 100 B/ns; link 1: 20 B/ns. A crosses both and is held to 20 by link 1, so B
        // starting on link 0 alone gets the 80 left over and A keeps its rate.
        let mut net = FlowNetwork::new([100.0, 20.0]);
        let a = net.start(0, &[0, 1], 1_000_000);
        net.settle(0);
        let b = net.start(5, &[0], 1_000_000);
        net.settle(5);
        assert_eq!((net.rate(a), net.rate(b)), (20.0, 80.0));
        // Link 1 at 60 B/ns: A runs at 60 and 40 are spare, but B's fair share of link 0 is 50,
        // A's rate too (link 0 fills at 50 before link 1 at 60).
        let mut net = FlowNetwork::new([100.0, 60.0]);
        let a = net.start(0, &[0, 1], 1_000_000);
        net.settle(0);
        assert_eq!(net.rate(a), 60.0);
        let b = net.start(5, &[0], 1_000_000);
        net.settle(5);
        assert_eq!((net.rate(a), net.rate(b)), (50.0, 50.0));
    }

    #[test]
    fn disjoint_flows_do_not_disturb_each_other() {
        let mut net = FlowNetwork::new([10.0, 10.0]);
        let done = run(&mut net, &[(0, vec![0], 100), (3, vec![1], 50)]);
        assert_eq!(done, vec![10, 8]);
    }
}
