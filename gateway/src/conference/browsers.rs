//! Browser participants as call control sees them: admitted by PIN over the WebSocket (no
//! IVR), in the same room limits, mix, REST API, events and call records as phones. The peer
//! connection itself lives in [`crate::signalling::webrtc`]; call control holds the leg.

use std::net::SocketAddr;

use mixer::conference::{LegConfig, LegStats};
use tokio::sync::oneshot;

use super::calls::new_branch;
use super::core::Core;
use crate::conference::ivr::check_pin;
use crate::conference::ivr::PinSource;
use crate::control::{
    BrowserAdmitted, BrowserJoin, Cause, JoinRefused, MediaView, ParticipantFlags, ParticipantView,
};
use crate::media::{Audience, LegSetup, MediaCommand, ParticipantId, Wire};
use crate::metrics::RoomCodecLabels;
use crate::storage::{CallRecord, Direction, Room, IN_PROGRESS};

/// The codec every browser leg uses.
const BROWSER_CODEC: &str = "opus";

/// One browser in a room.
#[derive(Debug)]
pub struct Browser {
    pub(super) id: ParticipantId,
    pub(super) room: Room,
    display_name: String,
    source: SocketAddr,
    moderator: bool,
    call_id: String,
    started_ms: i64,
    stage: Stage,
    pub(super) talking: bool,
    pub(super) muted: bool,
    pub(super) deaf: bool,
    pub(super) stats: Option<LegStats>,
    pub(super) lost_reported: u64,
    ended: Option<oneshot::Sender<Cause>>,
}

/// How far a browser's leg has come.
#[derive(Debug)]
enum Stage {
    /// Admitted by PIN; the page's offer is being answered.
    Negotiating,
    /// Answered: the leg waits for ICE and DTLS before it joins the mix.
    Connecting { config: LegConfig, wire: Wire },
    /// In the mix since `answered_ms`.
    InMix { answered_ms: i64 },
}

impl Browser {
    /// In the room's mix (hearing and heard), not still connecting.
    pub(super) fn name(&self) -> &str {
        &self.display_name
    }

    pub(super) fn in_mix(&self) -> bool {
        matches!(self.stage, Stage::InMix { .. })
    }

    /// The browser's record: open (`end` None) or ended at `end`'s time for its cause.
    fn record(&self, end: Option<(i64, &str)>) -> CallRecord {
        let room = &self.room.number;
        CallRecord {
            leg_id: self.call_id.clone(),
            call_id: self.call_id.clone(),
            direction: Direction::Inbound,
            from_uri: format!("webrtc:{}", self.source),
            to_uri: format!("webrtc:{room}"),
            room_number: Some(room.to_string()),
            started_at_ms: self.started_ms,
            answered_at_ms: match self.stage {
                Stage::InMix { answered_ms } => Some(answered_ms),
                Stage::Negotiating | Stage::Connecting { .. } => None,
            },
            ended_at_ms: end.map(|(at, _)| at),
            cause: end.map_or(IN_PROGRESS, |(_, cause)| cause).into(),
            codec: Some(BROWSER_CODEC.into()),
        }
    }

    pub(super) fn view(&self) -> ParticipantView {
        ParticipantView {
            id: self.id,
            display_name: self.display_name.clone(),
            user: "webrtc".into(),
            direction: "inbound",
            state: if self.in_mix() { "joined" } else { "connecting" },
            started_at_ms: self.started_ms,
            flags: ParticipantFlags {
                joined: self.in_mix(),
                moderator: self.moderator,
                talking: self.talking,
                muted: self.muted,
                deaf: self.deaf,
                on_hold: false,
                video_muted: false,
            },
            media: MediaView::new(BROWSER_CODEC, true, self.stats.as_ref(), 0),
        }
    }

    fn labels(&self) -> RoomCodecLabels {
        RoomCodecLabels { room: self.room.number.to_string(), codec: BROWSER_CODEC.into() }
    }
}

impl Core {
    /// The room's limit and PIN, as for a phone; a port for the peer connection.
    pub(super) fn browser_join(&mut self, join: BrowserJoin) -> Result<BrowserAdmitted, JoinRefused> {
        let now = self.now.at;
        let BrowserJoin { room, pin, display_name, source, ended } = join;
        if self.draining {
            return Err(JoinRefused::Unavailable);
        }
        let limit = room.max_participants.unwrap_or(self.shared.config.conference.max_participants);
        if self.calls.occupancy(&room.number) >= limit as usize {
            return Err(JoinRefused::RoomFull);
        }
        let has_pin = room.pin.is_some() || room.moderator_pin.is_some();
        let moderator = if has_pin {
            let guessing = PinSource::Address(source.ip());
            if self.calls.guard.blocked(now, &guessing, &room.number).is_some() {
                return Err(JoinRefused::Blocked);
            }
            let entered = pin.unwrap_or_default();
            match check_pin(room.pin.as_deref(), room.moderator_pin.as_deref(), &entered) {
                Some(moderator) => moderator,
                None => {
                    tracing::info!(room = %room.number, %source, "browser: wrong PIN");
                    self.calls.guard.failure(now, guessing, &room.number);
                    return Err(JoinRefused::WrongPin);
                }
            }
        } else {
            false
        };
        // The pair's sockets are closed again at once: the peer connection binds the RTP
        // port itself, on the WebRTC addresses. Round-robin allocation keeps it from being
        // handed out meanwhile.
        let port = match self.ports.allocate_free_on(&self.shared.config.webrtc.addresses) {
            Ok(pair) => pair.port,
            Err(e) => {
                tracing::error!(error = %e, "no media port for a browser");
                return Err(JoinRefused::NoPorts);
            }
        };
        let id = self.calls.new_id();
        tracing::info!(participant = %id, room = %room.number, %source, moderator, "browser admitted");
        let browser = Browser {
            id,
            room,
            display_name,
            source,
            moderator,
            call_id: format!("webrtc-{}", new_branch()),
            started_ms: self.now.unix_ms,
            stage: Stage::Negotiating,
            talking: false,
            muted: false,
            deaf: false,
            stats: None,
            lost_reported: 0,
            ended: Some(ended),
        };
        self.calls.browsers.insert(id, browser);
        Ok(BrowserAdmitted { id, port, moderator })
    }

    /// The peer connection is negotiated: the leg is ready for the mix.
    pub(super) fn browser_media(&mut self, id: ParticipantId, config: LegConfig, wire: Wire) {
        let Some(browser) = self.calls.browsers.get_mut(&id) else { return };
        if let Stage::Negotiating = browser.stage {
            browser.stage = Stage::Connecting { config, wire };
        }
    }

    /// ICE and DTLS are up: the mix can reach the browser, so it joins now (not at the
    /// answer: a join tone for someone who may never connect, or a prompt into a connection
    /// not yet keyed, would be lost on the way).
    pub(super) fn browser_connected(&mut self, id: ParticipantId) {
        let Some(browser) = self.calls.browsers.get_mut(&id) else { return };
        let answered_ms = self.now.unix_ms;
        let (config, wire) = match std::mem::replace(&mut browser.stage, Stage::InMix { answered_ms }) {
            Stage::Connecting { config, wire } => (config, wire),
            // Reconnected after a network change, or (never) connected before the answer.
            other => {
                browser.stage = other;
                return;
            }
        };
        let room = browser.room.number.clone();
        // Written when it joins, so a crash from here on still leaves its record.
        let record = browser.record(None);
        self.out.media(MediaCommand::Add(Box::new(LegSetup {
            id,
            room: room.clone(),
            config,
            wire,
            srtp: None,
            joined: true,
        })));
        if browser.muted {
            self.out.media(MediaCommand::SetMuted(id, true));
        }
        if browser.deaf {
            self.out.media(MediaCommand::SetDeaf(id, true));
        }
        self.shared.metrics.media.active_legs.get_or_create(&browser.labels()).inc();
        self.write_record(record);
        self.announce_join(id, &room);
        self.show_without_video(id);
        self.publish(id);
    }

    /// Ends a browser's leg; `tell` when the page did not ask for it (kick, RTP timeout).
    pub(super) fn end_browser(&mut self, id: ParticipantId, cause: Cause, tell: bool) {
        let Some(mut browser) = self.calls.browsers.remove(&id) else { return };
        let room = browser.room.number.clone();
        if browser.in_mix() {
            self.out.media(MediaCommand::Remove(id));
            self.shared.metrics.media.active_legs.get_or_create(&browser.labels()).dec();
            if self.calls.joined_in_room(&room, id) > 0 {
                let tone = self.prompts.leave_tone.clone();
                self.out.media(MediaCommand::Play(Audience::Room(room.clone()), tone));
            }
        }
        if let (true, Some(ended)) = (tell, browser.ended.take()) {
            let _ = ended.send(cause);
        }
        self.count_call(cause.as_str());
        self.publish_left(id, &room);
        tracing::info!(participant = %id, %room, cause = cause.as_str(), "browser left");
        self.write_record(browser.record(Some((self.now.unix_ms, cause.as_str()))));
    }
}
