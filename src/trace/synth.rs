//! Seeded synthetic routing traces, from a few knobs or from parameters fitted to a real trace.
//!
//! The generator reproduces the routing properties that matter for placement and scheduling:
//! - per-layer popularity skew (Zipf or Dirichlet), with expert ids permuted per layer so the
//!   popular experts differ across layers;
//! - inter-layer affinity: each expert at layer l has a few preferred successors at l+1;
//! - temporal drift: the popularity ranking slowly rotates as tokens go by;
//! - top-k without replacement, with gate weights (the renormalised probabilities of the chosen
//!   experts);
//! - group-limited routing (DeepSeek-V3's node-limited top-4-of-8 groups).
//!
//! Given the same [`SynthParams`] (seed included) the trace is identical on every machine and for
//! any number of threads: every token draws from its own ChaCha8 stream.
//!
//! [`SynthParams`] is embedded in scenario files and written by `moesim trace fit`, so it is plain
//! serde with defaults on every field and unknown keys rejected.

mod inclusion;
mod model;
mod sample;

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, parse_toml};
use crate::output::write_bytes_atomic;
use crate::trace::{ExpertId, LayerRouting, MAX_LAYERS, RoutingTrace, TokenMeta};

use model::Model;

pub use inclusion::top_k_inclusion;

/// The most routed entries (layers x tokens x top-k) one synthetic trace may hold: 2^30, each
/// a 2-byte expert id, a 4-byte gate weight and its share of the offsets.
pub const MAX_SYNTH_ENTRIES: usize = 1 << 30;

/// The most work one synthetic trace may take, in expert visits: `layers x (tokens + experts)
/// x experts` (each token's draw and each expert's successor set look at every expert), 2^36,
/// about a minute on one core.
pub const MAX_SYNTH_WORK: usize = 1 << 36;

/// Parameters of the synthetic generator. Every field has a default, so a scenario only names
/// what it changes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SynthParams {
    /// Routed experts per layer. Default 64.
    pub num_experts: usize,
    /// MoE layers. Default 16.
    pub num_layers: usize,
    /// Distinct experts each token is routed to at every layer. Default 8.
    pub top_k: usize,
    /// Tokens to generate. Default 4096.
    pub num_tokens: usize,
    /// Seed of every random choice (popularity, permutations, successors, routing). Default 0.
    pub seed: u64,
    /// How unevenly tokens spread over experts, at every layer. Default Zipf with exponent 0.5,
    /// which with the other defaults (64 experts, top-8) gives a busiest expert about 3.5x the
    /// mean load (DeepSeek-V3 deployments record 2.6-13.7x over 256 experts).
    pub skew: Skew,
    /// Probability (0..=1) that a token's next expert is one of its current expert's preferred
    /// successors rather than a draw from the next layer's popularity. Default 0.5.
    pub affinity: f64,
    /// Preferred successors per expert (at least 1; capped at num_experts). They are drawn so
    /// that on average every expert keeps its popularity at the next layer whatever the affinity
    /// (popular experts are everybody's successors, the others are drawn in proportion to
    /// popularity); the affinity mass is shared among them accordingly. Default 4.
    pub successors: usize,
    /// How far (in rank positions, 0..=1) the popularity ranking rotates every `drift_period`
    /// tokens: 0 keeps popularity fixed. Default 0.
    pub drift: f64,
    /// Tokens between two drift steps. Default 1024.
    pub drift_period: usize,
    /// Group-limited routing: each token may only use experts of `topk_groups` of `n_groups`
    /// groups. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<GroupLimit>,
    /// Explicit per-layer popularity and sparse transitions (written by `fit`); when present they
    /// replace `skew`, `affinity` and `successors`. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fitted: Option<FittedRouting>,
}

impl Default for SynthParams {
    fn default() -> Self {
        SynthParams {
            num_experts: 64,
            num_layers: 16,
            top_k: 8,
            num_tokens: 4096,
            seed: 0,
            skew: Skew::Zipf { exponent: 0.5 },
            affinity: 0.5,
            successors: 4,
            drift: 0.0,
            drift_period: 1024,
            groups: None,
            fitted: None,
        }
    }
}

/// The shape of per-layer expert popularity. In TOML: `skew = { kind = "zipf", exponent = 1.0 }`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Skew {
    /// The expert of popularity rank r (from 0) gets weight (r + 1)^-exponent: exponent 0 is
    /// uniform, larger is more skewed.
    Zipf {
        /// Zipf exponent, >= 0.
        exponent: f64,
    },
    /// Popularity drawn per layer from a symmetric Dirichlet: small alpha is skewed, large alpha
    /// near uniform.
    Dirichlet {
        /// Concentration, > 0.
        alpha: f64,
    },
}

/// Group-limited routing, as DeepSeek-V3 restricts each token to 4 of 8 expert groups.
/// Experts `g * E / n_groups .. (g + 1) * E / n_groups` form group `g`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupLimit {
    /// Number of expert groups; must divide the number of experts.
    pub n_groups: usize,
    /// Groups a token may use, chosen by their best expert score.
    pub topk_groups: usize,
}

/// Routing structure estimated from a real trace by [`crate::analysis::fit::fit`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FittedRouting {
    /// `popularity[layer][expert]`: share of the layer's routed entries that go to the expert.
    /// Layer 0 tokens are drawn from it; at later layers it spreads the transitions' remaining
    /// mass. Rows need not sum exactly to 1 (they are normalised).
    pub popularity: Vec<Vec<f64>>,
    /// One entry per pair of consecutive layers (`num_layers - 1`).
    pub transitions: Vec<FittedTransitions>,
}

/// The sparse transitions from one layer to the next.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FittedTransitions {
    /// `successors[e]`: the most frequent next-layer experts of expert `e`, most frequent first.
    pub successors: Vec<Vec<ExpertId>>,
    /// `probs[e][i]`: share of `e`'s transitions that go to `successors[e][i]`. The remaining
    /// `1 - sum` goes to the other experts in proportion to the next layer's popularity.
    pub probs: Vec<Vec<f64>>,
}

impl SynthParams {
    /// The generator's work in expert visits, `layers x (tokens + experts) x experts`
    /// (saturating), which [`MAX_SYNTH_WORK`] bounds.
    pub fn work(&self) -> usize {
        self.num_layers
            .saturating_mul(self.num_tokens.saturating_add(self.num_experts))
            .saturating_mul(self.num_experts)
    }

    /// Checks every parameter, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::invalid(format!("synth parameters: {message}")));
        let experts = self.num_experts;
        if experts == 0 || experts > ExpertId::MAX as usize + 1 {
            return invalid(format!("`num_experts` must be 1..=65536, got {experts}"));
        }
        if self.num_layers == 0 || self.num_layers > MAX_LAYERS {
            return invalid(format!(
                "`num_layers` must be 1..={MAX_LAYERS}, got {}",
                self.num_layers
            ));
        }
        if self.top_k == 0 || self.top_k > experts {
            return invalid(format!(
                "`top_k` must be 1..=num_experts ({experts}), got {}",
                self.top_k
            ));
        }
        if self
            .num_tokens
            .checked_mul(self.top_k)
            .is_none_or(|e| e > u32::MAX as usize)
        {
            return invalid(format!(
                "`num_tokens` x `top_k` must stay below 2^32 entries per layer, got {} x {}",
                self.num_tokens, self.top_k
            ));
        }
        let work = self.work();
        if work > MAX_SYNTH_WORK {
            return invalid(format!(
                "`num_layers` x (`num_tokens` + `num_experts`) x `num_experts` = {} x ({} + \
                 {experts}) x {experts} exceeds the generator's {MAX_SYNTH_WORK} steps (every \
                 token draws from every expert, every expert's successors from every expert)",
                self.num_layers, self.num_tokens
            ));
        }
        let entries = self.num_tokens * self.top_k;
        if entries.saturating_mul(self.num_layers) > MAX_SYNTH_ENTRIES {
            return invalid(format!(
                "`num_layers` x `num_tokens` x `top_k` = {} x {} x {} routed entries exceed the \
                 generator's {MAX_SYNTH_ENTRIES} (about 6 GiB of trace in memory)",
                self.num_layers, self.num_tokens, self.top_k
            ));
        }
        match self.skew {
            Skew::Zipf { exponent } if !(exponent.is_finite() && exponent >= 0.0) => {
                return invalid(format!("`skew.exponent` must be >= 0, got {exponent}"));
            }
            Skew::Dirichlet { alpha } if !(alpha.is_finite() && alpha > 0.0) => {
                return invalid(format!("`skew.alpha` must be > 0, got {alpha}"));
            }
            _ => {}
        }
        if !(0.0..=1.0).contains(&self.affinity) {
            return invalid(format!(
                "`affinity` must be in 0..=1, got {}",
                self.affinity
            ));
        }
        if self.successors == 0 {
            return invalid("`successors` must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.drift) {
            return invalid(format!("`drift` must be in 0..=1, got {}", self.drift));
        }
        if self.drift_period == 0 {
            return invalid("`drift_period` must be at least 1".into());
        }
        if let Some(groups) = self.groups {
            let GroupLimit {
                n_groups,
                topk_groups,
            } = groups;
            if n_groups == 0 || !experts.is_multiple_of(n_groups) {
                return invalid(format!(
                    "`groups.n_groups` must divide num_experts ({experts}), got {n_groups}"
                ));
            }
            if topk_groups == 0 || topk_groups > n_groups {
                return invalid(format!(
                    "`groups.topk_groups` must be 1..=n_groups ({n_groups}), got {topk_groups}"
                ));
            }
            if topk_groups * (experts / n_groups) < self.top_k {
                return invalid(format!(
                    "`groups.topk_groups` ({topk_groups}) groups of {} experts cannot hold \
                     top_k = {} experts",
                    experts / n_groups,
                    self.top_k
                ));
            }
        }
        match &self.fitted {
            Some(fitted) => fitted
                .validate(self.num_layers, experts)
                .map_err(|message| Error::invalid(format!("synth parameters: `fitted.{message}"))),
            None => Ok(()),
        }
    }

    /// The parameters as TOML text (what `moesim trace fit` writes).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| Error::invalid(format!("cannot write synth parameters as TOML: {e}")))
    }

    /// Parses and validates TOML text written by [`Self::to_toml`] or by hand. The error names
    /// the offending key and line.
    pub fn from_toml(text: &str) -> std::result::Result<SynthParams, String> {
        let params: SynthParams = parse_toml(text)?;
        params.validate().map_err(|e| e.to_string())?;
        Ok(params)
    }

    /// Writes the parameters to `path` as TOML, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_bytes_atomic(path, self.to_toml()?.as_bytes())
    }

    /// Reads and validates parameters from a TOML file.
    pub fn load(path: &Path) -> Result<SynthParams> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        SynthParams::from_toml(&text).map_err(|message| Error::bad_file(path, message))
    }
}

impl FittedRouting {
    /// Checks shapes and values; the message starts with the offending field name (after
    /// `fitted.`).
    fn validate(&self, num_layers: usize, num_experts: usize) -> std::result::Result<(), String> {
        if self.popularity.len() != num_layers {
            return Err(format!(
                "popularity` has {} layers, expected num_layers = {num_layers}",
                self.popularity.len()
            ));
        }
        for (layer, row) in self.popularity.iter().enumerate() {
            if row.len() != num_experts {
                return Err(format!(
                    "popularity[{layer}]` has {} values, expected num_experts = {num_experts}",
                    row.len()
                ));
            }
            if row.iter().any(|p| !(p.is_finite() && *p >= 0.0)) || row.iter().sum::<f64>() <= 0.0 {
                return Err(format!(
                    "popularity[{layer}]` must be finite, >= 0 and not all 0"
                ));
            }
        }
        if self.transitions.len() != num_layers - 1 {
            return Err(format!(
                "transitions` has {} layer pairs, expected num_layers - 1 = {}",
                self.transitions.len(),
                num_layers - 1
            ));
        }
        for (pair, transitions) in self.transitions.iter().enumerate() {
            let FittedTransitions { successors, probs } = transitions;
            if successors.len() != num_experts || probs.len() != num_experts {
                return Err(format!(
                    "transitions[{pair}]` needs num_experts = {num_experts} successor and prob \
                     lists, got {} and {}",
                    successors.len(),
                    probs.len()
                ));
            }
            for (expert, (ids, ps)) in successors.iter().zip(probs).enumerate() {
                let at = format!("transitions[{pair}]` expert {expert}");
                if ids.len() != ps.len() {
                    return Err(format!(
                        "{at}: {} successors but {} probs",
                        ids.len(),
                        ps.len()
                    ));
                }
                if let Some(id) = ids.iter().find(|&&id| id as usize >= num_experts) {
                    return Err(format!("{at}: successor {id} is not below {num_experts}"));
                }
                if ids.iter().enumerate().any(|(i, id)| ids[..i].contains(id)) {
                    return Err(format!("{at}: successors repeat an expert"));
                }
                if ps.iter().any(|p| !(p.is_finite() && *p >= 0.0))
                    || ps.iter().sum::<f64>() > 1.0 + PROB_SUM_TOLERANCE
                {
                    return Err(format!("{at}: probs must be >= 0 and sum to at most 1"));
                }
            }
        }
        Ok(())
    }
}

/// How far above 1 a successor list's probabilities may sum (they are rounded decimals).
const PROB_SUM_TOLERANCE: f64 = 1e-4;

/// Per expert, how much the group limit changes how often the generator's draw from popularity
/// `weights` includes it: the ratio of its inclusions with the limit to those of the same tokens'
/// scores without it, over `tokens` draws of stream `seed` (1 where the expert was never drawn).
/// Multiplying [`top_k_inclusion`] by it gives the group-limited inclusion.
pub fn group_limit_ratio(
    weights: &[f64],
    top_k: usize,
    groups: GroupLimit,
    tokens: usize,
    seed: u64,
) -> Vec<f64> {
    let (limited, plain) = sample::grouped_inclusion_counts(weights, top_k, groups, tokens, seed);
    limited
        .iter()
        .zip(&plain)
        .map(|(&l, &p)| if p > 0 { l as f64 / p as f64 } else { 1.0 })
        .collect()
}

/// Tokens generated per parallel work item.
const TOKENS_PER_BLOCK: usize = 2048;

/// Generates the trace described by `params` (validated first). Gate weights are included.
pub fn synthesize(params: &SynthParams) -> Result<RoutingTrace> {
    params.validate()?;
    let model = Model::build(params);
    let blocks: Vec<sample::Block> = (0..params.num_tokens.div_ceil(TOKENS_PER_BLOCK))
        .into_par_iter()
        .map(|block| {
            let start = block * TOKENS_PER_BLOCK;
            let end = (start + TOKENS_PER_BLOCK).min(params.num_tokens);
            sample::route_tokens(&model, params.seed, start..end)
        })
        .collect();
    let layers = (0..params.num_layers)
        .map(|layer| {
            let experts = blocks
                .iter()
                .flat_map(|b| b.experts[layer].iter().copied())
                .collect();
            let weights = blocks
                .iter()
                .flat_map(|b| b.weights[layer].iter().copied())
                .collect();
            LayerRouting::fixed_k(params.top_k, experts, Some(weights))
        })
        .collect::<Result<Vec<_>>>()?;
    RoutingTrace::new(params.num_experts, layers, TokenMeta::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{imbalance::max_mean, trace_stats};
    use crate::trace::Trace;

    fn small(seed: u64) -> SynthParams {
        SynthParams {
            num_experts: 16,
            num_layers: 3,
            top_k: 4,
            num_tokens: 3000,
            seed,
            ..SynthParams::default()
        }
    }

    /// Mean over layers of the per-layer max/mean expert load.
    fn mean_max_mean(trace: &RoutingTrace) -> f64 {
        let loads = trace.expert_loads();
        (0..loads.num_layers())
            .map(|l| max_mean(loads.layer(l)))
            .sum::<f64>()
            / loads.num_layers() as f64
    }

    #[test]
    fn same_seed_same_trace_other_seed_other_trace() {
        let a = synthesize(&small(5)).unwrap();
        assert_eq!(a, synthesize(&small(5)).unwrap());
        assert_ne!(a, synthesize(&small(6)).unwrap());
        assert_eq!(a.num_tokens(), 3000);
        assert_eq!(a.uniform_k(), Some(4));
        // The token count is split over several parallel blocks yet stays one deterministic run:
        // the first tokens do not depend on how many come after them.
        let longer = synthesize(&SynthParams {
            num_tokens: 5000,
            ..small(5)
        })
        .unwrap();
        assert_eq!(longer.slice_tokens(0..3000), a);
    }

    #[test]
    fn top_k_has_no_duplicates_and_weights_sum_to_one() {
        let trace = synthesize(&small(1)).unwrap();
        for layer in trace.layers() {
            for token in 0..trace.num_tokens() {
                let experts = layer.experts_of(token);
                for (i, e) in experts.iter().enumerate() {
                    assert!(!experts[..i].contains(e), "token {token}: {experts:?}");
                    assert!((*e as usize) < 16);
                }
                let weights = layer.weights_of(token).unwrap();
                let total: f32 = weights.iter().sum();
                assert!((total - 1.0).abs() < 1e-5, "{weights:?}");
            }
        }
    }

    #[test]
    fn top_k_equal_to_experts_takes_them_all() {
        let trace = synthesize(&SynthParams {
            num_experts: 4,
            top_k: 4,
            num_tokens: 50,
            skew: Skew::Zipf { exponent: 3.0 },
            affinity: 1.0,
            successors: 1,
            ..small(2)
        })
        .unwrap();
        for token in 0..50 {
            let mut experts = trace.layer(2).experts_of(token).to_vec();
            experts.sort();
            assert_eq!(experts, vec![0, 1, 2, 3]);
        }
    }

    #[test]
    fn group_limited_routing_stays_inside_topk_groups() {
        // 32 experts in 8 groups of 4, each token limited to 2 groups, top-6.
        let params = SynthParams {
            num_experts: 32,
            top_k: 6,
            groups: Some(GroupLimit {
                n_groups: 8,
                topk_groups: 2,
            }),
            ..small(9)
        };
        let trace = synthesize(&params).unwrap();
        let mut spans_two_groups = 0;
        for layer in trace.layers() {
            for token in 0..trace.num_tokens() {
                let mut groups: Vec<u16> = layer.experts_of(token).iter().map(|e| e / 4).collect();
                groups.sort();
                groups.dedup();
                assert!(
                    groups.len() <= 2,
                    "token {token}: {:?}",
                    layer.experts_of(token)
                );
                spans_two_groups += usize::from(groups.len() == 2);
            }
        }
        // 6 experts never fit in one group of 4: every token uses exactly 2 groups.
        assert_eq!(spans_two_groups, 3 * 3000);
    }

    #[test]
    fn zipf_exponent_zero_is_balanced_and_larger_exponents_skew_more() {
        let at = |exponent: f64| {
            mean_max_mean(
                &synthesize(&SynthParams {
                    num_experts: 32,
                    top_k: 2,
                    num_tokens: 20_000,
                    skew: Skew::Zipf { exponent },
                    affinity: 0.0,
                    ..small(4)
                })
                .unwrap(),
            )
        };
        let flat = at(0.0);
        // 40000 entries over 32 experts: ~1250 each, sampling noise keeps max/mean near 1.
        assert!(flat < 1.15, "{flat}");
        let (mild, strong) = (at(0.7), at(1.4));
        assert!(flat < mild && mild < strong, "{flat} {mild} {strong}");
        // Zipf 1.4 over 32 experts gives the top expert p1 = 40.3% of single draws; it is in
        // p1 + sum over j of p_j * p1 / (1 - p_j) = 66.1% of top-2 tokens. The mean is 2/32 per
        // token, so max/mean is about 0.661 * 16 = 10.58.
        assert!((10.0..11.2).contains(&strong), "{strong}");
    }

    #[test]
    fn smaller_dirichlet_alpha_skews_more() {
        let at = |alpha: f64| {
            mean_max_mean(
                &synthesize(&SynthParams {
                    num_experts: 32,
                    top_k: 1,
                    num_tokens: 20_000,
                    skew: Skew::Dirichlet { alpha },
                    affinity: 0.0,
                    ..small(4)
                })
                .unwrap(),
            )
        };
        let (skewed, flat) = (at(0.2), at(1000.0));
        assert!(flat < 1.3, "{flat}");
        assert!(skewed > 2.5 * flat, "{skewed} vs {flat}");
    }

    #[test]
    fn full_affinity_sends_every_token_to_a_preferred_successor() {
        let stats_at = |affinity: f64| {
            trace_stats(&Trace::Tokens(
                synthesize(&SynthParams {
                    num_experts: 32,
                    top_k: 1,
                    num_tokens: 10_000,
                    affinity,
                    successors: 4,
                    ..small(8)
                })
                .unwrap(),
            ))
        };
        let tight = stats_at(1.0);
        // Every transition lands in its expert's 4 successors: the top-4 share is exactly 1.
        assert_eq!(tight.layers[0].affinity_top4, Some(1.0));
        let loose = stats_at(0.0);
        let loose_top4 = loose.layers[0].affinity_top4.unwrap();
        assert!(loose_top4 < 0.8, "{loose_top4}");
    }

    #[test]
    fn drift_moves_the_most_popular_expert() {
        let top_expert = |trace: &RoutingTrace, tokens: std::ops::Range<usize>| {
            let loads = trace.slice_tokens(tokens).expert_loads();
            let layer = loads.layer(0);
            (0..layer.len()).max_by(|&a, &b| layer[a].total_cmp(&layer[b]))
        };
        let params = SynthParams {
            num_experts: 16,
            num_layers: 1,
            top_k: 1,
            num_tokens: 8000,
            skew: Skew::Zipf { exponent: 1.5 },
            ..small(3)
        };
        let still = synthesize(&params).unwrap();
        assert_eq!(top_expert(&still, 0..1000), top_expert(&still, 7000..8000));
        // One whole rank step per 1000 tokens: by the last 1000 tokens the weight of rank 0 has
        // moved on 7 ranks.
        let drifting = synthesize(&SynthParams {
            drift: 1.0,
            drift_period: 1000,
            ..params
        })
        .unwrap();
        assert_ne!(
            top_expert(&drifting, 0..1000),
            top_expert(&drifting, 7000..8000)
        );
    }

    #[test]
    fn params_round_trip_through_toml() {
        let fitted = SynthParams {
            num_experts: 3,
            num_layers: 2,
            top_k: 1,
            skew: Skew::Dirichlet { alpha: 0.3 },
            groups: Some(GroupLimit {
                n_groups: 3,
                topk_groups: 1,
            }),
            fitted: Some(FittedRouting {
                popularity: vec![vec![0.5, 0.25, 0.25], vec![0.125, 0.0, 0.875]],
                transitions: vec![FittedTransitions {
                    successors: vec![vec![2, 0], vec![], vec![1]],
                    probs: vec![vec![0.7, 0.1], vec![], vec![1.0]],
                }],
            }),
            ..SynthParams::default()
        };
        for params in [SynthParams::default(), fitted] {
            let text = params.to_toml().unwrap();
            assert_eq!(SynthParams::from_toml(&text).unwrap(), params, "{text}");
        }
        let text = SynthParams::default().to_toml().unwrap();
        assert!(text.contains("kind = \"zipf\""), "{text}");
        assert!(!text.contains("groups"), "{text}");
    }

    #[test]
    fn missing_keys_take_defaults_and_unknown_keys_are_named() {
        let params = SynthParams::from_toml("num_experts = 8\ntop_k = 2\n").unwrap();
        assert_eq!(params.num_layers, 16);
        assert_eq!(params.top_k, 2);
        let err = SynthParams::from_toml("num_experts = 8\ntopk = 2\n").unwrap_err();
        assert!(err.starts_with("line 2") && err.contains("topk"), "{err}");
        let err = SynthParams::from_toml("skew = { kind = \"zipf\", alpha = 1.0 }").unwrap_err();
        assert!(err.contains("alpha"), "{err}");
    }

    #[test]
    fn bad_parameters_are_named() {
        let cases = [
            (
                SynthParams {
                    num_layers: MAX_LAYERS + 1,
                    ..small(0)
                },
                "`num_layers` must be 1..=65536, got 65537",
            ),
            (
                // 65,536 experts on 16 layers: 2^36 steps of work and more.
                SynthParams {
                    num_experts: 65536,
                    num_layers: 16,
                    ..small(0)
                },
                "`num_layers` x (`num_tokens` + `num_experts`) x `num_experts` = 16 x (3000 + \
                 65536) x 65536 exceeds",
            ),
            (
                // 2^10 layers x 2^18 tokens x top-4 = 2^30 entries fit; twice the tokens do not.
                SynthParams {
                    num_layers: 1 << 10,
                    num_tokens: 1 << 19,
                    ..small(0)
                },
                "1024 x 524288 x 4 routed entries exceed the generator's 1073741824",
            ),
            (
                SynthParams {
                    top_k: 0,
                    ..small(0)
                },
                "`top_k`",
            ),
            (
                SynthParams {
                    top_k: 17,
                    ..small(0)
                },
                "`top_k`",
            ),
            (
                SynthParams {
                    affinity: 1.5,
                    ..small(0)
                },
                "`affinity`",
            ),
            (
                SynthParams {
                    successors: 0,
                    ..small(0)
                },
                "`successors`",
            ),
            (
                SynthParams {
                    drift_period: 0,
                    ..small(0)
                },
                "`drift_period`",
            ),
            (
                SynthParams {
                    skew: Skew::Zipf { exponent: -1.0 },
                    ..small(0)
                },
                "`skew.exponent`",
            ),
            (
                SynthParams {
                    groups: Some(GroupLimit {
                        n_groups: 3,
                        topk_groups: 1,
                    }),
                    ..small(0)
                },
                "`groups.n_groups`",
            ),
            (
                SynthParams {
                    groups: Some(GroupLimit {
                        n_groups: 8,
                        topk_groups: 1,
                    }),
                    ..small(0)
                },
                "cannot hold top_k = 4",
            ),
            (
                SynthParams {
                    fitted: Some(FittedRouting {
                        popularity: vec![vec![1.0; 16]; 3],
                        transitions: vec![],
                    }),
                    ..small(0)
                },
                "`fitted.transitions` has 0 layer pairs",
            ),
        ];
        for (params, expected) in cases {
            let err = synthesize(&params).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
    }

    #[test]
    fn saved_files_load_back_and_bad_files_name_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("params.toml");
        small(3).save(&path).unwrap();
        assert_eq!(SynthParams::load(&path).unwrap(), small(3));
        std::fs::write(&path, "num_experts = \"many\"").unwrap();
        let err = SynthParams::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("params.toml") && err.contains("line 1"),
            "{err}"
        );
    }
}
