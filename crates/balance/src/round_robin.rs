//! Round robin: the n-th pick goes to endpoint `n mod len`.

/// The index the `ticket`-th pick starts at, among `len` endpoints (`len` > 0).
pub fn start(ticket: usize, len: usize) -> usize {
    ticket % len
}

/// Visits `len` indices starting at `start`, wrapping around.
pub fn from(start: usize, len: usize) -> impl Iterator<Item = usize> {
    (0..len).map(move |i| (start + i) % len)
}

#[cfg(all(test, not(loom)))]
mod tests {
    #[test]
    fn wraps() {
        assert_eq!(
            super::from(super::start(7, 3), 3).collect::<Vec<_>>(),
            vec![1, 2, 0]
        );
    }
}
