//! Config files and hot reload: every stage reports a bad value the same way, errors stay
//! small whatever the input, the reload rules (same policies, same stage tables) hold, a
//! refused reload changes nothing (a property test over random reload sequences), and
//! reloads in a storm under load lose no request.
//!
//! One test binary (one link) with a module per concern.

mod errors;
mod reload_all_or_nothing;
mod reload_rules;
mod reload_storm;
