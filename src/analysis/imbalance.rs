//! Load-imbalance metrics of one vector of loads (tokens per expert, or per GPU).
//!
//! Every function takes the loads of all units, dead ones (load 0) included, because a dead expert
//! still occupies a slot and lowers the mean. Loads are expected to be finite and non-negative.
//! A vector with no load at all (empty, or all zeros) has no imbalance: max/mean 1, cv 0, gini 0,
//! entropy 0.

/// Sum and arithmetic mean of `loads`, or `None` when there is no load to divide by.
fn total_and_mean(loads: &[f64]) -> Option<(f64, f64)> {
    let total: f64 = loads.iter().sum();
    (total > 0.0).then(|| (total, total / loads.len() as f64))
}

/// Largest load divided by the mean load: 1.0 is perfect balance, `n` is everything on one of
/// `n` units. This is the factor by which the busiest unit slows a synchronous step down.
pub fn max_mean(loads: &[f64]) -> f64 {
    match total_and_mean(loads) {
        Some((_, mean)) => loads.iter().copied().fold(0.0, f64::max) / mean,
        None => 1.0,
    }
}

/// Coefficient of variation: population standard deviation divided by the mean.
pub fn cv(loads: &[f64]) -> f64 {
    match total_and_mean(loads) {
        Some((_, mean)) => {
            let variance =
                loads.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / loads.len() as f64;
            variance.sqrt() / mean
        }
        None => 0.0,
    }
}

/// Gini coefficient: 0 when every unit carries the same load, (n - 1) / n when one unit carries
/// everything. With loads sorted ascending `x_1 <= .. <= x_n`:
/// `G = 2 * sum(i * x_i) / (n * sum(x)) - (n + 1) / n`.
pub fn gini(loads: &[f64]) -> f64 {
    match total_and_mean(loads) {
        Some((total, _)) => {
            let mut sorted = loads.to_vec();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len() as f64;
            let ranked: f64 = sorted
                .iter()
                .enumerate()
                .map(|(i, x)| (i + 1) as f64 * x)
                .sum();
            2.0 * ranked / (n * total) - (n + 1.0) / n
        }
        None => 0.0,
    }
}

/// Shannon entropy, in bits, of the distribution `load / total load`: log2(n) when uniform over
/// `n` units, 0 when one unit carries everything.
pub fn entropy_bits(loads: &[f64]) -> f64 {
    match total_and_mean(loads) {
        Some((total, _)) => loads
            .iter()
            .filter(|&&x| x > 0.0)
            .map(|x| {
                let p = x / total;
                -p * p.log2()
            })
            .sum(),
        None => 0.0,
    }
}

/// [`entropy_bits`] divided by its maximum log2(n): 1.0 means uniform. 0 for fewer than 2 units.
pub fn entropy_norm(loads: &[f64]) -> f64 {
    if loads.len() < 2 {
        return 0.0;
    }
    entropy_bits(loads) / (loads.len() as f64).log2()
}

/// The smallest number of units that together carry at least `share` (0..=1) of the total load,
/// taking the heaviest first. 0 when there is no load.
pub fn units_for_share(loads: &[f64], share: f64) -> usize {
    let Some((total, _)) = total_and_mean(loads) else {
        return 0;
    };
    let mut sorted = loads.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let target = share * total;
    let mut carried = 0.0;
    for (count, load) in sorted.iter().enumerate() {
        carried += load;
        if carried >= target {
            return count + 1;
        }
    }
    sorted.len()
}

/// Number of units with no load at all.
pub fn dead_units(loads: &[f64]) -> usize {
    loads.iter().filter(|&&x| x == 0.0).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOADS: [f64; 4] = [4.0, 2.0, 1.0, 1.0];

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn max_mean_divides_the_peak_by_the_mean_over_all_units() {
        // total 8, mean 2, max 4.
        assert!(close(max_mean(&LOADS), 2.0));
        // A dead unit still counts in the mean: mean 8 / 5 = 1.6, 4 / 1.6 = 2.5.
        assert!(close(max_mean(&[4.0, 2.0, 1.0, 1.0, 0.0]), 2.5));
    }

    #[test]
    fn cv_is_population_std_over_mean() {
        // deviations from mean 2: 2, 0, -1, -1; squares 4 + 0 + 1 + 1 = 6; variance 6 / 4 = 1.5.
        assert!(close(cv(&LOADS), 1.5f64.sqrt() / 2.0));
        assert!(close(cv(&LOADS), 0.612_372_435_695_794_5));
    }

    #[test]
    fn gini_matches_the_hand_derivation() {
        // Sorted ascending: 1, 1, 2, 4; sum(i * x_i) = 1*1 + 2*1 + 3*2 + 4*4 = 25; n = 4, total 8.
        // G = 2 * 25 / (4 * 8) - 5 / 4 = 1.5625 - 1.25 = 0.3125.
        // Cross-check with the mean absolute difference: ordered pairs |xi - xj| sum to
        // 2 * (0 + 1 + 3 + 1 + 3 + 2) = 20, and 20 / (2 * n^2 * mean) = 20 / 64 = 0.3125.
        assert!(close(gini(&LOADS), 0.3125));
        // Order of the input does not matter.
        assert!(close(gini(&[1.0, 4.0, 1.0, 2.0]), 0.3125));
        // All on one of four units: (n - 1) / n.
        assert!(close(gini(&[0.0, 0.0, 9.0, 0.0]), 0.75));
        assert!(close(gini(&[3.0, 3.0, 3.0]), 0.0));
    }

    #[test]
    fn entropy_is_in_bits_and_normalised_by_log2_n() {
        // p = 1/2, 1/4, 1/8, 1/8: H = 1/2 * 1 + 1/4 * 2 + 2 * (1/8 * 3) = 1.75 bits; log2 4 = 2.
        assert!(close(entropy_bits(&LOADS), 1.75));
        assert!(close(entropy_norm(&LOADS), 0.875));
        assert!(close(entropy_norm(&[5.0; 8]), 1.0));
        // Dead units contribute nothing to the entropy but count in the maximum.
        assert!(close(entropy_bits(&[1.0, 1.0, 0.0, 0.0]), 1.0));
        assert!(close(entropy_norm(&[1.0, 1.0, 0.0, 0.0]), 0.5));
    }

    #[test]
    fn half_load_takes_the_heaviest_first() {
        assert_eq!(units_for_share(&LOADS, 0.5), 1); // 4 of 8
        assert_eq!(units_for_share(&LOADS, 0.6), 2); // 4 + 2 = 6 >= 4.8
        assert_eq!(units_for_share(&[1.0, 1.0, 1.0, 1.0], 0.5), 2);
        assert_eq!(units_for_share(&[1.0, 1.0, 1.0], 0.5), 2); // 1 < 1.5 <= 2
        assert_eq!(units_for_share(&LOADS, 1.0), 4);
    }

    #[test]
    fn dead_units_are_counted() {
        assert_eq!(dead_units(&[0.0, 3.0, 0.0]), 2);
        assert_eq!(dead_units(&LOADS), 0);
    }

    #[test]
    fn no_load_means_no_imbalance() {
        for loads in [&[][..], &[0.0, 0.0][..]] {
            assert_eq!(max_mean(loads), 1.0);
            assert_eq!(cv(loads), 0.0);
            assert_eq!(gini(loads), 0.0);
            assert_eq!(entropy_bits(loads), 0.0);
            assert_eq!(units_for_share(loads, 0.5), 0);
        }
    }
}
