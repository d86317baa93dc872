//! Least requests over endpoints whose weights differ: Envoy's weighted least request.
//!
//! With equal weights the balancer takes the endpoint with the fewest requests in flight.
//! With weights that differ that would ignore them, so, as Envoy does, each endpoint's
//! weight is scaled down by its requests in flight, `weight / (in_flight + 1)^bias`, and
//! the endpoints share the picks in proportion to these effective weights. Envoy walks an
//! EDF schedule of them, which it updates on every pick; here a pick draws among them at
//! random (the same shares), so no shared schedule is updated and no lock is taken.

/// An endpoint's effective weight: `weight / (in_flight + 1)^bias`.
#[inline]
pub fn effective_weight(weight: u32, in_flight: u64, bias: f64) -> f64 {
    let load = in_flight as f64 + 1.0;
    let weight = f64::from(weight);
    // the default bias spares every pick a `powf` per endpoint
    if bias == 1.0 {
        weight / load
    } else {
        weight / load.powf(bias)
    }
}

/// One of the endpoints below `len` for which `ok` holds, drawn with `random` in
/// proportion to its `weight` (an effective weight); `None` if none is ok. Two passes over
/// the endpoints, no allocation.
pub fn pick(
    random: u64,
    len: usize,
    ok: impl Fn(usize) -> bool,
    weight: impl Fn(usize) -> f64,
) -> Option<usize> {
    let total: f64 = (0..len).filter(|&i| ok(i)).map(&weight).sum();
    // 53 random bits: uniform in [0, 1)
    let target = (random >> 11) as f64 / (1u64 << 53) as f64 * total;
    let mut sum = 0.0;
    let mut last = None;
    for i in (0..len).filter(|&i| ok(i)) {
        sum += weight(i);
        if target < sum {
            return Some(i);
        }
        last = Some(i);
    }
    // rounding, a weight that changed between the passes (calls ended), or every weight
    // 0 (an in-flight count beyond a large bias): the last endpoint ok
    last
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use tower_prism_core::internal::mix64;

    /// How many of `picks` draws each endpoint takes.
    fn shares(picks: u64, ok: impl Fn(usize) -> bool, weights: &[f64]) -> Vec<u64> {
        let mut taken = vec![0; weights.len()];
        for r in 0..picks {
            let i = pick(mix64(r), weights.len(), &ok, |i| weights[i]).unwrap();
            taken[i] += 1;
        }
        taken
    }

    #[test]
    fn idle_endpoints_share_the_picks_by_weight() {
        let weights: Vec<f64> = [5, 3, 2]
            .iter()
            .map(|w| effective_weight(*w, 0, 1.0))
            .collect();
        let taken = shares(100_000, |_| true, &weights);
        for (t, want) in taken.iter().zip([50_000, 30_000, 20_000]) {
            assert!(t.abs_diff(want) < 1_000, "{taken:?}");
        }
    }

    #[test]
    fn requests_in_flight_scale_the_weights_down() {
        // weight 4 with 3 in flight and weight 1 idle: 4/4 against 1/1, an even split
        let weights = [effective_weight(4, 3, 1.0), effective_weight(1, 0, 1.0)];
        let taken = shares(100_000, |_| true, &weights);
        assert!(taken[0].abs_diff(50_000) < 1_000, "{taken:?}");
        // a bias of 2: 4/16 against 1, a fifth
        let weights = [effective_weight(4, 3, 2.0), effective_weight(1, 0, 2.0)];
        let taken = shares(100_000, |_| true, &weights);
        assert!(taken[0].abs_diff(20_000) < 1_000, "{taken:?}");
        // a bias of 0: the weights alone
        assert_eq!(effective_weight(4, 3, 0.0), 4.0);
    }

    #[test]
    fn endpoints_not_ok_are_skipped() {
        let weights = [5.0, 3.0, 2.0];
        let taken = shares(10_000, |i| i != 0, &weights);
        assert_eq!(taken[0], 0);
        assert!(taken[1].abs_diff(6_000) < 300, "{taken:?}");
        assert_eq!(pick(7, 3, |_| false, |i| weights[i]), None);
        assert_eq!(pick(7, 0, |_| true, |i| weights[i]), None);
        assert_eq!(pick(u64::MAX, 3, |_| true, |_| 0.0), Some(2));
    }
}
