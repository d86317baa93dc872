//! Rate limiting for tower (work in progress).
