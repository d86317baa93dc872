//! The fault stage's error type.

use std::io;

/// The faults the stage injects as errors. Errors of the inner service pass through
/// unchanged (as [`BoxError`](tower_prism_core::BoxError)).
///
/// Both read as retryable failures to
/// [`DefaultClassifier`](tower_prism_core::DefaultClassifier) and
/// [`HttpClassifier`](tower_prism_core::HttpClassifier) (every `Err` is), so the retry
/// stage and the breaker above react to them as to a real upstream's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An injected failure (`error` in the config); the service was not called.
    #[error("injected fault")]
    Injected,
    /// An injected aborted connection (`abort` in the config); the service was not
    /// called. Its source is an [`io::Error`] of kind
    /// [`ConnectionReset`](io::ErrorKind::ConnectionReset), as a client sees when the
    /// peer resets the connection.
    #[error("injected fault: connection aborted")]
    Aborted {
        /// The reset, as an I/O error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// An injected aborted connection.
    pub(crate) fn aborted() -> Self {
        Error::Aborted {
            // From a kind alone: no message, no allocation.
            source: io::Error::from(io::ErrorKind::ConnectionReset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn aborted_is_a_connection_reset() {
        let err = Error::aborted();
        let io = err.source().unwrap().downcast_ref::<io::Error>().unwrap();
        assert_eq!(io.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(err.to_string(), "injected fault: connection aborted");
    }
}
