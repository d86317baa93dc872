//! [`Divisor`]: division by a number fixed at build time, without a division instruction.

/// Divides by a fixed `u64` with a multiplication and at most two corrections: a 64-bit
/// division takes tens of cycles, and some per-call paths (a retry budget's epoch) divide
/// a clock reading by a fixed width on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Divisor {
    d: u64,
    /// `floor((2^64 - 1) / d)`: the quotient estimate is at most 2 below the true one.
    m: u64,
}

impl Divisor {
    /// Dividing by `d` (0 is taken as 1).
    pub fn new(d: u64) -> Self {
        let d = d.max(1);
        Divisor { d, m: u64::MAX / d }
    }

    /// The divisor.
    #[inline]
    pub fn get(self) -> u64 {
        self.d
    }

    /// `n / d`, rounded down.
    #[inline]
    pub fn divide(self, n: u64) -> u64 {
        let mut q = ((u128::from(n) * u128::from(self.m)) >> 64) as u64;
        let mut r = n - q * self.d;
        while r >= self.d {
            q += 1;
            r -= self.d;
        }
        q
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn it_divides_exactly_at_the_edges_and_at_random() {
        // Numbers of every magnitude: a hash of a counter, shifted right by its low bits.
        let random = |i: u64| {
            let h = crate::internal::mix64(i);
            h >> (h % 64)
        };
        let divisors = [
            1,
            2,
            3,
            7,
            10,
            1_000_000,
            100_000_000,
            u64::MAX / 3,
            u64::MAX,
        ];
        for d in divisors.into_iter().chain((0..200).map(random)) {
            let div = Divisor::new(d);
            let d = d.max(1);
            let edges = [0, 1, d - 1, d, d.saturating_add(1), u64::MAX - 1, u64::MAX];
            for n in edges
                .into_iter()
                .chain((1_000..1_200).map(|i| random(i ^ d)))
            {
                assert_eq!(div.divide(n), n / d, "{n} / {d}");
            }
        }
        assert_eq!(Divisor::new(0).divide(5), 5, "0 is taken as 1");
    }
}
