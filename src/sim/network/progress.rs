//! How far a flow has got: its bytes left at the instant it was last re-rated, and when it
//! drains at its rate, rounded up to a whole nanosecond (see [`super`]).

use crate::sim::rounding::ceil_u64;

/// Relative margin under which float noise never pushes a drain instant one ns later.
const DRAIN_NOISE: f64 = 1e-9;

/// The bytes a flow had left when it was last brought up to date.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Progress {
    /// Bytes not yet sent at `updated_ns`.
    remaining_bytes: f64,
    /// When `remaining_bytes` was last brought up to date.
    updated_ns: u64,
}

impl Progress {
    /// A flow of `bytes` starting at `now_ns`.
    pub(super) fn new(bytes: f64, now_ns: u64) -> Progress {
        Progress {
            remaining_bytes: bytes,
            updated_ns: now_ns,
        }
    }

    /// Bytes not yet sent when last brought up to date.
    pub(super) fn remaining_bytes(&self) -> f64 {
        self.remaining_bytes
    }

    /// Time since it was last brought up to date.
    pub(super) fn elapsed_ns(&self, now_ns: u64) -> u64 {
        now_ns - self.updated_ns
    }

    /// Brings it up to `now_ns`, having sent at `rate` since it was last brought up to date.
    pub(super) fn advance(&mut self, now_ns: u64, rate: f64) {
        let sent = rate * self.elapsed_ns(now_ns) as f64;
        self.remaining_bytes = (self.remaining_bytes - sent).max(0.0);
        self.updated_ns = now_ns;
    }

    /// Takes `bytes` it need not send off what it has left after the bytes sent at `rate`
    /// since it was last brought up to date (which stay to be taken by [`Progress::advance`]).
    pub(super) fn credit(&mut self, now_ns: u64, rate: f64, bytes: f64) {
        let sent = rate * self.elapsed_ns(now_ns) as f64;
        self.remaining_bytes = sent + (self.remaining_bytes - sent - bytes).max(0.0);
    }

    /// When its last byte leaves at `rate`, from when it was last brought up to date
    /// (`u64::MAX` at rate 0: a flow given no bandwidth waits for the next re-division).
    pub(super) fn drain_ns(&self, rate: f64) -> u64 {
        let left_ns = self.remaining_bytes / rate * (1.0 - DRAIN_NOISE);
        self.updated_ns.saturating_add(ceil_u64(left_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_drains_on_the_next_whole_ns_but_not_later_for_float_noise() {
        // 1000 B at 50 B/ns: 20 ns exactly; 1001 B: 20.02 ns, rounded up to 21.
        assert_eq!(Progress::new(1000.0, 0).drain_ns(50.0), 20);
        assert_eq!(Progress::new(1001.0, 5).drain_ns(50.0), 26);
        // 3 x 0.1 B at 0.1 B/ns is 3.0000000000000004 ns by float division: 3 ns, not 4.
        assert_eq!(Progress::new(3.0 * 0.1, 0).drain_ns(0.1), 3);
        assert_eq!(Progress::new(1.0, 10).drain_ns(0.0), u64::MAX);
    }

    #[test]
    fn advancing_sends_at_the_old_rate_and_a_credit_comes_off_what_is_left_after() {
        // 900 B at 45 B/ns from 0: 450 B left at 10 ns, drains at 10 + 450 / 30 = 25 ns at 30.
        let mut progress = Progress::new(900.0, 0);
        progress.advance(10, 45.0);
        assert_eq!(progress, Progress::new(450.0, 10));
        assert_eq!(progress.drain_ns(30.0), 25);
        // At 30 B/ns from 10 ns, a credit of 150 B at 14 ns: of the 450 B, 120 were sent by
        // then and 450 - 120 - 150 = 180 are left after them.
        progress.credit(14, 30.0, 150.0);
        progress.advance(14, 30.0);
        assert_eq!(progress, Progress::new(180.0, 14));
        // A credit larger than what is left after the bytes sent leaves just those.
        progress.credit(16, 30.0, 1e9);
        progress.advance(16, 30.0);
        assert_eq!(progress.remaining_bytes(), 0.0);
        assert_eq!(progress.elapsed_ns(20), 4);
    }
}
