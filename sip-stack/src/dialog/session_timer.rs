//! Session timers (RFC 4028): who refreshes the session and when, and when to give up on it.
//!
//! [`negotiate_uas`] reads Session-Expires, Min-SE and `Supported: timer` from an INVITE and
//! decides the interval and the refresher, or asks for a `422` (§9). [`from_response`] reads
//! the outcome from a 2xx on the UAC side (§7.2). [`SessionTimer`] then runs in virtual time:
//! the refresher refreshes at half the interval (§7.4, §10); if no refresh happens, the session
//! ends at the interval minus min(32 s, interval/3) (§10).

use std::time::{Duration, Instant};

use rsip::prelude::*;
use rsip::{Header, Request, Response};

/// Who sends the refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    pub fn token(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// Our limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerPolicy {
    /// The smallest interval accepted (RFC 4028 §4: at least 90 s).
    pub min_se: u32,
    /// The interval asked for when the peer proposes none.
    pub session_expires: u32,
    /// The longest interval granted: a longer request is reduced to it (§9), so a session
    /// nobody refreshes cannot hold its resources for days. The peer's own Min-SE still wins.
    pub max_session_expires: u32,
}

impl Default for SessionTimerPolicy {
    fn default() -> SessionTimerPolicy {
        SessionTimerPolicy { min_se: 90, session_expires: 1800, max_session_expires: 7200 }
    }
}

/// What the UAS does with an INVITE's session timer request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UasDecision {
    /// Answer with `Session-Expires: interval;refresher=…`, plus `Require: timer` when the UAC
    /// supports timers.
    Use { interval: u32, refresher: Refresher, require_timer: bool },
    /// Refuse with `422 Session Interval Too Small` and `Min-SE: min_se`.
    TooSmall { min_se: u32 },
}

impl UasDecision {
    /// The headers to add to the 2xx.
    pub fn response_headers(&self) -> Vec<Header> {
        match *self {
            UasDecision::Use { interval, refresher, require_timer } => {
                let mut headers = vec![Header::Other(
                    "Session-Expires".into(),
                    format!("{interval};refresher={}", refresher.token()),
                )];
                if require_timer {
                    headers.push(Header::Require("timer".into()));
                }
                headers
            }
            UasDecision::TooSmall { min_se } => vec![Header::Other("Min-SE".into(), min_se.to_string())],
        }
    }
}

/// `Session-Expires` (or its compact form `x`): interval and refresher.
fn session_expires(headers: &rsip::Headers) -> Option<(u32, Option<Refresher>)> {
    headers.iter().find_map(|h| match h {
        Header::Other(name, value)
            if name.eq_ignore_ascii_case("Session-Expires") || name.eq_ignore_ascii_case("x") =>
        {
            let mut parts = value.split(';');
            let interval = parts.next()?.trim().parse().ok()?;
            let refresher = parts.find_map(|p| {
                let (k, v) = p.split_once('=')?;
                if !k.trim().eq_ignore_ascii_case("refresher") {
                    return None;
                }
                match v.trim().to_ascii_lowercase().as_str() {
                    "uac" => Some(Refresher::Uac),
                    "uas" => Some(Refresher::Uas),
                    _ => None,
                }
            });
            Some((interval, refresher))
        }
        _ => None,
    })
}

fn min_se(headers: &rsip::Headers) -> Option<u32> {
    headers.iter().find_map(|h| match h {
        Header::Other(name, value) if name.eq_ignore_ascii_case("Min-SE") => value.trim().parse().ok(),
        _ => None,
    })
}

fn supports_timer(headers: &rsip::Headers) -> bool {
    headers.iter().any(|h| match h {
        Header::Supported(s) => s.value().split(',').any(|o| o.trim().eq_ignore_ascii_case("timer")),
        Header::Other(name, value) if name.eq_ignore_ascii_case("k") => {
            value.split(',').any(|o| o.trim().eq_ignore_ascii_case("timer"))
        }
        _ => false,
    })
}

/// RFC 4028 §9: the UAS's decision on an INVITE.
pub fn negotiate_uas(invite: &Request, policy: &SessionTimerPolicy) -> UasDecision {
    let uac_supports = supports_timer(&invite.headers);
    let requested = session_expires(&invite.headers);
    let floor = policy.min_se.max(min_se(&invite.headers).unwrap_or(0));
    let (interval, refresher) = match requested {
        Some((interval, _)) if interval < policy.min_se && uac_supports => {
            return UasDecision::TooSmall { min_se: policy.min_se };
        }
        Some((interval, refresher)) => (interval.min(policy.max_session_expires).max(floor), refresher),
        None => (policy.session_expires.max(floor), None),
    };
    // §9: without a choice in the request, the UAC refreshes if it can, else we do.
    let refresher = refresher.unwrap_or(if uac_supports { Refresher::Uac } else { Refresher::Uas });
    let refresher = if uac_supports { refresher } else { Refresher::Uas };
    UasDecision::Use { interval, refresher, require_timer: uac_supports }
}

/// RFC 4028 §7.2: the interval and refresher a 2xx settled on, if any.
pub fn from_response(response: &Response) -> Option<(u32, Refresher)> {
    let (interval, refresher) = session_expires(&response.headers)?;
    // §7.2: a 2xx without a refresher parameter leaves the refreshing to the UAC.
    Some((interval, refresher.unwrap_or(Refresher::Uac)))
}

/// What a [`SessionTimer`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// Send a refresh (re-INVITE or UPDATE) now.
    Refresh,
    /// No refresh in time: end the session with BYE.
    Expired,
}

/// A running session timer.
#[derive(Debug, Clone)]
pub struct SessionTimer {
    interval: Duration,
    we_refresh: bool,
    last_refresh: Instant,
    refresh_sent: bool,
}

impl SessionTimer {
    pub fn new(now: Instant, interval_secs: u32, we_refresh: bool) -> SessionTimer {
        SessionTimer {
            interval: Duration::from_secs(u64::from(interval_secs)),
            we_refresh,
            last_refresh: now,
            refresh_sent: false,
        }
    }

    /// A refresh succeeded (sent or received), possibly with a new interval or refresher.
    pub fn refreshed(&mut self, now: Instant, interval_secs: u32, we_refresh: bool) {
        *self = SessionTimer::new(now, interval_secs, we_refresh);
    }

    fn refresh_at(&self) -> Instant {
        self.last_refresh + self.interval / 2
    }

    /// §10: interval minus min(32 s, interval/3).
    fn expires_at(&self) -> Instant {
        self.last_refresh + self.interval - (self.interval / 3).min(Duration::from_secs(32))
    }

    pub fn poll_timeout(&self) -> Instant {
        if self.we_refresh && !self.refresh_sent {
            self.refresh_at()
        } else {
            self.expires_at()
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        if now >= self.expires_at() {
            return Some(TimerAction::Expired);
        }
        if self.we_refresh && !self.refresh_sent && now >= self.refresh_at() {
            self.refresh_sent = true;
            return Some(TimerAction::Refresh);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:1000@gw SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n\
             To: <sip:1000@gw>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Request::try_from(text.as_str()).unwrap()
    }

    #[test]
    fn uas_negotiation_follows_rfc4028_section_9() {
        let policy = SessionTimerPolicy::default();
        assert_eq!(
            negotiate_uas(&invite("Supported: timer\r\nSession-Expires: 60\r\n"), &policy),
            UasDecision::TooSmall { min_se: 90 }
        );
        assert_eq!(
            negotiate_uas(&invite("Supported: timer\r\nSession-Expires: 600;refresher=uas\r\n"), &policy),
            UasDecision::Use { interval: 600, refresher: Refresher::Uas, require_timer: true }
        );
        assert_eq!(
            negotiate_uas(&invite("Supported: replaces, timer\r\n"), &policy),
            UasDecision::Use { interval: 1800, refresher: Refresher::Uac, require_timer: true }
        );
        // A UAC without timer support cannot refresh: we do.
        assert_eq!(
            negotiate_uas(&invite("Session-Expires: 60;refresher=uac\r\n"), &policy),
            UasDecision::Use { interval: 90, refresher: Refresher::Uas, require_timer: false }
        );
        assert_eq!(
            negotiate_uas(&invite("Supported: timer\r\nSession-Expires: 300\r\nMin-SE: 400\r\n"), &policy),
            UasDecision::Use { interval: 400, refresher: Refresher::Uac, require_timer: true }
        );
        // A day asked for: reduced to the policy's longest (§9), but never below the UAC's Min-SE.
        assert_eq!(
            negotiate_uas(&invite("Supported: timer\r\nSession-Expires: 86400\r\n"), &policy),
            UasDecision::Use { interval: 7200, refresher: Refresher::Uac, require_timer: true }
        );
        assert_eq!(
            negotiate_uas(
                &invite("Supported: timer\r\nSession-Expires: 4294967295\r\nMin-SE: 9000\r\n"),
                &policy
            ),
            UasDecision::Use { interval: 9000, refresher: Refresher::Uac, require_timer: true }
        );
        let headers = UasDecision::Use { interval: 600, refresher: Refresher::Uas, require_timer: true }
            .response_headers();
        let text: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        assert_eq!(text, ["Session-Expires: 600;refresher=uas", "Require: timer"]);
    }

    #[test]
    fn uac_reads_the_2xx() {
        let ok = |se: &str| {
            Response::try_from(
                format!(
                    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n{se}Content-Length: 0\r\n\r\n"
                )
                .as_str(),
            )
            .unwrap()
        };
        assert_eq!(from_response(&ok("Session-Expires: 900;refresher=uas\r\n")), Some((900, Refresher::Uas)));
        assert_eq!(from_response(&ok("x: 900\r\n")), Some((900, Refresher::Uac)));
        assert_eq!(from_response(&ok("")), None);
    }

    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn refresher_refreshes_at_half_and_expiry_is_interval_minus_a_third_capped_at_32s() {
        let t0 = t0();
        let mut ours = SessionTimer::new(t0, 1800, true);
        assert_eq!(ours.poll_timeout(), t0 + Duration::from_secs(900));
        assert_eq!(ours.handle_timeout(t0 + Duration::from_secs(899)), None);
        assert_eq!(ours.handle_timeout(t0 + Duration::from_secs(900)), Some(TimerAction::Refresh));
        // The refresh got no answer: the session ends at 1800 - 32 s.
        assert_eq!(ours.poll_timeout(), t0 + Duration::from_secs(1768));
        assert_eq!(ours.handle_timeout(t0 + Duration::from_secs(1768)), Some(TimerAction::Expired));

        let mut theirs = SessionTimer::new(t0, 90, false);
        assert_eq!(theirs.poll_timeout(), t0 + Duration::from_secs(60), "90 - 90/3");
        theirs.refreshed(t0 + Duration::from_secs(45), 90, false);
        assert_eq!(theirs.handle_timeout(t0 + Duration::from_secs(60)), None);
        assert_eq!(theirs.poll_timeout(), t0 + Duration::from_secs(105));
    }
}
