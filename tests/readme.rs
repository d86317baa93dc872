//! The README's config example is a real, valid config.

use tower_prism::{Policies, ReliabilityConfig};

#[test]
fn the_readme_config_example_parses_and_builds() {
    let readme = include_str!("../README.md");
    let start = readme.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("the block ends");
    let config = ReliabilityConfig::from_toml(&readme[start..end]).unwrap();
    let policy = config.get("payments").unwrap();
    assert!(policy.rate_limit.is_some() && policy.circuit_breaker.is_some());
    assert!(policy.retry.is_some() && policy.balance.is_some());
    Policies::new(&config).unwrap();
}
