//! A new INVITE, before the core takes it on: who is calling (digest authentication against
//! the users of `gateway user add`) and which room the dialled number leads to. Both need the
//! database, so this runs as its own task and hands its verdict back to the core.

use rsip::StatusCode;
use sip_stack::message::InboundRequest;
use sip_stack::response::response_to;
use sip_stack::transaction::ServerTx;
use sip_stack::transport::Peer;

use super::auth::authenticate;
use super::core::{new_tag, Command, Context};
use crate::storage::Room;

/// An INVITE that may proceed: its caller is known and its room exists.
#[derive(Debug)]
pub struct Admission {
    pub tx: ServerTx,
    pub request: InboundRequest,
    pub from: Peer,
    pub room: Room,
    pub user: String,
}

pub async fn admit(ctx: Context, tx: ServerTx, request: InboundRequest, from: Peer) {
    let command = match check(&ctx, &request, from).await {
        Ok((room, user)) => Command::Admit(Box::new(Admission { tx, request, from, room, user })),
        Err(response) => Command::Respond { tx, response },
    };
    // The core only goes away at shutdown, when the answer no longer matters.
    let _ = ctx.commands.send(command).await;
}

async fn check(
    ctx: &Context,
    request: &InboundRequest,
    from: Peer,
) -> Result<(Room, String), rsip::Response> {
    let user = authenticate(ctx, request, from).await?;
    let reply = |status: StatusCode| response_to(request, status, Some(&new_tag()), ctx.server());
    let Some(number) = dialled_number(request) else {
        return Err(reply(StatusCode::NotFound));
    };
    let storage = &ctx.shared.storage;
    let room = match storage.room(&number).await {
        Ok(Some(room)) => Some(room),
        Ok(None) => storage.room_for_did(&number).await.map_err(|e| {
            tracing::error!(error = %e, "room lookup failed");
            reply(StatusCode::ServerInternalError)
        })?,
        Err(e) => {
            tracing::error!(error = %e, "room lookup failed");
            return Err(reply(StatusCode::ServerInternalError));
        }
    };
    match room {
        Some(room) => Ok((room, user.username)),
        None => {
            tracing::info!(%number, user = %user.username, "call to an unknown number");
            Err(reply(StatusCode::NotFound))
        }
    }
}

/// The dialled number: the Request-URI's user part, or the To user when the Request-URI has
/// none (some trunks put the DID only in To).
pub fn dialled_number(request: &InboundRequest) -> Option<String> {
    let user = request.request.uri.user().or_else(|| request.envelope.to.uri.user())?;
    let number = user.split(';').next().unwrap_or(user).trim();
    (!number.is_empty()).then(|| number.to_string())
}
