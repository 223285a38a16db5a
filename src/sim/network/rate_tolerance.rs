//! The rate tolerance: when exact max-min may wait, so that an all-to-all of thousands of flows
//! is not re-divided at every one of its thousands of starts and drains.
//!
//! With a tolerance, a drained flow is kept as a *ghost* that goes on holding its bandwidth
//! until the ghosts together hold more than the tolerance of the bandwidth in use, so that an
//! all-to-all draining at thousands of different instants is re-divided a few hundred times
//! instead of at every drain; a flow whose new fair share is above its rate by no more than a
//! twentieth of the tolerance keeps its rate (and its drain event); and flows that start where
//! the spare bandwidth cannot rate them fairly run on what is spare (maybe nothing) until the
//! next re-division, which their shortfall brings forward like the ghosts' rate and which comes
//! at the latest after the tolerance of the time they are sure to take (see
//! [`RateTolerance::defer_starts`]), so that the GPUs of an all-to-all starting at tens of
//! instants do not each re-divide every flow in flight. All of these only slow flows down and
//! never let a link carry more than it can; the idle-byte credit ([`super::idle_credit`]) gives
//! most of what they cost back.
//!
//! With tolerance 0 every drain is released and every start re-divided at once (unless rating
//! it from spare bandwidth is fair), and only float noise keeps a rate: the allocation is
//! exactly max-min fair at all times.

use super::max_min::RATE_NOISE;
use crate::sim::rounding::ceil_u64;

/// Share of the tolerance by which a flow's new share may exceed its rate and the flow keep
/// its rate: a flow that keeps a lower rate is not credited for it later, so this is kept
/// well below the ghosts' budget.
const RAISE_SHARE: f64 = 0.05;

/// A flow started from spare bandwidth although that was not max-min fair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct DeferredStart {
    /// The rate it is sure of under max-min, bytes per ns.
    pub(super) guaranteed: f64,
    /// The rate the spare bandwidth gave it, bytes per ns.
    pub(super) rate: f64,
    /// Its bytes.
    pub(super) bytes: f64,
}

/// What the tolerance weighs: the ghosts' rate and the deferred starts' shortfall against the
/// bandwidth in use, and when the deferred starts must be re-divided.
#[derive(Debug, Clone)]
pub(super) struct RateTolerance {
    /// Share of `held_rate` the ghosts and deferred starts may hold or lack before their
    /// bandwidth is re-divided, in [0, 1); 0 is exact max-min.
    rate_tolerance: f64,
    /// Sum of the ghosts' rates, bytes per ns.
    ghost_rate: f64,
    /// Sum of the rates of every flow holding bandwidth (ghosts included), bytes per ns.
    held_rate: f64,
    /// Links of flows started from spare bandwidth although that was not max-min fair, to be
    /// re-divided by `redivide_by_ns` at the latest.
    deferred_links: Vec<u32>,
    /// When the deferred starts must be re-divided (`u64::MAX`: none are waiting).
    redivide_by_ns: u64,
    /// How much less than the share they are sure of the deferred starts run, in all,
    /// bytes per ns; it counts against the tolerance like the ghosts' rate.
    deferred_shortfall: f64,
}

impl RateTolerance {
    /// A tolerance of `rate_tolerance` (a share in [0, 1)); nothing held yet.
    pub(super) fn new(rate_tolerance: f64) -> RateTolerance {
        RateTolerance {
            rate_tolerance,
            ghost_rate: 0.0,
            held_rate: 0.0,
            deferred_links: Vec::new(),
            redivide_by_ns: u64::MAX,
            deferred_shortfall: 0.0,
        }
    }

    /// Whether starts may be rated unfairly from spare bandwidth and their re-division deferred.
    pub(super) fn defers_starts(&self) -> bool {
        self.rate_tolerance > 0.0
    }

    /// How far above its rate a flow's new share may be, relatively, and the flow still keep
    /// its rate: a twentieth of the tolerance, and never less than float noise.
    pub(super) fn kept_raise(&self) -> f64 {
        (self.rate_tolerance * RAISE_SHARE).max(RATE_NOISE)
    }

    /// Whether the ghosts' rate and the deferred starts' shortfall together are more than the
    /// tolerance of the bandwidth in use: then the ghosts are released and everything waiting
    /// re-divided.
    pub(super) fn ghosts_due(&self) -> bool {
        self.ghost_rate + self.deferred_shortfall > self.rate_tolerance * self.held_rate
    }

    /// Whether the deferred starts' re-division is due at `now_ns`.
    pub(super) fn deferral_due(&self, now_ns: u64) -> bool {
        now_ns >= self.redivide_by_ns
    }

    /// When the deferred starts must be re-divided, if any wait.
    pub(super) fn deadline_ns(&self) -> Option<u64> {
        (self.redivide_by_ns != u64::MAX).then_some(self.redivide_by_ns)
    }

    /// A flow's rate changed by `delta`.
    pub(super) fn rate_changed(&mut self, delta: f64) {
        self.held_rate += delta;
    }

    /// A flow of `rate` drained and became a ghost.
    pub(super) fn drained(&mut self, rate: f64) {
        self.ghost_rate += rate;
    }

    /// A ghost of `rate` was released.
    pub(super) fn released(&mut self, rate: f64) {
        self.held_rate -= rate;
    }

    /// Every ghost was released; `holds_nothing` when no flow holds bandwidth any more, and then
    /// the rounding the running sum gathered is dropped.
    pub(super) fn ghosts_released(&mut self, holds_nothing: bool) {
        self.ghost_rate = 0.0;
        if holds_nothing {
            self.held_rate = 0.0;
        }
    }

    /// Whether starts are waiting for a deferred re-division.
    pub(super) fn has_deferred(&self) -> bool {
        !self.deferred_links.is_empty()
    }

    /// Defers the re-division of `links`, those of the flows just started from spare
    /// bandwidth although that was not max-min fair. A flow's max-min rate is at least the
    /// smallest of its links' capacities split evenly among their flows (the share it is sure
    /// of); the re-division is due once the tolerance of the longest time any of `starts`
    /// would take at that share has passed, or sooner, as soon as how far they run below it,
    /// added to the ghosts' rate, is more than the tolerance of the bandwidth in use.
    pub(super) fn defer_starts(
        &mut self,
        now_ns: u64,
        starts: impl IntoIterator<Item = DeferredStart>,
        links: &[u32],
    ) {
        let mut wait_ns = 0;
        for start in starts {
            self.deferred_shortfall += (start.guaranteed - start.rate).max(0.0);
            wait_ns = wait_ns.max(ceil_u64(
                self.rate_tolerance * start.bytes / start.guaranteed,
            ));
        }
        self.redivide_by_ns = self.redivide_by_ns.min(now_ns.saturating_add(wait_ns));
        self.deferred_links.extend_from_slice(links);
    }

    /// Ends the deferral (its re-division is under way): returns the deferred links, to be
    /// taken for that re-division.
    pub(super) fn end_deferral(&mut self) -> &mut Vec<u32> {
        self.redivide_by_ns = u64::MAX;
        self.deferred_shortfall = 0.0;
        &mut self.deferred_links
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ghosts_are_due_once_they_hold_more_than_the_tolerance_of_the_bandwidth_in_use() {
        // 90 B/ns held by three flows of 30; one drains: its ghost holds 30 of 90 B/ns, a third.
        let mut tolerance = RateTolerance::new(0.5);
        tolerance.rate_changed(90.0);
        tolerance.drained(30.0);
        assert!(!tolerance.ghosts_due(), "30 <= 0.5 x 90");
        tolerance.drained(30.0);
        assert!(tolerance.ghosts_due(), "60 > 0.5 x 90");
        let mut exact = RateTolerance::new(0.0);
        exact.rate_changed(90.0);
        assert!(!exact.ghosts_due());
        exact.drained(1e-6);
        assert!(exact.ghosts_due(), "exact max-min releases any ghost");
    }

    #[test]
    fn released_ghosts_give_back_what_they_held_and_an_idle_network_forgets_rounding() {
        let mut tolerance = RateTolerance::new(0.25);
        tolerance.rate_changed(100.0);
        tolerance.drained(40.0);
        tolerance.released(40.0);
        tolerance.ghosts_released(false);
        // 60 B/ns still held: a ghost of 15 is within 0.25 x 60, one of 16 is not.
        tolerance.drained(15.0);
        assert!(!tolerance.ghosts_due());
        tolerance.drained(1.0);
        assert!(tolerance.ghosts_due());
        // The last flows give back a hair less than the running sum holds (rounding): once
        // nothing holds bandwidth that residue is dropped, so any later ghost is due.
        tolerance.released(60.0 - 1e-13);
        tolerance.ghosts_released(true);
        assert!(!tolerance.ghosts_due());
        tolerance.drained(1e-14);
        assert!(
            tolerance.ghosts_due(),
            "1e-14 > 0.25 x 0, not within 0.25 x 1e-13"
        );
    }

    #[test]
    fn deferred_starts_are_due_after_the_tolerance_of_their_longest_sure_time() {
        // Two starts sure of 50 B/ns (1,000 B: 20 ns) and 25 B/ns (3,000 B: 120 ns), given 0
        // and 10 B/ns: at tolerance 0.4, due 0.4 x 120 = 48 ns later; they lack 50 + 15 B/ns.
        let mut tolerance = RateTolerance::new(0.4);
        tolerance.rate_changed(200.0);
        let starts = [
            DeferredStart {
                guaranteed: 50.0,
                rate: 0.0,
                bytes: 1_000.0,
            },
            DeferredStart {
                guaranteed: 25.0,
                rate: 10.0,
                bytes: 3_000.0,
            },
        ];
        tolerance.defer_starts(100, starts, &[3, 4]);
        assert_eq!(tolerance.deadline_ns(), Some(148));
        assert!(!tolerance.deferral_due(147) && tolerance.deferral_due(148));
        // The 65 B/ns shortfall is within 0.4 x 200 = 80; 16 B/ns of ghosts tip it over.
        assert!(!tolerance.ghosts_due());
        tolerance.drained(16.0);
        assert!(tolerance.ghosts_due());
        // A later deferral due sooner brings the deadline forward, never back.
        let later = DeferredStart {
            guaranteed: 100.0,
            rate: 100.0,
            bytes: 1_000.0,
        };
        tolerance.defer_starts(110, [later], &[5]);
        assert_eq!(tolerance.deadline_ns(), Some(114));
        let long = DeferredStart {
            bytes: 1e6,
            ..later
        };
        tolerance.defer_starts(112, [long], &[]);
        assert_eq!(tolerance.deadline_ns(), Some(114));
        assert_eq!(*tolerance.end_deferral(), [3, 4, 5]);
        assert_eq!(tolerance.deadline_ns(), None);
        assert!(
            !tolerance.ghosts_due(),
            "16 B/ns of ghosts alone are within 80"
        );
    }

    #[test]
    fn a_raise_within_a_twentieth_of_the_tolerance_is_kept_and_exact_keeps_only_noise() {
        assert_eq!(RateTolerance::new(0.2).kept_raise(), 0.2 * 0.05);
        assert_eq!(RateTolerance::new(0.0).kept_raise(), RATE_NOISE);
        assert!(!RateTolerance::new(0.0).defers_starts());
        assert!(RateTolerance::new(0.01).defers_starts());
    }
}
