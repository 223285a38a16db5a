//! The idle-byte credit: what a late re-division (see [`super::rate_tolerance`]) costs the flows
//! it raises is mostly given back.
//!
//! Each flow a re-division raises is credited the bytes it would have sent at its new rate
//! since it was last rated, as far as every link it crosses left that many bytes idle since
//! then (shared out in proportion to what the raised flows ask of the link); a link never
//! carries, in all, more bytes than its capacity over the time. Exact max-min (no tolerance)
//! re-divides at once and has nothing to credit, so it keeps none of this.

use super::FlowId;
use super::max_min::MaxMin;
use super::progress::Progress;

/// What a link carried and left idle since its flows were last re-rated, packed together:
/// re-rating a flow updates most of these on each of its links, and one load should bring
/// them all.
#[derive(Debug, Clone, Copy, Default)]
struct IdleLink {
    /// Bytes per ns.
    capacity: f64,
    /// Rate its active flows send at (ghosts hold bandwidth but send nothing), bytes per ns.
    carried: f64,
    /// Bytes it could have carried but did not since `idle_since` (its last re-division).
    idle_bytes: f64,
    /// When `idle_bytes` was last brought up to date.
    idle_since: u64,
    /// Scratch: the bytes the rising flows of a re-division ask to be credited.
    credit_asked: f64,
}

/// Per link, the bytes left idle since its last re-division, and the credit they pay for.
#[derive(Debug, Clone)]
pub(super) struct IdleCredit {
    links: Vec<IdleLink>,
    /// Scratch: the flows a re-division raises and the bytes each asks to be credited.
    raised: Vec<(FlowId, f64)>,
}

impl IdleCredit {
    /// Links with the given bandwidths (bytes per ns), idle since time 0.
    pub(super) fn new(capacities: impl IntoIterator<Item = f64>) -> IdleCredit {
        IdleCredit {
            links: capacities
                .into_iter()
                .map(|capacity| IdleLink {
                    capacity,
                    ..IdleLink::default()
                })
                .collect(),
            raised: Vec::new(),
        }
    }

    /// A flow of `rate` over `links` drained at `now_ns`: the links carry that much less from
    /// then on.
    pub(super) fn drained(&mut self, links: &[u32], now_ns: u64, rate: f64) {
        for &l in links {
            self.account_idle(l as usize, now_ns);
            self.carry(l as usize, -rate);
        }
    }

    /// A re-division changed the rate of a flow over `links` by `delta`. Their idle bytes are
    /// not brought up to date: every link re-divided is [`IdleCredit::restart`]ed after.
    pub(super) fn rerated(&mut self, links: &[u32], delta: f64) {
        for &l in links {
            self.carry(l as usize, delta);
        }
    }

    /// Counts the idle bytes of `links` afresh from `now_ns` (their flows were just re-rated).
    pub(super) fn restart(&mut self, links: &[u32], now_ns: u64) {
        for &l in links {
            let link = &mut self.links[l as usize];
            link.idle_bytes = 0.0;
            link.idle_since = now_ns;
        }
    }

    /// Credits each flow of `max_min` that `changes` (flows and their new rates, not given yet)
    /// raises with the bytes it would have sent at its new rate since it was last rated, as
    /// far as every link it crosses left that many bytes idle since then, taking them off its
    /// `progress`.
    pub(super) fn credit(
        &mut self,
        now_ns: u64,
        changes: &[(FlowId, f64)],
        max_min: &MaxMin,
        progress: &mut [Progress],
    ) {
        let mut raised = std::mem::take(&mut self.raised);
        raised.clear();
        for &(flow, rate) in changes {
            let old = max_min.rate(flow);
            let elapsed_ns = progress[flow as usize].elapsed_ns(now_ns);
            if rate <= old || elapsed_ns == 0 {
                continue;
            }
            let asked = (rate - old) * elapsed_ns as f64;
            raised.push((flow, asked));
            for &l in max_min.links(flow) {
                self.account_idle(l as usize, now_ns);
                self.links[l as usize].credit_asked += asked;
            }
        }
        for &(flow, asked) in &raised {
            let granted = max_min.links(flow).iter().fold(1.0f64, |g, &l| {
                let link = &self.links[l as usize];
                g.min(link.idle_bytes / link.credit_asked)
            });
            // Sent at the old rate first (see `Progress::advance`), then the credit.
            progress[flow as usize].credit(now_ns, max_min.rate(flow), asked * granted);
        }
        for &(flow, _) in &raised {
            for &l in max_min.links(flow) {
                self.links[l as usize].credit_asked = 0.0;
            }
        }
        self.raised = raised;
    }

    /// Brings `link`'s idle bytes up to `now_ns`.
    fn account_idle(&mut self, link: usize, now_ns: u64) {
        let link = &mut self.links[link];
        let idle_rate = (link.capacity - link.carried).max(0.0);
        link.idle_bytes += idle_rate * (now_ns - link.idle_since) as f64;
        link.idle_since = now_ns;
    }

    /// Changes the rate `link`'s active flows send at by `delta`.
    fn carry(&mut self, link: usize, delta: f64) {
        let link = &mut self.links[link];
        link.carried = (link.carried + delta).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Links with their idle accounting, and flows on them with their progress.
    struct Links {
        max_min: MaxMin,
        idle: IdleCredit,
        progress: Vec<Progress>,
    }

    impl Links {
        fn new(capacities: &[f64]) -> Links {
            let max_min = MaxMin::new(capacities.iter().copied());
            let idle = IdleCredit::new(max_min.capacities());
            Links {
                max_min,
                idle,
                progress: Vec::new(),
            }
        }

        /// Adds a flow of `bytes` over `links` sending at `rate` from 0 ns.
        fn flow(&mut self, links: &[u32], rate: f64, bytes: f64) -> FlowId {
            let flow = self.max_min.add(links);
            self.max_min.set_rate(flow, rate);
            self.idle.rerated(links, rate);
            self.progress.push(Progress::new(bytes, 0));
            flow
        }

        /// Credits the flows `changes` raise at `now_ns`.
        fn credit(&mut self, now_ns: u64, changes: &[(FlowId, f64)]) {
            self.idle
                .credit(now_ns, changes, &self.max_min, &mut self.progress);
        }

        /// Re-rates the flows at `now_ns` as a re-division of all links does.
        fn rerate(&mut self, now_ns: u64, changes: &[(FlowId, f64)]) {
            for &(flow, rate) in changes {
                let old = self.max_min.rate(flow);
                self.progress[flow as usize].advance(now_ns, old);
                let links = self.max_min.set_rate(flow, rate);
                self.idle.rerated(links, rate - old);
            }
            let all: Vec<u32> = (0..self.idle.links.len() as u32).collect();
            self.idle.restart(&all, now_ns);
        }

        fn remaining_bytes(&self, flow: FlowId) -> f64 {
            self.progress[flow as usize].remaining_bytes()
        }
    }

    #[test]
    fn a_raised_flow_is_credited_only_what_every_link_it_crosses_left_idle() {
        // Link 0 at 90 B/ns carries A at 30 and B at 60 (full); link 1 at 100 B/ns carries C
        // at 40 (60 idle); D crosses both with nothing. At 4 ns A is raised to 50, B lowered to
        // 40, C raised to 100 and D to 20. Link 0 left nothing idle: A and D are credited
        // nothing. Link 1 left 240 B idle and is asked 240 B by C and 80 by D: it grants 3/4
        // of each ask, so C is credited 180 B (D's share is lost to link 0).
        let mut net = Links::new(&[90.0, 100.0]);
        let a = net.flow(&[0], 30.0, 1000.0);
        let b = net.flow(&[0], 60.0, 1000.0);
        let c = net.flow(&[1], 40.0, 1000.0);
        let d = net.flow(&[0, 1], 0.0, 1000.0);
        net.credit(4, &[(a, 50.0), (b, 40.0), (c, 100.0), (d, 20.0)]);
        // A credit comes off what is left after the bytes sent at the old rate, which stay
        // until the flow is brought up to date: C has sent 160 B, 1000 - 160 - 180 are left.
        for (flow, remaining) in [(a, 1000.0), (b, 1000.0), (c, 160.0 + 660.0), (d, 1000.0)] {
            assert_eq!(net.remaining_bytes(flow), remaining);
        }
    }

    #[test]
    fn raised_flows_share_a_links_idle_bytes_since_its_last_re_division() {
        // Link 0 at 90 B/ns: A at 60 B/ns (30 idle) from 0 ns; E and F start at 0 with nothing.
        // At 3 ns they are raised to 22.5 B/ns and ask 67.5 B each, 135 in all; the link left
        // 90 B idle: each is credited 2/3 of its ask, 45 B. Lowering A asks nothing.
        let mut net = Links::new(&[90.0]);
        let a = net.flow(&[0], 60.0, 900.0);
        let e = net.flow(&[0], 0.0, 900.0);
        let f = net.flow(&[0], 0.0, 900.0);
        let changes = [(a, 22.5), (e, 22.5), (f, 22.5)];
        net.credit(3, &changes);
        for (flow, remaining) in [(a, 900.0), (e, 855.0), (f, 855.0)] {
            assert_eq!(net.remaining_bytes(flow), remaining);
        }
        // The re-division gives them their rates (the link now carries 67.5 B/ns) and the
        // link's idle bytes start again from 0. At 5 ns E, raised to 60 B/ns, asks 75 B: the
        // link left 45 B idle since 3 ns (not 135 since 0), all credited: E has 855 - 45 sent
        // - 45 credited left.
        net.rerate(3, &changes);
        net.credit(5, &[(e, 60.0)]);
        net.rerate(5, &[(e, 60.0)]);
        assert_eq!(net.remaining_bytes(e), 765.0);
    }

    #[test]
    fn a_drained_flows_bandwidth_is_idle_from_its_drain() {
        // Link 0 at 90 B/ns carries A at 60 and B at 30 from 0 ns; B drains at 2 ns and its
        // ghost holds its 30 B/ns, which the link leaves idle: 120 B by 6 ns. A, raised to 90
        // then, asks 30 x 6 = 180 B and is credited the 120: of its 1000 B, 360 sent and
        // 1000 - 360 - 120 left after them.
        let mut net = Links::new(&[90.0]);
        let a = net.flow(&[0], 60.0, 1000.0);
        let b = net.flow(&[0], 30.0, 60.0);
        let rate = net.max_min.drain(b);
        net.idle.drained(net.max_min.links(b), 2, rate);
        net.credit(6, &[(a, 90.0)]);
        assert_eq!(net.remaining_bytes(a), 360.0 + 520.0);
    }
}
