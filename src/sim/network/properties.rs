//! Property tests of the flow network on random links and flows, exact (rate tolerance 0) and
//! with a tolerance (ghosts, deferred starts, idle-byte credit): after every settle no link
//! holds more than its capacity, a link never carries more bytes between two instants than its
//! capacity over that time, and every flow drains, once, with all its bytes.
//!
//! Each property runs proptest's default number of cases; `PROPTEST_CASES=10000 cargo test
//! --release --lib sim::network::properties` runs a long budget.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::{FlowId, FlowNetwork};

/// Relative margin for the rounding of float sums of rates and bytes.
const ROUNDING: f64 = 1e-9;

/// Instants a run may take before it is deemed never to end.
const MAX_INSTANTS: usize = 100_000;

/// A flow to start: when, over which links, how many bytes.
#[derive(Debug, Clone)]
struct Start {
    ns: u64,
    links: Vec<u32>,
    bytes: u64,
}

/// Link bandwidths (bytes per ns), round ones that tie often or any in a sane range.
fn capacity() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::sample::select(vec![10.0, 25.0, 50.0, 90.0, 100.0, 450.0]),
        1.0..500.0,
    ]
}

/// One to eight links and up to 48 flows over one to three of them each, in start order: many
/// start at 0, the others at random instants; small and large sizes.
fn links_and_flows() -> impl Strategy<Value = (Vec<f64>, Vec<Start>)> {
    prop::collection::vec(capacity(), 1..=8).prop_flat_map(|capacities| {
        let links: Vec<u32> = (0..capacities.len() as u32).collect();
        let most = links.len().min(3);
        let start = (
            prop_oneof![Just(0u64), 0..5_000u64, 0..200_000u64],
            prop::sample::subsequence(links, 1..=most),
            prop_oneof![1..2_000u64, 1..5_000_000u64],
        )
            .prop_map(|(ns, links, bytes)| Start { ns, links, bytes });
        let starts = prop::collection::vec(start, 1..=48).prop_map(|mut starts| {
            starts.sort_by_key(|s| s.ns);
            starts
        });
        (Just(capacities), starts)
    })
}

/// What a checked run knows of the flows and links, kept apart from the network's own books.
struct Ledger<'a> {
    capacities: &'a [f64],
    starts: &'a [Start],
    /// Per link, the starts crossing it.
    on_link: Vec<Vec<usize>>,
    /// Per start, its flow while in flight.
    flow: Vec<Option<FlowId>>,
    /// Per start, whether it has drained.
    drained: Vec<bool>,
    /// Per start, its rate after the last settle.
    rate: Vec<f64>,
    /// Per flow id, the start it carries now.
    start_of: Vec<usize>,
    /// Per link, the least `carried - capacity x t` over the instants `t` from which no bytes
    /// can be credited to it for earlier (see [`Ledger::check_bytes`]), and that instant.
    floor: Vec<(f64, u64)>,
}

impl<'a> Ledger<'a> {
    fn new(capacities: &'a [f64], starts: &'a [Start]) -> Ledger<'a> {
        let mut on_link = vec![Vec::new(); capacities.len()];
        for (i, start) in starts.iter().enumerate() {
            for &l in &start.links {
                on_link[l as usize].push(i);
            }
        }
        Ledger {
            capacities,
            starts,
            on_link,
            flow: vec![None; starts.len()],
            drained: vec![false; starts.len()],
            rate: vec![0.0; starts.len()],
            start_of: Vec::new(),
            floor: vec![(0.0, 0); capacities.len()],
        }
    }

    fn started(&mut self, start: usize, flow: FlowId) {
        self.flow[start] = Some(flow);
        let f = flow as usize;
        if f >= self.start_of.len() {
            self.start_of.resize(f + 1, usize::MAX);
        }
        self.start_of[f] = start;
    }

    /// `flow` drained at `now`: it must have sent all its bytes by then.
    fn drained(&mut self, net: &FlowNetwork, flow: FlowId, now: u64) -> Result<(), TestCaseError> {
        let start = self.start_of[flow as usize];
        prop_assert_eq!(
            self.flow[start],
            Some(flow),
            "start {} drained twice",
            start
        );
        let left = bytes_left(net, flow, now);
        let bytes = self.starts[start].bytes as f64;
        prop_assert!(
            left <= bytes * 1e-6,
            "start {} drained at {} ns with {} of its {} bytes left",
            start,
            now,
            left,
            bytes
        );
        self.flow[start] = None;
        self.drained[start] = true;
        Ok(())
    }

    /// Checks every link after the settle at `now`: the rates its flows send at and hold fit in
    /// its capacity, and so do the bytes it carried (see [`Ledger::check_bytes`]).
    fn check(&mut self, net: &FlowNetwork, now: u64, tolerance: f64) -> Result<(), TestCaseError> {
        let mut rerated = vec![tolerance == 0.0; self.capacities.len()];
        for (i, flow) in self.flow.iter().enumerate() {
            let Some(flow) = *flow else { continue };
            let rate = net.rate(flow);
            prop_assert!(
                rate.is_finite() && rate >= 0.0,
                "start {} at {} B/ns",
                i,
                rate
            );
            if rate != self.rate[i] {
                for &l in &self.starts[i].links {
                    rerated[l as usize] = true;
                }
                self.rate[i] = rate;
            }
        }
        for (l, &capacity) in self.capacities.iter().enumerate() {
            let sending: f64 = self.on_link[l]
                .iter()
                .filter_map(|&i| self.flow[i].map(|f| net.rate(f)))
                .sum();
            let held = net.max_min.held(l as u32);
            prop_assert!(
                sending.max(held) <= capacity * (1.0 + ROUNDING),
                "link {} of {} B/ns: flows send {} and hold {} B/ns at {} ns",
                l,
                capacity,
                sending,
                held,
                now
            );
            self.check_bytes(net, l, now, rerated[l])?;
        }
        Ok(())
    }

    /// Checks that link `l` carried at most its capacity's worth of bytes from every earlier
    /// instant from which no bytes can be credited to it for earlier, up to `now`: from every
    /// instant without a tolerance (nothing is ever credited), else from every instant at
    /// which a flow crossing it was re-rated (the idle-byte credit grants a raised flow the
    /// bytes its links left idle since their flows were last re-rated, and never more).
    /// `window_start`: `now` is such an instant.
    fn check_bytes(
        &mut self,
        net: &FlowNetwork,
        l: usize,
        now: u64,
        window_start: bool,
    ) -> Result<(), TestCaseError> {
        let capacity = self.capacities[l];
        let (mut carried, mut bytes) = (0.0, 0.0);
        for &i in &self.on_link[l] {
            let size = self.starts[i].bytes as f64;
            carried += match self.flow[i] {
                Some(flow) => size - bytes_left(net, flow, now),
                None if self.drained[i] => size,
                None => 0.0,
            };
            bytes += size;
        }
        let surplus = carried - capacity * now as f64;
        let (floor, since) = self.floor[l];
        let margin = ROUNDING * (capacity * now as f64 + bytes);
        prop_assert!(
            surplus <= floor + margin,
            "link {} of {} B/ns carried {} B from {} to {} ns, more than {} B",
            l,
            capacity,
            surplus - floor + capacity * (now - since) as f64,
            since,
            now,
            capacity * (now - since) as f64
        );
        if window_start && surplus < floor {
            self.floor[l] = (surplus, now);
        }
        Ok(())
    }

    /// At the end of a run: every flow started and drained.
    fn all_drained(&self) -> Result<(), TestCaseError> {
        let stuck: Vec<usize> = (0..self.starts.len())
            .filter(|&i| !self.drained[i])
            .collect();
        prop_assert!(stuck.is_empty(), "starts {:?} never drained", stuck);
        Ok(())
    }
}

/// The bytes `flow` has left at `now`, at the rate it holds since it was last brought up to
/// date.
fn bytes_left(net: &FlowNetwork, flow: FlowId, now: u64) -> f64 {
    let progress = &net.progress[flow as usize];
    let sent = net.max_min.rate(flow) * progress.elapsed_ns(now) as f64;
    (progress.remaining_bytes() - sent).max(0.0)
}

/// Runs `starts` on links of `capacities` under `tolerance` to quiescence, checking the ledger
/// at every instant.
fn run_checked(capacities: &[f64], starts: &[Start], tolerance: f64) -> Result<(), TestCaseError> {
    let mut net = FlowNetwork::new(capacities.iter().copied()).with_rate_tolerance(tolerance);
    let mut ledger = Ledger::new(capacities, starts);
    let mut next = 0;
    let mut drained = Vec::new();
    for _ in 0..MAX_INSTANTS {
        let start_ns = starts.get(next).map(|s| s.ns);
        let Some(now) = start_ns.into_iter().chain(net.next_drain_ns()).min() else {
            return ledger.all_drained();
        };
        prop_assert!(now != u64::MAX, "a flow in flight is never rated");
        drained.clear();
        net.drain_at(now, &mut drained);
        for &flow in &drained {
            ledger.drained(&net, flow, now)?;
        }
        while let Some(start) = starts.get(next).filter(|s| s.ns == now) {
            ledger.started(next, net.start(now, &start.links, start.bytes));
            next += 1;
        }
        net.settle(now);
        ledger.check(&net, now, tolerance)?;
    }
    Err(TestCaseError::fail("the run did not end"))
}

proptest! {
    // A failure is minimised and kept as a regular test, not in a regressions file.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn exact_max_min_never_overfills_a_link_and_drains_every_byte(
        (capacities, starts) in links_and_flows(),
    ) {
        run_checked(&capacities, &starts, 0.0)?;
    }

    #[test]
    fn a_rate_tolerance_never_overfills_a_link_and_drains_every_byte(
        (capacities, starts) in links_and_flows(),
        tolerance in 0.001..0.95f64,
    ) {
        run_checked(&capacities, &starts, tolerance)?;
    }
}
