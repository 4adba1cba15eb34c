//! REGISTER from desk phones: digest authentication against the stored HA1 (RFC 3261 §22),
//! then the registrar (§10.3) on the database.

use rsip::prelude::*;
use rsip::{Header, StatusCode};
use sip_stack::digest::{DigestResponse, VerifyError};
use sip_stack::message::InboundRequest;
use sip_stack::registrar::{self, BindingStore, Registrar, StoredBinding};
use sip_stack::response::{push_header, response_to};
use sip_stack::transaction::ServerTx;
use sip_stack::transport::{Peer, Transport};

use super::core::{new_tag, Context};
use crate::storage::{Binding, Storage, StorageError};

pub async fn handle(ctx: Context, tx: ServerTx, request: InboundRequest, from: Peer) {
    let response = respond(&ctx, &request, from).await;
    ctx.respond(tx, response).await;
}

async fn respond(ctx: &Context, request: &InboundRequest, from: Peer) -> rsip::Response {
    let now_ms = crate::clock::unix_ms();
    let now_secs = (now_ms / 1000) as u64;
    let tag = new_tag();
    let reply = |status: StatusCode| response_to(request, status, Some(&tag), ctx.server());

    let Some(authorization) = request.request.authorization_header() else {
        return challenge(ctx, request, now_secs, false);
    };
    let credentials = match DigestResponse::parse(authorization.value()) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "malformed Authorization");
            return reply(StatusCode::Other(400, "Malformed Authorization".into()));
        }
    };
    let user = match ctx.shared.storage.user(&credentials.username).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            tracing::info!(username = %credentials.username, src = %from.addr, "REGISTER for an unknown user");
            return reply(StatusCode::Forbidden);
        }
        Err(e) => {
            tracing::error!(error = %e, "user lookup failed");
            return reply(StatusCode::ServerInternalError);
        }
    };
    let verified = {
        // One lock around the nonce counts; held for a hash, never across an await.
        let mut digest = ctx.digest.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        digest.verify(
            now_secs,
            request.request.method.to_string().as_str(),
            &credentials,
            user.ha1(credentials.algorithm),
        )
    };
    match verified {
        Ok(()) => {}
        // An old or unknown nonce (say, from before a restart): challenge again.
        Err(VerifyError::Stale) => return challenge(ctx, request, now_secs, true),
        Err(VerifyError::ForeignNonce | VerifyError::Replay(_)) => {
            return challenge(ctx, request, now_secs, false)
        }
        Err(e) => {
            tracing::info!(username = %credentials.username, src = %from.addr, error = %e, "REGISTER refused");
            return reply(StatusCode::Forbidden);
        }
    }

    let registrar = Registrar::default();
    let plan = match registrar::plan(request, &registrar.policy) {
        Ok(plan) => plan,
        Err(e) => return e.response(request, &tag, ctx.server()),
    };
    // §10.3 step 3: a phone registers its own account only.
    if plan.aor != user.username {
        tracing::info!(username = %user.username, aor = %plan.aor, "REGISTER for another user's AOR");
        return reply(StatusCode::Forbidden);
    }
    let store = Bindings {
        storage: &ctx.shared.storage,
        source: source(from),
        user_agent: request.request.user_agent_header().map(|h| h.value().to_string()),
    };
    match registrar.apply(&store, &plan, now_ms).await {
        Ok(bindings) => {
            tracing::info!(user = %plan.aor, contacts = bindings.len(), src = %from.addr, "registered");
            registrar::ok_response(request, &bindings, now_ms, &tag, ctx.server())
        }
        Err(e) => {
            tracing::warn!(user = %plan.aor, error = %e, "REGISTER failed");
            e.response(request, &tag, ctx.server())
        }
    }
}

fn challenge(ctx: &Context, request: &InboundRequest, now_secs: u64, stale: bool) -> rsip::Response {
    let mut response = response_to(request, StatusCode::Unauthorized, Some(&new_tag()), ctx.server());
    let challenges = ctx.digest.lock().unwrap_or_else(|p| p.into_inner()).challenges(now_secs, stale);
    for value in challenges {
        push_header(&mut response, Header::WwwAuthenticate(value.into()));
    }
    response
}

/// Where requests to a phone's contact go: the address its REGISTER came from (symmetric
/// signalling for phones behind NAT).
fn source(from: Peer) -> String {
    let transport = match from.transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
    };
    format!("{transport}:{}", from.addr)
}

/// The registrar's view of the database.
struct Bindings<'a> {
    storage: &'a Storage,
    source: String,
    user_agent: Option<String>,
}

impl BindingStore for Bindings<'_> {
    type Error = StorageError;

    async fn bindings(&self, aor: &str, now_ms: i64) -> Result<Vec<StoredBinding>, StorageError> {
        Ok(self
            .storage
            .bindings(aor, now_ms)
            .await?
            .into_iter()
            .map(|b| StoredBinding {
                contact: b.contact,
                q_milli: b.q_milli,
                expires_at_ms: b.expires_at_ms,
                call_id: b.call_id,
                cseq: b.cseq,
            })
            .collect())
    }

    async fn upsert(&self, aor: &str, b: &StoredBinding, now_ms: i64) -> Result<(), StorageError> {
        let binding = Binding {
            username: aor.to_string(),
            contact: b.contact.clone(),
            q_milli: b.q_milli,
            expires_at_ms: b.expires_at_ms,
            call_id: b.call_id.clone(),
            cseq: b.cseq,
            source: self.source.clone(),
            user_agent: self.user_agent.clone(),
        };
        self.storage.upsert_binding(&binding, now_ms).await
    }

    async fn remove(&self, aor: &str, contact: &str) -> Result<(), StorageError> {
        self.storage.remove_binding(aor, contact).await.map(|_| ())
    }
}
