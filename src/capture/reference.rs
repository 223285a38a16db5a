//! The CPU twin of the gating kernel (`kernels/gating.cu`): the same routing decisions, computed
//! with the same f32 operations in the same order, so the two agree bit for bit.
//!
//! Semantics are those of [`super::gating`]. Where float order matters the twin copies the
//! kernel's warp layout (one 32-lane warp per token):
//!
//! - `exp` is [`exp_f32`], a Cody-Waite reduction and a degree-7 polynomial written with fused
//!   multiply-adds (`f32::mul_add` here, `fmaf` there; the kernel is built with `-fmad=false` so
//!   the compiler fuses nothing else). The platform `expf` is never used: CUDA's and libm's differ
//!   in the last bit.
//! - The softmax denominator is summed as the kernel sums it: lane `l` adds the exponentials of
//!   experts `l, l + 32, l + 64, ...` in order, then the 32 partial sums are combined by an
//!   xor butterfly (offsets 16, 8, 4, 2, 1). IEEE addition is commutative, so every lane holds the
//!   same total.
//! - Maxima, group scores (largest + second largest), group and expert selection are comparisons
//!   and one addition, exact in any order; the renormalising sum runs in rank order.
//! - Division is IEEE round-to-nearest on both sides (the kernel is not built with fast math).
//!
//! Bit-exactness therefore holds for every finite input. Logits must be finite: the twin rejects
//! NaN and infinities with the token and expert named; the kernel is only fed inputs the host has
//! checked the same way.

use super::gating::{GatingConfig, Scoring};
use crate::error::{Error, Result};
use crate::trace::ExpertId;

/// Lanes in a CUDA warp: the kernel's unit of work per token, mirrored by the softmax sum.
pub const WARP_LANES: usize = 32;

/// `exp(x)` in f32, identical to the kernel's `moesim_exp`: below -87 it returns 0, above 88
/// infinity (so `sigmoid` of a logit under -88 is exactly 0), otherwise within 2 ulp of the true
/// value.
pub fn exp_f32(x: f32) -> f32 {
    // ln 2 split so that `n * LN2_HI` is exact for |n| <= 128 (Cody and Waite).
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    if x < -87.0 {
        return 0.0;
    }
    if x > 88.0 {
        return f32::INFINITY;
    }
    // LOG2_E is 0x3fb8aa3b, the kernel's 1.44269504f.
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    // Taylor coefficients 1/7! .. 1/0! of exp on |r| <= ln 2 / 2.
    let mut p = 1.0 / 5040.0_f32;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0_f32,
    ] {
        p = p.mul_add(r, c);
    }
    // n is in -126 ..= 127 here, so 2^n is a normal f32 built from its exponent bits.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// `1 / (1 + exp(-x))`, the kernel's sigmoid.
pub fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// Sums 32 lane partials the way the kernel's xor butterfly does.
fn butterfly_sum(mut partial: [f32; WARP_LANES]) -> f32 {
    let mut offset = WARP_LANES / 2;
    while offset > 0 {
        let before = partial;
        for (lane, value) in partial.iter_mut().enumerate() {
            *value = before[lane] + before[lane ^ offset];
        }
        offset /= 2;
    }
    partial[0]
}

/// Writes `softmax(logits)` into `scores`, in the kernel's order of operations.
fn softmax_into(logits: &[f32], scores: &mut [f32]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut partial = [0.0_f32; WARP_LANES];
    for (expert, (&x, score)) in logits.iter().zip(scores.iter_mut()).enumerate() {
        *score = exp_f32(x - max);
        partial[expert % WARP_LANES] += *score;
    }
    let sum = butterfly_sum(partial);
    for score in scores.iter_mut() {
        *score /= sum;
    }
}

/// `a` ranks before `b` (value, id): larger value first, equal values to the lower id.
fn ranks_before(a: (f32, usize), b: (f32, usize)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
}

/// The best-ranked index among `candidates` (value, id), or `None` when there is none.
fn best(candidates: impl Iterator<Item = (f32, usize)>) -> Option<usize> {
    candidates
        .reduce(|a, b| if ranks_before(b, a) { b } else { a })
        .map(|(_, id)| id)
}

/// Reusable per-token buffers, so routing a layer allocates once.
#[derive(Debug, Default)]
pub struct Scratch {
    scores: Vec<f32>,
    choice: Vec<f32>,
    allowed: Vec<bool>,
}

/// Routes one token: writes its `k` experts (best first) and their weights.
///
/// `logits` has one finite value per expert; `bias`, when given, is the score-correction bias
/// (one per expert). `experts` and `weights` have `config.top_k()` slots.
pub fn route_token(
    config: &GatingConfig,
    logits: &[f32],
    bias: Option<&[f32]>,
    scratch: &mut Scratch,
    experts: &mut [ExpertId],
    weights: &mut [f32],
) {
    let num_experts = config.num_experts();
    let Scratch {
        scores,
        choice,
        allowed,
    } = scratch;
    scores.resize(num_experts, 0.0);
    match config.scoring() {
        Scoring::Softmax => softmax_into(logits, scores),
        Scoring::Sigmoid => {
            for (score, &x) in scores.iter_mut().zip(logits) {
                *score = sigmoid_f32(x);
            }
        }
    }
    choice.clear();
    match bias {
        Some(bias) => choice.extend(scores.iter().zip(bias).map(|(&s, &b)| s + b)),
        None => choice.extend_from_slice(scores),
    }
    allowed.clear();
    allowed.resize(num_experts, true);
    if let Some(limit) = config.group_limit() {
        let size = num_experts / limit.groups;
        let group_scores: Vec<f32> = choice.chunks_exact(size).map(top2_sum).collect();
        let mut kept = vec![false; limit.groups];
        for _ in 0..limit.top_groups {
            let candidates = (0..limit.groups)
                .filter(|&g| !kept[g])
                .map(|g| (group_scores[g], g));
            if let Some(group) = best(candidates) {
                kept[group] = true;
            }
        }
        for (expert, allowed) in allowed.iter_mut().enumerate() {
            *allowed = kept[expert / size];
        }
    }
    for slot in 0..config.top_k() {
        let candidates = (0..num_experts)
            .filter(|&e| allowed[e])
            .map(|e| (choice[e], e));
        // `GatingConfig` guarantees at least k allowed experts, so a candidate always exists.
        let expert = best(candidates).unwrap_or(0);
        allowed[expert] = false;
        experts[slot] = expert as ExpertId;
        weights[slot] = scores[expert];
    }
    if config.renormalize() {
        let sum = weights.iter().fold(0.0_f32, |sum, &w| sum + w);
        for weight in weights.iter_mut() {
            *weight /= sum;
        }
    }
}

/// The sum of the two largest values of a group, largest first (`-inf` stands for a missing one).
fn top2_sum(group: &[f32]) -> f32 {
    let (mut first, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &value in group {
        if value > first {
            second = first;
            first = value;
        } else if value > second {
            second = value;
        }
    }
    first + second
}

/// The routing of every token of one layer: `top_k` experts and weights per token, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerDecisions {
    /// `experts[t * k + i]`: token `t`'s `i`-th expert, best first.
    pub experts: Vec<ExpertId>,
    /// Gate weights aligned with `experts`.
    pub weights: Vec<f32>,
}

/// Routes every token of a layer: `logits` is row-major `[tokens, E]`. Fails on a non-finite
/// logit or bias, naming `what` (e.g. the file and layer), the token and the expert.
pub fn route_layer(
    config: &GatingConfig,
    logits: &[f32],
    bias: Option<&[f32]>,
    what: &str,
) -> Result<LayerDecisions> {
    let (num_experts, k) = (config.num_experts(), config.top_k());
    if !logits.len().is_multiple_of(num_experts) {
        return Err(Error::invalid(format!(
            "{what}: {} logits are not a whole number of rows of {num_experts} experts",
            logits.len()
        )));
    }
    if let Some(bias) = bias {
        check_bias(bias, num_experts)?;
    }
    check_logits(logits, num_experts, what)?;
    let tokens = logits.len() / num_experts;
    let mut decisions = LayerDecisions {
        experts: vec![0; tokens * k],
        weights: vec![0.0; tokens * k],
    };
    let mut scratch = Scratch::default();
    let rows = logits.chunks_exact(num_experts);
    let outputs = decisions
        .experts
        .chunks_exact_mut(k)
        .zip(decisions.weights.chunks_exact_mut(k));
    for (row, (experts, weights)) in rows.zip(outputs) {
        route_token(config, row, bias, &mut scratch, experts, weights);
    }
    Ok(decisions)
}

/// Checks every logit is finite (the kernel's precondition), naming the token and expert of the
/// first that is not.
pub fn check_logits(logits: &[f32], num_experts: usize, what: &str) -> Result<()> {
    match logits.iter().position(|x| !x.is_finite()) {
        Some(at) => Err(Error::invalid(format!(
            "{what}: token {} expert {}: logit {} is not finite",
            at / num_experts,
            at % num_experts,
            logits[at]
        ))),
        None => Ok(()),
    }
}

/// Checks a score-correction bias: one finite value per expert.
pub fn check_bias(bias: &[f32], num_experts: usize) -> Result<()> {
    if bias.len() != num_experts {
        return Err(Error::invalid(format!(
            "the score-correction bias has {} values for {num_experts} experts",
            bias.len()
        )));
    }
    match bias.iter().position(|b| !b.is_finite()) {
        Some(expert) => Err(Error::invalid(format!(
            "the score-correction bias of expert {expert} is {}, not finite",
            bias[expert]
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
