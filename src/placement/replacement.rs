//! Re-placing experts while serving: the `[replacement]` scenario table, the policies that say
//! when (plug-ins in [`REPLACEMENT_POLICIES`]), and the expert moves between two placements.
//!
//! Every `interval_steps` steps (or `interval_s` seconds) a pool checks its policy against the
//! expert loads of its recent steps: `never` does nothing, `periodic` re-places every time
//! (vLLM's EPLB: a window of 1000 steps, every 3000 steps), `triggered` re-places only when the
//! window's imbalance under the current placement exceeds `threshold` (SGLang skips rebalances
//! that would gain little). The new placement comes from any placement strategy; with
//! `move_cost` its GPUs' expert sets are matched to the old GPUs so that as few experts as
//! possible move at the same balance (DeepSeek's EPLB ignores what it moves).

use serde::{Deserialize, Serialize};

use super::{LayerPlacement, Placement, STRATEGIES};
use crate::error::Result;
use crate::plugin_entry;
use crate::registry::{NoSettings, Plugin, Registry, Settings, non_negative};
use crate::topology::Cluster;
use crate::trace::ExpertLoads;

/// What a policy sees when it is checked.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// Busiest GPU's load over the mean under the current placement, averaged over the layers,
    /// on the loads of the window.
    pub imbalance: f64,
    /// The `[replacement] threshold`.
    pub threshold: f64,
}

/// Decides, at each check, whether to re-place.
pub trait ReplacementPolicy: Send + std::fmt::Debug {
    /// Whether to compute and install a new placement now.
    fn due(&self, check: &Check) -> bool;
}

/// Every re-placement policy, by name.
pub static REPLACEMENT_POLICIES: Registry<dyn ReplacementPolicy> = Registry {
    kind: "re-placement policy",
    entries: &[
        plugin_entry!(ReplacementPolicy, Never),
        plugin_entry!(ReplacementPolicy, Periodic),
        plugin_entry!(ReplacementPolicy, Triggered),
    ],
};

/// Keeps the initial placement.
#[derive(Debug, Clone, Copy)]
pub struct Never;

impl ReplacementPolicy for Never {
    fn due(&self, _: &Check) -> bool {
        false
    }
}

impl Plugin for Never {
    const NAME: &'static str = "never";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(Never)
    }
}

/// Re-places at every check (vLLM's and SGLang's periodic EPLB).
#[derive(Debug, Clone, Copy)]
pub struct Periodic;

impl ReplacementPolicy for Periodic {
    fn due(&self, _: &Check) -> bool {
        true
    }
}

impl Plugin for Periodic {
    const NAME: &'static str = "periodic";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(Periodic)
    }
}

/// Re-places when the measured imbalance exceeds the threshold.
#[derive(Debug, Clone, Copy)]
pub struct Triggered;

impl ReplacementPolicy for Triggered {
    fn due(&self, check: &Check) -> bool {
        check.imbalance > check.threshold
    }
}

impl Plugin for Triggered {
    const NAME: &'static str = "triggered";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(Triggered)
    }
}

/// How the weights move.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationMode {
    /// Serving pauses for the planning and the transfers (SGLang's and vLLM's EPLB).
    #[default]
    Sync,
    /// Planning and transfers run beside serving, layer by layer, each GPU holding one layer's
    /// incoming experts on top of its own; the new placement serves once the last layer landed.
    Async,
}

/// The `[replacement]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplacementConfig {
    /// Policy, by name ([`REPLACEMENT_POLICIES`]).
    #[serde(default = "ReplacementConfig::default_policy")]
    pub policy: String,
    /// Placement strategy computing the new placement, by name.
    #[serde(default = "ReplacementConfig::default_strategy")]
    pub strategy: String,
    /// Steps whose expert loads the new placement is computed from (vLLM's default 1000).
    #[serde(default = "ReplacementConfig::default_window_steps")]
    pub window_steps: u64,
    /// Steps between two checks of the policy (vLLM's default 3000); without `interval_s`,
    /// 3000 when left out.
    #[serde(default)]
    pub interval_steps: Option<u64>,
    /// Seconds of simulated time between two checks, instead of steps.
    #[serde(default)]
    pub interval_s: Option<f64>,
    /// `triggered`: the imbalance (busiest GPU over the mean) above which to re-place.
    #[serde(default = "ReplacementConfig::default_threshold")]
    pub threshold: f64,
    /// Whether serving pauses for the migration.
    #[serde(default)]
    pub mode: MigrationMode,
    /// CPU time of planning, s (SGLang measures about 1 s).
    #[serde(default = "ReplacementConfig::default_planning_s")]
    pub planning_s: f64,
    /// Planning time per MoE layer, ms (SGLang: about 20 ms per layer without NVLink).
    #[serde(default = "ReplacementConfig::default_planning_per_layer_ms")]
    pub planning_per_layer_ms: f64,
    /// Keep experts where they are when that balances as well (fewer bytes moved).
    #[serde(default = "yes")]
    pub move_cost: bool,
    /// Fit the initial placement on the trace's first this many tokens (the workload the
    /// deployment was profiled on) instead of the whole trace.
    #[serde(default)]
    pub initial_tokens: Option<usize>,
}

fn yes() -> bool {
    true
}

impl ReplacementConfig {
    fn default_policy() -> String {
        Never::NAME.into()
    }
    fn default_strategy() -> String {
        "eplb".into()
    }
    fn default_window_steps() -> u64 {
        1000
    }
    fn default_threshold() -> f64 {
        1.3
    }
    fn default_planning_s() -> f64 {
        1.0
    }
    fn default_planning_per_layer_ms() -> f64 {
        20.0
    }

    /// Steps between checks when neither interval is given.
    pub const DEFAULT_INTERVAL_STEPS: u64 = 3000;

    /// Checks the table; the message names the field at fault as `replacement.<field>`.
    pub fn check(&self) -> std::result::Result<(), String> {
        let field = |key: &str, message: String| format!("`replacement.{key}`: {message}");
        REPLACEMENT_POLICIES
            .build(&self.policy, &Settings::new())
            .map_err(|m| field("policy", m))?;
        STRATEGIES
            .build(&self.strategy, &Settings::new())
            .map_err(|m| field("strategy", m))?;
        if self.window_steps == 0 {
            return Err(field("window_steps", "must be at least 1 step".into()));
        }
        if self.interval_steps == Some(0) {
            return Err(field("interval_steps", "must be at least 1 step".into()));
        }
        match self.interval_s {
            Some(s) if !(s > 0.0 && s.is_finite()) => {
                return Err(field(
                    "interval_s",
                    format!("{s} must be a positive number"),
                ));
            }
            Some(_) if self.interval_steps.is_some() => {
                return Err(field(
                    "interval_s",
                    "give `interval_steps` or `interval_s`, not both".into(),
                ));
            }
            _ => {}
        }
        if self.initial_tokens == Some(0) {
            return Err(field("initial_tokens", "must be at least 1 token".into()));
        }
        if !(self.threshold >= 1.0 && self.threshold.is_finite()) {
            return Err(field(
                "threshold",
                format!("{} must be at least 1 (balanced)", self.threshold),
            ));
        }
        non_negative("planning_s", self.planning_s).map_err(|m| field("planning_s", m))?;
        non_negative("planning_per_layer_ms", self.planning_per_layer_ms)
            .map_err(|m| field("planning_per_layer_ms", m))
    }

    /// The policy it names (checked to build).
    pub fn build_policy(&self) -> Box<dyn ReplacementPolicy> {
        REPLACEMENT_POLICIES
            .build(&self.policy, &Settings::new())
            .expect("checked with the scenario")
            .strategy
    }

    /// Planning time of a re-placement of `layers` MoE layers, ns.
    pub fn planning_ns(&self, layers: usize) -> u64 {
        ((self.planning_s + self.planning_per_layer_ms * 1e-3 * layers as f64) * 1e9).round() as u64
    }
}

/// Suffix of a comparison variant that migrates asynchronously (`periodic-async`).
const ASYNC_SUFFIX: &str = "-async";

/// The variants `moesim serve --compare-replacement` serves when none are named: every policy
/// synchronously (as vLLM's and SGLang's EPLB migrate), then every policy that moves experts
/// asynchronously (`never` has nothing to migrate).
pub fn comparison_variants() -> Vec<String> {
    let policies: Vec<&str> = REPLACEMENT_POLICIES.names().collect();
    let asynchronous = policies
        .iter()
        .filter(|&&name| name != Never::NAME)
        .map(|name| format!("{name}{ASYNC_SUFFIX}"));
    policies
        .iter()
        .map(|name| name.to_string())
        .chain(asynchronous)
        .collect()
}

impl ReplacementConfig {
    /// This table with the policy and mode of `variant`: a policy's name migrates
    /// synchronously, the name with `-async` asynchronously. The error names the variant.
    pub fn variant(&self, variant: &str) -> std::result::Result<ReplacementConfig, String> {
        let (policy, mode) = match variant.strip_suffix(ASYNC_SUFFIX) {
            Some(policy) => (policy, MigrationMode::Async),
            None => (variant, MigrationMode::Sync),
        };
        if !REPLACEMENT_POLICIES.contains(policy) {
            return Err(format!(
                "unknown re-placement variant `{variant}`; known: a policy ({}), optionally \
                 followed by `{ASYNC_SUFFIX}`",
                REPLACEMENT_POLICIES.names().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(ReplacementConfig {
            policy: policy.to_string(),
            mode,
            ..self.clone()
        })
    }
}

/// Busiest GPU's load over the mean under `placement`, averaged over the layers with load.
pub fn imbalance(placement: &Placement, loads: &ExpertLoads) -> Result<f64> {
    let per_layer: Vec<f64> = placement
        .gpu_loads(loads)?
        .iter()
        .filter_map(|gpus| {
            let mean = gpus.iter().sum::<f64>() / gpus.len() as f64;
            (mean > 0.0).then(|| gpus.iter().fold(0.0_f64, |m, &l| m.max(l)) / mean)
        })
        .collect();
    Ok(match per_layer.len() {
        0 => 1.0,
        n => per_layer.iter().sum::<f64>() / n as f64,
    })
}

/// `new` with each layer's GPU expert sets handed to the old GPUs they share the most experts
/// with (greedily, largest overlap first; ties to the lower GPU): the same sets, so the same
/// balance, with fewer experts moving.
pub fn keep_in_place(old: &Placement, new: &Placement) -> Result<Placement> {
    let gpus = new.num_gpus();
    let layers = (0..new.num_layers())
        .map(|layer| {
            let mut overlaps: Vec<(usize, usize, usize)> = Vec::with_capacity(gpus * gpus);
            for set in 0..gpus {
                let experts = new.experts_on(layer, set);
                for gpu in 0..gpus {
                    let held = old.experts_on(layer, gpu);
                    let common = experts.iter().filter(|e| held.contains(e)).count();
                    overlaps.push((common, set, gpu));
                }
            }
            overlaps.sort_by_key(|&(common, set, gpu)| {
                (std::cmp::Reverse(common), gpu != set, set, gpu)
            });
            let mut owner = vec![usize::MAX; gpus];
            let mut taken = vec![false; gpus];
            for (_, set, gpu) in overlaps {
                if owner[gpu] == usize::MAX && !taken[set] {
                    owner[gpu] = set;
                    taken[set] = true;
                }
            }
            LayerPlacement {
                gpu_experts: owner
                    .iter()
                    .map(|&set| new.experts_on(layer, set).to_vec())
                    .collect(),
            }
        })
        .collect();
    Placement::new(gpus, new.num_experts(), new.slots_per_gpu(), layers)
}

/// One expert copied to a GPU that lacks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// MoE layer.
    pub layer: usize,
    /// The expert.
    pub expert: usize,
    /// The GPU it is copied from: a holder under the old placement, one in the receiver's
    /// machine when there is one.
    pub from: usize,
    /// The GPU receiving it.
    pub to: usize,
}

/// The experts each GPU must receive to go from `old` to `new` on `cluster`.
pub fn moves(old: &Placement, new: &Placement, cluster: &Cluster) -> Vec<Move> {
    let mut out = Vec::new();
    for layer in 0..new.num_layers() {
        for to in 0..new.num_gpus() {
            let held = old.experts_on(layer, to);
            for &expert in new.experts_on(layer, to) {
                if held.contains(&expert) {
                    continue;
                }
                let holders = old.replicas_of(layer, expert as usize);
                let from = holders
                    .iter()
                    .copied()
                    .find(|&h| cluster.node_of(h) == cluster.node_of(to))
                    .unwrap_or(holders[0]);
                out.push(Move {
                    layer,
                    expert: expert as usize,
                    from,
                    to,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(layers: &[&[&[u16]]]) -> Placement {
        let layers = layers
            .iter()
            .map(|gpus| LayerPlacement {
                gpu_experts: gpus.iter().map(|g| g.to_vec()).collect(),
            })
            .collect();
        Placement::new(2, 4, 2, layers).unwrap()
    }

    #[test]
    fn keeping_in_place_swaps_whole_gpu_sets_and_moves_nothing_when_only_labels_changed() {
        let cluster = Cluster::preset("dgx-h100").unwrap().first_gpus(2).unwrap();
        let old = placement(&[&[&[0, 1], &[2, 3]]]);
        // The same sets on swapped GPUs: naively 4 moves, kept in place none.
        let new = placement(&[&[&[2, 3], &[0, 1]]]);
        assert_eq!(moves(&old, &new, &cluster).len(), 4);
        let kept = keep_in_place(&old, &new).unwrap();
        assert_eq!(kept, old);
        assert!(moves(&old, &kept, &cluster).is_empty());
        // One expert swapped between the GPUs: two moves either way.
        let new = placement(&[&[&[3, 1], &[2, 0]]]);
        let kept = keep_in_place(&old, &new).unwrap();
        assert_eq!(
            moves(&old, &kept, &cluster),
            [
                Move {
                    layer: 0,
                    expert: 3,
                    from: 1,
                    to: 0
                },
                Move {
                    layer: 0,
                    expert: 0,
                    from: 0,
                    to: 1
                }
            ]
        );
    }

    #[test]
    fn imbalance_is_the_busiest_gpu_over_the_mean() {
        let p = placement(&[&[&[0, 1], &[2, 3]]]);
        let loads = ExpertLoads::new(4, vec![vec![3.0, 3.0, 1.0, 1.0]]).unwrap();
        // GPU loads 6 and 2, mean 4.
        assert_eq!(imbalance(&p, &loads).unwrap(), 1.5);
    }

    #[test]
    fn comparison_variants_are_every_policy_then_the_moving_ones_asynchronously() {
        assert_eq!(
            comparison_variants(),
            [
                "never",
                "periodic",
                "triggered",
                "periodic-async",
                "triggered-async"
            ]
        );
        let base: ReplacementConfig =
            toml::from_str("policy = \"never\"\nmode = \"async\"\nthreshold = 1.2").unwrap();
        let periodic = base.variant("periodic").unwrap();
        assert_eq!(
            (periodic.policy.as_str(), periodic.mode, periodic.threshold),
            ("periodic", MigrationMode::Sync, 1.2)
        );
        let triggered = base.variant("triggered-async").unwrap();
        assert_eq!(
            (triggered.policy.as_str(), triggered.mode),
            ("triggered", MigrationMode::Async)
        );
        let err = base.variant("sometimes-async").unwrap_err();
        assert!(
            err.starts_with("unknown re-placement variant `sometimes-async`; known: a policy (never, periodic, triggered)"),
            "{err}"
        );
    }

    #[test]
    fn the_policies_decide_by_the_threshold() {
        let check = |imbalance| Check {
            imbalance,
            threshold: 1.3,
        };
        let build = |name: &str| {
            REPLACEMENT_POLICIES
                .build(name, &Settings::new())
                .unwrap()
                .strategy
        };
        assert!(!build("never").due(&check(9.0)));
        assert!(build("periodic").due(&check(1.0)));
        assert!(build("triggered").due(&check(1.31)));
        assert!(!build("triggered").due(&check(1.3)));
    }
}
