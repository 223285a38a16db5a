//! What one gating decision computes: the router configuration shared by the CUDA kernel
//! (`kernels/gating.cu`) and its CPU twin ([`super::reference`]).
//!
//! Per token, from its router logits `x[0..E]` (fp32):
//!
//! 1. **Scores** `s[e]`: `softmax(x)[e]` (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeek-V2) or
//!    `sigmoid(x[e])` (DeepSeek-V3).
//! 2. **Selection scores** `c[e] = s[e] + bias[e]` when a score-correction bias is given
//!    (DeepSeek-V3's `e_score_correction_bias`, "aux-loss-free" balancing), else `c[e] = s[e]`.
//!    The bias steers *which* experts are chosen, never their weights.
//! 3. **Group-limited selection** (optional, DeepSeek-V3 `noaux_tc`): the `E` experts form `G`
//!    contiguous groups of `E / G`; a group's score is the sum of its two largest selection
//!    scores (largest first); the `g` best groups are kept (ties: lower group id) and every other
//!    expert is excluded (vLLM and SGLang mask them with `-inf`; so does moesim, so an excluded
//!    expert is never chosen even when every score is negative).
//! 4. **Top-k**: the `k` allowed experts with the largest selection scores, in descending order;
//!    equal scores go to the lower expert id (a total order, so the result is unique).
//! 5. **Weights**: `w_i = s[e_i]` (the unbiased score), divided by `w_0 + w_1 + ... + w_{k-1}`
//!    (summed in rank order) when `renormalize` is set (Mixtral, Qwen3-MoE and DeepSeek-V3's
//!    `norm_topk_prob = true`; Qwen2-MoE and OLMoE ship with it off). DeepSeek's
//!    `routed_scaling_factor` is applied by the frameworks after this step and is not part of it.

use crate::error::{Error, Result};

/// The largest expert count the kernel supports (its shared-memory tile holds two f32 rows of
/// this many experts per warp).
pub const MAX_EXPERTS: usize = 1024;

/// How router logits become scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scoring {
    /// `softmax` over the token's logits.
    Softmax,
    /// Element-wise `1 / (1 + exp(-x))`.
    Sigmoid,
}

impl Scoring {
    /// The name used on the command line and in provenance.
    pub fn as_str(self) -> &'static str {
        match self {
            Scoring::Softmax => "softmax",
            Scoring::Sigmoid => "sigmoid",
        }
    }

    /// The integer the CUDA kernel takes for this scoring function.
    pub fn kernel_code(self) -> u32 {
        match self {
            Scoring::Softmax => 0,
            Scoring::Sigmoid => 1,
        }
    }
}

/// Group-limited routing: keep only the `top_groups` best of `groups` contiguous expert groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimit {
    /// Number of expert groups `G` (it divides the expert count).
    pub groups: usize,
    /// Groups a token may use, `g` (1 ..= `groups`).
    pub top_groups: usize,
}

/// One router's configuration, checked by [`GatingConfig::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatingConfig {
    num_experts: usize,
    top_k: usize,
    scoring: Scoring,
    group_limit: Option<GroupLimit>,
    renormalize: bool,
}

impl GatingConfig {
    /// Checks the configuration, naming the violated constraint.
    pub fn new(
        num_experts: usize,
        top_k: usize,
        scoring: Scoring,
        group_limit: Option<GroupLimit>,
        renormalize: bool,
    ) -> Result<Self> {
        if num_experts == 0 || num_experts > MAX_EXPERTS {
            return Err(Error::invalid(format!(
                "{num_experts} experts: the gating kernel supports 1 to {MAX_EXPERTS}"
            )));
        }
        if top_k == 0 || top_k > num_experts {
            return Err(Error::invalid(format!(
                "--top-k {top_k} must be between 1 and the {num_experts} experts"
            )));
        }
        if let Some(GroupLimit { groups, top_groups }) = group_limit {
            if groups == 0 || !num_experts.is_multiple_of(groups) {
                return Err(Error::invalid(format!(
                    "--groups {groups} must divide the {num_experts} experts"
                )));
            }
            let group_size = num_experts / groups;
            if group_size < 2 {
                return Err(Error::invalid(format!(
                    "--groups {groups} leaves {group_size} expert per group; a group's score \
                     sums its top 2 experts, so groups need at least 2"
                )));
            }
            if top_groups == 0 || top_groups > groups {
                return Err(Error::invalid(format!(
                    "--top-groups {top_groups} must be between 1 and --groups {groups}"
                )));
            }
            if top_k > top_groups * group_size {
                return Err(Error::invalid(format!(
                    "--top-k {top_k} exceeds the {} experts of {top_groups} groups of \
                     {group_size}",
                    top_groups * group_size
                )));
            }
        }
        Ok(GatingConfig {
            num_experts,
            top_k,
            scoring,
            group_limit,
            renormalize,
        })
    }

    /// Routed experts per layer, `E`.
    pub fn num_experts(&self) -> usize {
        self.num_experts
    }

    /// Experts chosen per token, `k`.
    pub fn top_k(&self) -> usize {
        self.top_k
    }

    /// The scoring function.
    pub fn scoring(&self) -> Scoring {
        self.scoring
    }

    /// The group limit, when routing is group-limited.
    pub fn group_limit(&self) -> Option<GroupLimit> {
        self.group_limit
    }

    /// Whether the chosen weights are divided by their sum.
    pub fn renormalize(&self) -> bool {
        self.renormalize
    }

    /// A one-line description for provenance, e.g. `softmax top-2 of 8, renormalized`.
    pub fn describe(&self) -> String {
        let groups = self
            .group_limit
            .map(|g| format!(", top-{} of {} groups", g.top_groups, g.groups))
            .unwrap_or_default();
        let renormalized = if self.renormalize {
            "renormalized"
        } else {
            "not renormalized"
        };
        format!(
            "{} top-{} of {}{groups}, {renormalized}",
            self.scoring.as_str(),
            self.top_k,
            self.num_experts
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(result: Result<GatingConfig>) -> String {
        result.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn bad_configurations_name_the_constraint() {
        let limit = |groups, top_groups| Some(GroupLimit { groups, top_groups });
        let softmax = Scoring::Softmax;
        assert_eq!(
            error_of(GatingConfig::new(8, 9, softmax, None, true)),
            "--top-k 9 must be between 1 and the 8 experts"
        );
        assert_eq!(
            error_of(GatingConfig::new(8, 2, softmax, limit(3, 1), true)),
            "--groups 3 must divide the 8 experts"
        );
        assert!(
            error_of(GatingConfig::new(8, 2, softmax, limit(8, 2), true)).contains("at least 2")
        );
        assert_eq!(
            error_of(GatingConfig::new(8, 2, softmax, limit(4, 5), true)),
            "--top-groups 5 must be between 1 and --groups 4"
        );
        assert_eq!(
            error_of(GatingConfig::new(8, 5, softmax, limit(4, 2), true)),
            "--top-k 5 exceeds the 4 experts of 2 groups of 2"
        );
        assert!(error_of(GatingConfig::new(1025, 1, softmax, None, true)).contains("1 to 1024"));
    }

    #[test]
    fn describe_names_every_setting() {
        let config = GatingConfig::new(
            256,
            8,
            Scoring::Sigmoid,
            Some(GroupLimit {
                groups: 8,
                top_groups: 4,
            }),
            true,
        )
        .unwrap();
        assert_eq!(
            config.describe(),
            "sigmoid top-8 of 256, top-4 of 8 groups, renormalized"
        );
    }
}
