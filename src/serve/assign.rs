//! Which data-parallel rank an arriving request goes to. Each rule is a plug-in in
//! [`ASSIGNERS`], chosen by `[serving] assign`.

use crate::plugin_entry;
use crate::registry::{NoSettings, Plugin, Registry};

/// Picks a rank for each arriving request.
pub trait RankAssigner: Send + std::fmt::Debug {
    /// The rank of the next request, given how many requests each rank holds now.
    fn choose(&mut self, requests_per_rank: &[usize]) -> usize;
}

/// Every assignment rule, by name.
pub static ASSIGNERS: Registry<dyn RankAssigner> = Registry {
    kind: "rank assignment",
    entries: &[
        plugin_entry!(RankAssigner, RoundRobin),
        plugin_entry!(RankAssigner, LeastLoaded),
    ],
};

/// Ranks in turn (SGLang's data-parallel controller's default, `round_robin`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobin {
    next: usize,
}

impl RankAssigner for RoundRobin {
    fn choose(&mut self, requests_per_rank: &[usize]) -> usize {
        let rank = self.next % requests_per_rank.len();
        self.next = rank + 1;
        rank
    }
}

impl Plugin for RoundRobin {
    const NAME: &'static str = "round-robin";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(RoundRobin::default())
    }
}

/// The rank holding the fewest requests (the lowest index on a tie; SGLang's
/// `shortest_queue`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LeastLoaded;

impl RankAssigner for LeastLoaded {
    fn choose(&mut self, requests_per_rank: &[usize]) -> usize {
        (0..requests_per_rank.len())
            .min_by_key(|&r| requests_per_rank[r])
            .unwrap_or(0)
    }
}

impl Plugin for LeastLoaded {
    const NAME: &'static str = "least-loaded";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(LeastLoaded)
    }
}
