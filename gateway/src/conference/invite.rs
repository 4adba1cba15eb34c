//! A new INVITE, before the core takes it on: who is calling (digest authentication against
//! the users of `gateway user add`) and which room the dialled number leads to. Both need the
//! database, so this runs as its own task and hands its verdict back to the core.

use rsip::StatusCode;
use sip_stack::message::InboundRequest;
use sip_stack::response::response_to;
use sip_stack::transaction::ServerTx;
use sip_stack::transport::Peer;

use super::core::Command;
use crate::ids::TrunkName;
use crate::signalling::sip::auth::Context;
use crate::signalling::sip::auth::{authenticate, challenge_unauthenticated};
use crate::signalling::sip::new_tag;
use crate::storage::Room;

/// An INVITE that may proceed: its caller is known and its room exists.
#[derive(Debug)]
pub struct Admission {
    pub tx: ServerTx,
    pub request: InboundRequest,
    pub from: Peer,
    pub room: Room,
    pub caller: Caller,
}

/// Who an admitted INVITE is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A user of `gateway user add`, authenticated by digest.
    User(String),
    /// Whoever a trunk's call is from: the trunk vouches for it by its address.
    Trunk(TrunkName),
}

/// As call records and the API show it: the username, or `trunk:` and the trunk's name.
impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::User(name) => f.write_str(name),
            Caller::Trunk(trunk) => write!(f, "trunk:{trunk}"),
        }
    }
}

/// The verdict on a new INVITE: admitted, or refused with its response.
pub async fn admit(ctx: &Context, tx: ServerTx, request: InboundRequest, from: Peer) -> Command {
    match check(ctx, &request, from).await {
        Ok((room, caller)) => Command::Admit(Box::new(Admission { tx, request, from, room, caller })),
        Err((response, known_caller)) => Command::Refuse { tx, response, known_caller },
    }
}

/// The challenge to an INVITE from outside the trunks that carries no credentials, the first
/// of every phone's call: it needs no look-up, so the shell answers it at once.
pub fn refuse_at_once(ctx: &Context, tx: ServerTx, request: &InboundRequest, from: Peer) -> Option<Command> {
    if ctx.shared.trunk_configs().iter().any(|t| t.trusts(from.addr)) {
        return None;
    }
    let response = challenge_unauthenticated(ctx, request)?;
    Some(Command::Refuse { tx, response, known_caller: false })
}

async fn check(
    ctx: &Context,
    request: &InboundRequest,
    from: Peer,
) -> Result<(Room, Caller), (rsip::Response, bool)> {
    // A trunk's calls are known by where they come from; everyone else authenticates.
    let trunks = ctx.shared.trunk_configs();
    let trunk = trunks.iter().find(|t| t.trusts(from.addr));
    let caller = match trunk {
        Some(trunk) => Caller::Trunk(trunk.name.clone()),
        None => Caller::User(
            authenticate(ctx, request, from).await.map_err(|response| (response, false))?.username,
        ),
    };
    room_for(ctx, request, trunk.is_some(), caller).await.map_err(|response| (response, true))
}

/// The room the dialled number leads to.
async fn room_for(
    ctx: &Context,
    request: &InboundRequest,
    from_trunk: bool,
    caller: Caller,
) -> Result<(Room, Caller), rsip::Response> {
    let reply = |status: StatusCode| response_to(request, status, Some(&new_tag()), ctx.server());
    let Some(number) = dialled_number(request) else {
        return Err(reply(StatusCode::NotFound));
    };
    let dialled = match ctx.rooms.get(&number).await {
        Ok(dialled) => dialled.unwrap_or_default(),
        Err(e) => {
            tracing::error!(error = %e, "room lookup failed");
            return Err(reply(StatusCode::ServerInternalError));
        }
    };
    // Trunks dial DIDs; phones dial room numbers (or DIDs).
    let room = match from_trunk {
        true => dialled.as_did.or(dialled.as_number),
        false => dialled.as_number.or(dialled.as_did),
    };
    match room {
        Some(room) => Ok((room, caller)),
        None => {
            tracing::info!(%number, %caller, "call to an unknown number");
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
