//! Fitting the synthetic generator to a real trace.
//!
//! [`fit`] estimates [`SynthParams`] such that [`synthesize`](crate::trace::synth::synthesize)
//! produces traces with the real one's per-layer popularity and inter-layer transition structure,
//! at any number of tokens:
//! - per-layer popularity: the empirical expert shares, smoothed with half a token per expert so
//!   an expert unseen in the sample stays possible;
//! - sparse transitions: for each expert at layer l, its most frequent successors at l+1 with
//!   their shares of its (expert, successor) pairs; the remaining mass follows popularity;
//! - scalar summaries for the knob-driven generator: the Zipf exponent that best fits the sorted
//!   popularity, and the affinity share beyond what popularity alone explains;
//! - drift: how much more the first and second halves' popularity differ than two interleaved
//!   halves do (which carry the same sampling noise and clustering but no drift), turned into a
//!   rotation rate of the popularity ranking;
//! - top-k: the largest number of experts per token.
//!
//! Fitted probabilities are rounded to 6 significant digits, which keeps a fitted file for 256
//! experts x 58 layers to a few MB and makes the TOML text round-trip exactly.
//!
//! The pair counts come from [`crate::analysis::affinity`]: fitting is analysis turned into
//! generator parameters.

use rayon::prelude::*;

use crate::analysis::affinity::TransitionMatrix;
use crate::error::{Error, Result};
use crate::trace::synth::{FittedRouting, FittedTransitions, Skew, SynthParams};
use crate::trace::{ExpertId, RoutingTrace};

/// Successors kept per expert (fewer when the expert has fewer distinct successors).
const FIT_SUCCESSORS: usize = 8;
/// Pseudo-count added to every expert's load before normalising.
const POPULARITY_PSEUDO_COUNT: f64 = 0.5;
/// Significant digits of fitted probabilities.
const SIGNIFICANT_DIGITS: usize = 6;
/// Drift period written when the fitted drift allows it (one step per this many tokens).
const DRIFT_PERIOD: usize = 1024;
/// A half-to-half change counts as drift only above this multiple of the drift-free baseline (the
/// baseline itself varies by about 15-30% between samples).
const DRIFT_SIGNIFICANCE: f64 = 1.5;
/// Interleaved blocks used as the drift-free baseline of the half-to-half change.
const BASELINE_BLOCKS: usize = 16;

/// Estimates generator parameters from a token-level trace; `seed` is 0 and `num_tokens` the
/// trace's, for the caller to change. Fails on an empty trace or an expert id out of range.
pub fn fit(trace: &RoutingTrace) -> Result<SynthParams> {
    check_fittable(trace)?;
    let experts = trace.num_experts();
    let layers = trace.num_layers();
    let loads = trace.expert_loads();
    let popularity: Vec<Vec<f64>> = (0..layers).map(|l| smoothed(loads.layer(l))).collect();
    // Pairs of the first and second half of the tokens, per layer pair: the affinity summary
    // picks successors on one half and measures them on the other.
    let tokens = trace.num_tokens();
    let halves: Vec<[TransitionMatrix; 2]> = (0..layers - 1)
        .into_par_iter()
        .map(|layer| {
            [0..tokens / 2, tokens / 2..tokens].map(|range| {
                let mut matrix = TransitionMatrix::new(experts);
                matrix.add(trace.layer(layer), trace.layer(layer + 1), range);
                matrix
            })
        })
        .collect();
    let pairs: Vec<TransitionMatrix> = halves
        .iter()
        .map(|[first, second]| {
            let mut whole = first.clone();
            whole.merge(second);
            whole
        })
        .collect();
    let successors = FIT_SUCCESSORS.min(experts);
    let transitions = pairs
        .iter()
        .map(|matrix| sparse_transitions(matrix, successors))
        .collect();
    let (drift, drift_period) = drift_rate(trace, &popularity);
    Ok(SynthParams {
        num_experts: experts,
        num_layers: layers,
        top_k: trace.max_k(),
        num_tokens: trace.num_tokens(),
        seed: 0,
        skew: Skew::Zipf {
            exponent: best_zipf_exponent(&popularity),
        },
        affinity: affinity_share(&halves, successors),
        successors,
        drift,
        drift_period,
        groups: None,
        fitted: Some(FittedRouting {
            popularity,
            transitions,
        }),
    })
}

/// Rejects traces `fit` cannot describe, naming the first offending entry.
fn check_fittable(trace: &RoutingTrace) -> Result<()> {
    if trace.num_tokens() == 0 || trace.num_layers() == 0 || trace.max_k() == 0 {
        return Err(Error::invalid(
            "cannot fit a trace without tokens, layers or routed experts",
        ));
    }
    for (layer, routing) in trace.layers().iter().enumerate() {
        if let Some(index) = routing
            .experts()
            .iter()
            .position(|&e| e as usize >= trace.num_experts())
        {
            let token = routing.offsets().partition_point(|&o| o as usize <= index) - 1;
            return Err(Error::invalid(format!(
                "cannot fit: layer {layer}, token {token} routes to expert {} but the trace has {} experts",
                routing.experts()[index],
                trace.num_experts()
            )));
        }
    }
    Ok(())
}

/// `x` rounded to [`SIGNIFICANT_DIGITS`] significant digits (the shortest decimal that reads back
/// as the same f64, so TOML output round-trips).
pub(super) fn significant(x: f64) -> f64 {
    format!("{:.*e}", SIGNIFICANT_DIGITS - 1, x)
        .parse()
        .unwrap_or(x)
}

/// Expert shares of one layer with [`POPULARITY_PSEUDO_COUNT`] added to every expert.
pub(super) fn smoothed(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum::<f64>() + POPULARITY_PSEUDO_COUNT * counts.len() as f64;
    counts
        .iter()
        .map(|c| significant((c + POPULARITY_PSEUDO_COUNT) / total))
        .collect()
}

/// Each expert's `keep` most frequent successors (ties: lower id) and their shares of its pairs.
fn sparse_transitions(matrix: &TransitionMatrix, keep: usize) -> FittedTransitions {
    let experts = matrix.num_experts();
    let (successors, probs) = (0..experts)
        .map(|from| {
            let row = matrix.row(from as ExpertId);
            let total: u64 = row.iter().sum();
            let mut order: Vec<ExpertId> = (0..experts as u32)
                .map(|e| e as ExpertId)
                .filter(|&e| row[e as usize] > 0)
                .collect();
            order.sort_by(|&a, &b| row[b as usize].cmp(&row[a as usize]).then(a.cmp(&b)));
            order.truncate(keep);
            let probs = order
                .iter()
                .map(|&e| significant(row[e as usize] as f64 / total as f64))
                .collect();
            (order, probs)
        })
        .unzip();
    FittedTransitions { successors, probs }
}

/// Rank weights (r + 1)^-s over `n` experts, normalised.
fn zipf_weights(n: usize, exponent: f64) -> Vec<f64> {
    let raw: Vec<f64> = (0..n).map(|r| ((r + 1) as f64).powf(-exponent)).collect();
    let total: f64 = raw.iter().sum();
    raw.iter().map(|w| w / total).collect()
}

/// The Zipf exponent in 0..=4 whose rank weights are closest (least squares over all layers) to
/// the sorted popularity, to 4 decimals: a 0.01 grid, then a 0.0001 grid around its best point.
pub(super) fn best_zipf_exponent(popularity: &[Vec<f64>]) -> f64 {
    let sorted: Vec<Vec<f64>> = popularity
        .iter()
        .map(|row| {
            let total: f64 = row.iter().sum();
            let mut shares: Vec<f64> = row.iter().map(|p| p / total).collect();
            shares.sort_by(|a, b| b.total_cmp(a));
            shares
        })
        .collect();
    let error = |exponent: f64| -> f64 {
        let zipf = zipf_weights(sorted[0].len(), exponent);
        sorted
            .iter()
            .flat_map(|row| row.iter().zip(&zipf).map(|(p, z)| (p - z) * (p - z)))
            .sum()
    };
    let best_on = |grid: Vec<f64>| {
        let errors: Vec<f64> = grid.iter().map(|&s| error(s)).collect();
        (0..grid.len())
            .min_by(|&a, &b| errors[a].total_cmp(&errors[b]))
            .map_or(0.0, |best| grid[best])
    };
    let coarse = best_on((0..=400).map(|i| i as f64 * 0.01).collect());
    let fine = best_on(
        (-100..=100)
            .map(|i| coarse + i as f64 * 0.0001)
            .filter(|s| *s >= 0.0)
            .collect(),
    );
    (fine * 1e4).round() / 1e4
}

/// The `affinity` knob that best explains the transitions. In the generator an expert's next
/// expert is one of its `successors` preferred successors with probability `affinity + (1 -
/// affinity) * background`, where background is those successors' share of the traffic from the
/// other experts; so per expert, `(share - background) / (1 - background)` over the preferred
/// successors recovers the affinity. They are unknown: they are taken as the set that maximises
/// that excess on one half of the tokens ([`preferred_set`]) and the excess is measured on the
/// other half, so sampling noise that made the set look good is not counted (each half is used
/// both ways). The background leaves the expert itself out, because its own successors' traffic
/// includes its own contribution. Averaged over experts with weights = pair counts; clamped to
/// 0..=1 only at the end, so noise around 0 averages out.
fn affinity_share(halves: &[[TransitionMatrix; 2]], successors: usize) -> f64 {
    // (sum of weighted excesses, sum of weights) per layer pair, summed in layer order.
    let per_pair: Vec<(f64, f64)> = halves
        .par_iter()
        .map(|pair| {
            let [first, second] = pair.each_ref().map(ExpertShares::new);
            let mut weighted = 0.0;
            let mut weight = 0.0;
            for from in 0..first.experts {
                for (pick, measure) in [(&first, &second), (&second, &first)] {
                    let (Some(picked), Some(measured)) = (pick.of(from), measure.of(from)) else {
                        continue;
                    };
                    let set = preferred_set(&picked.0, &picked.1, successors);
                    weighted += excess(&measured.0, &measured.1, &set) * measured.2;
                    weight += measured.2;
                }
            }
            (weighted, weight)
        })
        .collect();
    let (weighted, weight) = per_pair
        .iter()
        .fold((0.0, 0.0), |(a, b), (w, n)| (a + w, b + n));
    if weight > 0.0 {
        significant((weighted / weight).clamp(0.0, 1.0))
    } else {
        0.0
    }
}

/// Per expert at layer l: where its pairs go, and where the other experts' pairs go.
struct ExpertShares<'m> {
    matrix: &'m TransitionMatrix,
    experts: usize,
    /// Pairs into each expert at l+1, over all source experts.
    incoming: Vec<u64>,
    all: u64,
}

impl<'m> ExpertShares<'m> {
    fn new(matrix: &'m TransitionMatrix) -> Self {
        let experts = matrix.num_experts();
        let mut incoming = vec![0u64; experts];
        for from in 0..experts {
            for (to, &count) in matrix.row(from as ExpertId).iter().enumerate() {
                incoming[to] += count;
            }
        }
        let all = incoming.iter().sum();
        ExpertShares {
            matrix,
            experts,
            incoming,
            all,
        }
    }

    /// Expert `from`'s successor shares, the other experts' shares (its background) and its
    /// number of pairs; `None` when it has no pairs or no other expert has any.
    fn of(&self, from: usize) -> Option<(Vec<f64>, Vec<f64>, f64)> {
        let row = self.matrix.row(from as ExpertId);
        let total: u64 = row.iter().sum();
        if total == 0 || total == self.all {
            return None;
        }
        let others = (self.all - total) as f64;
        let share = row.iter().map(|&c| c as f64 / total as f64).collect();
        let background = (0..self.experts)
            .map(|e| (self.incoming[e] - row[e]) as f64 / others)
            .collect();
        Some((share, background, total as f64))
    }
}

/// `(share(set) - background(set)) / (1 - background(set))`; 0 when the set covers everything.
fn excess(share: &[f64], background: &[f64], set: &[usize]) -> f64 {
    let s: f64 = set.iter().map(|&e| share[e]).sum();
    let b: f64 = set.iter().map(|&e| background[e]).sum();
    if b < 1.0 { (s - b) / (1.0 - b) } else { 0.0 }
}

/// The set of at most `slots` experts with the largest [`excess`], by Dinkelbach's method: for the
/// current ratio r, the best set takes the (at most `slots`) experts with the largest positive
/// `share - (1 - r) * background`; its excess becomes the next r, which only grows, until the set
/// stops improving. (At r = affinity, preferred successors score `affinity * their weight > 0`,
/// the others about 0.)
fn preferred_set(share: &[f64], background: &[f64], slots: usize) -> Vec<usize> {
    let mut ratio: f64 = 0.0;
    let mut best = Vec::new();
    let mut order: Vec<usize> = (0..share.len()).collect();
    for _ in 0..share.len() {
        let score = |e: usize| share[e] - (1.0 - ratio) * background[e];
        let slots = slots.min(order.len());
        if slots < order.len() {
            order.select_nth_unstable_by(slots, |&a, &b| {
                score(b).total_cmp(&score(a)).then(a.cmp(&b))
            });
        }
        let set: Vec<usize> = order
            .iter()
            .copied()
            .take(slots)
            .filter(|&e| score(e) > 0.0)
            .collect();
        let next = excess(share, background, &set);
        if next <= ratio + 1e-12 {
            break;
        }
        ratio = next;
        best = set;
    }
    best
}

/// Total variation distance between the expert shares of two token sets at one layer.
fn share_distance(a: &[f64], b: &[f64]) -> f64 {
    let (ta, tb): (f64, f64) = (a.iter().sum(), b.iter().sum());
    if ta == 0.0 || tb == 0.0 {
        return 0.0;
    }
    0.5 * a
        .iter()
        .zip(b)
        .map(|(x, y)| (x / ta - y / tb).abs())
        .sum::<f64>()
}

/// Expert counts at every layer of the tokens `take(token)` selects.
fn counts_where(trace: &RoutingTrace, take: impl Fn(usize) -> bool) -> Vec<Vec<f64>> {
    trace
        .layers()
        .iter()
        .map(|routing| {
            let mut counts = vec![0.0; trace.num_experts()];
            for token in (0..trace.num_tokens()).filter(|&t| take(t)) {
                for &e in routing.experts_of(token) {
                    counts[e as usize] += 1.0;
                }
            }
            counts
        })
        .collect()
}

/// Drift as (`drift`, `drift_period`). Per layer, the excess of the first-vs-second-half share
/// distance over a drift-free baseline (the larger of the distance between interleaved halves and
/// the expected multinomial noise), when it is significant, is what the generator's rotation must
/// produce over half the trace. Rotating by x < 1 rank positions moves a total variation of x * (max - min share), and
/// the two halves' mean rotations differ by rate * N / 2, so rate = 2 * excess / (N * (max - min)),
/// averaged over layers. Written as one step of `drift` positions every `drift_period` tokens.
fn drift_rate(trace: &RoutingTrace, popularity: &[Vec<f64>]) -> (f64, usize) {
    let tokens = trace.num_tokens();
    if tokens < 2 * BASELINE_BLOCKS {
        return (0.0, DRIFT_PERIOD);
    }
    let half = tokens / 2;
    let block = tokens / BASELINE_BLOCKS;
    let first = counts_where(trace, |t| t < half);
    let second = counts_where(trace, |t| t >= half);
    let even = counts_where(trace, |t| (t / block).is_multiple_of(2));
    let odd = counts_where(trace, |t| !(t / block).is_multiple_of(2));
    let rates: Vec<f64> = (0..trace.num_layers())
        .map(|l| {
            let change = share_distance(&first[l], &second[l]);
            let interleaved = share_distance(&even[l], &odd[l]);
            let noise = multinomial_noise(&first[l], &second[l]);
            let baseline = interleaved.max(noise);
            let excess = if change > DRIFT_SIGNIFICANCE * baseline {
                change - baseline
            } else {
                0.0
            };
            let total: f64 = popularity[l].iter().sum();
            let spread = popularity[l].iter().copied().fold(0.0, f64::max)
                - popularity[l].iter().copied().fold(f64::INFINITY, f64::min);
            if spread > 0.0 {
                2.0 * excess / (tokens as f64 * spread / total)
            } else {
                0.0
            }
        })
        .collect();
    let rate = rates.iter().sum::<f64>() / rates.len() as f64;
    if rate * DRIFT_PERIOD as f64 <= 1.0 {
        (significant(rate * DRIFT_PERIOD as f64), DRIFT_PERIOD)
    } else {
        let period = ((1.0 / rate).floor() as usize).max(1);
        (significant((rate * period as f64).min(1.0)), period)
    }
}

/// Expected total variation distance between the shares of two independent multinomial samples
/// of sizes `sum(a)` and `sum(b)` from their pooled shares: sum over experts of
/// sqrt(2 / pi) * sqrt(p (1 - p) (1 / n_a + 1 / n_b)) / 2.
fn multinomial_noise(a: &[f64], b: &[f64]) -> f64 {
    let (na, nb): (f64, f64) = (a.iter().sum(), b.iter().sum());
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let p = (x + y) / (na + nb);
            (2.0 / std::f64::consts::PI).sqrt() * (p * (1.0 - p) * (1.0 / na + 1.0 / nb)).sqrt()
        })
        .sum::<f64>()
        / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::test_data::{shared_data, switch_trace};
    use crate::analysis::trace_stats;
    use crate::trace::Trace;
    use crate::trace::synth::synthesize;

    #[test]
    fn popularity_and_transitions_are_counted_by_hand() {
        // Top-1, 2 layers, 4 experts. Tokens (layer 0 -> layer 1): 0->1, 0->1, 0->2, 3->3.
        let trace = RoutingTrace::from_dense(4, 2, 1, &[0, 1, 0, 1, 0, 2, 3, 3]).unwrap();
        let params = fit(&trace).unwrap();
        let fitted = params.fitted.as_ref().unwrap();
        // Layer 0 counts 3, 0, 0, 1 plus 0.5 each, over 4 + 2 = 6.
        assert_eq!(
            fitted.popularity[0],
            vec![3.5 / 6.0, 0.5 / 6.0, 0.5 / 6.0, 1.5 / 6.0]
                .into_iter()
                .map(significant)
                .collect::<Vec<_>>()
        );
        assert_eq!(fitted.popularity[0][0], 0.583333);
        let transitions = &fitted.transitions[0];
        assert_eq!(transitions.successors[0], vec![1, 2]);
        assert_eq!(transitions.probs[0], vec![0.666667, 0.333333]);
        assert!(transitions.successors[1].is_empty());
        assert_eq!(transitions.successors[3], vec![3]);
        assert_eq!(transitions.probs[3], vec![1.0]);
        assert_eq!(params.top_k, 1);
        assert_eq!(params.num_tokens, 4);
        assert_eq!(params.successors, 4);
        assert_eq!(params.drift, 0.0);
    }

    #[test]
    fn preferred_set_maximises_the_excess() {
        // Affinity 0.5 to successors {0, 1} with weights 0.6 / 0.4 over background 0.3, 0.1,
        // 0.3, 0.3: shares 0.5 * 0.6 + 0.5 * 0.3 = 0.45, 0.5 * 0.4 + 0.5 * 0.1 = 0.25, and
        // 0.15, 0.15 for the others. Over {0, 1}: (0.7 - 0.4) / 0.6 = 0.5.
        let share = [0.45, 0.25, 0.15, 0.15];
        let background = [0.3, 0.1, 0.3, 0.3];
        let set = preferred_set(&share, &background, 2);
        assert_eq!(set, vec![0, 1]);
        assert!((excess(&share, &background, &set) - 0.5).abs() < 1e-12);
        // With one slot: expert 0 alone gives 0.15 / 0.7 = 0.214, expert 1 alone only
        // 0.15 / 0.9 = 0.167.
        assert_eq!(preferred_set(&share, &background, 1), vec![0]);
        // Shares equal to the background: nothing stands out.
        assert!(preferred_set(&background, &background, 2).is_empty());
    }

    #[test]
    fn significant_digits_are_exact_decimals() {
        assert_eq!(significant(2.0 / 3.0), 0.666667);
        assert_eq!(significant(1.234_567_89e-9), 1.23457e-9);
        assert_eq!(significant(0.0), 0.0);
    }

    #[test]
    fn knob_summaries_recover_generator_settings() {
        let truth = |affinity: f64| SynthParams {
            num_experts: 32,
            num_layers: 3,
            top_k: 1,
            num_tokens: 40_000,
            seed: 11,
            skew: Skew::Zipf { exponent: 1.2 },
            affinity,
            successors: 8,
            ..SynthParams::default()
        };
        for affinity in [0.0, 0.6] {
            let fitted = fit(&synthesize(&truth(affinity)).unwrap()).unwrap();
            let Skew::Zipf { exponent } = fitted.skew else {
                panic!("fit writes a Zipf skew");
            };
            // Affinity keeps every layer's popularity, so all layers show the generated skew.
            assert!((exponent - 1.2).abs() < 0.05, "{exponent}");
            println!(
                "affinity {affinity}: fitted {}, zipf {exponent}",
                fitted.affinity
            );
            assert!(
                (fitted.affinity - affinity).abs() < 0.05,
                "{affinity}: {}",
                fitted.affinity
            );
            assert_eq!(fitted.successors, 8);
            // No drift was generated, and none is found.
            assert_eq!(fitted.drift, 0.0);
        }
    }

    #[test]
    fn drift_is_detected_at_about_the_generated_rate() {
        // 0.05 rank positions per 1000 tokens over 20000 tokens: the two halves' mean rotations
        // differ by 0.5 positions.
        let truth = SynthParams {
            num_experts: 16,
            num_layers: 2,
            top_k: 1,
            num_tokens: 20_000,
            seed: 2,
            skew: Skew::Zipf { exponent: 1.0 },
            affinity: 0.0,
            drift: 0.05,
            drift_period: 1000,
            ..SynthParams::default()
        };
        let fitted = fit(&synthesize(&truth).unwrap()).unwrap();
        // Same rate per token: 0.05 / 1000 * 1024 = 0.0512 per 1024 tokens, less the noise floor.
        assert_eq!(fitted.drift_period, 1024);
        assert!((0.025..0.07).contains(&fitted.drift), "{}", fitted.drift);
    }

    #[test]
    fn empty_and_out_of_range_traces_are_refused() {
        let empty = RoutingTrace::from_dense(4, 1, 1, &[]).unwrap();
        assert!(
            fit(&empty)
                .unwrap_err()
                .to_string()
                .contains("without tokens")
        );
        let bad = RoutingTrace::from_dense(4, 2, 1, &[0, 1, 2, 7]).unwrap();
        let err = fit(&bad).unwrap_err().to_string();
        assert!(
            err.contains("layer 1, token 1") && err.contains("expert 7"),
            "{err}"
        );
    }

    #[test]
    fn a_deepseek_sized_fit_stays_compact_and_round_trips() {
        // 256 experts x 58 layers, top-8, as DeepSeek-V3. 600 tokens give every expert ~19
        // tokens, enough to fill its 8 successor slots (the size does not grow with tokens).
        let trace = synthesize(&SynthParams {
            num_experts: 256,
            num_layers: 58,
            top_k: 8,
            num_tokens: 600,
            ..SynthParams::default()
        })
        .unwrap();
        let fitted = fit(&trace).unwrap();
        let lists = fitted.fitted.as_ref().unwrap().transitions.iter();
        let full = lists
            .flat_map(|t| &t.successors)
            .filter(|s| s.len() == 8)
            .count();
        assert!(
            full as f64 > 0.8 * (57 * 256) as f64,
            "{full} full successor lists"
        );
        let text = fitted.to_toml().unwrap();
        println!(
            "fitted TOML for 256 experts x 58 layers: {} bytes",
            text.len()
        );
        assert!(text.len() < 4_000_000, "{}", text.len());
        assert_eq!(SynthParams::from_toml(&text).unwrap(), fitted);
    }

    /// REQUIRED: the fitted generator reproduces switch-base-32's imbalance and affinity.
    #[test]
    fn fitted_switch_base_32_is_reproduced_within_ten_percent() {
        let Some(data) = shared_data() else {
            return;
        };
        let real = switch_trace(&data, 32);
        let mut params = fit(&real).unwrap();
        assert_eq!(
            SynthParams::from_toml(&params.to_toml().unwrap()).unwrap(),
            params
        );
        params.num_tokens = 100_000;
        params.seed = 20_260_101;
        let synthetic = synthesize(&params).unwrap();
        let real_stats = trace_stats(&Trace::Tokens(real));
        let synth_stats = trace_stats(&Trace::Tokens(synthetic));
        println!(
            "fit: zipf {:?}, affinity {}, drift {} per {} tokens",
            params.skew, params.affinity, params.drift, params.drift_period
        );
        let within = |real: f64, synth: f64| (synth - real).abs() <= 0.10 * real.abs();
        for (r, s) in real_stats.layers.iter().zip(&synth_stats.layers) {
            println!(
                "layer {}: max/mean {:.3} vs {:.3}, affinity top-1 {:?} vs {:?}, top-4 {:?} vs {:?}",
                r.layer,
                r.max_mean,
                s.max_mean,
                r.affinity_top1,
                s.affinity_top1,
                r.affinity_top4,
                s.affinity_top4
            );
            assert!(within(r.max_mean, s.max_mean), "layer {} max/mean", r.layer);
            for (real, synth) in [
                (r.affinity_top1, s.affinity_top1),
                (r.affinity_top4, s.affinity_top4),
            ] {
                match (real, synth) {
                    (Some(real), Some(synth)) => {
                        assert!(
                            within(real, synth),
                            "layer {} affinity {real} vs {synth}",
                            r.layer
                        )
                    }
                    (real, synth) => assert_eq!(real, synth, "layer {}", r.layer),
                }
            }
        }
    }
}
