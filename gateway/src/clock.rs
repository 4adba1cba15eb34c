//! The wall clock, for stored timestamps, digest nonces and API figures. Protocol cores take time
//! as an input; this is where the gateway reads it.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The time an input is handled at, on both clocks: call control takes it as an input and reads
/// no clock itself, so its tests run in virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// For timers and deadlines.
    pub at: Instant,
    /// For what is stored and shown (call records, API figures).
    pub unix_ms: i64,
}

impl Now {
    /// Reads both clocks: only the loops around the protocol cores do (`clippy.toml`).
    #[allow(clippy::disallowed_methods)]
    pub fn read() -> Now {
        Now { at: Instant::now(), unix_ms: unix_ms() }
    }

    /// `d` later on both clocks.
    pub fn after(self, d: std::time::Duration) -> Now {
        Now { at: self.at + d, unix_ms: self.unix_ms.saturating_add(d.as_millis() as i64) }
    }
}

/// Milliseconds since the Unix epoch.
#[allow(clippy::disallowed_methods)]
pub fn unix_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// `at` as Unix milliseconds, given the present on both clocks.
pub fn instant_to_unix_ms(at: Instant, now: Now) -> i64 {
    if at >= now.at {
        now.unix_ms.saturating_add((at - now.at).as_millis() as i64)
    } else {
        now.unix_ms.saturating_sub((now.at - at).as_millis() as i64)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn instants_become_unix_milliseconds_from_the_given_present() {
        #[allow(clippy::disallowed_methods)] // the origin of virtual time
        let now = Now { at: Instant::now(), unix_ms: 1_800_000_000_000 };
        assert_eq!(instant_to_unix_ms(now.at, now), now.unix_ms);
        assert_eq!(instant_to_unix_ms(now.at + Duration::from_secs(90), now), now.unix_ms + 90_000);
        let later = now.after(Duration::from_millis(2500));
        assert_eq!(later.unix_ms, now.unix_ms + 2500);
        assert_eq!(instant_to_unix_ms(now.at, later), now.unix_ms, "an instant before the present");
    }
}
