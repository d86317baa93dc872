//! Smooth weighted round robin (nginx's algorithm), precomputed into a schedule.
//!
//! Each round every endpoint's current weight grows by its weight; the endpoint with the largest
//! current weight is picked and loses the total. Over `sum(weights)` picks each endpoint is chosen
//! exactly `weight` times, interleaved rather than in bursts. The schedule is computed when the
//! endpoint set changes; a pick is then one atomic ticket and one array read.

/// The largest schedule built; weights are scaled down (keeping every weight at least 1) beyond it.
pub const MAX_SCHEDULE: usize = 65_536;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The smooth weighted round robin order of `weights` (endpoints with weight 0 never appear).
pub fn schedule(weights: &[u32]) -> Vec<u32> {
    let g = weights
        .iter()
        .filter(|w| **w > 0)
        .fold(0u64, |g, w| gcd(g, u64::from(*w)));
    if g == 0 {
        return Vec::new();
    }
    if weights.iter().all(|w| u64::from(*w) == g) {
        // equal weights: the smooth order is each endpoint in turn, and building it this way
        // keeps an endpoint change linear (the loop below is endpoints x total weight)
        return (0..weights.len() as u32).collect();
    }
    let mut w: Vec<u64> = weights.iter().map(|x| u64::from(*x) / g).collect();
    let mut total: u64 = w.iter().sum();
    if total > MAX_SCHEDULE as u64 {
        let scale = total as f64 / MAX_SCHEDULE as f64;
        for x in w.iter_mut().filter(|x| **x > 0) {
            *x = ((*x as f64 / scale) as u64).max(1);
        }
        total = w.iter().sum();
    }
    let mut current = vec![0i64; w.len()];
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = usize::MAX;
        for (i, weight) in w.iter().enumerate() {
            if *weight == 0 {
                continue;
            }
            current[i] += *weight as i64;
            if best == usize::MAX || current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total as i64;
        order.push(best as u32);
    }
    order
}

/// The endpoint the `ticket`-th pick takes in `schedule`, among those for which `ok` holds:
/// the slot's own, or, when it is out of use, the usable slots' turn in rotation (see
/// [`round_robin::turn`](crate::round_robin::turn)), so the weights hold among the
/// endpoints in use.
pub fn first(schedule: &[u32], ticket: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
    crate::round_robin::turn(ticket, schedule.len(), |slot| ok(schedule[slot] as usize))
        .map(|slot| schedule[slot] as usize)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The picks' ticket wraps around `usize` (after 2^32 picks on a 32-bit target): a
    /// ticket at its end overflowed when the first choices were skipped.
    #[test]
    fn a_ticket_at_the_end_of_its_range_wraps_instead_of_overflowing() {
        let s = schedule(&[2, 1]);
        assert_eq!(first(&s, usize::MAX, |i| i == 1), Some(1));
        assert_eq!(first(&[], usize::MAX, |_| true), None);
    }

    #[test]
    fn nginx_example_is_smooth() {
        // the classic a=5, b=1, c=1 example: a b a a c a a? nginx gives a a b a c a a
        let s = schedule(&[5, 1, 1]);
        assert_eq!(s, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn each_endpoint_gets_its_share(weights in proptest::collection::vec(0u32..50, 1..8)) {
            let s = schedule(&weights);
            let g = weights.iter().filter(|w| **w > 0).fold(0u64, |g, w| gcd(g, u64::from(*w)));
            for (i, w) in weights.iter().enumerate() {
                let n = s.iter().filter(|x| **x as usize == i).count() as u64;
                prop_assert_eq!(n, u64::from(*w).checked_div(g).unwrap_or(0));
            }
        }
    }

    #[test]
    fn equal_weights_take_turns_in_linear_time() {
        assert_eq!(schedule(&[7, 7, 7]), vec![0, 1, 2]);
        // 10,000 endpoints: the general loop would take 10^8 steps on every endpoint change
        let s = schedule(&[1; 10_000]);
        assert!(s.iter().copied().eq(0..10_000));
    }

    #[test]
    fn first_follows_the_schedule_past_skipped_endpoints() {
        let s = schedule(&[5, 1, 1]); // 0 0 1 0 2 0 0
        assert_eq!(first(&s, 0, |_| true), Some(0));
        // endpoint 0 out of use: its turns go to the others in rotation, round by round
        assert_eq!(first(&s, 0, |i| i != 0), Some(1));
        assert_eq!(first(&s, 3, |i| i != 0), Some(1));
        assert_eq!(first(&s, 7 + 3, |i| i != 0), Some(2));
        let mut taken = [0; 3];
        for ticket in 0..s.len() * 2 {
            taken[first(&s, ticket, |i| i != 0).unwrap()] += 1;
        }
        assert_eq!(taken, [0, 7, 7], "equal weights, equal shares");
        assert_eq!(first(&s, 3, |_| false), None);
        assert_eq!(first(&[], 3, |_| true), None);
    }

    #[test]
    fn huge_weights_are_scaled() {
        let s = schedule(&[1_000_000, 999_999, 1]);
        assert!(s.len() <= MAX_SCHEDULE + 3);
        assert!(
            s.contains(&2),
            "every positive weight keeps at least one slot"
        );
    }
}
