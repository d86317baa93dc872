//! Which endpoints to add and remove when an answer comes: a pure function of what the
//! discovery added before, what the balancer holds now and what DNS answered.

use std::collections::BTreeSet;
use std::net::SocketAddr;

/// The changes that make the balancer follow one answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Addresses in the answer that the balancer does not hold.
    pub(crate) add: Vec<SocketAddr>,
    /// Addresses the discovery added that are no longer in the answer.
    pub(crate) remove: Vec<SocketAddr>,
}

/// Plans the changes for `answer` (non-empty: an empty answer keeps the set and never gets
/// here).
///
/// `known` (what this discovery added) is first cut down to what the balancer still holds,
/// so an endpoint removed through the handle is added again if DNS still answers it. An
/// address the balancer already held from elsewhere (added through the handle) is neither
/// replaced nor ever removed by the discovery: it is not in `known`.
pub(crate) fn plan(
    known: &mut BTreeSet<SocketAddr>,
    present: &BTreeSet<SocketAddr>,
    answer: &BTreeSet<SocketAddr>,
) -> Plan {
    known.retain(|a| present.contains(a));
    Plan {
        add: answer.difference(present).copied().collect(),
        remove: known.difference(answer).copied().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u8]) -> BTreeSet<SocketAddr> {
        ids.iter()
            .map(|&i| SocketAddr::from(([10, 0, 0, i], 80)))
            .collect()
    }

    fn addrs(ids: &[u8]) -> Vec<SocketAddr> {
        set(ids).into_iter().collect()
    }

    #[test]
    fn first_answer_adds_everything() {
        let mut known = set(&[]);
        let p = plan(&mut known, &set(&[]), &set(&[1, 2]));
        assert_eq!(p.add, addrs(&[1, 2]));
        assert!(p.remove.is_empty());
    }

    #[test]
    fn follows_a_changed_answer() {
        let mut known = set(&[1, 2]);
        let p = plan(&mut known, &set(&[1, 2]), &set(&[2, 3]));
        assert_eq!(
            p,
            Plan {
                add: addrs(&[3]),
                remove: addrs(&[1])
            }
        );
    }

    #[test]
    fn leaves_endpoints_added_by_hand() {
        // 9 was added through the handle: not replaced when DNS answers it, not removed
        // when DNS stops answering it
        let mut known = set(&[1]);
        let p = plan(&mut known, &set(&[1, 9]), &set(&[1, 9]));
        assert_eq!(p, Plan::default());
        let p = plan(&mut known, &set(&[1, 9]), &set(&[1]));
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn re_adds_what_was_removed_behind_its_back() {
        let mut known = set(&[1, 2]);
        let p = plan(&mut known, &set(&[1]), &set(&[1, 2]));
        assert_eq!(
            p,
            Plan {
                add: addrs(&[2]),
                remove: vec![]
            }
        );
        assert_eq!(known, set(&[1]));
    }
}
