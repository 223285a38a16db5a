//! The GPU's expert cache: `capacity` slots per MoE layer holding experts copied from host
//! memory, and the eviction policies (plug-ins in [`EVICTIONS`]) that pick which resident expert
//! a new one replaces.

use crate::plugin_entry;
use crate::registry::{NoSettings, Plugin, Registry};
use crate::trace::ExpertId;

/// What an eviction policy sees of a resident expert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resident {
    pub expert: ExpertId,
    /// Access clock of its last use at this layer (0: not used since it was loaded).
    pub last_use: u64,
    /// Uses of this expert at this layer since the run began (kept across evictions: the
    /// expert's popularity, not its time in the cache).
    pub uses: u64,
    /// Whether the latest prediction for this layer names it.
    pub predicted: bool,
}

/// Picks the resident expert a new one replaces.
pub trait EvictionPolicy: std::fmt::Debug {
    /// The index in `candidates` (non-empty) of the expert to evict.
    fn victim(&self, candidates: &[Resident]) -> usize;
}

/// The candidate with the smallest `key` (keys end with the expert id, so ties are decided).
fn smallest<K: Ord>(candidates: &[Resident], key: impl Fn(&Resident) -> K) -> usize {
    (0..candidates.len())
        .min_by_key(|&i| key(&candidates[i]))
        .expect("eviction needs a candidate")
}

/// Least recently used.
#[derive(Debug)]
pub struct Lru;

/// Least frequently used (over the whole run), the least recently used among equals.
#[derive(Debug)]
pub struct Lfu;

/// Prediction-driven: an expert the predictor does not expect at this layer first, the least
/// recently used among equals.
#[derive(Debug)]
pub struct Predicted;

macro_rules! no_knobs {
    ($plugin:ident, $name:literal) => {
        impl Plugin for $plugin {
            const NAME: &'static str = $name;
            type Settings = NoSettings;

            fn with_settings(_: NoSettings) -> Result<Self, String> {
                Ok($plugin)
            }
        }
    };
}
no_knobs!(Lru, "lru");
no_knobs!(Lfu, "lfu");
no_knobs!(Predicted, "predicted");

impl EvictionPolicy for Lru {
    fn victim(&self, candidates: &[Resident]) -> usize {
        smallest(candidates, |r| (r.last_use, r.expert))
    }
}

impl EvictionPolicy for Lfu {
    fn victim(&self, candidates: &[Resident]) -> usize {
        smallest(candidates, |r| (r.uses, r.last_use, r.expert))
    }
}

impl EvictionPolicy for Predicted {
    fn victim(&self, candidates: &[Resident]) -> usize {
        smallest(candidates, |r| (r.predicted, r.last_use, r.expert))
    }
}

/// Every eviction policy, by name.
pub static EVICTIONS: Registry<dyn EvictionPolicy> = Registry {
    kind: "eviction policy",
    entries: &[
        plugin_entry!(EvictionPolicy, Lru),
        plugin_entry!(EvictionPolicy, Lfu),
        plugin_entry!(EvictionPolicy, Predicted),
    ],
};

/// One cache slot.
#[derive(Debug, Clone, Copy)]
struct Slot {
    expert: ExpertId,
    last_use: u64,
    /// When its weights are (or will be) on the GPU; `None` while its copy is in flight.
    ready_ns: Option<u64>,
    /// Prefetched and not used since: evicting it wastes its copy.
    unused_prefetch: bool,
}

/// Where a looked-up expert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Not in the cache.
    Absent,
    /// Its copy is in flight.
    InFlight,
    /// On the GPU from this instant.
    Ready(u64),
}

/// The cache of every MoE layer.
#[derive(Debug)]
pub struct ExpertCache {
    capacity: usize,
    layers: Vec<Vec<Slot>>,
    /// `uses[layer][expert]`.
    uses: Vec<Vec<u64>>,
    /// `predicted[layer][expert]`: named by the latest prediction for that layer.
    predicted: Vec<Vec<bool>>,
    clock: u64,
}

impl ExpertCache {
    /// `capacity` slots per layer, layer `l` starting with `warm[l]` on the GPU (at most
    /// `capacity` of them).
    pub fn new(experts: usize, capacity: usize, warm: &[Vec<ExpertId>]) -> ExpertCache {
        let layers = warm
            .iter()
            .map(|experts| {
                experts
                    .iter()
                    .take(capacity)
                    .map(|&expert| Slot {
                        expert,
                        last_use: 0,
                        ready_ns: Some(0),
                        unused_prefetch: false,
                    })
                    .collect()
            })
            .collect();
        ExpertCache {
            capacity,
            layers,
            uses: vec![vec![0; experts]; warm.len()],
            predicted: vec![vec![false; experts]; warm.len()],
            clock: 0,
        }
    }

    /// Where `expert` of `layer` is.
    pub fn lookup(&self, layer: usize, expert: ExpertId) -> Lookup {
        match self.layers[layer].iter().find(|s| s.expert == expert) {
            None => Lookup::Absent,
            Some(Slot { ready_ns: None, .. }) => Lookup::InFlight,
            Some(&Slot {
                ready_ns: Some(ns), ..
            }) => Lookup::Ready(ns),
        }
    }

    /// Records a use of `expert` (resident) at `layer`.
    pub fn touch(&mut self, layer: usize, expert: ExpertId) {
        self.clock += 1;
        self.uses[layer][expert as usize] += 1;
        if let Some(slot) = self.layers[layer].iter_mut().find(|s| s.expert == expert) {
            slot.last_use = self.clock;
            slot.unused_prefetch = false;
        }
    }

    /// Marks the experts the latest prediction for `layer` names.
    pub fn set_predicted(&mut self, layer: usize, experts: &[ExpertId]) {
        let predicted = &mut self.predicted[layer];
        predicted.fill(false);
        for &e in experts {
            predicted[e as usize] = true;
        }
    }

    /// Reserves a slot at `layer` for `expert` (absent), its copy in flight, evicting the
    /// resident `policy` picks among those on the GPU and not in `keep`. Returns whether it got
    /// a slot (`false`: every slot is in flight or kept) and, when the evicted expert was
    /// prefetched and never used, that it was.
    pub fn reserve(
        &mut self,
        layer: usize,
        expert: ExpertId,
        keep: &[ExpertId],
        prefetch: bool,
        policy: &dyn EvictionPolicy,
    ) -> Option<bool> {
        let slots = &mut self.layers[layer];
        let slot = Slot {
            expert,
            last_use: 0,
            ready_ns: None,
            unused_prefetch: prefetch,
        };
        if slots.len() < self.capacity {
            slots.push(slot);
            return Some(false);
        }
        let candidates: Vec<usize> = (0..slots.len())
            .filter(|&i| slots[i].ready_ns.is_some() && !keep.contains(&slots[i].expert))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let view: Vec<Resident> = candidates
            .iter()
            .map(|&i| Resident {
                expert: slots[i].expert,
                last_use: slots[i].last_use,
                uses: self.uses[layer][slots[i].expert as usize],
                predicted: self.predicted[layer][slots[i].expert as usize],
            })
            .collect();
        let victim = candidates[policy.victim(&view)];
        let wasted = slots[victim].unused_prefetch;
        slots[victim] = slot;
        Some(wasted)
    }

    /// Records that the copy of `expert` of `layer` lands at `ns`; `false` when the cache holds
    /// no slot waiting for it.
    pub fn landed(&mut self, layer: usize, expert: ExpertId, ns: u64) -> bool {
        match self.layers[layer]
            .iter_mut()
            .find(|s| s.expert == expert && s.ready_ns.is_none())
        {
            Some(slot) => {
                slot.ready_ns = Some(ns);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `accesses` at layer 0 through a cache of `capacity` starting empty, copies landing
    /// at once; returns the hit (true) or miss of each access and the experts left, sorted.
    fn replay(policy: &str, capacity: usize, accesses: &[ExpertId]) -> (String, Vec<ExpertId>) {
        let policy = EVICTIONS.build(policy, &Default::default()).unwrap();
        let mut cache = ExpertCache::new(8, capacity, &[vec![]]);
        let mut hits = String::new();
        for &e in accesses {
            let hit = cache.lookup(0, e) != Lookup::Absent;
            hits.push(if hit { 'h' } else { 'm' });
            if !hit {
                cache.reserve(0, e, &[e], false, &*policy).unwrap();
                cache.landed(0, e, 0);
            }
            cache.touch(0, e);
        }
        let mut left: Vec<ExpertId> = cache.layers[0].iter().map(|s| s.expert).collect();
        left.sort();
        (hits, left)
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        // A B A C: C replaces B (A was used after B); B then misses and replaces A.
        assert_eq!(
            replay("lru", 2, &[0, 1, 0, 2, 1, 2]),
            ("mmhmmh".into(), vec![1, 2])
        );
    }

    #[test]
    fn lfu_evicts_the_least_used_keeping_the_popular_expert() {
        // A A B C: B (1 use) goes, not A (2 uses), although A was used longer ago. Then B
        // misses and replaces C (1 use against A's 2); A hits.
        assert_eq!(
            replay("lfu", 2, &[0, 0, 1, 2, 1, 0]),
            ("mhmmmh".into(), vec![0, 1])
        );
        // LRU on the same sequence keeps the recent ones and loses A.
        assert_eq!(
            replay("lru", 2, &[0, 0, 1, 2, 1, 0]),
            ("mhmmhm".into(), vec![0, 1])
        );
    }

    #[test]
    fn predicted_eviction_keeps_the_expert_the_predictor_names() {
        let policy = EVICTIONS.build("predicted", &Default::default()).unwrap();
        let mut cache = ExpertCache::new(4, 2, &[vec![0, 1]]);
        cache.touch(0, 0);
        cache.touch(0, 1);
        // 0 is the least recently used, but predicted: 1 goes.
        cache.set_predicted(0, &[0]);
        assert_eq!(cache.reserve(0, 3, &[], true, &*policy), Some(false));
        assert_eq!(cache.lookup(0, 1), Lookup::Absent);
        assert_eq!(cache.lookup(0, 3), Lookup::InFlight);
        // In-flight and kept slots are never evicted.
        assert_eq!(cache.reserve(0, 2, &[0], false, &*policy), None);
        assert!(cache.landed(0, 3, 500));
        // 3 was prefetched and never used: evicting it reports the wasted copy.
        cache.set_predicted(0, &[0]);
        assert_eq!(cache.reserve(0, 2, &[], false, &*policy), Some(true));
    }

    #[test]
    fn a_cache_holding_every_expert_never_misses() {
        let (hits, _) = replay("lru", 8, &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(hits, "mmmmmmmm");
        let mut cache = ExpertCache::new(8, 8, &[(0..8).collect()]);
        for e in [3, 7, 0, 0, 5, 1, 6, 2, 4] {
            assert_eq!(cache.lookup(0, e), Lookup::Ready(0));
            cache.touch(0, e);
        }
    }
}
