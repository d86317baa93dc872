//! Which deadline a call runs under: a pure function of the policy's timeout, the
//! request's own deadline and now.

use std::time::Duration;

use tokio::time::Instant;
use tower_prism_core::RequestDeadline;

use crate::error::ExpiryReason;

/// The deadline a call runs under, and what it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chosen {
    pub(crate) deadline: RequestDeadline,
    pub(crate) reason: ExpiryReason,
    /// Time left at `now`; zero when the deadline has passed already.
    pub(crate) allows: Duration,
}

/// The earlier of the policy's deadline (`policy` from `now`) and the request's; the
/// policy's on a tie. `None` when there is neither: the call runs without a timer.
#[inline]
pub(crate) fn choose(
    policy: Option<Duration>,
    request: Option<RequestDeadline>,
    now: Instant,
) -> Option<Chosen> {
    // A timeout too large to add to now is past any request's life: no policy deadline.
    let policy = policy.and_then(|t| Some((RequestDeadline::at(now.checked_add(t)?), t)));
    match (policy, request) {
        (None, None) => None,
        (Some((p, _)), Some(r)) if r < p => Some(by_request(r, now)),
        // The policy's timeout is never zero, so its deadline has not passed.
        (Some((deadline, allows)), _) => Some(Chosen {
            deadline,
            reason: ExpiryReason::Policy,
            allows,
        }),
        (None, Some(r)) => Some(by_request(r, now)),
    }
}

#[inline]
fn by_request(deadline: RequestDeadline, now: Instant) -> Chosen {
    Chosen {
        deadline,
        reason: ExpiryReason::Request,
        allows: deadline.instant().saturating_duration_since(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn the_earlier_wins_and_the_policy_on_a_tie() {
        let now = Instant::now();
        let at = |ms: u32| RequestDeadline::at(now + MS * ms);
        assert_eq!(choose(None, None, now), None);

        let c = choose(Some(MS * 100), None, now).unwrap();
        assert_eq!(
            (c.deadline, c.reason, c.allows),
            (at(100), ExpiryReason::Policy, MS * 100)
        );

        let c = choose(Some(MS * 100), Some(at(40)), now).unwrap();
        assert_eq!(
            (c.deadline, c.reason, c.allows),
            (at(40), ExpiryReason::Request, MS * 40)
        );

        let c = choose(Some(MS * 100), Some(at(400)), now).unwrap();
        assert_eq!(c.reason, ExpiryReason::Policy);

        let c = choose(Some(MS * 100), Some(at(100)), now).unwrap();
        assert_eq!(c.reason, ExpiryReason::Policy);

        let c = choose(None, Some(at(7)), now).unwrap();
        assert_eq!((c.reason, c.allows), (ExpiryReason::Request, MS * 7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_passed_deadline_allows_nothing() {
        let past = RequestDeadline::at(Instant::now());
        tokio::time::advance(MS * 5).await;
        let c = choose(Some(MS * 100), Some(past), Instant::now()).unwrap();
        assert_eq!(
            (c.reason, c.allows),
            (ExpiryReason::Request, Duration::ZERO)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unaddable_timeout_is_no_deadline() {
        assert_eq!(choose(Some(Duration::MAX), None, Instant::now()), None);
    }
}
