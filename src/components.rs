//! Where the facade meets the component crates: their error types and constructors.
//!
//! Everything that depends on a component's API sits here, so the rest of the facade is
//! written against plain data.

use std::error::Error as StdError;
use std::time::Duration;

use crate::ErrorKind;

/// Recognises a component's rejection.
pub(crate) fn classify_error(
    _e: &(dyn StdError + 'static),
) -> Option<(ErrorKind, Option<Duration>)> {
    None
}
