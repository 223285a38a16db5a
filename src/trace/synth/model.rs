//! The generator's routing model, built once from [`SynthParams`]: per-layer popularity, sparse
//! successor lists per expert, and the drift schedule.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};

use crate::trace::ExpertId;
use crate::trace::synth::{FittedRouting, GroupLimit, Skew, SynthParams};

/// How far the popularity ranking has rotated at some token: `steps` whole rank positions plus a
/// fraction `frac` of the next one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Rotation {
    steps: usize,
    frac: f64,
}

impl Rotation {
    /// No rotation: the popularity as built.
    pub(super) const NONE: Rotation = Rotation {
        steps: 0,
        frac: 0.0,
    };
}

/// One layer's expert popularity, stored by rank so drift can rotate it along the ranking: the
/// expert at rank `i` gets `(1 - frac) * w[i - steps] + frac * w[i - steps - 1]` (indices mod E),
/// so the weight of each rank slowly moves on to the next-ranked expert.
#[derive(Debug, Clone)]
pub(super) struct Popularity {
    /// Weights by rank, heaviest first, summing to 1.
    weights: Vec<f64>,
    /// Running sums of `weights`, for sampling.
    cumulative: Vec<f64>,
    expert_of_rank: Vec<ExpertId>,
    rank_of_expert: Vec<usize>,
}

impl Popularity {
    /// Popularity with rank weights `weights` (any non-negative values, heaviest first) given to
    /// experts `expert_of_rank`. All-zero weights become uniform.
    fn ranked(weights: Vec<f64>, expert_of_rank: Vec<ExpertId>) -> Self {
        let total: f64 = weights.iter().sum();
        let weights: Vec<f64> = if total > 0.0 {
            weights.iter().map(|w| w / total).collect()
        } else {
            vec![1.0 / weights.len() as f64; weights.len()]
        };
        let cumulative = weights
            .iter()
            .scan(0.0, |sum, w| {
                *sum += w;
                Some(*sum)
            })
            .collect();
        let mut rank_of_expert = vec![0; expert_of_rank.len()];
        for (rank, &expert) in expert_of_rank.iter().enumerate() {
            rank_of_expert[expert as usize] = rank;
        }
        Popularity {
            weights,
            cumulative,
            expert_of_rank,
            rank_of_expert,
        }
    }

    /// Popularity proportional to `weights[expert]`; ranks follow the weights (ties: lower id).
    fn by_expert(weights: &[f64]) -> Self {
        let mut order: Vec<ExpertId> = (0..weights.len() as u32).map(|e| e as ExpertId).collect();
        order.sort_by(|&a, &b| weights[b as usize].total_cmp(&weights[a as usize]));
        let ranked = order.iter().map(|&e| weights[e as usize]).collect();
        Popularity::ranked(ranked, order)
    }

    /// Probability of `expert` under rotation `rotation`.
    pub(super) fn prob(&self, expert: ExpertId, rotation: Rotation) -> f64 {
        let n = self.weights.len();
        let rank = self.rank_of_expert[expert as usize];
        let from = (rank + n - rotation.steps) % n;
        let from_next = (from + n - 1) % n;
        (1.0 - rotation.frac) * self.weights[from] + rotation.frac * self.weights[from_next]
    }

    /// Draws an expert under rotation `rotation`: a rank from the unrotated weights, moved on by
    /// the whole steps, and by one more position with probability `frac`.
    pub(super) fn sample(&self, rng: &mut ChaCha8Rng, rotation: Rotation) -> ExpertId {
        let n = self.weights.len();
        let u = rng.random::<f64>() * self.cumulative[n - 1];
        let drawn = self.cumulative.partition_point(|&c| c <= u).min(n - 1);
        let extra = usize::from(rng.random::<f64>() < rotation.frac);
        self.expert_of_rank[(drawn + rotation.steps + extra) % n]
    }

    /// The probability of every expert, indexed by expert id, without rotation.
    fn by_expert_id(&self) -> Vec<f64> {
        (0..self.weights.len())
            .map(|e| self.prob(e as ExpertId, Rotation::NONE))
            .collect()
    }
}

/// One expert's preferred successors at the next layer and the probability of each. The rest of
/// the mass, `1 - listed`, goes to the other experts in proportion to the next layer's popularity.
#[derive(Debug, Clone)]
pub(super) struct Successors {
    pub(super) experts: Vec<ExpertId>,
    pub(super) probs: Vec<f64>,
    /// Sum of `probs`.
    pub(super) listed: f64,
}

impl Successors {
    fn new(experts: Vec<ExpertId>, probs: Vec<f64>) -> Self {
        let listed = probs.iter().sum::<f64>().min(1.0);
        Successors {
            experts,
            probs,
            listed,
        }
    }

    /// The listed probability of `expert`, if it is listed.
    pub(super) fn listed_prob(&self, expert: ExpertId) -> Option<f64> {
        self.experts
            .iter()
            .position(|&e| e == expert)
            .map(|i| self.probs[i])
    }
}

/// Everything the token sampler needs, shared read-only by all threads.
#[derive(Debug, Clone)]
pub(super) struct Model {
    pub(super) num_experts: usize,
    pub(super) top_k: usize,
    /// One per layer.
    pub(super) popularity: Vec<Popularity>,
    /// `transitions[l][e]`: successors at layer l+1 of expert e at layer l.
    pub(super) transitions: Vec<Vec<Successors>>,
    pub(super) groups: Option<GroupLimit>,
    drift: f64,
    drift_period: usize,
}

impl Model {
    /// Builds the model of already validated parameters. Structural randomness (popularity,
    /// permutations, successors) comes from stream 0 of the seed; tokens use other streams.
    pub(super) fn build(params: &SynthParams) -> Model {
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        let (popularity, transitions) = match &params.fitted {
            Some(fitted) => fitted_structure(fitted),
            None => drawn_structure(params, &mut rng),
        };
        Model {
            num_experts: params.num_experts,
            top_k: params.top_k,
            popularity,
            transitions,
            groups: params.groups,
            drift: params.drift,
            drift_period: params.drift_period,
        }
    }

    /// The popularity rotation in force at token `token`.
    pub(super) fn rotation(&self, token: usize) -> Rotation {
        let shift = self.drift * (token / self.drift_period) as f64;
        let whole = shift.floor();
        Rotation {
            steps: (whole as u64 % self.num_experts as u64) as usize,
            frac: shift - whole,
        }
    }
}

/// Popularity and successors drawn from the skew and affinity knobs.
fn drawn_structure(
    params: &SynthParams,
    rng: &mut ChaCha8Rng,
) -> (Vec<Popularity>, Vec<Vec<Successors>>) {
    let experts = params.num_experts;
    let popularity: Vec<Popularity> = (0..params.num_layers)
        .map(|_| {
            let weights = rank_weights(&params.skew, experts, rng);
            let mut order: Vec<ExpertId> = (0..experts as u32).map(|e| e as ExpertId).collect();
            order.shuffle(rng);
            Popularity::ranked(weights, order)
        })
        .collect();
    let successors = params.successors.min(experts);
    let transitions = popularity
        .windows(2)
        .map(|pair| {
            let next = pair[1].by_expert_id();
            (0..experts)
                .map(|_| drawn_successors(&next, successors, params.affinity, rng))
                .collect()
        })
        .collect();
    (popularity, transitions)
}

/// `count` distinct successors drawn by popularity `next`. Each gets its popularity share of the
/// `affinity` mass (relative to the other successors) plus its popularity share of the remaining
/// `1 - affinity`, so with affinity 0 the next expert follows popularity alone and with affinity 1
/// it is always one of the successors.
fn drawn_successors(next: &[f64], count: usize, affinity: f64, rng: &mut ChaCha8Rng) -> Successors {
    let chosen: Vec<ExpertId> =
        match rand::seq::index::sample_weighted(rng, next.len(), |e| next[e], count) {
            Ok(indices) => indices.into_iter().map(|e| e as ExpertId).collect(),
            // Fewer than `count` experts have weight: take the heaviest ones.
            Err(_) => heaviest(next, count),
        };
    let chosen_mass: f64 = chosen.iter().map(|&e| next[e as usize]).sum();
    let probs = chosen
        .iter()
        .map(|&e| {
            let p = next[e as usize];
            affinity * p / chosen_mass + (1.0 - affinity) * p
        })
        .collect();
    Successors::new(chosen, probs)
}

/// The `count` experts with the largest weights (ties: lower id).
fn heaviest(weights: &[f64], count: usize) -> Vec<ExpertId> {
    let mut order: Vec<ExpertId> = (0..weights.len() as u32).map(|e| e as ExpertId).collect();
    order.sort_by(|&a, &b| weights[b as usize].total_cmp(&weights[a as usize]));
    order.truncate(count);
    order
}

/// Rank weights (heaviest first, unnormalised) for one layer.
fn rank_weights(skew: &Skew, experts: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    match *skew {
        Skew::Zipf { exponent } => (0..experts)
            .map(|rank| ((rank + 1) as f64).powf(-exponent))
            .collect(),
        Skew::Dirichlet { alpha } => {
            let mut weights: Vec<f64> = match Gamma::new(alpha, 1.0) {
                Ok(gamma) => (0..experts).map(|_| gamma.sample(rng)).collect(),
                // Validation keeps alpha positive and finite, so this is unreachable; uniform is
                // the harmless answer.
                Err(_) => vec![1.0; experts],
            };
            weights.sort_by(|a, b| b.total_cmp(a));
            weights
        }
    }
}

/// Popularity and successors given explicitly by `fit`.
fn fitted_structure(fitted: &FittedRouting) -> (Vec<Popularity>, Vec<Vec<Successors>>) {
    let popularity = fitted
        .popularity
        .iter()
        .map(|row| Popularity::by_expert(row))
        .collect();
    let transitions = fitted
        .transitions
        .iter()
        .map(|pair| {
            pair.successors
                .iter()
                .zip(&pair.probs)
                .map(|(experts, probs)| Successors::new(experts.clone(), probs.clone()))
                .collect()
        })
        .collect();
    (popularity, transitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zipf_popularity() -> Popularity {
        // Weights 4, 2, 1, 1 (sum 8) on experts 2, 0, 3, 1 by rank.
        Popularity::ranked(vec![4.0, 2.0, 1.0, 1.0], vec![2, 0, 3, 1])
    }

    #[test]
    fn rotation_moves_weight_on_to_the_next_rank() {
        let p = zipf_popularity();
        assert_eq!(p.prob(2, Rotation::NONE), 0.5);
        assert_eq!(p.prob(0, Rotation::NONE), 0.25);
        // A quarter step: rank 1 (expert 0) keeps 3/4 of its 2/8 and gets 1/4 of rank 0's 4/8.
        let quarter = Rotation {
            steps: 0,
            frac: 0.25,
        };
        assert_eq!(p.prob(0, quarter), 0.75 * 0.25 + 0.25 * 0.5);
        // Rank 0 (expert 2) takes a quarter of the last rank's 1/8.
        assert_eq!(p.prob(2, quarter), 0.75 * 0.5 + 0.25 * 0.125);
        // One whole step: expert 0 (rank 1) now has rank 0's weight.
        let whole = Rotation {
            steps: 1,
            frac: 0.0,
        };
        assert_eq!(p.prob(0, whole), 0.5);
        let total: f64 = (0..4).map(|e| p.prob(e, quarter)).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    #[test]
    fn sampling_follows_the_rotated_probabilities() {
        let p = zipf_popularity();
        let rotation = Rotation {
            steps: 1,
            frac: 0.5,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let draws = 200_000;
        let mut counts = [0usize; 4];
        for _ in 0..draws {
            counts[p.sample(&mut rng, rotation) as usize] += 1;
        }
        for (expert, &count) in counts.iter().enumerate() {
            let expected = p.prob(expert as ExpertId, rotation);
            let observed = count as f64 / draws as f64;
            assert!(
                (observed - expected).abs() < 0.005,
                "{expert}: {observed} vs {expected}"
            );
        }
    }

    #[test]
    fn drift_schedule_counts_whole_periods() {
        let params = SynthParams {
            num_experts: 4,
            drift: 0.75,
            drift_period: 10,
            ..SynthParams::default()
        };
        let model = Model::build(&params);
        assert_eq!(model.rotation(9), Rotation::NONE);
        // Token 25 is in period 2: 1.5 positions.
        assert_eq!(
            model.rotation(25),
            Rotation {
                steps: 1,
                frac: 0.5
            }
        );
        // Period 6: 4.5 positions wrap to 0.5 on 4 experts.
        assert_eq!(
            model.rotation(60),
            Rotation {
                steps: 0,
                frac: 0.5
            }
        );
    }

    #[test]
    fn affinity_zero_successors_carry_plain_popularity() {
        let next = [0.5, 0.25, 0.125, 0.125];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let s = drawn_successors(&next, 2, 0.0, &mut rng);
        let expected: f64 = s.experts.iter().map(|&e| next[e as usize]).sum();
        assert_eq!(s.listed, expected);
        // With affinity 1 the two successors share all the mass by popularity.
        let s = drawn_successors(&next, 2, 1.0, &mut rng);
        assert!((s.listed - 1.0).abs() < 1e-12);
        let (a, b) = (s.experts[0] as usize, s.experts[1] as usize);
        assert_ne!(a, b);
        assert!((s.probs[0] / s.probs[1] - next[a] / next[b]).abs() < 1e-12);
    }
}
