//! Power of two choices: pick two distinct endpoints at random and keep the less loaded.

/// Two distinct indices below `len` (which must be at least 2) from one random number.
pub fn pair(random: u64, len: usize) -> (usize, usize) {
    debug_assert!(len >= 2);
    let len64 = len as u64;
    let a = (random % len64) as usize;
    // the second draw comes from the high bits, over the other len - 1 slots
    let b = ((random >> 32) % (len64 - 1)) as usize;
    let b = if b >= a { b + 1 } else { b };
    (a, b)
}

/// The load used to compare endpoints: latency estimate times (in-flight + 1), so a slow
/// endpoint and a busy endpoint both look expensive.
pub fn load(estimate_ns: f64, in_flight: u64) -> f64 {
    estimate_ns * (in_flight as f64 + 1.0)
}

/// Power of two choices among the endpoints below `len` for which `ok` holds: two of them
/// at random (from one random number), the one with the lower `load`; the only one if one
/// is left, `None` if none. Linear in `len`, for the rare picks that must skip some
/// endpoints (a hedge avoiding the endpoints its call already tried).
pub fn pick_among(
    random: u64,
    len: usize,
    ok: impl Fn(&usize) -> bool,
    load: impl Fn(usize) -> f64,
) -> Option<usize> {
    let nth = |j: usize| (0..len).filter(&ok).nth(j);
    let k = (0..len).filter(&ok).count();
    if k < 2 {
        return nth(0);
    }
    let (a, b) = pair(random, k);
    let (a, b) = (nth(a)?, nth(b)?);
    Some(if load(b) < load(a) { b } else { a })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn pairs_are_distinct_and_in_range(random in any::<u64>(), len in 2usize..1000) {
            let (a, b) = pair(random, len);
            prop_assert!(a < len && b < len && a != b);
        }
    }

    #[test]
    fn pick_among_skips_and_compares() {
        let ok = |i: &usize| *i != 1;
        let load = |i: usize| [5.0, 0.0, 1.0, 9.0][i];
        for r in 0..200u64 {
            let i = pick_among(tower_prism_core::internal::mix64(r), 4, ok, load).unwrap();
            assert_ne!(i, 1);
            assert_ne!(i, 3, "the most loaded never wins a pair");
        }
        assert_eq!(pick_among(7, 4, |i| *i == 3, load), Some(3));
        assert_eq!(pick_among(7, 4, |_| false, load), None);
    }

    #[test]
    fn every_pair_is_reachable() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000u64 {
            seen.insert(pair(tower_prism_core::internal::mix64(i), 4));
        }
        assert_eq!(seen.len(), 12, "all ordered pairs of 4 endpoints");
    }
}
