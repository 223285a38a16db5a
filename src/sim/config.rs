//! The `[sim]` table of a scenario, and the simulator set-up it resolves to: the overlap
//! strategies and the all-to-all algorithm built from their registries with their own tables,
//! and the settings of the links.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::all_to_all::{ALL_TO_ALLS, AllToAllAlgorithm};
use super::overlap::{OVERLAPS, OverlapStrategy};
use crate::registry::{Named, Settings};
use crate::topology::{Cluster, LinkKind};

/// Simulation settings of a scenario as written (all optional):
///
/// ```toml
/// [sim]
/// overlap = ["none", "chunked"]    # strategies compared side by side
/// all_to_all = "direct"
/// [sim.chunked]                    # one strategy's own knobs
/// chunks = 4
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Overlap strategies to compare, by name ([`OVERLAPS`]).
    pub overlap: Vec<String>,
    /// All-to-all algorithm, by name ([`ALL_TO_ALLS`]).
    pub all_to_all: String,
    /// Share of nominal NVLink bandwidth transfers reach. Default 1.0 (nominal); DeepEP's H800
    /// measurements (about 160 of 200 GB/s usable per direction) suggest 0.8.
    pub nvlink_efficiency: f64,
    /// Calibration TOML (`moesim calibrate`) timing the experts with measured GEMMs instead of
    /// the roofline; relative to the scenario file.
    pub calibration: Option<PathBuf>,
    /// Share of the bandwidth in use that drained flows may go on holding before it is
    /// re-divided among the others (see [`super::network`]): 0 re-divides at every drain
    /// (exact max-min, slow for all-to-alls of thousands of flows). With a tolerance, the flows
    /// a late re-division raises are credited the bytes their links left idle meanwhile, so
    /// the default 0.2 keeps steps within about 0.5% of exact max-min while making
    /// large all-to-alls hundreds of times cheaper.
    pub rate_tolerance: f64,
    /// Every other key: a strategy's own table, by the strategy's name (`[sim.chunked]`).
    #[serde(flatten)]
    pub strategy_tables: BTreeMap<String, toml::Value>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            overlap: OVERLAPS.names().map(String::from).collect(),
            all_to_all: "direct".into(),
            nvlink_efficiency: 1.0,
            calibration: None,
            rate_tolerance: 0.2,
            strategy_tables: BTreeMap::new(),
        }
    }
}

/// How the links behave in the simulated network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSettings {
    /// Share of nominal NVLink bandwidth transfers reach ([`SimConfig::nvlink_efficiency`]).
    pub nvlink_efficiency: f64,
    /// Re-division tolerance of the network ([`SimConfig::rate_tolerance`]).
    pub rate_tolerance: f64,
}

impl LinkSettings {
    /// The bandwidth transfers reach on each of `cluster`'s links, GB/s, by link id: NVLink at
    /// `nvlink_efficiency` of its nominal bandwidth, other links at theirs.
    pub fn capacities(&self, cluster: &Cluster) -> Vec<f64> {
        cluster
            .links()
            .map(|(_, l)| match l.kind {
                LinkKind::NvLink => l.bandwidth_gbps * self.nvlink_efficiency,
                _ => l.bandwidth_gbps,
            })
            .collect()
    }
}

impl Default for LinkSettings {
    fn default() -> Self {
        let config = SimConfig::default();
        LinkSettings {
            nvlink_efficiency: config.nvlink_efficiency,
            rate_tolerance: config.rate_tolerance,
        }
    }
}

/// A `[sim]` table resolved: its strategies built and its values checked.
#[derive(Debug)]
pub struct SimSetup {
    /// The overlap strategies, in the scenario's order.
    pub overlaps: Vec<Named<dyn OverlapStrategy>>,
    /// The all-to-all algorithm.
    pub all_to_all: Named<dyn AllToAllAlgorithm>,
    /// How the links behave.
    pub links: LinkSettings,
}

impl Default for SimSetup {
    fn default() -> Self {
        SimConfig::default()
            .resolve()
            .expect("the default [sim] table resolves")
    }
}

impl SimConfig {
    /// Builds the strategies the table names with their own tables and checks every value;
    /// the message names the key at fault (`sim.chunked.chunks`, `sim.rate_tolerance`).
    pub fn resolve(&self) -> Result<SimSetup, String> {
        if self.overlap.is_empty() {
            return Err("`sim.overlap` must name at least one strategy".into());
        }
        if !(self.nvlink_efficiency > 0.0 && self.nvlink_efficiency <= 1.0) {
            return Err("`sim.nvlink_efficiency` must be in (0, 1]".into());
        }
        if !(0.0..1.0).contains(&self.rate_tolerance) {
            return Err("`sim.rate_tolerance` must be in [0, 1)".into());
        }
        let tables = self.strategy_tables()?;
        let settings = |name: &str| tables.get(name).cloned().unwrap_or_default();
        let overlaps = self
            .overlap
            .iter()
            .map(|name| OVERLAPS.build(name, &settings(name)))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|message| format!("`sim.overlap`: {message}"))?;
        let all_to_all = ALL_TO_ALLS
            .build(&self.all_to_all, &settings(&self.all_to_all))
            .map_err(|message| format!("`sim.all_to_all`: {message}"))?;
        Ok(SimSetup {
            overlaps,
            all_to_all,
            links: LinkSettings {
                nvlink_efficiency: self.nvlink_efficiency,
                rate_tolerance: self.rate_tolerance,
            },
        })
    }

    /// The strategy tables, each checked to be a table named after a registered strategy and
    /// to build (a table may tune a strategy the scenario does not select, for sweeps).
    fn strategy_tables(&self) -> Result<BTreeMap<&str, Settings>, String> {
        self.strategy_tables
            .iter()
            .map(|(key, value)| {
                let known = OVERLAPS.contains(key) || ALL_TO_ALLS.contains(key);
                let table = match value {
                    toml::Value::Table(table) if known => table.clone(),
                    _ => return Err(unknown_key(key)),
                };
                let built = if OVERLAPS.contains(key) {
                    OVERLAPS.build(key, &table).map(drop)
                } else {
                    ALL_TO_ALLS.build(key, &table).map(drop)
                };
                built.map_err(|message| format!("`sim.{key}`: {message}"))?;
                Ok((key.as_str(), table))
            })
            .collect()
    }
}

/// The message for a `[sim]` key that is neither a setting nor a strategy's table, with the
/// table a strategy knob moved to when it is one.
fn unknown_key(key: &str) -> String {
    let moved = [
        ("chunks", "[sim.chunked] chunks"),
        ("tiles", "[sim.fine-grained] tiles"),
        ("comm_sms", "[sim.direct] or [sim.hierarchical] comm_sms"),
        ("low_latency_fixed_ns", "[sim.low-latency] fixed_ns"),
    ];
    let strategies: Vec<&str> = OVERLAPS.names().chain(ALL_TO_ALLS.names()).collect();
    match moved.iter().find(|(old, _)| *old == key) {
        Some((_, new)) => format!("unknown key `sim.{key}`: it is now `{new}`"),
        None => format!(
            "unknown key `sim.{key}`; expected overlap, all_to_all, nvlink_efficiency, \
             calibration, rate_tolerance, or a strategy's table: {}",
            strategies.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SimSetup, String> {
        toml::from_str::<SimConfig>(text)
            .map_err(|e| e.message().to_string())?
            .resolve()
    }

    #[test]
    fn strategies_take_their_knobs_from_their_own_tables() {
        let setup = parse(
            "overlap = [\"chunked\", \"none\"]\nall_to_all = \"hierarchical\"\n\
             [chunked]\nchunks = 3\n[hierarchical]\ncomm_sms = 24\n[fine-grained]\ntiles = 2\n",
        )
        .unwrap();
        let names: Vec<&str> = setup.overlaps.iter().map(|o| o.name).collect();
        assert_eq!(names, ["chunked", "none"]);
        assert_eq!(setup.overlaps[0].pieces(), 3);
        assert_eq!(setup.all_to_all.name, "hierarchical");
        assert_eq!(setup.all_to_all.sms_taken(), 24);
        let default = SimSetup::default();
        assert_eq!(default.overlaps.len(), 4);
        assert_eq!(default.all_to_all.name, "direct");
        assert_eq!(default.links.rate_tolerance, 0.2);
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let err = |text: &str| parse(text).unwrap_err();
        assert!(err("chunks = 4").contains("`sim.chunks`: it is now `[sim.chunked] chunks`"));
        assert!(err("[chunky]\nchunks = 4").contains("unknown key `sim.chunky`"));
        let tiles = err("[fine-grained]\ntiles = 0");
        assert!(
            tiles.contains("`sim.fine-grained`") && tiles.contains("`tiles` = 0"),
            "{tiles}"
        );
        assert!(err("overlap = []").contains("`sim.overlap`"));
        assert!(err("overlap = [\"pipelined\"]").contains("`sim.overlap`: unknown overlap"));
        assert!(err("all_to_all = \"ring\"").contains("`sim.all_to_all`: unknown all-to-all"));
        assert!(err("rate_tolerance = 1.5").contains("`sim.rate_tolerance` must be in [0, 1)"));
        assert!(err("nvlink_efficiency = 0").contains("`sim.nvlink_efficiency`"));
    }
}
