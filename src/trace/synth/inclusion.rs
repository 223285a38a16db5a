//! How often the generator's top-k draw includes each expert, given its popularity weights.
//!
//! The generator draws k distinct experts one after another, each from the weights renormalised
//! over the experts not chosen yet (Plackett-Luce sampling without replacement; its Gumbel top-k
//! form is the same distribution). An expert's inclusion probability is therefore not k times its
//! weight: heavy experts saturate (they cannot be chosen twice) and the light ones fill the
//! remaining slots, so realised shares are flatter than the weights. Fitting to recorded loads
//! needs the map from weights to inclusion, computed here without sampling.
//!
//! With exponential clocks (expert j arrives at time T_j ~ Exp(w_j), normalised so the weights
//! sum to 1) the chosen experts are the first k to arrive, so expert i is chosen when fewer than
//! k others arrived before it:
//! `pi_i = integral over t of w_i e^(-w_i t) P(N_-i(t) < k) dt`, where N_-i(t) counts the others
//! arrived by t (independent Bernoullis with probability `1 - e^(-w_j t)`). The count's
//! distribution, truncated at k, is a product of binomials built once per time point; each
//! expert's leave-one-out distribution is divided out of it (stable while its own probability is
//! at most 1/2, recomputed directly otherwise). The integral is analytic near 0 (where the count
//! is below k with probability 1 to 1e-12) and Gauss-Legendre on logarithmic panels after that,
//! up to the time when the count has reached k with probability 1 to 1e-13.

/// 8-point Gauss-Legendre nodes (positive half) and weights on [-1, 1].
const GAUSS_LEGENDRE_8: [(f64, f64); 4] = [
    (0.183_434_642_495_649_8, 0.362_683_783_378_362_0),
    (0.525_532_409_916_329_0, 0.313_706_645_877_887_3),
    (0.796_666_477_413_626_7, 0.222_381_034_453_374_5),
    (0.960_289_856_497_536_3, 0.101_228_536_290_376_3),
];

/// Width of one logarithmic quadrature panel (in ln t).
const PANEL_LOG_WIDTH: f64 = 0.5;

/// Neglected probability at either end of the integral.
const HEAD_TOLERANCE: f64 = 1e-12;
const TAIL_TOLERANCE: f64 = 1e-13;

/// Each expert's probability of being among a token's `k` distinct experts when the generator
/// draws with `weights` (non-negative, not all zero), without a group limit. Sums to `k` (each
/// token has k experts) when at least `k` weights are positive. `k` must be 1..=weights.len().
pub fn top_k_inclusion(weights: &[f64], k: usize) -> Vec<f64> {
    let n = weights.len();
    assert!((1..=n).contains(&k), "top-k {k} of {n} experts");
    let total: f64 = weights.iter().sum();
    let p: Vec<f64> = weights.iter().map(|w| w / total).collect();
    if k == n {
        return vec![1.0; n];
    }
    if k == 1 {
        return p;
    }
    let positive = p.iter().filter(|&&w| w > 0.0).count();
    if positive <= k {
        // Every weighted expert is chosen; the generator fills the other slots uniformly.
        let rest = (k - positive) as f64 / (n - positive) as f64;
        return p
            .iter()
            .map(|&w| if w > 0.0 { 1.0 } else { rest })
            .collect();
    }
    // Head [0, t0]: P(N_-i(t) >= k) <= t^k / k!, so treating it as 0 misses at most
    // w_i t0^(k+1) / (k+1)!, which t0 keeps below HEAD_TOLERANCE * w_i <= HEAD_TOLERANCE * pi_i.
    let factorial: f64 = (1..=k + 1).map(|i| i as f64).product();
    let t0 = (HEAD_TOLERANCE * factorial).powf(1.0 / (k + 1) as f64);
    let mut inclusion: Vec<f64> = p.iter().map(|w| -(-w * t0).exp_m1()).collect();
    // Tail: stop where the count of all experts is at most k with probability TAIL_TOLERANCE
    // (N_-i(t) < k implies N(t) <= k, and the arrival density integrates to at most 1).
    let mut end = t0.max(k as f64);
    while at_most(&p, end, k) > TAIL_TOLERANCE {
        end *= 2.0;
    }
    let (from, to) = (t0.ln(), end.ln());
    let panels = ((to - from) / PANEL_LOG_WIDTH).ceil().max(1.0) as usize;
    let half = (to - from) / panels as f64 / 2.0;
    let mut leave_one_out = vec![0.0; k];
    for panel in 0..panels {
        let middle = from + (2 * panel + 1) as f64 * half;
        for &(x, weight) in &GAUSS_LEGENDRE_8 {
            for s in [middle - x * half, middle + x * half] {
                let t = s.exp();
                let arrived: Vec<f64> = p.iter().map(|w| -(-w * t).exp_m1()).collect();
                let counts = count_distribution(&arrived, k);
                for (i, &q) in arrived.iter().enumerate() {
                    if p[i] == 0.0 {
                        continue;
                    }
                    let below_k = if q <= 0.5 {
                        divide_out(&counts, q, &mut leave_one_out)
                    } else {
                        count_distribution_without(&arrived, i, k).iter().sum()
                    };
                    // ds = dt / t.
                    inclusion[i] += weight * half * p[i] * (-p[i] * t).exp() * below_k * t;
                }
            }
        }
    }
    inclusion
}

/// `P(count = m)` for m in 0..k, where the count sums Bernoullis with probabilities `arrived`.
fn count_distribution(arrived: &[f64], k: usize) -> Vec<f64> {
    let mut counts = vec![0.0; k];
    counts[0] = 1.0;
    for &q in arrived {
        add_bernoulli(&mut counts, q);
    }
    counts
}

/// [`count_distribution`] leaving out Bernoulli `skip`.
fn count_distribution_without(arrived: &[f64], skip: usize, k: usize) -> Vec<f64> {
    let mut counts = vec![0.0; k];
    counts[0] = 1.0;
    for (j, &q) in arrived.iter().enumerate() {
        if j != skip {
            add_bernoulli(&mut counts, q);
        }
    }
    counts
}

/// Convolves the truncated count distribution with one more Bernoulli(q).
fn add_bernoulli(counts: &mut [f64], q: f64) {
    for m in (1..counts.len()).rev() {
        counts[m] = counts[m] * (1.0 - q) + counts[m - 1] * q;
    }
    counts[0] *= 1.0 - q;
}

/// `P(count without one Bernoulli(q) < k)`: the distribution with it divided out, term by term
/// from 0 (each step multiplies earlier errors by q / (1 - q) <= 1 for q <= 1/2).
fn divide_out(counts: &[f64], q: f64, scratch: &mut [f64]) -> f64 {
    let keep = 1.0 - q;
    let mut previous = 0.0;
    for (m, &c) in counts.iter().enumerate() {
        previous = ((c - q * previous) / keep).max(0.0);
        scratch[m] = previous;
    }
    scratch.iter().sum()
}

/// `P(count of experts arrived by t <= k)`.
fn at_most(p: &[f64], t: f64, k: usize) -> f64 {
    let arrived: Vec<f64> = p.iter().map(|w| -(-w * t).exp_m1()).collect();
    count_distribution(&arrived, k + 1).iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_1_inclusion_is_the_normalised_weight() {
        assert_eq!(top_k_inclusion(&[3.0, 1.0], 1), vec![0.75, 0.25]);
    }

    #[test]
    fn top_2_inclusion_matches_the_closed_form() {
        // pi_i = p_i + sum over j != i of p_j p_i / (1 - p_j): first pick, or second after j.
        let p = [0.5, 0.3, 0.15, 0.05];
        let closed: Vec<f64> = (0..4)
            .map(|i| {
                p[i] + (0..4)
                    .filter(|&j| j != i)
                    .map(|j| p[j] * p[i] / (1.0 - p[j]))
                    .sum::<f64>()
            })
            .collect();
        // 0.5 + 0.3 * 0.5 / 0.7 + 0.15 * 0.5 / 0.85 + 0.05 * 0.5 / 0.95 = 0.828837
        assert!((closed[0] - 0.828_837).abs() < 1e-6, "{}", closed[0]);
        let numeric = top_k_inclusion(&p, 2);
        for (n, c) in numeric.iter().zip(&closed) {
            assert!((n - c).abs() < 1e-10, "{numeric:?} vs {closed:?}");
        }
    }

    #[test]
    fn inclusion_sums_to_k_and_saturates() {
        // 256 experts, Zipf 1.2, top-8: the sum is k, every inclusion is at most 1 and the
        // heaviest expert is included far less often than 8 times its weight.
        let weights: Vec<f64> = (1..=256).map(|r| (r as f64).powf(-1.2)).collect();
        let total: f64 = weights.iter().sum();
        let pi = top_k_inclusion(&weights, 8);
        assert!((pi.iter().sum::<f64>() - 8.0).abs() < 1e-9);
        assert!(pi.iter().all(|&x| x <= 1.0));
        assert!(pi[0] < 0.8 * 8.0 * weights[0] / total, "{}", pi[0]);
        assert_eq!(top_k_inclusion(&weights[..8], 8), vec![1.0; 8]);
    }
}
