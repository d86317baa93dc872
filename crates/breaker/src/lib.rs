//! Circuit breaker for tower (work in progress).
