//! Retries for tower (work in progress).
