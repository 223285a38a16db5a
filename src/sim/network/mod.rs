//! Flow-level network: every transfer is a flow over a fixed list of directed links, and the
//! flows crossing a link share its bandwidth max-min fairly (progressive filling).
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
//! With a tolerance (see [`FlowNetwork::with_ghost_tolerance`]), a drained flow is kept as a
//! *ghost* that goes on holding its bandwidth until the ghosts together hold more than the
//! tolerance of the bandwidth in use, so that an all-to-all of thousands of
//! flows draining at thousands of different instants is re-divided a few hundred times instead
//! of at every drain; a flow whose new fair share is above its rate by no more than a
//! twentieth of the tolerance keeps its rate (and its drain event); and flows that start where
//! the spare bandwidth cannot rate them fairly run on what is spare (maybe nothing) until the
//! next re-division, which their shortfall brings forward like the ghosts' rate and which comes
//! at the latest after the tolerance of the time they are sure to take (see
//! [`FlowNetwork::defer_starts`]), so that the GPUs of an all-to-all starting at tens of
//! instants do not each re-divide every flow in flight. All of these only slow flows down
//! and never let a link carry more than it can. What the late re-division costs is then
//! mostly given back: each flow it raises is credited the bytes it would have sent at its new
//! rate since it was last rated, as far as every link it crosses left that many bytes idle
//! since then (see [`FlowNetwork::credit_idle_bytes`]); a link never carries, in all, more
//! bytes than its capacity over the time. With tolerance 0 every change is re-divided at once
//! and the allocation is exactly max-min fair at all times.
//!
//! Time is integer nanoseconds. A flow's bytes drain at its current rate; its drain instant is
//! rounded **up** to the next whole nanosecond (a flow never finishes early), and the bandwidth
//! it held in that last fraction of a nanosecond is not handed to the others. Propagation latency
//! is not modelled here: the engine adds the route latency once the last byte has left, so a
//! lone flow of `B` bytes over a link of `G` GB/s with latency `L` takes `L + ceil(B / G)` ns.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;

use crate::sim::rounding::ceil_u64;
use drain_queue::DrainQueue;

mod drain_queue;

/// Index of a flow in its [`FlowNetwork`]; reused by a later flow once the flow has drained
/// and given its bandwidth back, so the network's memory follows the flows in flight.
pub type FlowId = u32;

/// Relative rate change below which a flow keeps its rate and drain event.
const RATE_TOLERANCE: f64 = 1e-12;

/// Share of the tolerance by which a flow's new share may exceed its rate and the flow keep
/// its rate: a flow that keeps a lower rate is not credited for it later, so this is kept
/// well below the ghosts' budget.
const RAISE_SHARE: f64 = 0.05;

/// Share of a link's capacity below which its spare bandwidth is rounding noise.
const SPARE_NOISE: f64 = 1e-9;

/// Relative margin below the settle floor within which a flow is still re-rated.
const FLOOR_TOLERANCE: f64 = 1e-9;

/// Relative tolerance under which float noise never pushes a drain instant one ns later.
const DRAIN_TOLERANCE: f64 = 1e-9;

/// What every re-division reads of a flow, packed together: a re-division visits thousands
/// of flows, and one load should bring all it needs of each.
#[derive(Debug, Clone, Copy, Default)]
struct FlowState {
    /// Current rate, bytes per ns (= GB/s); 0 until the flow is first rated.
    rate: f64,
    /// Start of its links in [`FlowNetwork::flow_links`].
    links_start: u32,
    /// Number of links it crosses.
    links_len: u32,
    /// The settle round that last visited it.
    mark: u32,
    /// The settle round that fixed its rate.
    fixed: u32,
}

impl FlowState {
    /// Where its links are in [`FlowNetwork::flow_links`].
    fn link_range(&self) -> std::ops::Range<usize> {
        self.links_start as usize..(self.links_start + self.links_len) as usize
    }
}

/// A link's bandwidth and what is done with it, packed together: re-rating a flow updates
/// most of these on each of its links, and one load should bring them all.
#[derive(Debug, Clone, Copy, Default)]
struct LinkState {
    /// Bytes per ns.
    capacity: f64,
    /// Sum of the rates of its flows (ghosts included), bytes per ns.
    used: f64,
    /// Rate its active flows send at (`used` without the ghosts), bytes per ns; kept with a
    /// tolerance only, for the idle bytes.
    carried: f64,
    /// Bytes it could have carried but did not since `idle_since` (its last re-division).
    idle_bytes: f64,
    /// When `idle_bytes` was last brought up to date.
    idle_since: u64,
    /// Scratch: the bytes the rising flows of a re-division ask to be credited.
    credit_asked: f64,
}

/// The rest of a transfer in flight.
#[derive(Debug, Clone)]
struct Flow {
    /// Room for links at its `links_start` (kept when the slot is reused).
    links_capacity: u32,
    /// Bytes not yet sent at `updated_ns`.
    remaining_bytes: f64,
    /// When `remaining_bytes` was last brought up to date.
    updated_ns: u64,
    /// Still sending (a drained ghost is not active but may still hold its rate).
    active: bool,
}

/// Links with their capacities and the flows crossing them, plus the flows' drain events.
#[derive(Debug, Clone)]
pub struct FlowNetwork {
    /// Per link, its bandwidth and what is done with it.
    links: Vec<LinkState>,
    /// Per link, the flows crossing it (unordered; ghosts included).
    link_flows: Vec<Vec<FlowId>>,
    /// Per flow, what re-divisions read.
    states: Vec<FlowState>,
    flows: Vec<Flow>,
    /// Concatenated link lists of all flows.
    flow_links: Vec<u32>,
    /// Pending drain instants of the active flows.
    drains: DrainQueue,
    /// Links whose flow set changed since the last [`FlowNetwork::settle`], once per flow
    /// added or removed.
    dirty_links: Vec<u32>,
    /// Flows started since the last [`FlowNetwork::settle`].
    started: Vec<FlowId>,
    /// Links of flows started from spare bandwidth although that was not max-min fair, to be
    /// re-divided by `redivide_by_ns` at the latest (with a tolerance only).
    deferred_links: Vec<u32>,
    /// When the deferred starts must be re-divided (`u64::MAX`: none are waiting).
    redivide_by_ns: u64,
    /// How much less than the share they are sure of the deferred starts run, in all,
    /// bytes per ns; it counts against the tolerance like the ghosts' rate.
    deferred_shortfall: f64,
    /// Drained flows still on their links, holding their last rate.
    ghosts: Vec<FlowId>,
    /// Slots of flows that drained and gave their bandwidth back, for reuse.
    free_flows: Vec<FlowId>,
    /// Rate below which no flow's rate can change at the next settle: the smallest rate of
    /// the flows released since the last one, or 0 once a flow started (a new flow may take
    /// bandwidth from any other).
    settle_floor: f64,
    /// Sum of the ghosts' rates, bytes per ns.
    ghost_rate: f64,
    /// Sum of the rates of every flow holding bandwidth (ghosts included), bytes per ns.
    held_rate: f64,
    /// Number of flows holding bandwidth (ghosts included).
    holding: usize,
    /// Share of `held_rate` the ghosts may hold before their bandwidth is re-divided, and the
    /// relative raise a flow may forgo.
    ghost_tolerance: f64,
    /// Scratch: the flows a re-division raises and the bytes each asks to be credited.
    raised: Vec<(FlowId, f64)>,
    /// Scratch: the flows a re-division re-rates and their new drain instants.
    moved_drains: Vec<(FlowId, u64)>,
    /// Buffers every settle reuses.
    scratch: Scratch,
    /// Scratch: per link, the settle round that last visited it.
    link_mark: Vec<u32>,
    /// Scratch: per link, its position in the current component (valid when marked this round).
    link_slot: Vec<u32>,
    round: u32,
}

impl FlowNetwork {
    /// A network of links with the given bandwidths (GB/s, i.e. bytes per ns), all idle.
    pub fn new(bandwidth_gbps: impl IntoIterator<Item = f64>) -> FlowNetwork {
        let links: Vec<LinkState> = bandwidth_gbps
            .into_iter()
            .map(|capacity| LinkState {
                capacity,
                ..LinkState::default()
            })
            .collect();
        let count = links.len();
        FlowNetwork {
            links,
            link_flows: vec![Vec::new(); count],
            states: Vec::new(),
            flows: Vec::new(),
            flow_links: Vec::new(),
            drains: DrainQueue::default(),
            dirty_links: Vec::new(),
            started: Vec::new(),
            deferred_links: Vec::new(),
            redivide_by_ns: u64::MAX,
            deferred_shortfall: 0.0,
            ghosts: Vec::new(),
            free_flows: Vec::new(),
            settle_floor: f64::INFINITY,
            ghost_rate: 0.0,
            held_rate: 0.0,
            holding: 0,
            ghost_tolerance: 0.0,
            raised: Vec::new(),
            moved_drains: Vec::new(),
            scratch: Scratch::default(),
            link_mark: vec![0; count],
            link_slot: vec![0; count],
            round: 0,
        }
    }

    /// The same network, keeping drained flows as ghosts until they hold more than `tolerance`
    /// (a share in [0, 1)) of the bandwidth in use, keeping a flow's rate when its new share
    /// is at most a twentieth of `tolerance` above it, deferring the re-division a start needs
    /// within that tolerance, and crediting raised flows with idle bytes; see the module docs.
    pub fn with_ghost_tolerance(mut self, tolerance: f64) -> FlowNetwork {
        self.ghost_tolerance = tolerance;
        self
    }

    /// Starts a flow of `bytes` (> 0) over `links` (non-empty, valid indices) at `now_ns`. Its
    /// rate is set at the next [`FlowNetwork::settle`], which must run before time advances.
    pub fn start(&mut self, now_ns: u64, links: &[u32], bytes: u64) -> FlowId {
        let id = self.free_flows.pop().unwrap_or_else(|| {
            self.flows.push(Flow {
                links_capacity: 0,
                remaining_bytes: 0.0,
                updated_ns: 0,
                active: false,
            });
            self.states.push(FlowState::default());
            (self.flows.len() - 1) as FlowId
        });
        let f = &mut self.flows[id as usize];
        let state = &mut self.states[id as usize];
        if links.len() as u32 > f.links_capacity {
            state.links_start = self.flow_links.len() as u32;
            f.links_capacity = links.len() as u32;
            self.flow_links.extend_from_slice(links);
        } else {
            let start = state.links_start as usize;
            self.flow_links[start..start + links.len()].copy_from_slice(links);
        }
        state.links_len = links.len() as u32;
        state.rate = 0.0;
        f.remaining_bytes = bytes as f64;
        f.updated_ns = now_ns;
        f.active = true;
        self.holding += 1;
        self.settle_floor = 0.0;
        self.started.push(id);
        for &link in links {
            self.link_flows[link as usize].push(id);
            self.dirty_links.push(link);
        }
        id
    }

    /// The earliest instant the network changes by itself, if any: a pending drain, or the
    /// deadline of a deferred re-division (see [`FlowNetwork::with_ghost_tolerance`]).
    pub fn next_drain_ns(&self) -> Option<u64> {
        let drain = self.drains.peek().map(|(ns, _)| ns);
        if self.redivide_by_ns == u64::MAX {
            drain
        } else {
            Some(drain.map_or(self.redivide_by_ns, |d| d.min(self.redivide_by_ns)))
        }
    }

    /// Finishes every flow that drains at `now_ns` and appends it to `drained` (in flow order).
    /// Call [`FlowNetwork::settle`] afterwards to hand their bandwidth to the others.
    pub fn drain_at(&mut self, now_ns: u64, drained: &mut Vec<FlowId>) {
        let first = drained.len();
        while let Some(flow) = self.drains.pop_due(now_ns) {
            let f = &mut self.flows[flow as usize];
            f.active = false;
            f.remaining_bytes = 0.0;
            let state = self.states[flow as usize];
            self.ghost_rate += state.rate;
            for i in state.link_range() {
                let l = self.flow_links[i] as usize;
                self.change_carried(l, now_ns, -state.rate);
            }
            self.ghosts.push(flow);
            drained.push(flow);
        }
        drained[first..].sort_unstable();
    }

    /// Recomputes the max-min fair rates of the flows connected to links changed since the last
    /// call, and schedules their drains. Flows whose rate is unchanged keep their drain event.
    /// Drained flows give their bandwidth back here, unless no flow started and they are
    /// ghosts within the tolerance (see [`FlowNetwork::with_ghost_tolerance`]).
    pub fn settle(&mut self, now_ns: u64) {
        let ghosts_due =
            self.ghost_rate + self.deferred_shortfall > self.ghost_tolerance * self.held_rate;
        let redivide_due = ghosts_due || now_ns >= self.redivide_by_ns;
        if !self.started.is_empty() && !redivide_due && self.rate_starts_from_spare(now_ns) {
            self.started.clear();
            self.dirty_links.clear();
            self.settle_floor = f64::INFINITY;
            return;
        }
        self.started.clear();
        if (redivide_due || !self.dirty_links.is_empty()) && !self.deferred_links.is_empty() {
            self.dirty_links.append(&mut self.deferred_links);
            self.redivide_by_ns = u64::MAX;
            self.deferred_shortfall = 0.0;
            self.settle_floor = 0.0;
        }
        if !self.ghosts.is_empty() && (ghosts_due || !self.dirty_links.is_empty()) {
            self.release_ghosts();
        }
        if self.dirty_links.is_empty() {
            return;
        }
        self.round += 1;
        // Shares computed in a different order differ in their last bits: a flow at the floor
        // itself may change.
        let floor = self.settle_floor * (1.0 - FLOOR_TOLERANCE);
        self.settle_floor = f64::INFINITY;
        let flows = self.gather_component(floor);
        let mut scratch = std::mem::take(&mut self.scratch);
        self.fill(&mut scratch, self.round, flows, Filling::Component);
        self.apply_changes(now_ns, &scratch.changes);
        self.reset_idle(&scratch.links, now_ns);
        self.scratch = scratch;
    }

    /// The current rate of `flow`, bytes per ns (0 once drained).
    pub fn rate(&self, flow: FlowId) -> f64 {
        let f = &self.flows[flow as usize];
        if f.active {
            self.states[flow as usize].rate
        } else {
            0.0
        }
    }

    /// Rates the flows started since the last settle by progressive filling over the bandwidth
    /// their links have spare, leaving every other flow's rate alone, when that is the max-min
    /// fair allocation: each new flow's bottleneck (the link that fixes it) is then full and no
    /// other active flow on it is faster, and the flows that were there keep their bottlenecks
    /// (a full link has no spare, so a new flow crossing one would be fixed there at nothing).
    /// A combine whose GPUs start at different instants mostly adds flows limited by their own
    /// sending port, so this settles each start without touching the thousands of flows in
    /// flight. When the check fails it returns false, having changed nothing, unless the
    /// network has a tolerance: then the new flows keep what the spare bandwidth gives them
    /// (less than their fair share, maybe nothing) until a deferred re-division
    /// ([`FlowNetwork::defer_starts`]), and it returns true.
    fn rate_starts_from_spare(&mut self, now_ns: u64) -> bool {
        self.round += 1;
        let round = self.round;
        for &flow in &self.started {
            self.states[flow as usize].mark = round;
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
        let may_defer = self.ghost_tolerance > 0.0;
        let filling = if may_defer {
            Filling::StartsFromSpare
        } else {
            Filling::StartsIfFair
        };
        let fair = self.fill(&mut scratch, round, self.started.len(), filling);
        let rated = fair || may_defer;
        if rated {
            self.apply_changes(now_ns, &scratch.changes);
            self.reset_idle(&scratch.links, now_ns);
        }
        self.scratch = scratch;
        if !fair && may_defer {
            self.defer_starts(now_ns);
        }
        rated
    }

    /// Keeps the links of the flows just started from spare bandwidth for a later
    /// re-division. A flow's max-min rate is at least the smallest of its links' capacities
    /// split evenly among their flows (the share it is sure of); the re-division is due once
    /// the tolerance of the longest time any of them would take at that share has passed, or
    /// sooner, as soon as how far they run below it, added to the ghosts' rate, is more than
    /// the tolerance of the bandwidth in use.
    fn defer_starts(&mut self, now_ns: u64) {
        let mut wait_ns = 0;
        for &flow in &self.started {
            let state = &self.states[flow as usize];
            let guaranteed = self.flow_links[state.link_range()]
                .iter()
                .map(|&l| {
                    self.links[l as usize].capacity / self.link_flows[l as usize].len() as f64
                })
                .fold(f64::INFINITY, f64::min);
            self.deferred_shortfall += (guaranteed - state.rate).max(0.0);
            let remaining_bytes = self.flows[flow as usize].remaining_bytes;
            wait_ns = wait_ns.max(ceil_u64(
                self.ghost_tolerance * remaining_bytes / guaranteed,
            ));
        }
        self.redivide_by_ns = self.redivide_by_ns.min(now_ns.saturating_add(wait_ns));
        self.deferred_links.extend_from_slice(&self.dirty_links);
    }

    /// Takes every drained flow off its links, marking the links for re-division.
    fn release_ghosts(&mut self) {
        let mut ghosts = std::mem::take(&mut self.ghosts);
        ghosts.sort_unstable();
        let ghosts_len = ghosts.len();
        self.round += 1;
        let round = self.round;
        let first_released = self.dirty_links.len();
        for &flow in &ghosts {
            let state = self.states[flow as usize];
            let rate = state.rate;
            self.held_rate -= rate;
            self.settle_floor = self.settle_floor.min(rate);
            for &link in &self.flow_links[state.link_range()] {
                let l = link as usize;
                self.links[l].used -= rate;
                if self.link_mark[l] != round {
                    self.link_mark[l] = round;
                    self.dirty_links.push(link);
                }
            }
        }
        // Every flow on a link that is not active is a ghost: one pass per link takes them all.
        for &link in &self.dirty_links[first_released..] {
            let on_link = &mut self.link_flows[link as usize];
            on_link.retain(|&f| self.flows[f as usize].active);
            if on_link.is_empty() {
                self.links[link as usize].used = 0.0;
            }
        }
        self.free_flows.extend_from_slice(&ghosts);
        ghosts.clear();
        self.ghosts = ghosts;
        self.ghost_rate = 0.0;
        self.holding -= ghosts_len;
        if self.holding == 0 {
            // Nothing holds bandwidth: drop the rounding the running sum gathered.
            self.held_rate = 0.0;
        }
    }

    /// Gathers into the scratch buffers the links reachable from the dirty links through
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
                let state = &mut self.states[flow as usize];
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

    /// Progressive filling over the links in `scratch` (with their spare capacity and count
    /// of unfixed flows): repeatedly the link offering the smallest equal share to its unfixed
    /// flows fixes them at that share (ties to the link gathered first), recording in
    /// `scratch.changes` the flows whose rate that changes ([`keeps_rate`]).
    /// Flows already marked fixed in `round` keep their rates. It stops once the `flows` it
    /// has to fix are (rather than pop every link left with none).
    /// When filling starts, only the flows marked `round` (their `mark`) are filled, and the
    /// result is false if a bottleneck leaves them nothing or carries another active flow
    /// faster than their share (see [`FlowNetwork::rate_starts_from_spare`]); with
    /// [`Filling::StartsIfFair`] it stops there.
    fn fill(&mut self, scratch: &mut Scratch, round: u32, flows: usize, filling: Filling) -> bool {
        let new_only = filling != Filling::Component;
        let mut fair = true;
        let Scratch {
            links,
            spare,
            unfixed,
            heap,
            changes,
        } = scratch;
        changes.clear();
        fill_heap(heap, spare, unfixed);
        let raise_tolerance = self.raise_tolerance();
        let mut left = flows;
        while left > 0
            && let Some(mut top) = heap.peek_mut()
        {
            let Reverse(entry) = *top;
            let (key, slot) = ((entry >> 32) as u64, entry as u32);
            let i = slot as usize;
            if unfixed[i] == 0 {
                PeekMut::pop(top);
                continue;
            }
            // Fixing flows only raises a link's share: a stale entry moves down in place.
            let share = spare[i] / f64::from(unfixed[i]);
            if share_key(share) != key {
                *top = Reverse(share_entry(share, slot));
                continue;
            }
            PeekMut::pop(top);
            let on_link = &self.link_flows[links[i] as usize];
            if new_only && fair && (share <= 0.0 || self.has_faster_old_flow(on_link, round, share))
            {
                if filling == Filling::StartsIfFair {
                    return false;
                }
                fair = false;
            }
            for &flow in on_link {
                let state = &mut self.states[flow as usize];
                if state.fixed == round || (new_only && state.mark != round) {
                    continue;
                }
                state.fixed = round;
                left -= 1;
                for &l in &self.flow_links[state.link_range()] {
                    let j = self.link_slot[l as usize] as usize;
                    spare[j] = (spare[j] - share).max(0.0);
                    unfixed[j] -= 1;
                }
                if !keeps_rate(state.rate, share, raise_tolerance) {
                    changes.push((flow, share));
                }
            }
        }
        fair
    }

    /// Whether an active flow on `on_link` not marked `round` (not new) runs faster than `share`.
    fn has_faster_old_flow(&self, on_link: &[FlowId], round: u32, share: f64) -> bool {
        on_link.iter().any(|&flow| {
            let state = &self.states[flow as usize];
            state.mark != round
                && self.flows[flow as usize].active
                && state.rate > share * (1.0 + RATE_TOLERANCE)
        })
    }

    /// Gives every flow the filling re-rated its new rate (see [`FlowNetwork::change_rate`])
    /// and moves their drains, all at once.
    fn apply_changes(&mut self, now_ns: u64, changes: &[(FlowId, f64)]) {
        if self.ghost_tolerance > 0.0 {
            self.credit_idle_bytes(now_ns, changes);
        }
        let mut drains = std::mem::take(&mut self.moved_drains);
        drains.clear();
        drains.extend(
            changes
                .iter()
                .map(|&(flow, rate)| (flow, self.change_rate(now_ns, flow, rate))),
        );
        self.drains.set_all(&drains);
        self.moved_drains = drains;
    }

    /// Credits each flow that `changes` raises with the bytes it would have sent at its new
    /// rate since it was last rated, as far as every link it crosses left that many bytes idle
    /// since then (shared out in proportion to what the raised flows ask of the link).
    fn credit_idle_bytes(&mut self, now_ns: u64, changes: &[(FlowId, f64)]) {
        let mut raised = std::mem::take(&mut self.raised);
        raised.clear();
        for &(flow, rate) in changes {
            let state = self.states[flow as usize];
            let elapsed_ns = now_ns - self.flows[flow as usize].updated_ns;
            if rate <= state.rate || elapsed_ns == 0 {
                continue;
            }
            let asked = (rate - state.rate) * elapsed_ns as f64;
            raised.push((flow, asked));
            for i in state.link_range() {
                let l = self.flow_links[i] as usize;
                self.account_idle(l, now_ns);
                self.links[l].credit_asked += asked;
            }
        }
        for &(flow, asked) in &raised {
            let state = self.states[flow as usize];
            let links = &self.flow_links[state.link_range()];
            let granted = links.iter().fold(1.0f64, |g, &l| {
                let link = &self.links[l as usize];
                g.min(link.idle_bytes / link.credit_asked)
            });
            let f = &mut self.flows[flow as usize];
            // Sent at the old rate first (see `change_rate`), then the credit.
            let sent = state.rate * (now_ns - f.updated_ns) as f64;
            f.remaining_bytes = sent + (f.remaining_bytes - sent - asked * granted).max(0.0);
        }
        for &(flow, _) in &raised {
            let state = self.states[flow as usize];
            for i in state.link_range() {
                self.links[self.flow_links[i] as usize].credit_asked = 0.0;
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

    /// Brings `link`'s idle bytes up to `now_ns`, then changes the rate its active flows send
    /// at by `delta`. Exact max-min (no tolerance) credits nothing and keeps neither.
    fn change_carried(&mut self, link: usize, now_ns: u64, delta: f64) {
        if self.ghost_tolerance == 0.0 {
            return;
        }
        self.account_idle(link, now_ns);
        let link = &mut self.links[link];
        link.carried = (link.carried + delta).max(0.0);
    }

    /// Forgets the idle bytes of `links` up to `now_ns` (their flows were just re-rated).
    fn reset_idle(&mut self, links: &[u32], now_ns: u64) {
        for &l in links {
            let link = &mut self.links[l as usize];
            link.idle_bytes = 0.0;
            link.idle_since = now_ns;
        }
    }

    /// How far above its rate a flow's new share may be and the flow still keep its rate
    /// (see [`keeps_rate`]).
    fn raise_tolerance(&self) -> f64 {
        (self.ghost_tolerance * RAISE_SHARE).max(RATE_TOLERANCE)
    }

    /// Brings `flow`'s progress up to `now_ns`, gives it `rate` and returns when it drains.
    fn change_rate(&mut self, now_ns: u64, flow: FlowId, rate: f64) -> u64 {
        let state = self.states[flow as usize];
        let old = state.rate;
        let f = &mut self.flows[flow as usize];
        f.remaining_bytes = (f.remaining_bytes - old * (now_ns - f.updated_ns) as f64).max(0.0);
        f.updated_ns = now_ns;
        let left_ns = f.remaining_bytes / rate * (1.0 - DRAIN_TOLERANCE);
        self.held_rate += rate - old;
        for i in state.link_range() {
            let l = self.flow_links[i] as usize;
            self.links[l].used += rate - old;
            self.change_carried(l, now_ns, rate - old);
        }
        self.states[flow as usize].rate = rate;
        // A flow given no bandwidth (float noise on a full link) waits for the next re-division.
        now_ns.saturating_add(ceil_u64(left_ns))
    }
}

/// What [`FlowNetwork::fill`] fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filling {
    /// Every unfixed flow of the gathered component.
    Component,
    /// Only the flows just started, from the spare bandwidth, giving up as soon as that is
    /// not max-min fair.
    StartsIfFair,
    /// Only the flows just started, from the spare bandwidth, fair or not.
    StartsFromSpare,
}

/// The component a settle works on, by position in `links`.
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// The component's links, in visiting order.
    links: Vec<u32>,
    /// Per link, capacity not yet handed out.
    spare: Vec<f64>,
    /// Per link, flows whose rate is not fixed yet.
    unfixed: Vec<u32>,
    /// Links (by position) keyed by the equal share they offer their unfixed flows (lazily
    /// updated; see [`share_entry`]).
    heap: BinaryHeap<Reverse<u128>>,
    /// Flows whose rate the filling changes, and their new rates, before they are applied.
    changes: Vec<(FlowId, f64)>,
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

/// Whether a flow at `old` given `rate` keeps `old` (and its drain event): shares recomputed
/// in a different order differ in their last bits, so the rate must really change; a lower
/// old rate is kept when `rate` is at most `raise_tolerance` above it (never a higher one, so
/// no link carries more than it can). A flow not rated yet (at 0) keeps nothing but 0.
fn keeps_rate(old: f64, rate: f64, raise_tolerance: f64) -> bool {
    rate >= old * (1.0 - RATE_TOLERANCE) && rate <= old * (1.0 + raise_tolerance)
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

/// Fills `heap` with every link that has unfixed flows, by the equal share it offers them.
fn fill_heap(heap: &mut BinaryHeap<Reverse<u128>>, spare: &[f64], unfixed: &[u32]) {
    heap.clear();
    heap.extend(
        (0..spare.len())
            .filter(|&i| unfixed[i] > 0)
            .map(|i| Reverse(share_entry(spare[i] / f64::from(unfixed[i]), i as u32))),
    );
}

/// A share (>= 0, finite) as an integer of the same order: the bits of a non-negative float
/// order like the float, and integers compare faster (adding 0 turns a -0 into 0).
fn share_key(share: f64) -> u64 {
    (share + 0.0).to_bits()
}

/// A heap entry for the link at `slot` offering `share`: the [`share_key`] in the high bits and
/// the slot in the low 32, so that one integer comparison orders by share, then slot.
fn share_entry(share: f64, slot: u32) -> u128 {
    (u128::from(share_key(share)) << 32) | u128::from(slot)
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
        let mut net = FlowNetwork::new([90.0]).with_ghost_tolerance(0.2);
        assert_eq!(run(&mut net, &starts), vec![15, 25, 25]);
        let mut net = FlowNetwork::new([90.0]).with_ghost_tolerance(0.5);
        assert_eq!(run(&mut net, &starts), vec![15, 30, 30]);
        // D (90 B) starts at 15 ns on the full link: it gets nothing until the deferred
        // re-division, due after half the 4 ns it is sure to take (90 B at 90 / 4 B/ns), at
        // 17 ns, which also releases A's ghost: 30 B/ns each. D, raised from 0, is credited the
        // 60 B it would have sent at 30 B/ns since 15 ns, which the link left idle (A's ghost
        // held 30 B/ns of it for 2 ns): 30 B left, D drains at 18 ns, as it would have under
        // exact max-min. Then D is the ghost, within the tolerance, so B and C go on at 30 B/ns
        // and drain at 30 ns.
        let mut net = FlowNetwork::new([90.0]).with_ghost_tolerance(0.5);
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
        let mut net = FlowNetwork::new([100.0]).with_ghost_tolerance(0.6);
        assert_eq!(run(&mut net, &starts), vec![178, 42]);
        // With 0.4, C (200 B on link 1) starting with B drains at 12 ns; its ghost's 100 B/ns
        // plus B's 50 B/ns shortfall are over 0.4 of the 200 B/ns in use: re-divided at 12 ns,
        // B drains at 32 ns, its ghost is over the tolerance, and A (7,800 B left) ends at 110.
        let mut with_c = starts.to_vec();
        with_c.push((10, vec![1], 200));
        let mut net = FlowNetwork::new([100.0, 100.0]).with_ghost_tolerance(0.4);
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
        let mut net = FlowNetwork::new([90.0]).with_ghost_tolerance(0.5);
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
    fn rounding_left_in_a_full_link_is_no_spare_bandwidth() {
        // Rates summed in another order leave 1e-13 B/ns "spare" on a full 90 B/ns link: a
        // start rated from it would take years and never be re-rated; it gets nothing (and
        // waits for a re-division) instead. Real spare is kept to the last bit.
        assert_eq!(spare_bandwidth(90.0, 90.0 - 1e-13), 0.0);
        assert_eq!(spare_bandwidth(90.0, 90.0 + 1e-13), 0.0);
        assert_eq!(spare_bandwidth(90.0, 60.0), 30.0);
        assert_eq!(spare_bandwidth(90.0, 89.999), 90.0 - 89.999);
    }

    #[test]
    fn disjoint_flows_do_not_disturb_each_other() {
        let mut net = FlowNetwork::new([10.0, 10.0]);
        let done = run(&mut net, &[(0, vec![0], 100), (3, vec![1], 50)]);
        assert_eq!(done, vec![10, 8]);
    }
}
