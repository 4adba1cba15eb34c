//! Digest authentication of requests from desk phones (RFC 3261 §22, RFC 7616) against the
//! HA1 values stored for each user.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rsip::prelude::*;
use rsip::{Header, StatusCode};
use sip_stack::digest::{Algorithm, DigestResponse, DigestServer, VerifyError};
use sip_stack::message::InboundRequest;
use sip_stack::response::{push_header, response_to};
use sip_stack::transport::Peer;

use super::new_tag;
use crate::limits::AuthThrottle;
use crate::state::Shared;
use crate::storage::batched::{Lookups, Rooms, UserAnswer, Users};
use crate::storage::SipUser;

/// How long a digest nonce is good for.
const NONCE_LIFETIME_SECS: u64 = 300;

/// What the tasks that look a request's caller up share: the digest server, the throttle of
/// failures, the accounts and the rooms.
#[derive(Clone)]
pub struct Context {
    pub shared: Arc<Shared>,
    /// One lock around the digest server's whole state (its nonce counts).
    pub digest: Arc<Mutex<DigestServer>>,
    /// Digest failures per source and per user (`[limits] auth_failures_*`).
    pub auth: Arc<Mutex<AuthThrottle>>,
    /// Accounts by name, looked up in batches.
    pub users: Lookups<Users>,
    /// Rooms by the number dialled, looked up in batches.
    pub rooms: Lookups<Rooms>,
}

impl Context {
    pub fn new(shared: &Arc<Shared>) -> Context {
        // Validated at start-up: every name is a known algorithm.
        let sip = &shared.config.sip;
        let algorithms = sip.digest_algorithms.iter().filter_map(|a| Algorithm::from_token(a)).collect();
        let digest = DigestServer::new(sip.realm.clone(), rand::random(), NONCE_LIFETIME_SECS)
            .with_algorithms(algorithms);
        let limits = &shared.config.limits;
        Context {
            shared: shared.clone(),
            digest: Arc::new(Mutex::new(digest)),
            auth: Arc::new(Mutex::new(AuthThrottle::new(
                limits.auth_failures_per_source,
                limits.auth_failures_per_user,
            ))),
            users: Lookups::start(shared.storage.clone()),
            rooms: Lookups::start(shared.storage.clone()),
        }
    }

    pub fn server(&self) -> Option<&str> {
        Some(&self.shared.config.sip.user_agent)
    }
}

/// The user who sent `request`, or the response to send instead: a challenge (401) when it
/// carries no usable credentials, 403 when they are wrong.
pub async fn authenticate(
    ctx: &Context,
    request: &InboundRequest,
    from: Peer,
) -> Result<SipUser, rsip::Response> {
    let credentials = credentials(ctx, request, from)?;
    let user = ctx.users.get(&credentials.username).await;
    verify(ctx, request, from, &credentials, user)
}

/// The first half of [`authenticate`], before the account is looked up: the credentials
/// `request` carries, or the response to send instead (a challenge when it carries none, 400
/// when they are malformed, 403 when their source or user failed too often).
#[allow(clippy::disallowed_methods)] // outside the core: the throttle counts in real time
pub fn credentials(
    ctx: &Context,
    request: &InboundRequest,
    from: Peer,
) -> Result<DigestResponse, rsip::Response> {
    let Some(authorization) = request.request.authorization_header() else {
        return Err(challenge(ctx, request, now_secs(), false));
    };
    let reply = |status: StatusCode| response_to(request, status, Some(&new_tag()), ctx.server());
    let credentials = match DigestResponse::parse(authorization.value()) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "malformed Authorization");
            return Err(reply(StatusCode::Other(400, "Malformed Authorization".into())));
        }
    };
    let refused = throttle(ctx).refused(Instant::now(), from.addr.ip(), &credentials.username);
    if let Some(whose) = refused {
        let method = request.request.method;
        tracing::info!(username = %credentials.username, src = %from.addr, ?whose, "{method} refused: too many failed attempts");
        ctx.shared.metrics.sip.auth_throttled.inc();
        return Err(reply(StatusCode::Forbidden));
    }
    Ok(credentials)
}

/// The second half of [`authenticate`]: `credentials` checked against the account looked up
/// for them.
#[allow(clippy::disallowed_methods)] // outside the core: the throttle counts in real time
pub fn verify(
    ctx: &Context,
    request: &InboundRequest,
    from: Peer,
    credentials: &DigestResponse,
    user: UserAnswer,
) -> Result<SipUser, rsip::Response> {
    let now_secs = now_secs();
    let reply = |status: StatusCode| response_to(request, status, Some(&new_tag()), ctx.server());
    let method = request.request.method;
    let failed = |user: Option<&str>| throttle(ctx).failed(Instant::now(), from.addr.ip(), user);
    let user = match user {
        Ok(Some(user)) => user,
        Ok(None) => {
            tracing::info!(username = %credentials.username, src = %from.addr, %method, "{method} from an unknown user");
            failed(None);
            return Err(reply(StatusCode::Forbidden));
        }
        Err(e) => {
            tracing::error!(error = %e, "user lookup failed");
            return Err(reply(StatusCode::ServerInternalError));
        }
    };
    let verified = {
        // One lock around the nonce counts; held for a hash, never across an await.
        let mut digest = ctx.digest.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        digest.verify(now_secs, method.to_string().as_str(), credentials, user.ha1(credentials.algorithm))
    };
    match verified {
        Ok(()) => Ok(user),
        // An old or unknown nonce (say, from before a restart): challenge again.
        Err(VerifyError::Stale) => Err(challenge(ctx, request, now_secs, true)),
        Err(VerifyError::ForeignNonce | VerifyError::Replay(_)) => {
            Err(challenge(ctx, request, now_secs, false))
        }
        Err(e) => {
            tracing::info!(username = %credentials.username, src = %from.addr, error = %e, "{method} refused");
            failed(Some(&credentials.username));
            Err(reply(StatusCode::Forbidden))
        }
    }
}

/// One lock around the throttle's state; held for a look-up, never across an await.
fn throttle(ctx: &Context) -> std::sync::MutexGuard<'_, AuthThrottle> {
    ctx.auth.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Seconds since the epoch: a nonce carries the time it was made.
#[allow(clippy::disallowed_methods)] // outside the core: handlers run after their look-ups
fn now_secs() -> u64 {
    (crate::clock::unix_ms() / 1000) as u64
}

/// The challenge (401) for a request that carries no credentials, the first of every
/// REGISTER and call: answered at once, with no look-up.
pub fn challenge_unauthenticated(ctx: &Context, request: &InboundRequest) -> Option<rsip::Response> {
    if request.request.authorization_header().is_some() {
        return None;
    }
    Some(challenge(ctx, request, now_secs(), false))
}

fn challenge(ctx: &Context, request: &InboundRequest, now_secs: u64, stale: bool) -> rsip::Response {
    let mut response = response_to(request, StatusCode::Unauthorized, Some(&new_tag()), ctx.server());
    let challenges = ctx.digest.lock().unwrap_or_else(|p| p.into_inner()).challenges(now_secs, stale);
    for value in challenges {
        push_header(&mut response, Header::WwwAuthenticate(value.into()));
    }
    response
}
