//! One page's WebSocket: join (PIN checked by call control, offer answered), trickle ICE
//! both ways, the room's participant events pushed, mute and leave. Every message from the
//! page is parsed at the edge; a bad one is answered with an error and the socket stays. A page
//! that stops answering pings, or stops reading, is taken for gone.

use std::future::pending;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mixer::codec::AudioCodec;
use sip_stack::sdp::sdes::Srtp;
use sip_stack::sdp::{self, AudioStream, Direction, LocalAudio};
use tokio::sync::{broadcast, mpsc, oneshot, OwnedSemaphorePermit};
use tokio::time::{Instant, MissedTickBehavior};
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit};

use crate::control::{
    BrowserAdmitted, BrowserJoin, Cause, Control, ControlError, ParticipantAction, ParticipantView, RoomEvent,
};
use crate::http::Client;
use crate::ids::RoomNumber;
use crate::limits::SourceSlot;
use crate::media::{ParticipantId, Wire};
use crate::signalling::webrtc::peer::{self, PeerError, PeerEvent, PeerSetup};
use crate::signalling::webrtc::signal::{ClientMessage, ServerMessage, MAX_MESSAGE};
use crate::state::Shared;
use crate::storage::Room;

/// Packets from one browser the worker has not taken yet (a second and a half of Opus).
const INCOMING_QUEUE: usize = 64;
/// Mix packets waiting for the connection.
const OUTGOING_QUEUE: usize = 32;
/// Candidates, connection changes: a few dozen per connection at most.
const PEER_EVENTS: usize = 64;
/// Remote candidates one join may add (a browser gathers a handful per interface).
const MAX_REMOTE_CANDIDATES: usize = 32;
/// How often an idle page is pinged; browsers answer pings themselves.
const PING_INTERVAL: Duration = Duration::from_secs(15);
/// Nothing heard for this long (three pings unanswered): the page is gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(45);
/// A page that takes no message for this long is gone, whatever TCP thinks.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(client): ConnectInfo<Client>,
    headers: HeaderMap,
    State(shared): State<Arc<Shared>>,
) -> Response {
    let source = client.behind(&shared.config.http.trusted_proxies, &headers);
    // A page elsewhere must not drive a visitor's browser into our rooms (cross-site
    // WebSocket hijacking): browsers always send Origin; other clients may leave it out.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if !origin_allowed(origin.to_str().unwrap_or(""), host, &shared.config.webrtc.allowed_origins) {
            tracing::warn!(%source, ?origin, "join WebSocket from a foreign page: refused");
            return (StatusCode::FORBIDDEN, "this page may not join rooms here\n").into_response();
        }
    }
    // Each open page holds a task and a socket: at most `[webrtc] max_pages` of them, and
    // `max_pages_per_source` from one address.
    let Some(slot) = shared.pages_by_source.try_take(source.ip()) else {
        tracing::warn!(%source, "too many join pages open from one address: refused");
        return (StatusCode::TOO_MANY_REQUESTS, "too many join pages open from your address\n")
            .into_response();
    };
    let Ok(page) = shared.pages.clone().try_acquire_owned() else {
        tracing::warn!(%source, "too many join pages open: refused");
        return (StatusCode::SERVICE_UNAVAILABLE, "too many join pages open\n").into_response();
    };
    // Larger than any message we take, so an oversized one is answered rather than cut off.
    ws.max_message_size(4 * MAX_MESSAGE).on_upgrade(move |socket| run(shared, source, socket, (page, slot)))
}

/// Whether a page at `origin` may open the join WebSocket: the gateway's own pages (the
/// origin's authority is the request's Host) or one the operator listed.
fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    let origin = origin.trim().trim_end_matches('/');
    if allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return true;
    }
    let authority = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h.trim()))
}

/// A browser in a room, and what its session listens to besides the socket.
struct Joined {
    id: ParticipantId,
    room: RoomNumber,
    connection: Arc<dyn PeerConnection>,
    joined_at: Instant,
    /// Remote candidates taken so far.
    candidates: usize,
    ended: oneshot::Receiver<Cause>,
    room_events: broadcast::Receiver<RoomEvent>,
    peer_events: mpsc::Receiver<PeerEvent>,
}

/// One thing that happened to the session.
enum Input {
    Socket(Option<Result<Message, axum::Error>>),
    Ended(Result<Cause, oneshot::error::RecvError>),
    Room(Result<RoomEvent, broadcast::error::RecvError>),
    Peer(PeerEvent),
    /// Time to ping the page, or to give it up for silent.
    Keepalive,
    Shutdown,
}

/// Whether the socket stays open after a step.
enum Next {
    Stay,
    Close,
}

/// One page's socket and, while it is in a room, its browser.
struct Session {
    shared: Arc<Shared>,
    source: SocketAddr,
    socket: WebSocket,
    /// `None` outside a room; taken (so its receivers go with it) whenever the leg ends.
    joined: Option<Joined>,
    heard_at: Instant,
}

async fn run(
    shared: Arc<Shared>,
    source: SocketAddr,
    socket: WebSocket,
    _page: (OwnedSemaphorePermit, SourceSlot),
) {
    tracing::debug!(%source, "page connected");
    let shutdown_signal = shared.shutdown_signal();
    let mut session = Session { shared, source, socket, joined: None, heard_at: Instant::now() };
    let mut shutdown = std::pin::pin!(shutdown_signal);
    let mut keepalive = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let in_room = session.joined.is_some();
        let input = tokio::select! {
            message = session.socket.recv() => Input::Socket(message),
            input = joined_input(&mut session.joined) => input,
            _ = keepalive.tick() => Input::Keepalive,
            _ = &mut shutdown, if !in_room => Input::Shutdown,
        };
        if let Next::Close = session.step(input).await {
            break;
        }
    }
    if let Some(joined) = session.joined.take() {
        leave(&session.shared, joined, Cause::ConnectionLost).await;
    }
    let _ = tokio::time::timeout(SEND_TIMEOUT, session.socket.send(Message::Close(None))).await;
    tracing::debug!(%source, "page gone");
}

/// The next event of the browser in the room; never, outside one.
async fn joined_input(joined: &mut Option<Joined>) -> Input {
    let Some(j) = joined else { return pending().await };
    tokio::select! {
        cause = &mut j.ended => Input::Ended(cause),
        event = j.room_events.recv() => Input::Room(event),
        event = j.peer_events.recv() => Input::Peer(event.unwrap_or(PeerEvent::Failed)),
    }
}

impl Session {
    async fn step(&mut self, input: Input) -> Next {
        if let Input::Socket(Some(Ok(_))) = input {
            self.heard_at = Instant::now();
        }
        match input {
            Input::Socket(Some(Ok(Message::Text(text)))) => self.on_message(&text).await,
            Input::Socket(Some(Ok(Message::Binary(_)))) => {
                self.send(ServerMessage::error("bad-message", "expected JSON text")).await
            }
            Input::Socket(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => Next::Stay,
            Input::Socket(Some(Ok(Message::Close(_))) | None) | Input::Shutdown => Next::Close,
            Input::Socket(Some(Err(e))) => {
                tracing::debug!(source = %self.source, error = %e, "page connection lost");
                Next::Close
            }
            Input::Keepalive => {
                if self.heard_at.elapsed() > SILENCE_LIMIT {
                    tracing::info!(source = %self.source, "page silent: connection lost");
                    return Next::Close;
                }
                self.send_raw(Message::Ping(Default::default())).await
            }
            Input::Ended(cause) => {
                // Call control ended the leg (kick, RTP timeout, shutdown).
                if let Some(j) = self.joined.take() {
                    close(&j.connection).await;
                }
                let reason = cause.unwrap_or(Cause::Shutdown).as_str();
                self.send(ServerMessage::Ended { reason: reason.into() }).await
            }
            Input::Room(Ok(event)) => self.send(ServerMessage::of_event(event)).await,
            Input::Room(Err(broadcast::error::RecvError::Lagged(missed))) => {
                // Events were lost: the whole list again puts the page right.
                tracing::warn!(source = %self.source, missed, "page missed room events");
                let Some(room) = self.joined.as_ref().map(|j| j.room.clone()) else { return Next::Stay };
                let participants = participants(&self.shared, &room).await;
                self.send(ServerMessage::Participants { participants }).await
            }
            Input::Room(Err(broadcast::error::RecvError::Closed)) => Next::Close,
            Input::Peer(event) => self.on_peer_event(event).await,
        }
    }

    async fn send(&mut self, message: ServerMessage) -> Next {
        self.send_raw(Message::Text(message.to_json().into())).await
    }

    /// A page that takes nothing for [`SEND_TIMEOUT`] is gone, whatever TCP thinks.
    async fn send_raw(&mut self, message: Message) -> Next {
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(message)).await {
            Ok(Ok(())) => Next::Stay,
            Ok(Err(_)) | Err(_) => Next::Close,
        }
    }

    async fn on_message(&mut self, text: &str) -> Next {
        let message = match ClientMessage::parse(text) {
            Ok(message) => message,
            Err(e) => return self.send(ServerMessage::error("bad-message", e)).await,
        };
        match message {
            ClientMessage::Join { .. } if self.joined.is_some() => {
                self.send(ServerMessage::error("already-joined", "leave the room first")).await
            }
            ClientMessage::Join { room, pin, name, sdp } => {
                match join(&self.shared, self.source, room, pin, name, sdp).await {
                    Ok((joined, answer, welcome)) => {
                        self.joined = Some(joined);
                        if let Next::Close = self.send(answer).await {
                            return Next::Close;
                        }
                        self.send(welcome).await
                    }
                    Err(refusal) => self.send(refusal).await,
                }
            }
            ClientMessage::Candidate { candidate, sdp_mid, sdp_mline_index } => {
                // Candidates after a refused join, or the end-of-candidates marker: nothing to do.
                let Some(j) = &mut self.joined else { return Next::Stay };
                if candidate.is_empty() {
                    return Next::Stay;
                }
                // Each one is an address the gateway will send checks to: a page gets a few.
                if j.candidates >= MAX_REMOTE_CANDIDATES {
                    let message = format!("at most {MAX_REMOTE_CANDIDATES} candidates");
                    return self.send(ServerMessage::error("bad-candidate", message)).await;
                }
                j.candidates += 1;
                let init = RTCIceCandidateInit { candidate, sdp_mid, sdp_mline_index, ..Default::default() };
                match j.connection.add_ice_candidate(init).await {
                    Ok(()) => Next::Stay,
                    Err(e) => self.send(ServerMessage::error("bad-candidate", e)).await,
                }
            }
            ClientMessage::Mute { muted } => {
                let Some(j) = &self.joined else {
                    return self.send(ServerMessage::error("not-joined", "join a room first")).await;
                };
                let (reply, answer) = oneshot::channel();
                let action = ParticipantAction::Mute(muted);
                let control = Control::Participant { room: j.room.clone(), id: j.id, action, reply };
                if self.shared.control.send(control).await.is_err() {
                    return self.send(ServerMessage::error("unavailable", ControlError::Unavailable)).await;
                }
                // Done, the change reaches the page as a participant event, like everyone else's.
                match answer.await {
                    Ok(Ok(_)) => Next::Stay,
                    Ok(Err(e)) => self.send(ServerMessage::error("not-joined", e)).await,
                    Err(_) => self.send(ServerMessage::error("unavailable", ControlError::Unavailable)).await,
                }
            }
            ClientMessage::Leave {} => match self.joined.take() {
                Some(j) => {
                    leave(&self.shared, j, Cause::Normal).await;
                    self.send(ServerMessage::Ended { reason: "left".into() }).await
                }
                None => Next::Stay,
            },
        }
    }

    async fn on_peer_event(&mut self, event: PeerEvent) -> Next {
        match event {
            PeerEvent::Candidate(c) => {
                let message = ServerMessage::Candidate {
                    candidate: c.candidate,
                    sdp_mid: c.sdp_mid,
                    sdp_mline_index: c.sdp_mline_index,
                };
                self.send(message).await
            }
            PeerEvent::Connected => {
                let Some(j) = &self.joined else { return Next::Stay };
                let ms = j.joined_at.elapsed().as_millis() as u64;
                tracing::info!(participant = %j.id, ms, "browser media connected");
                // Now the mix can reach the browser: it joins (tone, prompt, "joined").
                let _ = self.shared.control.send(Control::BrowserConnected { id: j.id }).await;
                Next::Stay
            }
            PeerEvent::Failed => {
                let Some(j) = self.joined.take() else { return Next::Stay };
                tracing::info!(participant = %j.id, "browser connection failed");
                leave(&self.shared, j, Cause::ConnectionLost).await;
                self.send(ServerMessage::Ended { reason: Cause::ConnectionLost.as_str().into() }).await
            }
        }
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

/// Who is in a room now.
async fn participants(shared: &Shared, room: &RoomNumber) -> Vec<ParticipantView> {
    let (reply, conferences) = oneshot::channel();
    let _ = shared.control.send(Control::Conferences(reply)).await;
    conferences
        .await
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.room == *room)
        .map(|c| c.participants)
        .unwrap_or_default()
}

/// The room by its number, or the error to show.
async fn find_room(shared: &Shared, number: &str) -> Result<Room, ServerMessage> {
    match shared.storage.room(number).await {
        Ok(Some(room)) => Ok(room),
        Ok(None) => Err(ServerMessage::error("not-found", format!("there is no room {number}"))),
        Err(e) => {
            tracing::error!(error = %e, "room lookup failed");
            Err(ServerMessage::error("unavailable", "the room cannot be looked up now"))
        }
    }
}

/// The offer read with our SDP type: Opus's payload type and the keypad's events.
fn read_offer(source: SocketAddr, offer: &str) -> Result<AudioStream, ServerMessage> {
    let ours = LocalAudio {
        address: IpAddr::from([0, 0, 0, 0]),
        port: 9,
        codecs: vec![sdp::OPUS],
        ptime: 20,
        direction: Direction::SendRecv,
        srtp: Srtp::Off,
    };
    sdp::parse(offer.as_bytes()).and_then(|o| sdp::choose(&o, &ours)).map_err(|e| {
        tracing::info!(%source, error = %e, "browser offer refused");
        ServerMessage::error("bad-sdp", e)
    })
}

/// Call control's verdict on the join: the room's limit and PIN, as for a phone.
async fn admit(shared: &Shared, request: BrowserJoin) -> Result<BrowserAdmitted, ServerMessage> {
    let (reply, admitted) = oneshot::channel();
    let unavailable = || ServerMessage::error("unavailable", "the gateway is shutting down");
    if shared.control.send(Control::BrowserJoin { request: Box::new(request), reply }).await.is_err() {
        return Err(unavailable());
    }
    match admitted.await {
        Ok(Ok(admitted)) => Ok(admitted),
        Ok(Err(refused)) => Err(ServerMessage::error(refused.code(), refused)),
        Err(_) => Err(unavailable()),
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
) -> Result<(Joined, ServerMessage, ServerMessage), ServerMessage> {
    let joined_at = Instant::now();
    let room = find_room(shared, &number).await?;
    let number = room.number.clone();
    let stream = read_offer(source, &offer)?;
    let (ended_tx, ended) = oneshot::channel();
    let display_name = if name.trim().is_empty() { "Browser".to_string() } else { name.trim().to_string() };
    let admitted = admit(shared, BrowserJoin { room, pin, display_name, source, ended: ended_tx }).await?;
    let mut config = crate::conference::leg_config(AudioCodec::Opus, &stream);
    let (incoming_tx, incoming) = std_mpsc::sync_channel(INCOMING_QUEUE);
    let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
    let (events, peer_events) = mpsc::channel(PEER_EVENTS);
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
    let room_events = shared.room_events(&number);
    let peer = match peer::connect(setup).await {
        Ok(peer) => peer,
        Err(e) => {
            let (cause, code) = match &e {
                PeerError::Offer(_) => (Cause::BadSdp, "bad-sdp"),
                PeerError::Setup(_) => (Cause::MediaUnavailable, "media-unavailable"),
            };
            tracing::warn!(participant = %admitted.id, error = %e, "browser peer connection refused");
            let _ = shared.control.send(Control::BrowserLeave { id: admitted.id, cause }).await;
            return Err(ServerMessage::error(code, e));
        }
    };
    // The levels come under the id webrtc-rs answered with, if it kept the extension.
    config.audio_level = sdp::parse(peer.answer.as_bytes()).ok().and_then(|a| sdp::answered_audio_level(&a));
    let wire = Wire::Channel { incoming, outgoing };
    let _ = shared.control.send(Control::BrowserMedia { id: admitted.id, config, wire }).await;
    let participants = participants(shared, &number).await;
    tracing::info!(participant = %admitted.id, room = %number, %source, "browser admitted, connecting");
    let welcome = ServerMessage::Joined {
        id: admitted.id,
        room: number.clone(),
        moderator: admitted.moderator,
        participants,
    };
    let joined = Joined {
        id: admitted.id,
        room: number,
        connection: peer.connection,
        joined_at,
        candidates: 0,
        ended,
        room_events,
        peer_events,
    };
    Ok((joined, ServerMessage::Answer { sdp: peer.answer }, welcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_and_listed_pages_may_join() {
        let listed = vec!["https://meet.example.com".to_string()];
        assert!(origin_allowed("http://127.0.0.1:8080", Some("127.0.0.1:8080"), &[]));
        assert!(origin_allowed("https://GW.example.net", Some("gw.example.net"), &[]));
        assert!(origin_allowed("https://meet.example.com/", Some("gw.example.net"), &listed));
        assert!(!origin_allowed("https://evil.example", Some("gw.example.net"), &listed));
        assert!(!origin_allowed("http://127.0.0.1:9999", Some("127.0.0.1:8080"), &[]), "another port");
        assert!(!origin_allowed("null", Some("127.0.0.1:8080"), &[]), "a sandboxed or file page");
        assert!(!origin_allowed("https://gw.example.net", None, &[]), "no Host to compare");
        assert!(!origin_allowed("https://gw.example.net.evil.example", Some("gw.example.net"), &[]));
    }
}
