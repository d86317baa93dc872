//! Load balancing for tower (work in progress).
