//! One page's WebSocket: join (PIN checked by call control, offer answered), trickle ICE
//! both ways, the room's participant events pushed, mute and leave. Every message from the
//! page is parsed at the edge; a bad one is answered with an error and the socket stays.

use std::future::pending;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use mixer::codec::AudioCodec;
use sip_stack::sdp::{self, Direction, LocalAudio};
use tokio::sync::{broadcast, mpsc, oneshot};
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit};

use super::peer::{self, PeerEvent, PeerSetup};
use super::signal::{ClientMessage, ServerMessage, MAX_MESSAGE};
use crate::calls::{BrowserJoin, Cause, Control, ParticipantAction, RoomEvent};
use crate::media::{ParticipantId, Wire};
use crate::state::Shared;

/// Packets from one browser the worker has not taken yet (a second and a half of Opus).
const INCOMING_QUEUE: usize = 64;
/// Mix packets waiting for the connection.
const OUTGOING_QUEUE: usize = 32;

pub async fn upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(source): ConnectInfo<SocketAddr>,
    State(shared): State<Arc<Shared>>,
) -> Response {
    // Larger than any message we take, so an oversized one is answered rather than cut off.
    ws.max_message_size(4 * MAX_MESSAGE).on_upgrade(move |socket| run(shared, source, socket))
}

/// A browser in a room.
struct Joined {
    id: ParticipantId,
    room: String,
    connection: Arc<dyn PeerConnection>,
    joined_at: Instant,
}

/// What a joined page listens to besides its socket; all `None` outside a room.
#[derive(Default)]
struct Links {
    ended: Option<oneshot::Receiver<Cause>>,
    room_events: Option<broadcast::Receiver<RoomEvent>>,
    peer_events: Option<mpsc::Receiver<PeerEvent>>,
}

/// One thing that happened to the session.
enum Input {
    Socket(Option<Result<Message, axum::Error>>),
    Ended(Result<Cause, oneshot::error::RecvError>),
    Room(Result<RoomEvent, broadcast::error::RecvError>),
    Peer(PeerEvent),
    Shutdown,
}

/// What the page is told after a step; `Close` ends the socket.
enum Next {
    Stay,
    Close,
}

async fn run(shared: Arc<Shared>, source: SocketAddr, mut socket: WebSocket) {
    tracing::debug!(%source, "page connected");
    let mut joined: Option<Joined> = None;
    let mut links = Links::default();
    let mut shutdown = std::pin::pin!(shared.shutdown_signal());
    loop {
        let input = tokio::select! {
            message = socket.recv() => Input::Socket(message),
            cause = ended(&mut links.ended) => Input::Ended(cause),
            event = room_event(&mut links.room_events) => Input::Room(event),
            event = peer_event(&mut links.peer_events) => Input::Peer(event),
            _ = &mut shutdown, if joined.is_none() => Input::Shutdown,
        };
        let next = match input {
            Input::Socket(Some(Ok(Message::Text(text)))) => {
                on_message(&shared, source, &mut socket, &mut joined, &mut links, &text).await
            }
            Input::Socket(Some(Ok(Message::Binary(_)))) => {
                send(&mut socket, ServerMessage::error("bad-message", "expected JSON text")).await
            }
            Input::Socket(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => Next::Stay,
            Input::Socket(Some(Ok(Message::Close(_))) | None) | Input::Shutdown => Next::Close,
            Input::Socket(Some(Err(e))) => {
                tracing::debug!(%source, error = %e, "page connection lost");
                Next::Close
            }
            Input::Ended(cause) => {
                // Call control ended the leg (kick, RTP timeout, shutdown).
                links = Links::default();
                if let Some(j) = joined.take() {
                    close(&j.connection).await;
                }
                let reason = cause.unwrap_or(Cause::Shutdown).as_str();
                send(&mut socket, ServerMessage::Ended { reason: reason.into() }).await
            }
            Input::Room(Ok(event)) => match &joined {
                Some(j) if event.room() == j.room => send(&mut socket, ServerMessage::of_event(event)).await,
                _ => Next::Stay,
            },
            Input::Room(Err(broadcast::error::RecvError::Lagged(n))) => {
                tracing::warn!(%source, missed = n, "page missed room events");
                Next::Stay
            }
            Input::Room(Err(broadcast::error::RecvError::Closed)) => Next::Close,
            Input::Peer(event) => on_peer_event(&shared, &mut socket, &mut joined, &mut links, event).await,
        };
        if let Next::Close = next {
            break;
        }
    }
    if let Some(j) = joined {
        leave(&shared, j, Cause::ConnectionLost).await;
    }
    let _ = socket.send(Message::Close(None)).await;
    tracing::debug!(%source, "page gone");
}

async fn ended(ended: &mut Option<oneshot::Receiver<Cause>>) -> Result<Cause, oneshot::error::RecvError> {
    match ended {
        Some(rx) => rx.await,
        None => pending().await,
    }
}

async fn room_event(
    events: &mut Option<broadcast::Receiver<RoomEvent>>,
) -> Result<RoomEvent, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => pending().await,
    }
}

async fn peer_event(events: &mut Option<mpsc::Receiver<PeerEvent>>) -> PeerEvent {
    match events {
        Some(rx) => rx.recv().await.unwrap_or(PeerEvent::Failed),
        None => pending().await,
    }
}

async fn send(socket: &mut WebSocket, message: ServerMessage) -> Next {
    match socket.send(Message::Text(message.to_json().into())).await {
        Ok(()) => Next::Stay,
        Err(_) => Next::Close,
    }
}

async fn close(connection: &Arc<dyn PeerConnection>) {
    if let Err(e) = connection.close().await {
        tracing::debug!(error = %e, "peer connection close");
    }
}

/// The leg out of the room and its connection closed.
async fn leave(shared: &Shared, joined: Joined, cause: Cause) {
    let _ = shared.control.send(Control::BrowserLeave { id: joined.id, cause }).await;
    close(&joined.connection).await;
}

async fn on_message(
    shared: &Arc<Shared>,
    source: SocketAddr,
    socket: &mut WebSocket,
    joined: &mut Option<Joined>,
    links: &mut Links,
    text: &str,
) -> Next {
    let message = match ClientMessage::parse(text) {
        Ok(message) => message,
        Err(e) => return send(socket, ServerMessage::error("bad-message", e)).await,
    };
    match message {
        ClientMessage::Join { .. } if joined.is_some() => {
            send(socket, ServerMessage::error("already-joined", "leave the room first")).await
        }
        ClientMessage::Join { room, pin, name, sdp } => {
            match join(shared, source, room, pin, name, sdp).await {
                Ok((j, l, answer, welcome)) => {
                    *joined = Some(j);
                    *links = l;
                    if let Next::Close = send(socket, answer).await {
                        return Next::Close;
                    }
                    send(socket, welcome).await
                }
                Err(refusal) => send(socket, refusal).await,
            }
        }
        ClientMessage::Candidate { candidate, sdp_mid, sdp_mline_index } => {
            // Candidates after a refused join, or the end-of-candidates marker: nothing to do.
            let Some(j) = joined else { return Next::Stay };
            if candidate.is_empty() {
                return Next::Stay;
            }
            let init = RTCIceCandidateInit { candidate, sdp_mid, sdp_mline_index, ..Default::default() };
            match j.connection.add_ice_candidate(init).await {
                Ok(()) => Next::Stay,
                Err(e) => send(socket, ServerMessage::error("bad-candidate", e)).await,
            }
        }
        ClientMessage::Mute { muted } => {
            let Some(j) = joined else {
                return send(socket, ServerMessage::error("not-joined", "join a room first")).await;
            };
            let (reply, answer) = oneshot::channel();
            let control = Control::Participant {
                room: j.room.clone(),
                id: j.id,
                action: ParticipantAction::Mute(muted),
                reply,
            };
            // The change reaches the page as a participant event, like everyone else's.
            if shared.control.send(control).await.is_err() || answer.await.is_err() {
                return send(socket, ServerMessage::error("unavailable", "the gateway is shutting down"))
                    .await;
            }
            Next::Stay
        }
        ClientMessage::Leave {} => match joined.take() {
            Some(j) => {
                *links = Links::default();
                leave(shared, j, Cause::Normal).await;
                send(socket, ServerMessage::Ended { reason: "left".into() }).await
            }
            None => Next::Stay,
        },
    }
}

async fn on_peer_event(
    shared: &Arc<Shared>,
    socket: &mut WebSocket,
    joined: &mut Option<Joined>,
    links: &mut Links,
    event: PeerEvent,
) -> Next {
    match event {
        PeerEvent::Candidate(c) => {
            let message = ServerMessage::Candidate {
                candidate: c.candidate,
                sdp_mid: c.sdp_mid,
                sdp_mline_index: c.sdp_mline_index,
            };
            send(socket, message).await
        }
        PeerEvent::Connected => {
            if let Some(j) = joined {
                let ms = j.joined_at.elapsed().as_millis() as u64;
                tracing::info!(participant = %j.id, ms, "browser media connected");
            }
            Next::Stay
        }
        PeerEvent::Failed => {
            let Some(j) = joined.take() else { return Next::Stay };
            *links = Links::default();
            tracing::info!(participant = %j.id, "browser connection failed");
            leave(shared, j, Cause::ConnectionLost).await;
            send(socket, ServerMessage::Ended { reason: Cause::ConnectionLost.as_str().into() }).await
        }
    }
}

/// Room, PIN and offer: the answer and the welcome, or the error to show.
async fn join(
    shared: &Arc<Shared>,
    source: SocketAddr,
    number: String,
    pin: Option<String>,
    name: String,
    offer: String,
) -> Result<(Joined, Links, ServerMessage, ServerMessage), ServerMessage> {
    let joined_at = Instant::now();
    let room = match shared.storage.room(&number).await {
        Ok(Some(room)) => room,
        Ok(None) => return Err(ServerMessage::error("not-found", format!("there is no room {number}"))),
        Err(e) => {
            tracing::error!(error = %e, "room lookup failed");
            return Err(ServerMessage::error("unavailable", "the room cannot be looked up now"));
        }
    };
    // The offer read with our SDP type: Opus's payload type and the keypad's events.
    let ours = LocalAudio {
        address: IpAddr::from([0, 0, 0, 0]),
        port: 9,
        codecs: vec![sdp::OPUS],
        ptime: 20,
        direction: Direction::SendRecv,
    };
    let stream = match sdp::parse(offer.as_bytes()).and_then(|o| sdp::choose(&o, &ours)) {
        Ok(stream) => stream,
        Err(e) => {
            tracing::info!(%source, error = %e, "browser offer refused");
            return Err(ServerMessage::error("bad-sdp", e));
        }
    };
    let (ended_tx, ended) = oneshot::channel();
    let display_name = if name.trim().is_empty() { "Browser".to_string() } else { name.trim().to_string() };
    let request = BrowserJoin { room, pin, display_name, source, ended: ended_tx };
    let (reply, admitted) = oneshot::channel();
    let unavailable = || ServerMessage::error("unavailable", "the gateway is shutting down");
    if shared.control.send(Control::BrowserJoin { request: Box::new(request), reply }).await.is_err() {
        return Err(unavailable());
    }
    let admitted = match admitted.await {
        Ok(Ok(admitted)) => admitted,
        Ok(Err(refused)) => return Err(ServerMessage::error(refused.code(), refused)),
        Err(_) => return Err(unavailable()),
    };
    let config = crate::sip::leg_config(AudioCodec::Opus, &stream);
    let (incoming_tx, incoming) = std_mpsc::sync_channel(INCOMING_QUEUE);
    let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
    let (events, peer_events) = mpsc::channel(64);
    let webrtc = &shared.config.webrtc;
    let addresses =
        if webrtc.addresses.is_empty() { vec![shared.config.rtp.address] } else { webrtc.addresses.clone() };
    let setup = PeerSetup {
        addresses,
        public_address: webrtc.public_address,
        port: admitted.port,
        offer,
        ssrc: config.ssrc,
        events,
        incoming: incoming_tx,
        outgoing: outgoing_rx,
    };
    // Subscribed before the list is taken: no change falls between the two.
    let room_events = shared.room_events.subscribe();
    let peer = match peer::connect(setup).await {
        Ok(peer) => peer,
        Err(e) => {
            tracing::info!(participant = %admitted.id, error = %e, "browser offer refused");
            let _ =
                shared.control.send(Control::BrowserLeave { id: admitted.id, cause: Cause::BadSdp }).await;
            return Err(ServerMessage::error("bad-sdp", e));
        }
    };
    let wire = Wire::Channel { incoming, outgoing };
    let _ = shared.control.send(Control::BrowserMedia { id: admitted.id, config, wire }).await;
    let (reply, conferences) = oneshot::channel();
    let _ = shared.control.send(Control::Conferences(reply)).await;
    let participants = conferences
        .await
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.room == number)
        .map(|c| c.participants)
        .unwrap_or_default();
    tracing::info!(participant = %admitted.id, room = %number, %source, "browser joined");
    let welcome = ServerMessage::Joined {
        id: admitted.id,
        room: number.clone(),
        moderator: admitted.moderator,
        participants,
    };
    let joined = Joined { id: admitted.id, room: number, connection: peer.connection, joined_at };
    let links = Links { ended: Some(ended), room_events: Some(room_events), peer_events: Some(peer_events) };
    Ok((joined, links, ServerMessage::Answer { sdp: peer.answer }, welcome))
}
