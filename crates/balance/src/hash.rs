//! Consistent hashing by rendezvous (highest random weight): a request goes to the endpoint
//! whose `mix(key, endpoint)` score is highest. When an endpoint leaves, only its keys move;
//! when one joins, it takes only the keys it now wins (about `1/n` of them). With weights
//! that differ, the score is `weight / -ln(u)` (`u` the plain score as a fraction), so an
//! endpoint wins a share of the keys in proportion to its weight, as Envoy's ring hash and
//! Maglev give, and still only the keys of an endpoint that leaves move.

use std::hash::{Hash, Hasher};

use tower_prism_core::internal::mix64 as mix;

/// A stable 64-bit hash of any hashable value (FNV-1a fed through a finaliser), for
/// `key_fn`s and endpoint ids. Stable across runs and processes, unlike `RandomState`.
pub fn hash_key<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    value.hash(&mut h);
    mix(h.0)
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The rendezvous score of an endpoint (by its id hash) for a request key.
pub fn score(key: u64, endpoint: u64) -> u64 {
    mix(key ^ mix(endpoint))
}

/// The weighted rendezvous score: `weight / -ln(u)`, `u` in (0, 1) from [`score`]. For
/// equal weights it orders endpoints as [`score`] does.
pub fn weighted_score(key: u64, endpoint: u64, weight: u32) -> f64 {
    // the top 53 bits, centred in their step, as a fraction strictly inside (0, 1)
    let u = ((score(key, endpoint) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -u.ln()
}

/// [`pick`] on the endpoints' weights (id hash and weight per endpoint).
pub fn pick_weighted(
    key: u64,
    endpoints: impl Iterator<Item = (u64, u32)>,
    eligible: impl FnMut(usize) -> bool,
) -> Option<usize> {
    let scores = endpoints.map(|(id, weight)| weighted_score(key, id, weight));
    highest(scores, eligible)
}

/// The index of the highest-scoring endpoint among `endpoints` (id hashes) for which
/// `eligible` holds, or `None`.
pub fn pick(
    key: u64,
    endpoints: impl Iterator<Item = u64>,
    eligible: impl FnMut(usize) -> bool,
) -> Option<usize> {
    highest(endpoints.map(|id| score(key, id)), eligible)
}

/// The index of the highest score for which `eligible` holds; `eligible` is asked only of
/// a score that would win, so most endpoints are never checked.
fn highest<T: PartialOrd>(
    scores: impl Iterator<Item = T>,
    mut eligible: impl FnMut(usize) -> bool,
) -> Option<usize> {
    let mut best: Option<(T, usize)> = None;
    for (i, s) in scores.enumerate() {
        if best.as_ref().is_none_or(|(b, _)| s > *b) && eligible(i) {
            best = Some((s, i));
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn owner(key: u64, ids: &[u64]) -> u64 {
        ids[pick(key, ids.iter().copied(), |_| true).unwrap()]
    }

    #[test]
    fn minimal_movement_on_join_and_leave() {
        let ids: Vec<u64> = (0..10)
            .map(|i| hash_key(&format!("10.0.0.{i}:80")))
            .collect();
        let keys: Vec<u64> = (0..20_000u64).map(|k| hash_key(&k)).collect();
        let before: Vec<u64> = keys.iter().map(|k| owner(*k, &ids)).collect();
        // balanced: each of 10 endpoints owns about 10%
        for id in &ids {
            let n = before.iter().filter(|o| *o == id).count();
            assert!((1600..2400).contains(&n), "{n}");
        }
        // one leaves: only its keys move
        let gone = ids[3];
        let fewer: Vec<u64> = ids.iter().copied().filter(|i| *i != gone).collect();
        for (k, was) in keys.iter().zip(&before) {
            let now = owner(*k, &fewer);
            if *was != gone {
                assert_eq!(now, *was, "a key not on the leaving endpoint moved");
            }
        }
        // one joins: only keys it takes move, about 1/11 of them
        let mut more = ids.clone();
        more.push(hash_key("10.0.0.99:80"));
        let moved = keys
            .iter()
            .zip(&before)
            .filter(|(k, was)| owner(**k, &more) != **was)
            .inspect(|(k, _)| assert_eq!(owner(**k, &more), *more.last().unwrap()))
            .count();
        assert!((1400..2300).contains(&moved), "{moved}");
    }

    #[test]
    fn weights_share_the_keys_and_equal_weights_pick_as_unweighted() {
        let ids: Vec<u64> = (0..3).map(|i| hash_key(&i)).collect();
        let keys: Vec<u64> = (0..30_000u64).map(|k| hash_key(&k)).collect();
        let weights = [1u32, 2, 3];
        let mut won = [0usize; 3];
        for k in &keys {
            let weighted = ids.iter().copied().zip(weights);
            won[pick_weighted(*k, weighted, |_| true).unwrap()] += 1;
            let equal = ids.iter().map(|id| (*id, 7));
            assert_eq!(
                pick_weighted(*k, equal, |_| true),
                pick(*k, ids.iter().copied(), |_| true)
            );
        }
        // 1/6, 2/6, 3/6 of 30,000
        for (n, expected) in won.iter().zip([5_000, 10_000, 15_000]) {
            assert!(n.abs_diff(expected) < 600, "{won:?}");
        }
    }

    #[test]
    fn ineligible_endpoints_pass_to_the_runner_up() {
        let ids = [1u64, 2, 3];
        let first = pick(42, ids.iter().copied(), |_| true).unwrap();
        let second = pick(42, ids.iter().copied(), |i| i != first).unwrap();
        assert_ne!(first, second);
        assert_eq!(pick(42, ids.iter().copied(), |_| false), None);
        assert_eq!(hash_key("a"), hash_key("a"));
    }
}
