//! The Pareto front of points on two smaller-is-better measures.

/// Indices of the points on the Pareto front of `points` (both coordinates smaller is better):
/// those no other point matches or beats on both and beats on one. Sorted by x, then y, then
/// index; points with a NaN coordinate are never on it.
pub fn front(points: &[(f64, f64)]) -> Vec<usize> {
    let dominates = |a: (f64, f64), b: (f64, f64)| a.0 <= b.0 && a.1 <= b.1 && a != b;
    let mut on: Vec<usize> = (0..points.len())
        .filter(|&i| {
            let p = points[i];
            !p.0.is_nan() && !p.1.is_nan() && !points.iter().any(|&q| dominates(q, p))
        })
        .collect();
    on.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[a].1.total_cmp(&points[b].1))
            .then(a.cmp(&b))
    });
    on
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_is_the_hand_picked_rows() {
        // (cost, latency): 0 and 3 and 4 trade off; 1 is beaten by 0 on both; 2 by 3 on cost at
        // equal latency; 5 ties 4 exactly (neither beats the other); 6 has no cost.
        let points = [
            (1.0, 9.0),
            (2.0, 9.5),
            (3.5, 4.0),
            (3.0, 4.0),
            (5.0, 1.0),
            (5.0, 1.0),
            (f64::NAN, 0.5),
        ];
        assert_eq!(front(&points), [0, 3, 4, 5]);
        assert_eq!(front(&[]), Vec::<usize>::new());
    }
}
