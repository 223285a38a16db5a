//! Rounding up to whole units (nanoseconds, bytes) on the simulator's hot paths.

/// `x` (>= 0) rounded up to a whole number, saturating at `u64::MAX`, without a call to
/// `f64::ceil` (not inlined on baseline x86-64, and this runs at every re-rating and every
/// send of an all-to-all).
pub(super) fn ceil_u64(x: f64) -> u64 {
    let whole = x as u64;
    if (whole as f64) < x {
        whole.saturating_add(1)
    } else {
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up_and_saturates() {
        assert_eq!(ceil_u64(20.0), 20);
        assert_eq!(ceil_u64(20.02), 21);
        assert_eq!(ceil_u64(0.0), 0);
        assert_eq!(ceil_u64(1e300), u64::MAX);
        assert_eq!(ceil_u64(f64::INFINITY), u64::MAX);
    }
}
