//! REGISTER from desk phones: digest authentication against the stored HA1 (RFC 3261 §22),
//! then the registrar (§10.3) on the database.

use rsip::prelude::*;
use rsip::StatusCode;
use sip_stack::message::InboundRequest;
use sip_stack::registrar::{self, BindingStore, Registrar, StoredBinding};
use sip_stack::response::response_to;
use sip_stack::transport::{Peer, Transport};

use super::auth::authenticate;
use super::auth::Context;
use super::new_tag;
use crate::storage::{Binding, Storage, StorageError};

/// The response to a REGISTER from `from`.
#[allow(clippy::disallowed_methods)] // a look-up task, outside the core
pub async fn handle(ctx: &Context, request: &InboundRequest, from: Peer) -> rsip::Response {
    let now_ms = crate::clock::unix_ms();
    let tag = new_tag();
    let reply = |status: StatusCode| response_to(request, status, Some(&tag), ctx.server());

    let user = match authenticate(ctx, request, from).await {
        Ok(user) => user,
        Err(response) => return response,
    };

    let policy = registrar::RegistrarPolicy {
        max_bindings: ctx.shared.config.limits.bindings_per_user,
        ..registrar::RegistrarPolicy::default()
    };
    let registrar = Registrar { policy };
    let plan = match registrar::plan(request, &registrar.policy) {
        Ok(plan) => plan,
        Err(e) => return e.response(request, &tag, ctx.server()),
    };
    // §10.3 step 3: a phone registers its own account only.
    if plan.aor != user.username {
        tracing::info!(username = %user.username, aor = %plan.aor, "REGISTER for another user's AOR");
        return reply(StatusCode::Forbidden);
    }
    // Read, check against the cap and write as one step: two REGISTERs of one user at the
    // same instant cannot both pass it.
    let _one_at_a_time = ctx.registrations.lock(&plan.aor).await;
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
                instance: b.instance,
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
            instance: b.instance.clone(),
        };
        self.storage.upsert_binding(&binding, now_ms).await
    }

    async fn remove(&self, aor: &str, contact: &str) -> Result<(), StorageError> {
        self.storage.remove_binding(aor, contact).await.map(|_| ())
    }
}
