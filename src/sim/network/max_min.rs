//! Exact max-min fair sharing: the flows crossing a link share its bandwidth max-min fairly,
//! computed by progressive filling.
//!
//! Rates are recomputed only when flows start or drain, and only over the connected component
//! (flows linked by shared links) the change touches; all changes made at one instant are
//! settled together, so an all-to-all that starts every flow at once costs one recomputation.
//!
//! Flows that start are first rated from the bandwidth their links have spare, every other
//! flow untouched; that is kept when it is max-min fair (each new flow's bottleneck is full and
//! carries no faster flow), which is the common case when the GPUs of an all-to-all start
//! sending at different instants and each new flow is limited by its own sending port.
//! Otherwise the component is recomputed.
//!
//! A re-division after drains only re-rates the flows whose rate is at least the smallest rate
//! released: progressive filling below that level is untouched by removing faster flows (every
//! link that filled below it keeps its flows), so those flows keep their rates exactly.
//!
//! A drained flow keeps holding its rate on its links until it is released, so that the flows
//! drained at one instant give their bandwidth back together. When drained flows are released,
//! whether a start rated unfairly from spare bandwidth stands, and how much a flow's rate must
//! change to be changed are the caller's to decide (see [`super::rate_tolerance`]); this module
//! only computes rates.

use super::FlowId;
pub(super) use filling::Filling;
use filling::Scratch;

mod filling;

/// Relative rate change below which a flow keeps its rate and drain event: shares computed in
/// a different order differ in their last bits (float noise).
pub(super) const RATE_NOISE: f64 = 1e-12;

/// Share of a link's capacity below which its spare bandwidth is rounding noise.
const SPARE_NOISE: f64 = 1e-9;

/// Relative margin below the settle floor within which a flow is still re-rated (float noise).
const FLOOR_NOISE: f64 = 1e-9;

/// What every re-division reads of a flow, packed together: a re-division visits thousands
/// of flows, and one load should bring all it needs of each.
#[derive(Debug, Clone, Copy, Default)]
struct FlowState {
    /// Current rate, bytes per ns (= GB/s); 0 until the flow is first rated.
    rate: f64,
    /// Start of its links in [`MaxMin::flow_links`].
    links_start: u32,
    /// Number of links it crosses.
    links_len: u32,
    /// Room for links at `links_start` (kept when the slot is reused).
    links_capacity: u32,
    /// The settle round that last visited it.
    mark: u32,
    /// The settle round that fixed its rate.
    fixed: u32,
    /// Still sending (a drained flow is not, but holds its rate until released).
    active: bool,
}

impl FlowState {
    /// Where its links are in [`MaxMin::flow_links`].
    fn link_range(&self) -> std::ops::Range<usize> {
        self.links_start as usize..(self.links_start + self.links_len) as usize
    }
}

/// A link's bandwidth and how much of it its flows hold.
#[derive(Debug, Clone, Copy)]
struct Link {
    /// Bytes per ns.
    capacity: f64,
    /// Sum of the rates of its flows (drained ones not yet released included), bytes per ns.
    used: f64,
}

/// Links, the flows crossing them and the flows' max-min fair rates, with what changed since
/// the last settle (a re-division, or rating the flows just started from spare bandwidth).
#[derive(Debug, Clone)]
pub(super) struct MaxMin {
    /// Per link, its bandwidth and what its flows hold.
    links: Vec<Link>,
    /// Per link, the flows crossing it (unordered; drained ones not yet released included).
    link_flows: Vec<Vec<FlowId>>,
    /// Per flow, what re-divisions read.
    flows: Vec<FlowState>,
    /// Concatenated link lists of all flows.
    flow_links: Vec<u32>,
    /// Slots of flows released, for reuse, so that memory follows the flows in flight.
    free: Vec<FlowId>,
    /// Flows drained and not yet released (they still hold their rates).
    drained: Vec<FlowId>,
    /// Flows added since the last settle.
    started: Vec<FlowId>,
    /// Links whose flow set changed since the last settle, once per flow added or released,
    /// and links marked for re-division.
    dirty_links: Vec<u32>,
    /// Rate below which no flow's rate can change at the next settle: the smallest rate of
    /// the flows released since the last one, or 0 once a flow started (a new flow may take
    /// bandwidth from any other).
    settle_floor: f64,
    /// Buffers every settle reuses.
    scratch: Scratch,
    /// Scratch: per link, the settle round that last visited it.
    link_mark: Vec<u32>,
    /// Scratch: per link, its position in the current component (valid when marked this round).
    link_slot: Vec<u32>,
    round: u32,
}

impl MaxMin {
    /// Links with the given bandwidths (bytes per ns), carrying no flow.
    pub(super) fn new(capacities: impl IntoIterator<Item = f64>) -> MaxMin {
        let links: Vec<Link> = capacities
            .into_iter()
            .map(|capacity| Link {
                capacity,
                used: 0.0,
            })
            .collect();
        let count = links.len();
        MaxMin {
            links,
            link_flows: vec![Vec::new(); count],
            flows: Vec::new(),
            flow_links: Vec::new(),
            free: Vec::new(),
            drained: Vec::new(),
            started: Vec::new(),
            dirty_links: Vec::new(),
            settle_floor: f64::INFINITY,
            scratch: Scratch::default(),
            link_mark: vec![0; count],
            link_slot: vec![0; count],
            round: 0,
        }
    }

    /// The links' bandwidths, bytes per ns, by link.
    pub(super) fn capacities(&self) -> impl Iterator<Item = f64> + '_ {
        self.links.iter().map(|link| link.capacity)
    }

    /// Adds a flow over `links` (non-empty, valid indices), at rate 0 until the next settle
    /// rates it; it may reuse a released flow's id.
    pub(super) fn add(&mut self, links: &[u32]) -> FlowId {
        let id = self.free.pop().unwrap_or_else(|| {
            self.flows.push(FlowState::default());
            (self.flows.len() - 1) as FlowId
        });
        let state = &mut self.flows[id as usize];
        if links.len() as u32 > state.links_capacity {
            state.links_start = self.flow_links.len() as u32;
            state.links_capacity = links.len() as u32;
            self.flow_links.extend_from_slice(links);
        } else {
            let start = state.links_start as usize;
            self.flow_links[start..start + links.len()].copy_from_slice(links);
        }
        state.links_len = links.len() as u32;
        state.rate = 0.0;
        state.active = true;
        self.settle_floor = 0.0;
        self.started.push(id);
        for &link in links {
            self.link_flows[link as usize].push(id);
            self.dirty_links.push(link);
        }
        id
    }

    /// Sum of the rates the flows on `link` hold (drained ones not yet released included),
    /// summed afresh rather than read from the running total a re-division keeps.
    #[cfg(test)]
    pub(super) fn held(&self, link: u32) -> f64 {
        self.link_flows[link as usize]
            .iter()
            .map(|&flow| self.flows[flow as usize].rate)
            .sum()
    }

    /// The rate `flow` holds, bytes per ns (a drained flow's until it is released).
    pub(super) fn rate(&self, flow: FlowId) -> f64 {
        self.flows[flow as usize].rate
    }

    /// Whether `flow` is still sending (added and not drained).
    pub(super) fn is_active(&self, flow: FlowId) -> bool {
        self.flows[flow as usize].active
    }

    /// The links `flow` crosses.
    pub(super) fn links(&self, flow: FlowId) -> &[u32] {
        &self.flow_links[self.flows[flow as usize].link_range()]
    }

    /// The flows added since the last settle.
    pub(super) fn started(&self) -> &[FlowId] {
        &self.started
    }

    /// The links whose flow set changed since the last settle (once per flow added or released).
    pub(super) fn changed_links(&self) -> &[u32] {
        &self.dirty_links
    }

    /// Whether some link's flow set changed since the last settle.
    pub(super) fn has_changed_links(&self) -> bool {
        !self.dirty_links.is_empty()
    }

    /// Whether some drained flow is not released yet.
    pub(super) fn has_drained(&self) -> bool {
        !self.drained.is_empty()
    }

    /// Whether no flow holds bandwidth (every flow added was drained and released).
    pub(super) fn holds_nothing(&self) -> bool {
        self.free.len() == self.flows.len()
    }

    /// The links the last re-division or rating of starts covered.
    pub(super) fn component_links(&self) -> &[u32] {
        &self.scratch.links
    }

    /// The rate `flow` is sure of under max-min: the smallest of its links' capacities split
    /// evenly among their flows.
    pub(super) fn guaranteed_share(&self, flow: FlowId) -> f64 {
        self.links(flow)
            .iter()
            .map(|&l| self.links[l as usize].capacity / self.link_flows[l as usize].len() as f64)
            .fold(f64::INFINITY, f64::min)
    }

    /// Gives `flow` `rate`, changing what its links have in use; returns those links.
    pub(super) fn set_rate(&mut self, flow: FlowId, rate: f64) -> &[u32] {
        let state = &mut self.flows[flow as usize];
        let delta = rate - state.rate;
        let links = &self.flow_links[state.link_range()];
        for &l in links {
            self.links[l as usize].used += delta;
        }
        state.rate = rate;
        links
    }

    /// Marks `flow` drained: it stops sending but holds its rate on its links until
    /// [`MaxMin::release_drained`]; returns that rate.
    pub(super) fn drain(&mut self, flow: FlowId) -> f64 {
        let state = &mut self.flows[flow as usize];
        state.active = false;
        self.drained.push(flow);
        state.rate
    }

    /// Takes every drained flow off its links, in flow order, calling `released` with the rate
    /// each gives back, and marks the links for re-division; their ids are free for reuse.
    pub(super) fn release_drained(&mut self, mut released: impl FnMut(f64)) {
        self.drained.sort_unstable();
        self.round += 1;
        let round = self.round;
        let first_released = self.dirty_links.len();
        for &flow in &self.drained {
            let rate = self.flows[flow as usize].rate;
            released(rate);
            self.settle_floor = self.settle_floor.min(rate);
            for &link in &self.flow_links[self.flows[flow as usize].link_range()] {
                let l = link as usize;
                self.links[l].used -= rate;
                if self.link_mark[l] != round {
                    self.link_mark[l] = round;
                    self.dirty_links.push(link);
                }
            }
        }
        // Every flow on a link that is not active is drained: one pass per link takes them all.
        for &link in &self.dirty_links[first_released..] {
            let on_link = &mut self.link_flows[link as usize];
            on_link.retain(|&f| self.flows[f as usize].active);
            if on_link.is_empty() {
                self.links[link as usize].used = 0.0;
            }
        }
        self.free.append(&mut self.drained);
    }

    /// Marks `links` (emptied) for a full re-division at the next settle, as if flows had just
    /// started on them.
    pub(super) fn mark_for_redivision(&mut self, links: &mut Vec<u32>) {
        self.dirty_links.append(links);
        self.settle_floor = 0.0;
    }

    /// Rates the flows started since the last settle by progressive filling over the bandwidth
    /// their links have spare, leaving every other flow's rate alone, and returns whether that
    /// is the max-min fair allocation: each new flow's bottleneck (the link that fixes it) is
    /// then full and no other active flow on it is faster, and the flows that were there keep
    /// their bottlenecks (a full link has no spare, so a new flow crossing one would be fixed
    /// there at nothing). A combine whose GPUs start at different instants mostly adds flows
    /// limited by their own sending port, so this settles each start without touching the
    /// thousands of flows in flight. Sets `changes` to the new flows whose rate that changes
    /// beyond `kept_raise` ([`keeps_rate`](filling::keeps_rate)); with [`Filling::StartsIfFair`], to none once the
    /// allocation is not fair. Call [`MaxMin::starts_settled`] once the rates stand.
    pub(super) fn rate_starts_from_spare(
        &mut self,
        filling: Filling,
        kept_raise: f64,
        changes: &mut Vec<(FlowId, f64)>,
    ) -> bool {
        self.round += 1;
        let round = self.round;
        for &flow in &self.started {
            self.flows[flow as usize].mark = round;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.links.clear();
        scratch.spare.clear();
        scratch.unfixed.clear();
        for &link in &self.dirty_links {
            let l = link as usize;
            if enqueue_link(
                link,
                round,
                &mut self.link_mark,
                &mut self.link_slot,
                &mut scratch.links,
            ) {
                scratch
                    .spare
                    .push(spare_bandwidth(self.links[l].capacity, self.links[l].used));
                scratch.unfixed.push(1);
            } else {
                scratch.unfixed[self.link_slot[l] as usize] += 1;
            }
        }
        let fair = self.fill(
            &mut scratch,
            self.started.len(),
            filling,
            kept_raise,
            changes,
        );
        self.scratch = scratch;
        fair
    }

    /// The starts rated from spare bandwidth stand: forgets them and the changed links.
    pub(super) fn starts_settled(&mut self) {
        self.started.clear();
        self.dirty_links.clear();
        self.settle_floor = f64::INFINITY;
    }

    /// Recomputes the max-min fair rates of the flows connected to the links changed since
    /// the last settle, re-rating only those at or above the settle floor (see the module
    /// docs); sets `changes` to the flows whose rate that changes beyond `kept_raise`
    /// ([`keeps_rate`](filling::keeps_rate)) and their new rates.
    pub(super) fn redivide(&mut self, kept_raise: f64, changes: &mut Vec<(FlowId, f64)>) {
        self.started.clear();
        self.round += 1;
        // Shares computed in a different order differ in their last bits: a flow at the floor
        // itself may change.
        let floor = self.settle_floor * (1.0 - FLOOR_NOISE);
        self.settle_floor = f64::INFINITY;
        let flows = self.gather_component(floor);
        let mut scratch = std::mem::take(&mut self.scratch);
        self.fill(&mut scratch, flows, Filling::Component, kept_raise, changes);
        self.scratch = scratch;
    }

    /// Gathers into the scratch buffers the links reachable from the changed links through
    /// shared flows of rate `floor` or more (breadth first, each with its position in
    /// `link_slot`), and per link its capacity left by the flows below the floor (which keep
    /// their rates and are marked fixed) and its count of the others; returns how many flows
    /// the component has at or above the floor (those filling re-rates).
    fn gather_component(&mut self, floor: f64) -> usize {
        let round = self.round;
        let scratch = &mut self.scratch;
        scratch.links.clear();
        scratch.spare.clear();
        scratch.unfixed.clear();
        for &link in &self.dirty_links {
            enqueue_link(
                link,
                round,
                &mut self.link_mark,
                &mut self.link_slot,
                &mut scratch.links,
            );
        }
        self.dirty_links.clear();
        let mut flows = 0;
        let mut next = 0;
        while next < scratch.links.len() {
            let link = scratch.links[next] as usize;
            next += 1;
            let (mut spare, mut unfixed) = (self.links[link].capacity, 0);
            for &flow in &self.link_flows[link] {
                let state = &mut self.flows[flow as usize];
                if state.rate < floor {
                    spare -= state.rate;
                    state.fixed = round;
                    continue;
                }
                unfixed += 1;
                if state.mark != round {
                    state.mark = round;
                    flows += 1;
                    for &l in &self.flow_links[state.link_range()] {
                        enqueue_link(
                            l,
                            round,
                            &mut self.link_mark,
                            &mut self.link_slot,
                            &mut scratch.links,
                        );
                    }
                }
            }
            scratch.spare.push(spare.max(0.0));
            scratch.unfixed.push(unfixed);
        }
        flows
    }
}

/// What a link of `capacity` has spare when its flows use `used`, with the rounding a running
/// sum of rates gathers taken as nothing: a start rated from a residue of 1e-13 B/ns would
/// be fair by the letter, take forever, and sit below every later re-division's floor.
fn spare_bandwidth(capacity: f64, used: f64) -> f64 {
    let spare = capacity - used;
    if spare > capacity * SPARE_NOISE {
        spare
    } else {
        0.0
    }
}

/// Appends `link` to `links` (recording its position in `slot`) unless it is already marked
/// in this `round`; returns whether it did.
fn enqueue_link(
    link: u32,
    round: u32,
    mark: &mut [u32],
    slot: &mut [u32],
    links: &mut Vec<u32>,
) -> bool {
    let l = link as usize;
    let new = mark[l] != round;
    if new {
        mark[l] = round;
        slot[l] = links.len() as u32;
        links.push(link);
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Re-divides `max_min`, gives the flows their new rates and returns the changes.
    fn redivide(max_min: &mut MaxMin) -> Vec<(FlowId, f64)> {
        let mut changes = Vec::new();
        max_min.redivide(RATE_NOISE, &mut changes);
        for &(flow, rate) in &changes {
            max_min.set_rate(flow, rate);
        }
        changes
    }

    /// Link 0 at 10 B/ns carrying A and B; link 1 at 30 B/ns carrying A, C and D (not rated).
    fn two_links() -> (MaxMin, [FlowId; 4]) {
        let mut max_min = MaxMin::new([10.0, 30.0]);
        let flows = [&[0, 1][..], &[0], &[1], &[1]].map(|links| max_min.add(links));
        (max_min, flows)
    }

    #[test]
    fn progressive_filling_fixes_the_smallest_equal_share_first() {
        // Link 0 offers A and B 5 each, link 1 A, C and D 10 each: A and B are fixed at 5 on
        // link 0, leaving 25 of link 1 to C and D, 12.5 each.
        let (mut max_min, [a, b, c, d]) = two_links();
        assert_eq!(max_min.started(), [a, b, c, d]);
        assert_eq!(
            redivide(&mut max_min),
            vec![(a, 5.0), (b, 5.0), (c, 12.5), (d, 12.5)]
        );
        assert!(max_min.started().is_empty() && !max_min.has_changed_links());
        // Sure of at least its links' capacities split evenly: min(10 / 2, 30 / 3) for A.
        assert_eq!(max_min.guaranteed_share(a), 5.0);
        assert_eq!(max_min.guaranteed_share(c), 10.0);
    }

    #[test]
    fn a_release_re_rates_only_the_flows_at_or_above_the_rate_released() {
        // As above (A, B at 5; C, D at 12.5). C drains: it holds its 12.5 B/ns until released.
        // Then only flows of 12.5 B/ns or more are re-rated: D, alone on link 1 with A's 5
        // B/ns below the floor, gets 25; link 0 (A, B) is not even visited.
        let (mut max_min, [a, b, c, d]) = two_links();
        redivide(&mut max_min);
        assert_eq!(max_min.drain(c), 12.5);
        assert!(!max_min.is_active(c) && max_min.has_drained());
        let mut released = Vec::new();
        max_min.release_drained(|rate| released.push(rate));
        assert_eq!(released, [12.5]);
        assert_eq!(max_min.changed_links(), [1]);
        assert_eq!(redivide(&mut max_min), vec![(d, 25.0)]);
        assert_eq!(max_min.component_links(), [1]);
        assert_eq!((max_min.rate(a), max_min.rate(b)), (5.0, 5.0));
        // C's id is free again: the next flow takes it, with its own links.
        assert_eq!(max_min.add(&[0]), c);
        assert_eq!(max_min.links(c), [0]);
        assert!(!max_min.holds_nothing());
    }

    #[test]
    fn starts_rated_from_spare_stand_only_when_that_is_fair() {
        // Link 1 at 20 B/ns holds A (links 0, 1) to 20: B starting on link 0 (100 B/ns) takes
        // the 80 spare, which is fair, and nothing else moves.
        let mut max_min = MaxMin::new([100.0, 20.0]);
        let a = max_min.add(&[0, 1]);
        redivide(&mut max_min);
        let b = max_min.add(&[0]);
        let mut changes = Vec::new();
        assert!(max_min.rate_starts_from_spare(Filling::StartsIfFair, RATE_NOISE, &mut changes));
        assert_eq!(changes, [(b, 80.0)]);
        assert_eq!(max_min.rate(a), 20.0);
        max_min.starts_settled();
        assert!(!max_min.has_changed_links() && max_min.started().is_empty());
        // Link 1 at 60 B/ns: A runs at 60 and 40 are spare on link 0, but A is faster than
        // those 40, so B's fair share (50) would take from A: not fair. Filling only if fair
        // changes nothing; filling from spare all the same gives B the 40.
        let mut max_min = MaxMin::new([100.0, 60.0]);
        let a = max_min.add(&[0, 1]);
        redivide(&mut max_min);
        assert_eq!(max_min.rate(a), 60.0);
        let b = max_min.add(&[0]);
        assert!(!max_min.rate_starts_from_spare(Filling::StartsIfFair, RATE_NOISE, &mut changes));
        assert!(changes.is_empty());
        assert!(!max_min.rate_starts_from_spare(
            Filling::StartsFromSpare,
            RATE_NOISE,
            &mut changes
        ));
        assert_eq!(changes, [(b, 40.0)]);
        // Nothing spare: the start is not fair and gets nothing (no change from 0).
        let mut max_min = MaxMin::new([90.0]);
        max_min.add(&[0]);
        redivide(&mut max_min);
        max_min.add(&[0]);
        assert!(!max_min.rate_starts_from_spare(
            Filling::StartsFromSpare,
            RATE_NOISE,
            &mut changes
        ));
        assert!(changes.is_empty());
    }

    #[test]
    fn rounding_left_in_a_full_link_is_no_spare_bandwidth() {
        // Rates summed in another order leave 1e-13 B/ns "spare" on a full 90 B/ns link: a
        // start rated from it would take years and never be re-rated; it gets nothing (and
        // waits for a re-division) instead. Real spare is kept to the last bit.
        assert_eq!(spare_bandwidth(90.0, 90.0 - 1e-13), 0.0);
        assert_eq!(spare_bandwidth(90.0, 90.0 + 1e-13), 0.0);
        assert_eq!(spare_bandwidth(90.0, 60.0), 30.0);
        assert_eq!(spare_bandwidth(90.0, 89.999), 90.0 - 89.999);
    }
}
