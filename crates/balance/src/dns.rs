//! Endpoints from DNS: a task resolves a name every interval and applies the differences
//! through the balancer's handle (the mechanism [`Balance::from_discover`](crate::Balance::from_discover)
//! and users' own `add`/`remove` calls use).

mod config;
mod discovery;
mod metrics;
mod plan;
mod refresh;
mod resolve;

pub use config::{DnsConfig, DnsConfigBuilder, MIN_DNS_INTERVAL};
pub use discovery::{DnsDiscovery, DnsHandle, DnsSnapshot};
pub use resolve::{Resolve, TokioResolver};
