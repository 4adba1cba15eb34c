//! A new INVITE: admission (look-ups as a task), the answer, the leg started.

use super::*;

impl Core {
    /// An INVITE outside any dialog: admission (auth, room) runs as a task.
    pub(in crate::conference) fn on_new_invite(&mut self, tx: ServerTx, request: InboundRequest, from: Peer) {
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            return self.overloaded(tx, &request);
        };
        let terminated =
            response_to(&request, StatusCode::RequestTerminated, Some(&new_tag()), self.server());
        self.calls.pending.insert(tx, Pending { terminated, cancelled: false });
        let lookup = Lookup { tx, request, from };
        self.out.push(Output::Lookup { lookup: Box::new(lookup), permit });
    }

    /// CANCEL before our answer (RFC 3261 §9.2): the CANCEL got its 200; the INVITE gets 487.
    pub(in crate::conference) fn on_cancelled(&mut self, tx: ServerTx) {
        let Some(pending) = self.calls.pending.get_mut(&tx).filter(|p| !p.cancelled) else { return };
        pending.cancelled = true;
        let response = pending.terminated.clone();
        self.respond(tx, response);
        self.count_call("cancelled");
    }

    /// A refusal of an INVITE from admission, counted by its code.
    pub(in crate::conference) fn on_admission_refused(
        &mut self,
        tx: ServerTx,
        response: rsip::Response,
        known_caller: bool,
    ) {
        if self.calls.pending.remove(&tx).is_some_and(|p| p.cancelled) {
            return;
        }
        let code = response.status_code.code();
        if !matches!(code, 401 | 407) {
            self.count_call(&code.to_string());
        }
        if known_caller {
            self.write_refusal(&response, None);
        }
        self.respond(tx, response);
    }

    /// An INVITE that passed its look-ups: the room's checks, the offer and session timer
    /// negotiated, the 200 sent, and the call begun.
    pub(in crate::conference) fn on_admitted(&mut self, admission: Admission) {
        let Admission { tx, request, from, room, caller } = admission;
        match self.calls.pending.remove(&tx) {
            Some(p) if !p.cancelled => {}
            // Cancelled meanwhile (answered with 487), or the transaction is gone.
            _ => return,
        }
        let user = caller.to_string();
        let refused = |core: &mut Core, refusal: Refusal| {
            let Refusal(status, why) = refusal;
            tracing::info!(room = %room.number, user, code = status.code(), why, "call refused");
            core.count_call(&status.code().to_string());
            let response = response_to(&request, status, Some(&new_tag()), core.server());
            core.write_refusal(&response, Some(&room.number));
            core.respond(tx, response);
        };
        let guessing = match self.room_admits(&room, &caller, &request, from) {
            Ok(guessing) => guessing,
            Err(refusal) => return refused(self, refusal),
        };
        let offer = match read_offer(&request) {
            Ok(offer) => offer,
            Err(refusal) => return refused(self, refusal),
        };
        let timer = session_timer::negotiate_uas(&request.request, &self.session_policy());
        if let UasDecision::TooSmall { .. } = timer {
            let mut response =
                response_to(&request, StatusCode::SessionIntervalTooSmall, Some(&new_tag()), self.server());
            for h in timer.response_headers() {
                push_header(&mut response, h);
            }
            self.count_call("422");
            return self.respond(tx, response);
        }
        let mut answer = match self.negotiate(offer, from) {
            Ok(answer) => answer,
            Err(refusal) => return refused(self, refusal),
        };
        if let Some(video) = &mut answer.video {
            video.cascade = video::is_focus(&request.request.headers);
        }
        let tag = new_tag();
        let contact = self.contact(&room.number, answer.advertised, from.transport);
        let mut dialog = match Dialog::uas(&request, &tag, &contact, rand::random::<u16>() as u32) {
            Ok(dialog) => dialog,
            Err(e) => {
                tracing::info!(error = %e, "INVITE cannot make a dialog");
                return refused(self, Refusal(StatusCode::BadRequest, "no dialog"));
            }
        };
        dialog.state = sip_stack::dialog::DialogState::Confirmed;
        let (ok, session, session_interval) =
            self.ok_response(&request, &tag, &contact, &timer, &answer.body);
        let to = self.layer.server_peer(tx).unwrap_or(from);
        let bytes = Bytes::from(response_bytes(&ok));
        self.respond(tx, ok);

        let now = self.now.at;
        let call = Call {
            id: self.calls.new_id(),
            invite_tx: None,
            dialog,
            peer: from,
            via_host: format!("{}:{}", answer.advertised, self.sip_port(from.transport)),
            peer_allows_update: allows(&request.request.headers, "UPDATE"),
            stage: self.first_stage(&room),
            media: match answer.our_offer {
                Some(offer) => Media::AwaitingAnswer { offer: Box::new(offer), ports: answer.ports },
                None => Media::Pending(answer.ports),
            },
            party: Party {
                direction: RecordDirection::Inbound,
                user,
                guessing,
                display_name: request
                    .envelope
                    .from
                    .display_name
                    .as_ref()
                    .map(|d| d.trim_matches('"').to_string())
                    .unwrap_or_default(),
                from_uri: request.envelope.from.uri.to_string(),
                to_uri: request.envelope.to.uri.to_string(),
                started_ms: self.now.unix_ms,
            },
            leg: LegState { on_hold: !answer.stream.direction.sends(), ..LegState::default() },
            sdp: Negotiation {
                local: answer.local,
                sdp_session: answer.sdp_session,
                sdp_version: 1,
                stream: answer.stream,
                codec: answer.codec,
                reoffer: None,
                mline_kinds: answer.mline_kinds,
            },
            video: answer.video,
            timers: Timers {
                ok: Some(PendingOk {
                    timer: OkRetransmit::new(now, self.layer.config().t1, self.layer.config().t2),
                    to,
                    bytes,
                }),
                session,
                session_interval,
                reinvite_pending: false,
                retry_refresh_at: None,
            },
            room,
        };
        self.begin_call(call);
    }

    /// The room's own checks: open for calls, not full, and the caller not locked out of its
    /// PIN. What a wrong PIN from this caller will count against, when it may come in.
    fn room_admits(
        &mut self,
        room: &Room,
        caller: &Caller,
        request: &InboundRequest,
        from: Peer,
    ) -> Result<PinSource, Refusal> {
        if self.draining {
            return Err(Refusal(StatusCode::ServiceUnavailable, "shutting down"));
        }
        let limit = room.max_participants.unwrap_or(self.shared.config.conference.max_participants);
        if self.calls.occupancy(&room.number) >= limit as usize {
            return Err(Refusal(StatusCode::BusyHere, "room full"));
        }
        let guessing = pin_source(caller, &request.envelope.from.uri.to_string(), from.addr.ip());
        if room.pin.is_some() || room.moderator_pin.is_some() {
            match self.calls.guard.blocked(self.now.at, &guessing, &room.number) {
                Some(PinBlock::Source) => {
                    return Err(Refusal(StatusCode::Forbidden, "too many wrong PINs from this caller"))
                }
                Some(PinBlock::Room) => {
                    return Err(Refusal(StatusCode::Forbidden, "too many wrong PINs for this room"))
                }
                None => {}
            }
        }
        Ok(guessing)
    }

    fn session_policy(&self) -> SessionTimerPolicy {
        let conference = &self.shared.config.conference;
        SessionTimerPolicy {
            min_se: 90,
            session_expires: conference.session_expires_secs,
            max_session_expires: conference.max_session_expires_secs,
        }
    }

    /// Ports, our SDP, and the answer to `offer` (or our offer, when the INVITE had none).
    fn negotiate(&mut self, offer: Option<sdp::Session>, from: Peer) -> Result<Answer, Refusal> {
        let ports = match self.ports.allocate() {
            Ok(ports) => ports,
            Err(e) => {
                tracing::error!(error = %e, "no RTP port for a call");
                return Err(Refusal(StatusCode::ServiceUnavailable, "no RTP port"));
            }
        };
        let advertised = self.advertised_ip(from.addr);
        let local = local_audio(advertised, ports.port, srtp_policy(self.shared.config.rtp.srtp));
        let video_ports = self.video_ports(offer.as_ref());
        let local_video = video_ports.as_ref().map(|p| {
            video::local_video(&self.shared.config.video, p.port, srtp_policy(self.shared.config.rtp.srtp))
        });
        let sdp_session = rand::random::<u32>() as u64;
        let mut video = None;
        // The session's m-lines: the offer's, or ours when the INVITE had none.
        let mline_kinds = offer.as_ref().map(sdp::mline_kinds);
        let (body, stream, our_offer) = match offer {
            Some(offer) => match sdp::answer_av(&offer, &local, local_video.as_ref(), sdp_session, 1) {
                Ok((answer, stream, video_stream)) => {
                    // Ports of a video line not taken go back now.
                    video = video_stream
                        .zip(local_video.zip(video_ports))
                        .map(|(stream, (local, ports))| video::CallVideo::new(local, stream, ports));
                    (answer, stream, None)
                }
                Err(e) => {
                    tracing::info!(error = %e, "SDP offer refused");
                    let reason = match e {
                        SdpError::Srtp { .. } => "SRTP policy",
                        _ => "no codec in common",
                    };
                    return Err(Refusal(StatusCode::NotAcceptableHere, reason));
                }
            },
            None => {
                tracing::debug!("INVITE without SDP: offering in the 200, the answer comes in the ACK");
                let ours = sdp::offer(&local, sdp_session, 1);
                (ours.clone(), no_stream_yet(), Some(ours))
            }
        };
        let Some(codec) = audio_codec(&stream.codec) else {
            return Err(Refusal(StatusCode::NotAcceptableHere, "no codec in common"));
        };
        let mline_kinds = mline_kinds.unwrap_or_else(|| sdp::mline_kinds(&body));
        Ok(Answer {
            ports,
            advertised,
            local,
            sdp_session,
            body,
            stream,
            codec,
            our_offer,
            video,
            mline_kinds,
        })
    }

    /// The 200 with our SDP, and the session timer it agrees to.
    fn ok_response(
        &self,
        request: &InboundRequest,
        tag: &str,
        contact: &str,
        timer: &UasDecision,
        body: &sdp::Session,
    ) -> (rsip::Response, Option<SessionTimer>, u32) {
        let mut ok = response_to(request, StatusCode::OK, Some(tag), self.server());
        // RFC 4579 §5: a conference focus says so, so that an MCU or gateway on the other side
        // knows it is cascaded to a room.
        push_header(&mut ok, Header::Contact(format!("<{contact}>;isfocus").into()));
        push_header(&mut ok, Header::Allow(ALLOW.into()));
        push_header(&mut ok, Header::Supported("timer".into()));
        let (session, interval) = match *timer {
            UasDecision::Use { interval, refresher, .. } => {
                for h in timer.response_headers() {
                    push_header(&mut ok, h);
                }
                (Some(SessionTimer::new(self.now.at, interval, refresher == Refresher::Uas)), interval)
            }
            UasDecision::TooSmall { .. } => (None, 0),
        };
        set_body(&mut ok, "application/sdp", body.to_string().into_bytes());
        (ok, session, interval)
    }

    /// A room with a PIN asks for it first; any other joins at once.
    fn first_stage(&self, room: &Room) -> Stage {
        if room.pin.is_none() && room.moderator_pin.is_none() {
            return Stage::Joined { moderator: false };
        }
        let c = &self.shared.config.conference;
        Stage::Pin(PinEntry::new(
            self.now.at,
            room.pin.clone(),
            room.moderator_pin.clone(),
            c.pin_attempts,
            Duration::from_secs(u64::from(c.pin_digit_timeout_secs)),
        ))
    }

    /// An answered call from here on: its record written, its media started unless the
    /// answer to our offer is still to come in the ACK.
    fn begin_call(&mut self, call: Call) {
        let id = call.id;
        tracing::info!(
            participant = %id, room = %call.room.number, user = %call.party.user, codec = call.sdp.codec.name(),
            pin = matches!(call.stage, Stage::Pin(_)), "call answered"
        );
        self.calls.by_dialog.insert(call.dialog.id.clone(), id);
        let awaiting = matches!(call.media, Media::AwaitingAnswer { .. });
        // Written at the answer, so a crash from here on still leaves the call's record.
        self.write_record(call.record(None));
        self.calls.calls.insert(id, call);
        if !awaiting {
            self.start_media(id);
        }
    }

    /// The leg joins its conference's media, and the caller hears the PIN prompt or the room.
    pub(in crate::conference) fn start_media(&mut self, id: ParticipantId) {
        let Some(call) = self.calls.call_mut(id) else { return };
        let Media::Pending(ports) = std::mem::replace(&mut call.media, Media::Running) else { return };
        let stream = &call.sdp.stream;
        let leg = LegSetup {
            id,
            room: call.room.number.clone(),
            config: leg_config(call.sdp.codec, stream),
            wire: Wire::Udp {
                rtp: ports.rtp,
                rtcp: (!stream.rtcp_mux).then_some(ports.rtcp),
                remote: stream.remote,
                remote_rtcp: stream.remote.and_then(crate::media::rtcp_beside),
            },
            srtp: stream.srtp,
            joined: call.joined(),
        };
        self.out.media(MediaCommand::Add(Box::new(leg)));
        if call.leg.on_hold {
            self.out.media(MediaCommand::Update {
                id,
                config: leg_config(call.sdp.codec, stream),
                remote: stream.remote,
                on_hold: true,
                srtp: stream.srtp,
            });
        }
        let labels =
            RoomCodecLabels { room: call.room.number.to_string(), codec: call.sdp.codec.name().into() };
        self.shared.metrics.media.active_legs.get_or_create(&labels).inc();
        let room = call.room.number.clone();
        if call.joined() {
            self.announce_join(id, &room);
            self.start_video(id);
            self.show_without_video(id);
            self.publish(id);
        } else {
            self.out.media(MediaCommand::Play(Audience::Leg(id), self.prompts.enter_pin.clone()));
        }
    }

    /// Tones for the room, and the "first participant" prompt for a caller alone.
    pub(in crate::conference) fn announce_join(&mut self, id: ParticipantId, room: &RoomNumber) {
        if self.calls.joined_in_room(room, id) == 0 {
            self.out.media(MediaCommand::Play(Audience::Leg(id), self.prompts.first_participant.clone()));
        } else {
            let tone = self.prompts.join_tone.clone();
            self.out.media(MediaCommand::Play(Audience::Room(room.clone()), tone));
        }
    }
}

/// Why an admitted INVITE is refused after all: the status, and what the log says.
struct Refusal(StatusCode, &'static str);

/// What negotiating an INVITE's offer settled.
struct Answer {
    ports: PortPair,
    advertised: IpAddr,
    local: LocalAudio,
    sdp_session: u64,
    /// Our answer, or our offer when the INVITE had none.
    body: sdp::Session,
    stream: AudioStream,
    codec: AudioCodec,
    our_offer: Option<sdp::Session>,
    video: Option<video::CallVideo>,
    mline_kinds: Vec<String>,
}

/// The INVITE's offer; none asks us to offer, and the answer comes in the ACK (RFC 3261
/// §13.2.1, "late offer", common with trunks and PBXes).
fn read_offer(request: &InboundRequest) -> Result<Option<sdp::Session>, Refusal> {
    if request.request.body.is_empty() {
        return Ok(None);
    }
    match sdp::parse(&request.request.body) {
        Ok(offer) => Ok(Some(offer)),
        Err(e) => {
            tracing::info!(error = %e, "INVITE with a broken SDP offer");
            Err(Refusal(StatusCode::NotAcceptableHere, "SDP does not parse"))
        }
    }
}
