//! Responses answered as failures: the statuses a config lists, as a set read with one
//! atomic load per response, and the error an answer is given for such a response.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;
use tower_prism_core::ConfigError;

/// The lowest and highest status `on_status` takes.
const LOWEST: u16 = 100;
const HIGHEST: u16 = 599;
const WORDS: usize = (HIGHEST - LOWEST) as usize / 64 + 1;

/// The statuses answered as failures: one bit per status, and whether any is set (a
/// response's path then costs one relaxed load when the config lists none, two when it
/// does). A reload rewrites the words one by one: a response during it is answered by the
/// old or the new list for its own status.
#[derive(Debug, Default)]
pub(crate) struct StatusSet {
    any: AtomicBool,
    bits: [AtomicU64; WORDS],
}

impl StatusSet {
    /// Checks `statuses` (each 100 to 599), as `on_status` takes them.
    pub(crate) fn check(statuses: &[u16]) -> Result<(), ConfigError> {
        match statuses.iter().find(|s| !(LOWEST..=HIGHEST).contains(*s)) {
            Some(bad) => Err(ConfigError::new(
                "on_status",
                bad,
                "must be an HTTP status, from 100 to 599",
            )),
            None => Ok(()),
        }
    }

    /// Makes the set `statuses` (checked).
    pub(crate) fn store(&self, statuses: &[u16]) {
        let mut bits = [0u64; WORDS];
        for &status in statuses {
            let i = usize::from(status - LOWEST);
            bits[i / 64] |= 1 << (i % 64);
        }
        for (word, value) in self.bits.iter().zip(bits) {
            word.store(value, Ordering::Relaxed);
        }
        self.any.store(!statuses.is_empty(), Ordering::Relaxed);
    }

    /// Whether `status` is in the set.
    #[inline]
    pub(crate) fn contains(&self, status: StatusCode) -> bool {
        if !self.any.load(Ordering::Relaxed) {
            return false;
        }
        let Some(i) = status.as_u16().checked_sub(LOWEST).map(usize::from) else {
            return false;
        };
        self.bits
            .get(i / 64)
            .is_some_and(|word| word.load(Ordering::Relaxed) & (1 << (i % 64)) != 0)
    }
}

/// The error a fallback answers for a response it handles as a failure
/// ([`FallbackConfig::on_status`](super::FallbackConfig::on_status),
/// [`FallbackLayerBuilder::on_response`](super::FallbackLayerBuilder::on_response)): the
/// error inside the [`Error`](crate::Error) ([`get_ref`](crate::Error::get_ref)), of kind
/// [`Inner`](crate::ErrorKind::Inner), that the answer is given. The response itself is dropped.
///
/// ```
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_prism::fallback::{FailedResponse, FallbackConfig, FallbackLayer};
///
/// # tokio_test::block_on(async {
/// let answer = |error: &tower_prism::Error| match error.get_ref().downcast_ref::<FailedResponse>() {
///     Some(_) => "the upstream failed: fallback",
///     None => "the call failed: fallback",
/// };
/// let layer = FallbackLayer::builder(FallbackConfig::default())
///     .answer_with(answer)
///     .on_response(|body: &&str| body.is_empty())
///     .build()?;
/// let upstream = service_fn(|n: u32| async move {
///     Ok::<_, std::convert::Infallible>(if n == 0 { "" } else { "fresh" })
/// });
/// let svc = ServiceBuilder::new().layer(layer).service(upstream);
/// assert_eq!(svc.clone().oneshot(1).await?, "fresh");
/// assert_eq!(svc.oneshot(0).await?, "the upstream failed: fallback");
/// # Ok::<_, tower::BoxError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedResponse {
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
}

impl FailedResponse {
    /// A response handled as a failure; `status` if it has one (an HTTP response), and the
    /// wait its `Retry-After` asked for.
    pub(crate) fn new(status: Option<StatusCode>, retry_after: Option<Duration>) -> Self {
        FailedResponse {
            status,
            retry_after,
        }
    }

    /// The response's status: set for a status the config lists
    /// ([`on_status`](super::FallbackConfig::on_status)), not for a response an
    /// [`on_response`](super::FallbackLayerBuilder::on_response) predicate picked.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// How long the response's `Retry-After` asked callers to wait (a 429 or 503 with
    /// that header): the [`Error`](crate::Error)'s
    /// [`retry_after`](crate::Error::retry_after), so a fallback answering 429 or 503 in
    /// its place passes the upstream's wait on rather than its default of 1 s.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for FailedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "the inner service answered {status}"),
            None => f.write_str("the inner service's answer was handled as a failure"),
        }
    }
}

impl std::error::Error for FailedResponse {}
