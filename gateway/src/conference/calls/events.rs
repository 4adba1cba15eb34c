//! The keypad (PIN entry and in-room commands), the media worker's reports, and the calls'
//! timers.

use super::*;

impl Core {
    /// A digit from RFC 4733, SIP INFO or in-band detection: the PIN in the IVR, a command
    /// in the room.
    pub(super) fn on_digit(&mut self, id: ParticipantId, digit: char, now: Instant) {
        if let Some(Call { stage: Stage::Pin(entry), .. }) = self.calls.call_mut(id) {
            let step = entry.digit(now, digit);
            return self.pin_step(id, step, now);
        }
        self.room_command(id, digit);
    }

    /// In the room, `*6` mutes or unmutes oneself (as on most bridges); other digits do
    /// nothing.
    pub(super) fn room_command(&mut self, id: ParticipantId, digit: char) {
        let starred = self.calls.star.remove(&id);
        if digit == '*' {
            self.calls.star.insert(id);
            return;
        }
        let muted = match (self.calls.calls.get(&id), self.calls.browsers.get(&id)) {
            (Some(call), _) if call.joined() => call.leg.muted,
            (_, Some(browser)) => browser.muted,
            _ => return,
        };
        tracing::debug!(participant = %id, %digit, starred, "digit in the room");
        if starred && digit == '6' {
            let Some((room, _)) = self.calls.view(id) else { return };
            let _ = self.participant_action(&room, id, ParticipantAction::Mute(!muted));
        }
    }

    pub(super) fn pin_step(&mut self, id: ParticipantId, step: PinStep, now: Instant) {
        self.calls.touched.insert(id);
        let Some(call) = self.calls.calls.get_mut(&id) else { return };
        let source = call.party.guessing.clone();
        match step {
            PinStep::More => {}
            PinStep::Wrong { left } => {
                tracing::info!(participant = %id, left, "wrong PIN");
                self.calls.guard.failure(now, source, &call.room.number);
                self.out.media(MediaCommand::Play(Audience::Leg(id), self.prompts.wrong_pin.clone()));
            }
            PinStep::Failed => {
                tracing::info!(participant = %id, "wrong PIN, no attempts left: goodbye");
                self.calls.guard.failure(now, source, &call.room.number);
                call.stage = Stage::Goodbye;
                self.out.media(MediaCommand::Play(Audience::Leg(id), self.prompts.goodbye.clone()));
            }
            PinStep::Accepted { moderator } => {
                tracing::info!(participant = %id, moderator, room = %call.room.number, "PIN accepted: joined");
                call.stage = Stage::Joined { moderator };
                let room = call.room.number.clone();
                self.out.media(MediaCommand::Join(id));
                // A mute or deafening from the API while in the IVR still holds.
                if call.leg.muted {
                    self.out.media(MediaCommand::SetMuted(id, true));
                }
                if call.leg.deaf {
                    self.out.media(MediaCommand::SetDeaf(id, true));
                }
                self.announce_join(id, &room);
                self.start_video(id);
                self.show_without_video(id);
                self.publish(id);
            }
        }
    }

    pub(in crate::conference) fn on_media_event(&mut self, event: MediaEvent) {
        let now = self.now.at;
        match event {
            MediaEvent::Dtmf { id, digit } => self.on_digit(id, digit, now),
            MediaEvent::Talking { id, talking } => {
                if let Some(call) = self.calls.call_mut(id) {
                    call.leg.talking = talking;
                }
                if let Some(browser) = self.calls.browsers.get_mut(&id) {
                    browser.talking = talking;
                }
                // The active speaker of the room's picture.
                self.out.media(MediaCommand::Video(VideoCommand::Talking(id, talking)));
                self.publish(id);
            }
            MediaEvent::VideoKeyframeByInfo { id } => self.ask_keyframe_by_info(id),
            MediaEvent::VideoStats { id, stats } => {
                if let Some(video) = self.calls.calls.get_mut(&id).and_then(|c| c.video.as_mut()) {
                    video.report(now, stats);
                }
            }
            MediaEvent::PromptFinished { id } => {
                let Some(call) = self.calls.call_mut(id) else { return };
                match &mut call.stage {
                    Stage::Goodbye => self.end_call(id, Cause::PinFailed, true),
                    Stage::Pin(entry) => entry.restart_timer(now),
                    Stage::Joined { .. } => {}
                }
            }
            MediaEvent::RtpTimeout { id } => {
                tracing::info!(participant = %id, "no RTP: hanging up");
                self.end_call(id, Cause::RtpTimeout, true);
                self.end_browser(id, Cause::RtpTimeout, true);
            }
            MediaEvent::HoldTimeout { id } => {
                tracing::info!(participant = %id, "on hold too long: hanging up");
                self.end_call(id, Cause::HoldTimeout, true);
            }
            MediaEvent::Stats { id, stats, foreign_packets } => {
                let (room, codec, lost_reported, figures) =
                    match (self.calls.calls.get_mut(&id), self.calls.browsers.get_mut(&id)) {
                        (Some(call), _) => (
                            &call.room.number,
                            call.sdp.codec.name(),
                            &mut call.leg.lost_reported,
                            &mut call.leg.stats,
                        ),
                        (_, Some(b)) => (&b.room.number, "opus", &mut b.lost_reported, &mut b.stats),
                        _ => return,
                    };
                let labels = RoomCodecLabels { room: room.to_string(), codec: codec.into() };
                let metrics = &self.shared.metrics;
                if stats.lost > *lost_reported {
                    metrics.media.rtp_lost_packets.get_or_create(&labels).inc_by(stats.lost - *lost_reported);
                    *lost_reported = stats.lost;
                }
                metrics.media.rtp_jitter_seconds.get_or_create(&labels).observe(stats.jitter_ms / 1000.0);
                *figures = Some(stats);
                if let Some(call) = self.calls.call_mut(id) {
                    call.leg.talking = stats.talking;
                    call.leg.foreign_packets = foreign_packets;
                }
            }
        }
    }

    pub(in crate::conference) fn handle_calls_timeout(&mut self, now: Instant) {
        let mut resend = Vec::new();
        let mut end = Vec::new();
        let mut refresh = Vec::new();
        let mut pin = Vec::new();
        for id in self.calls.due(now) {
            let Some(call) = self.calls.calls.get_mut(&id) else { continue };
            if let Some(ok) = &mut call.timers.ok {
                match ok.timer.handle_timeout(now) {
                    Some(OkAction::Resend) => resend.push((ok.to, ok.bytes.clone())),
                    Some(OkAction::GiveUp) => end.push((call.id, Cause::NoAck)),
                    None => {}
                }
            }
            if call.timers.retry_refresh_at.is_some_and(|at| at <= now) {
                call.timers.retry_refresh_at = None;
                refresh.push(call.id);
            }
            if let Some(session) = &mut call.timers.session {
                match session.handle_timeout(now) {
                    Some(TimerAction::Refresh) => refresh.push(call.id),
                    Some(TimerAction::Expired) => end.push((call.id, Cause::SessionExpired)),
                    None => {}
                }
            }
            if let Stage::Pin(entry) = &mut call.stage {
                if let Some(step) = entry.handle_timeout(now) {
                    pin.push((call.id, step));
                }
            }
        }
        for (to, bytes) in resend {
            self.layer.send_stateless(to, bytes);
        }
        for id in refresh {
            self.send_refresh(id, now);
        }
        for (id, step) in pin {
            self.pin_step(id, step, now);
        }
        for (id, cause) in end {
            self.end_call(id, cause, true);
        }
        self.handle_dial_timeouts(now);
    }
}
