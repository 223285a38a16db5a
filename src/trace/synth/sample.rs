//! Routing one token through every layer.
//!
//! At layer 0 a token's experts follow the (drifted) popularity. At layer l+1 they follow the
//! mixture, over the token's k experts at layer l, of each expert's successor distribution: its
//! listed successors with their probabilities, and the remaining mass spread over the other
//! experts by the (drifted) popularity of layer l+1. k distinct experts are drawn from that
//! distribution without replacement; with group-limited routing the draw uses Gumbel-perturbed
//! scores (top-k of `ln q + Gumbel` is exactly sampling without replacement from q) so groups can
//! be ranked by their best expert score first, as DeepSeek-V3's router does.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::model::{Model, Popularity, Rotation, Successors};
use crate::trace::ExpertId;
use crate::trace::synth::GroupLimit;

/// Draws that may be rejected (duplicate or listed expert) before switching to exact sampling
/// from the explicit distribution, per expert still to choose.
const DRAWS_PER_PICK: usize = 16;

/// Below this, a successor list leaves no popularity mass outside itself.
const NEGLIGIBLE_MASS: f64 = 1e-12;

/// Routed experts and gate weights of a run of tokens, per layer, token after token.
#[derive(Debug, Clone)]
pub(super) struct Block {
    pub(super) experts: Vec<Vec<ExpertId>>,
    pub(super) weights: Vec<Vec<f32>>,
}

/// The random stream of token `token`: stream 0 builds the model, token t uses stream t + 1, so a
/// token's routing does not depend on how tokens are split over threads.
fn token_rng(seed: u64, token: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(token as u64 + 1);
    rng
}

/// Routes tokens `tokens` through every layer of `model`.
pub(super) fn route_tokens(model: &Model, seed: u64, tokens: std::ops::Range<usize>) -> Block {
    let layers = model.popularity.len();
    let entries = tokens.len() * model.top_k;
    let mut block = Block {
        experts: (0..layers).map(|_| Vec::with_capacity(entries)).collect(),
        weights: (0..layers).map(|_| Vec::with_capacity(entries)).collect(),
    };
    let mut previous: Vec<ExpertId> = Vec::with_capacity(model.top_k);
    for token in tokens {
        let mut rng = token_rng(seed, token);
        let rotation = model.rotation(token);
        for layer in 0..layers {
            let sources = match layer {
                0 => Vec::new(),
                _ => previous
                    .iter()
                    .map(|&e| {
                        Source::new(
                            &model.transitions[layer - 1][e as usize],
                            &model.popularity[layer],
                            rotation,
                        )
                    })
                    .collect(),
            };
            let mixture = Mixture {
                background: &model.popularity[layer],
                rotation,
                sources,
                num_experts: model.num_experts,
            };
            let chosen = match model.groups {
                None => mixture.sample_distinct(model.top_k, &mut rng),
                Some(groups) => mixture.sample_grouped(model.top_k, groups, &mut rng),
            };
            let probs: Vec<f64> = chosen.iter().map(|&e| mixture.prob(e)).collect();
            let total: f64 = probs.iter().sum();
            block.experts[layer].extend_from_slice(&chosen);
            block.weights[layer].extend(probs.iter().map(|p| {
                if total > 0.0 {
                    (p / total) as f32
                } else {
                    1.0 / chosen.len() as f32
                }
            }));
            previous = chosen;
        }
    }
    block
}

/// One of the token's experts at the previous layer, as a source of next-layer experts.
struct Source<'m> {
    successors: &'m Successors,
    /// Factor turning next-layer popularity into probability for unlisted experts:
    /// `(1 - listed) / (popularity mass outside the list)`, 0 when nothing lies outside.
    outside_scale: f64,
    /// Probability mass outside the list (`1 - listed`, or 0 when nothing lies outside).
    outside_mass: f64,
}

impl<'m> Source<'m> {
    fn new(successors: &'m Successors, next: &Popularity, rotation: Rotation) -> Self {
        let inside: f64 = successors
            .experts
            .iter()
            .map(|&e| next.prob(e, rotation))
            .sum();
        let outside = 1.0 - inside;
        let rest = 1.0 - successors.listed;
        if outside > NEGLIGIBLE_MASS {
            Source {
                successors,
                outside_scale: rest / outside,
                outside_mass: rest,
            }
        } else {
            Source {
                successors,
                outside_scale: 0.0,
                outside_mass: 0.0,
            }
        }
    }
}

/// The distribution of one token's experts at one layer.
struct Mixture<'m> {
    background: &'m Popularity,
    rotation: Rotation,
    /// Empty at layer 0: the background alone.
    sources: Vec<Source<'m>>,
    num_experts: usize,
}

impl Mixture<'_> {
    /// Probability of `expert` (one draw, before excluding chosen experts).
    fn prob(&self, expert: ExpertId) -> f64 {
        let background = self.background.prob(expert, self.rotation);
        if self.sources.is_empty() {
            return background;
        }
        let sum: f64 = self
            .sources
            .iter()
            .map(|s| {
                s.successors
                    .listed_prob(expert)
                    .unwrap_or(s.outside_scale * background)
            })
            .sum();
        sum / self.sources.len() as f64
    }

    /// The probability of every expert at once: the background scaled by every source's outside
    /// factor, corrected at each source's listed experts. O(experts + k x successors).
    fn dense_probs(&self) -> Vec<f64> {
        let background: Vec<f64> = (0..self.num_experts)
            .map(|e| self.background.prob(e as ExpertId, self.rotation))
            .collect();
        if self.sources.is_empty() {
            return background;
        }
        let n = self.sources.len() as f64;
        let scale: f64 = self.sources.iter().map(|s| s.outside_scale).sum::<f64>() / n;
        let mut probs: Vec<f64> = background.iter().map(|p| p * scale).collect();
        for source in &self.sources {
            let listed = source
                .successors
                .experts
                .iter()
                .zip(&source.successors.probs);
            for (&e, &p) in listed {
                let e = e as usize;
                probs[e] += (p - source.outside_scale * background[e]) / n;
            }
        }
        // Rounding in the corrections must not leave tiny negative probabilities.
        probs.iter().map(|p| p.max(0.0)).collect()
    }

    /// One draw from the mixture, or `None` when rejection sampling outside a successor list did
    /// not find an unlisted expert quickly.
    fn draw(&self, rng: &mut ChaCha8Rng) -> Option<ExpertId> {
        if self.sources.is_empty() {
            return Some(self.background.sample(rng, self.rotation));
        }
        let source = &self.sources[rng.random_range(0..self.sources.len())];
        let listed = source.successors.listed;
        let u = rng.random::<f64>() * (listed + source.outside_mass);
        if u < listed {
            let mut cumulative = 0.0;
            for (&expert, &p) in source
                .successors
                .experts
                .iter()
                .zip(&source.successors.probs)
            {
                cumulative += p;
                if u < cumulative {
                    return Some(expert);
                }
            }
            return source.successors.experts.last().copied();
        }
        (0..DRAWS_PER_PICK)
            .map(|_| self.background.sample(rng, self.rotation))
            .find(|e| !source.successors.experts.contains(e))
    }

    /// `k` distinct experts drawn one after another, each from the distribution renormalised
    /// over the experts not chosen yet.
    fn sample_distinct(&self, k: usize, rng: &mut ChaCha8Rng) -> Vec<ExpertId> {
        let mut chosen = Vec::with_capacity(k);
        let mut draws = 0;
        while chosen.len() < k && draws < DRAWS_PER_PICK * k {
            draws += 1;
            if let Some(expert) = self.draw(rng)
                && !chosen.contains(&expert)
            {
                chosen.push(expert);
            }
        }
        if chosen.len() < k {
            self.complete_exactly(&mut chosen, k, rng);
        }
        chosen
    }

    /// Completes `chosen` to `k` experts by sampling from the explicit distribution (zeroing
    /// chosen experts); when no probability is left, picks uniformly among the unchosen.
    fn complete_exactly(&self, chosen: &mut Vec<ExpertId>, k: usize, rng: &mut ChaCha8Rng) {
        let mut probs = self.dense_probs();
        for &e in chosen.iter() {
            probs[e as usize] = 0.0;
        }
        while chosen.len() < k {
            let total: f64 = probs.iter().sum();
            let expert = if total > 0.0 {
                let mut u = rng.random::<f64>() * total;
                let mut pick = probs.iter().rposition(|&p| p > 0.0).unwrap_or(0);
                for (e, &p) in probs.iter().enumerate() {
                    if p > 0.0 && u < p {
                        pick = e;
                        break;
                    }
                    u -= p;
                }
                pick
            } else {
                let unchosen: Vec<usize> = (0..self.num_experts)
                    .filter(|e| !chosen.contains(&(*e as ExpertId)))
                    .collect();
                unchosen[rng.random_range(0..unchosen.len())]
            };
            probs[expert] = 0.0;
            chosen.push(expert as ExpertId);
        }
    }

    /// Group-limited top-k: every expert gets the score `ln q + Gumbel noise`; the `topk_groups`
    /// groups with the best single score are kept, and the k best-scoring experts inside them
    /// are chosen, best first.
    fn sample_grouped(&self, k: usize, groups: GroupLimit, rng: &mut ChaCha8Rng) -> Vec<ExpertId> {
        let ln_probs: Vec<f64> = self.dense_probs().iter().map(|p| p.ln()).collect();
        grouped_top_k(&gumbel_scores(&ln_probs, rng), k, groups)
    }
}

/// `ln q + Gumbel noise` for every expert, from its `ln q`: the top k of these scores are a draw
/// of k distinct experts without replacement from q.
fn gumbel_scores(ln_probs: &[f64], rng: &mut ChaCha8Rng) -> Vec<f64> {
    ln_probs
        .iter()
        .map(|ln_p| {
            let u = rng.random::<f64>().max(f64::MIN_POSITIVE);
            ln_p - (-u.ln()).ln()
        })
        .collect()
}

/// The `k` best `scores` inside the `topk_groups` groups with the best single score, best first
/// (ties: lower id).
fn grouped_top_k(scores: &[f64], k: usize, groups: GroupLimit) -> Vec<ExpertId> {
    let group_size = scores.len() / groups.n_groups;
    let best_in_group: Vec<f64> = scores
        .chunks(group_size)
        .map(|group| group.iter().copied().fold(f64::NEG_INFINITY, f64::max))
        .collect();
    let mut ranked_groups: Vec<usize> = (0..groups.n_groups).collect();
    ranked_groups.sort_by(|&a, &b| best_in_group[b].total_cmp(&best_in_group[a]));
    let mut candidates: Vec<usize> = ranked_groups[..groups.topk_groups]
        .iter()
        .flat_map(|g| g * group_size..(g + 1) * group_size)
        .collect();
    best_first(&mut candidates, scores, k);
    candidates
        .into_iter()
        .take(k)
        .map(|e| e as ExpertId)
        .collect()
}

/// Moves the `k` best-scoring of `candidates` to the front, best first (ties: lower id; a total
/// order, so the result is that of a full sort).
fn best_first(candidates: &mut [usize], scores: &[f64], k: usize) {
    let order = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
    let count = candidates.len();
    if k < count {
        candidates.select_nth_unstable_by(k, order);
    }
    candidates[..k.min(count)].sort_by(order);
}

/// How many of `tokens` group-limited draws from popularity `weights` (as at layer 0 without
/// drift, each token on its own stream of `seed`) include each expert, and how many of the same
/// tokens' draws would without the limit (the top k of the same scores). The two counts differ
/// only where the limit changes a token's choice, so their ratio estimates the limit's effect
/// with far less noise than either count.
pub(super) fn grouped_inclusion_counts(
    weights: &[f64],
    k: usize,
    groups: GroupLimit,
    tokens: usize,
    seed: u64,
) -> (Vec<u64>, Vec<u64>) {
    let ln_probs: Vec<f64> = Popularity::by_expert(weights)
        .by_expert_id()
        .iter()
        .map(|p| p.ln())
        .collect();
    let mut limited = vec![0u64; weights.len()];
    let mut plain = vec![0u64; weights.len()];
    let mut order: Vec<usize> = (0..weights.len()).collect();
    for token in 0..tokens {
        let scores = gumbel_scores(&ln_probs, &mut token_rng(seed, token));
        for e in grouped_top_k(&scores, k, groups) {
            limited[e as usize] += 1;
        }
        best_first(&mut order, &scores, k);
        for &e in &order[..k] {
            plain[e] += 1;
        }
    }
    (limited, plain)
}
