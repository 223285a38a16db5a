//! Progressive filling over the component a settle gathered: repeatedly the link offering the
//! smallest equal share to its unfixed flows fixes them at that share, until every flow to
//! re-rate is fixed. A heap of links keyed by share, smallest first, finds that link.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;

use super::{FlowId, MaxMin, RATE_NOISE};

/// What [`MaxMin::fill`] fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::sim::network) enum Filling {
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
pub(super) struct Scratch {
    /// The component's links, in visiting order.
    pub(super) links: Vec<u32>,
    /// Per link, capacity not yet handed out.
    pub(super) spare: Vec<f64>,
    /// Per link, flows whose rate is not fixed yet.
    pub(super) unfixed: Vec<u32>,
    /// Links (by position) keyed by the equal share they offer their unfixed flows (lazily
    /// updated; see [`share_entry`]).
    heap: BinaryHeap<Reverse<u128>>,
}

impl MaxMin {
    /// Progressive filling over the links in `scratch` (with their spare capacity and count
    /// of unfixed flows): repeatedly the link offering the smallest equal share to its unfixed
    /// flows fixes them at that share (ties to the link gathered first), setting `changes` to
    /// the flows whose rate that changes ([`keeps_rate`] within `kept_raise`). Flows already
    /// marked fixed this round keep their rates. It stops once the `flows` it has to fix are
    /// (rather than pop every link left with none).
    /// When filling starts, only the flows marked this round (their `mark`) are filled, and the
    /// result is false if a bottleneck leaves them nothing or carries another active flow
    /// faster than their share (see [`MaxMin::rate_starts_from_spare`]); with
    /// [`Filling::StartsIfFair`] it stops there, with no changes.
    pub(super) fn fill(
        &mut self,
        scratch: &mut Scratch,
        flows: usize,
        filling: Filling,
        kept_raise: f64,
        changes: &mut Vec<(FlowId, f64)>,
    ) -> bool {
        let round = self.round;
        let new_only = filling != Filling::Component;
        let mut fair = true;
        let Scratch {
            links,
            spare,
            unfixed,
            heap,
        } = scratch;
        changes.clear();
        fill_heap(heap, spare, unfixed);
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
            if new_only && fair && (share <= 0.0 || self.has_faster_old_flow(on_link, share)) {
                if filling == Filling::StartsIfFair {
                    changes.clear();
                    return false;
                }
                fair = false;
            }
            for &flow in on_link {
                let state = &mut self.flows[flow as usize];
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
                if !keeps_rate(state.rate, share, kept_raise) {
                    changes.push((flow, share));
                }
            }
        }
        fair
    }

    /// Whether an active flow on `on_link` not marked this round (not new) runs faster than
    /// `share`.
    fn has_faster_old_flow(&self, on_link: &[FlowId], share: f64) -> bool {
        on_link.iter().any(|&flow| {
            let state = &self.flows[flow as usize];
            state.mark != self.round && state.active && state.rate > share * (1.0 + RATE_NOISE)
        })
    }
}

/// Whether a flow at `old` given `rate` keeps `old` (and its drain event): shares recomputed
/// in a different order differ in their last bits, so the rate must really change; a lower
/// old rate is kept when `rate` is at most `kept_raise` above it (never a higher one, so no
/// link carries more than it can). A flow not rated yet (at 0) keeps nothing but 0.
fn keeps_rate(old: f64, rate: f64, kept_raise: f64) -> bool {
    rate >= old * (1.0 - RATE_NOISE) && rate <= old * (1.0 + kept_raise)
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

    #[test]
    fn a_flow_keeps_its_rate_through_noise_and_a_raise_within_the_kept_raise() {
        assert!(keeps_rate(30.0, 30.0 * (1.0 - 1e-13), RATE_NOISE));
        assert!(!keeps_rate(30.0, 29.9, 0.5), "a lower rate is always given");
        assert!(keeps_rate(30.0, 31.5, 0.05) && !keeps_rate(30.0, 31.6, 0.05));
        assert!(keeps_rate(0.0, 0.0, 0.05) && !keeps_rate(0.0, 1e-9, 0.05));
    }

    #[test]
    fn a_heap_entry_orders_by_share_then_by_link() {
        assert!(share_entry(0.5, 9) < share_entry(1.0, 0));
        assert!(share_entry(2.0, 3) < share_entry(2.0, 4));
        assert_eq!(share_entry(-0.0, 1), share_entry(0.0, 1));
    }
}
