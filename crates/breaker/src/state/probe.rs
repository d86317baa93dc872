//! The half-open word: the probes of the current round, counted in one `u64` so admitting,
//! releasing and recording a probe is one compare-and-swap.
//!
//! Layout: generation tag (24 bits) << 40 | admitted << 30 | successes << 20 | failures << 10
//! | slow.

const HO_BITS: u32 = 10;
const HO_MASK: u64 = (1 << HO_BITS) - 1;
const HO_TAG_SHIFT: u32 = 40;
const HO_TAG_MASK: u64 = (1 << 24) - 1;

/// One half-open round's probe counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probes {
    pub(crate) tag: u64,
    pub(crate) admitted: u64,
    pub(crate) successes: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Probes {
    /// A round with no probe yet, for the state of `generation`.
    pub(crate) fn fresh(generation: u64) -> Self {
        Probes {
            tag: tag_of(generation),
            admitted: 0,
            successes: 0,
            failures: 0,
            slow: 0,
        }
    }

    pub(crate) fn unpack(w: u64) -> Self {
        Probes {
            tag: w >> HO_TAG_SHIFT,
            admitted: (w >> (3 * HO_BITS)) & HO_MASK,
            successes: (w >> (2 * HO_BITS)) & HO_MASK,
            failures: (w >> HO_BITS) & HO_MASK,
            slow: w & HO_MASK,
        }
    }

    pub(crate) fn pack(self) -> u64 {
        (self.tag << HO_TAG_SHIFT)
            | (self.admitted << (3 * HO_BITS))
            | (self.successes << (2 * HO_BITS))
            | (self.failures << HO_BITS)
            | self.slow
    }

    /// Probes finished (recorded) in this round.
    pub(crate) fn completed(self) -> u64 {
        self.successes + self.failures
    }

    /// Whether this round belongs to the state of `generation`.
    pub(crate) fn is_of(self, generation: u64) -> bool {
        self.tag == tag_of(generation)
    }
}

fn tag_of(generation: u64) -> u64 {
    generation & HO_TAG_MASK
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_at_the_field_limits() {
        let p = Probes {
            tag: HO_TAG_MASK,
            admitted: 1000,
            successes: 999,
            failures: 1,
            slow: 1000,
        };
        assert_eq!(Probes::unpack(p.pack()), p);
        assert_eq!(p.completed(), 1000);
        assert!(Probes::fresh(HO_TAG_MASK + 1).is_of(0));
    }
}
