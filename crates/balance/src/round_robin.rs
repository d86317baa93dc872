//! Round robin: the n-th pick goes to endpoint `n mod len`.

/// The index the `ticket`-th pick starts at, among `len` endpoints (`len` > 0).
pub fn start(ticket: usize, len: usize) -> usize {
    ticket % len
}

/// The slot, of `len`, that the `ticket`-th pick takes among those for which `ok` holds:
/// slot `ticket mod len` if it is ok; else the ok slots share its turns, round
/// `ticket / len` taking the next of them. Taking the next ok slot after it instead would
/// hand every turn of a slot out of use (an ejected endpoint) to the one after it, which
/// would get twice its share. `None` when no slot is ok.
pub fn turn(ticket: usize, len: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
    if len == 0 {
        return None;
    }
    let own = ticket % len;
    if ok(own) {
        return Some(own);
    }
    let usable = (0..len).filter(|&i| ok(i)).count();
    if usable == 0 {
        return None;
    }
    let k = (ticket / len) % usable;
    // `ok` may change between the two passes (an ejection ends): any ok slot then
    (0..len)
        .filter(|&i| ok(i))
        .nth(k)
        .or_else(|| (0..len).find(|&i| ok(i)))
}

/// Visits `len` indices starting at `start`, wrapping around.
pub fn from(start: usize, len: usize) -> impl Iterator<Item = usize> {
    (0..len).map(move |i| (start + i) % len)
}

#[cfg(all(test, not(loom)))]
mod tests {
    /// With one slot out of use, the others share its turns evenly, whatever the number
    /// of slots.
    #[test]
    fn a_slot_out_of_use_shares_its_turns_evenly() {
        for len in 2..9 {
            let mut taken = vec![0; len];
            for ticket in 0..len * (len - 1) * 10 {
                taken[super::turn(ticket, len, |i| i != 0).unwrap()] += 1;
            }
            assert_eq!(taken[0], 0);
            assert!(
                taken[1..].iter().all(|t| *t == taken[1]),
                "{len}: {taken:?}"
            );
        }
        assert_eq!(super::turn(5, 3, |_| false), None);
        assert_eq!(super::turn(5, 0, |_| true), None);
    }

    #[test]
    fn wraps() {
        assert_eq!(
            super::from(super::start(7, 3), 3).collect::<Vec<_>>(),
            vec![1, 2, 0]
        );
    }
}
