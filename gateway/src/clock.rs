//! The wall clock, for stored timestamps, digest nonces and API figures. Protocol cores take time
//! as an input; this is where the gateway reads it.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// `at` as Unix milliseconds, given that `now` is the present instant.
pub fn instant_to_unix_ms(at: Instant, now: Instant) -> i64 {
    let wall = unix_ms();
    if at >= now {
        wall + (at - now).as_millis() as i64
    } else {
        wall - (now - at).as_millis() as i64
    }
}
