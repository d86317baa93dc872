//! [`SeqCell`]: a few words that readers load lock-free and consistent (all from one
//! write), and that a rare writer replaces. A sequence lock built only from atomics.
//!
//! A reader loads the sequence, the words, and the sequence again; an odd or changed
//! sequence means a write overlapped, and the reader tries again, a bounded number of
//! times: a call never waits on a writer that was descheduled mid-write, it gets `None`
//! and goes on without a fault.

#[cfg(loom)]
use loom::sync::atomic::fence;
#[cfg(not(loom))]
use std::sync::atomic::fence;
use tower_prism_core::sync::{AtomicU64, Ordering};

/// How many times a reader tries before it gives up on a write in progress. A write is
/// a handful of stores, so a reader that sees one in progress nearly always gets through
/// on its next try.
#[cfg(not(loom))]
const READ_TRIES: u32 = 64;
/// Under loom, few tries keep the model small; every interleaving is explored anyway.
#[cfg(loom)]
const READ_TRIES: u32 = 3;

/// `N` words read and written as one.
#[derive(Debug)]
pub(crate) struct SeqCell<const N: usize> {
    /// Even when no write is in progress; bumped once before and once after a write.
    seq: AtomicU64,
    words: [AtomicU64; N],
}

impl<const N: usize> SeqCell<N> {
    pub(crate) fn new(words: [u64; N]) -> Self {
        SeqCell {
            seq: AtomicU64::new(0),
            words: words.map(AtomicU64::new),
        }
    }

    /// The words of one write, or `None` if writes kept overlapping the read.
    #[inline]
    pub(crate) fn read(&self) -> Option<[u64; N]> {
        for _ in 0..READ_TRIES {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                let words = std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed));
                // Orders the word loads before the second sequence load.
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    return Some(words);
                }
            }
            #[cfg(not(loom))]
            std::hint::spin_loop();
            #[cfg(loom)]
            loom::thread::yield_now();
        }
        None
    }

    /// Replaces the words. Writers must not overlap: the caller holds a lock.
    pub(crate) fn write(&self, words: [u64; N]) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // Orders the odd sequence before the word stores.
        fence(Ordering::Release);
        for (cell, word) in self.words.iter().zip(words) {
            cell.store(word, Ordering::Relaxed);
        }
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn reads_what_was_written() {
        let cell = SeqCell::new([1, 2, 3]);
        assert_eq!(cell.read(), Some([1, 2, 3]));
        cell.write([4, 5, 6]);
        assert_eq!(cell.read(), Some([4, 5, 6]));
    }

    #[test]
    fn a_reader_never_sees_half_of_two_writes() {
        // Every write stores the same value in all words; a torn read would mix two.
        let cell = Arc::new(SeqCell::new([0u64; 8]));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (cell, stop) = (cell.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut v = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    v += 1;
                    cell.write([v; 8]);
                }
            })
        };
        let mut consistent = 0u32;
        for _ in 0..200_000 {
            if let Some(words) = cell.read() {
                assert!(words.iter().all(|w| *w == words[0]), "torn: {words:?}");
                consistent += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert!(consistent > 0);
    }
}

#[cfg(all(loom, test))]
mod loom_tests {
    use super::*;
    use loom::thread;
    use tower_prism_core::sync::Arc;

    /// Every write stores one value in both words: a read gets both from one write, or
    /// nothing, whatever the interleaving.
    #[test]
    fn loom_a_read_is_never_torn() {
        loom::model(|| {
            let cell = Arc::new(SeqCell::new([0u64; 2]));
            let writer = {
                let cell = cell.clone();
                thread::spawn(move || {
                    cell.write([1; 2]);
                    cell.write([2; 2]);
                })
            };
            if let Some([a, b]) = cell.read() {
                assert_eq!(a, b);
            }
            writer.join().unwrap();
            assert_eq!(cell.read(), Some([2, 2]));
        });
    }
}
