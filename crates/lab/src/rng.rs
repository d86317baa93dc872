//! The distributions the lab draws from, over the workspace's seeded generator
//! (`tower_prism_testkit::Rng`, SplitMix64): a seed gives the same run on every platform
//! and every version of the lab's dependencies.

pub use tower_prism_testkit::Rng;

/// Draws from the distributions the lab needs.
pub trait Draw {
    /// A uniform draw in [0, 1).
    fn unit(&mut self) -> f64;

    /// An exponential draw with the given mean (inter-arrival times of an open-loop load).
    fn exponential(&mut self, mean: f64) -> f64 {
        // 1 - unit() is in (0, 1], so the log is finite.
        -mean * (1.0 - self.unit()).ln()
    }

    /// A standard normal draw (Box-Muller; the second value is dropped for simplicity).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A lognormal draw with the given mean and shape `sigma` (the log's standard deviation).
    fn lognormal(&mut self, mean: f64, sigma: f64) -> f64 {
        // mean = exp(mu + sigma^2 / 2)
        let mu = mean.ln() - sigma * sigma / 2.0;
        (mu + sigma * self.normal()).exp()
    }
}

impl Draw for Rng {
    fn unit(&mut self) -> f64 {
        Rng::unit(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lognormal_mean_is_close_to_the_asked_mean() {
        let mut rng = Rng::new(7);
        let n = 200_000;
        let sum: f64 = (0..n).map(|_| rng.lognormal(0.03, 0.5)).sum();
        let mean = sum / n as f64;
        assert!((mean - 0.03).abs() < 0.0005, "mean {mean}");
    }

    #[test]
    fn same_seed_same_sequence() {
        let a: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let mut r = Rng::new(42);
        assert!(a.iter().all(|&x| x == r.next_u64()));
    }
}
