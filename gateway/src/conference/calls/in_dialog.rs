//! Requests and responses within a call's dialog: BYE, re-INVITE and UPDATE (refresh, hold,
//! codec change), INFO, ACK, our own session refreshes (RFC 4028 §7.4) and their answers.

use super::*;

impl Core {
    /// A request inside a dialog, or claiming to be (it has a To tag).
    pub(in crate::conference) fn on_in_dialog(&mut self, tx: ServerTx, request: InboundRequest, from: Peer) {
        let method = request.request.method;
        let id = DialogId::of_request(&request).and_then(|d| self.calls.by_dialog.get(&d).copied());
        let Some(id) = id else {
            let response =
                response_to(&request, StatusCode::CallTransactionDoesNotExist, None, self.server());
            return self.respond(tx, response);
        };
        let now = self.now.at;
        let Some(call) = self.calls.call_mut(id) else { return };
        if let Err(e) = call.dialog.on_request(&request) {
            tracing::debug!(participant = %id, error = %e, "in-dialog request refused");
            let response = response_to(&request, StatusCode::ServerInternalError, None, self.server());
            return self.respond(tx, response);
        }
        let glare = call.timers.reinvite_pending;
        let ok = |core: &Core| response_to(&request, StatusCode::OK, None, core.server());
        match method {
            // §14.2: our own re-INVITE is out; the phone tries again after its glare delay.
            Method::Invite if glare => {
                let response = response_to(&request, StatusCode::RequestPending, None, self.server());
                self.respond(tx, response);
            }
            Method::Bye => {
                self.respond(tx, ok(self));
                self.end_call(id, Cause::Normal, false);
            }
            Method::Invite | Method::Update => self.on_offer(tx, id, &request, from, now),
            Method::Info => {
                let digit = info_digit(&request);
                let keyframe = video::asks_keyframe(&request);
                self.respond(tx, ok(self));
                if let Some(digit) = digit {
                    self.on_digit(id, digit, now);
                }
                if keyframe {
                    self.out.media(MediaCommand::Video(VideoCommand::KeyframeRequested(id)));
                }
            }
            Method::Options => {
                let mut response = ok(self);
                push_header(&mut response, Header::Allow(ALLOW.into()));
                self.respond(tx, response);
            }
            _ => {
                let mut response = response_to(&request, StatusCode::MethodNotAllowed, None, self.server());
                push_header(&mut response, Header::Allow(ALLOW.into()));
                self.respond(tx, response);
            }
        }
    }

    /// A re-INVITE or UPDATE: a session refresh, and maybe a new offer (hold, resume, codec
    /// change, new address).
    pub(super) fn on_offer(
        &mut self,
        tx: ServerTx,
        id: ParticipantId,
        request: &InboundRequest,
        from: Peer,
        now: Instant,
    ) {
        let server = self.server().map(str::to_string);
        let offer = (!request.request.body.is_empty()).then(|| sdp::parse(&request.request.body));
        // Video added to a call that had none: its ports now.
        let has_video = self.calls.calls.get(&id).is_some_and(|c| c.video.is_some());
        let new_video = match &offer {
            Some(Ok(offer)) if !has_video => self.video_ports(Some(offer)).map(|ports| {
                let srtp = srtp_policy(self.shared.config.rtp.srtp);
                (video::local_video(&self.shared.config.video, ports.port, srtp), ports)
            }),
            _ => None,
        };
        let Some(call) = self.calls.call_mut(id) else { return };
        let method = request.request.method;
        let mut response = response_to(request, StatusCode::OK, None, server.as_deref());
        push_header(&mut response, Header::Contact(format!("<{}>;isfocus", call.dialog_contact()).into()));
        push_header(&mut response, Header::Allow(ALLOW.into()));
        let max_session_expires = self.shared.config.conference.max_session_expires_secs;
        call.refreshed_by(&request.request, now, max_session_expires, &mut response);
        let mut update = None;
        let mut video_added = false;
        if let Some(offer) = offer {
            let srtp_mode = self.shared.config.rtp.srtp;
            let new_local = new_video.as_ref().map(|(local, _)| local);
            let answered = offer.and_then(|offer| {
                let answered = call.answer_offer(&offer, srtp_mode, new_local)?;
                call.sdp.mline_kinds = sdp::mline_kinds(&offer);
                Ok(answered)
            });
            let (answer, stream, video_stream) = match answered {
                Ok(answered) => answered,
                Err(e) => {
                    tracing::info!(participant = %id, error = %e, "re-offer refused");
                    let response =
                        response_to(request, StatusCode::NotAcceptableHere, None, server.as_deref());
                    return self.respond(tx, response);
                }
            };
            let Some(codec) = audio_codec(&stream.codec) else { return };
            let video_stream = match (video_stream, new_video) {
                (Some(stream), Some((local, ports))) => {
                    call.video = Some(video::CallVideo::new(local, stream, ports));
                    video_added = true;
                    None
                }
                (stream, _) => stream,
            };
            update = Some((call.use_stream(codec, stream), video_stream));
            set_body(&mut response, "application/sdp", answer.to_string().into_bytes());
        } else if method == Method::Invite {
            // An offerless re-INVITE: we offer our current stream; its answer comes in the ACK.
            let offer = call.reoffer();
            set_body(&mut response, "application/sdp", offer.to_string().into_bytes());
            call.sdp.reoffer = Some(Box::new(offer));
        }
        if method == Method::Invite {
            let to = self.layer.server_peer(tx).unwrap_or(from);
            call.timers.ok = Some(PendingOk {
                timer: OkRetransmit::new(now, self.layer.config().t1, self.layer.config().t2),
                to,
                bytes: Bytes::from(response_bytes(&response)),
            });
        }
        self.respond(tx, response);
        if let Some((update, video_stream)) = update {
            self.out.media(update);
            if video_added {
                tracing::info!(participant = %id, "video added by re-INVITE");
                self.start_video(id);
            } else {
                self.use_video_stream(id, video_stream);
            }
        }
    }

    /// The ACK of our 2xx (it has no transaction of its own); after a late offer, it carries
    /// the answer.
    pub(in crate::conference) fn on_ack(&mut self, request: &InboundRequest) {
        let id = DialogId::of_request(request).and_then(|d| self.calls.by_dialog.get(&d).copied());
        let Some(id) = id else { return };
        let Some(call) = self.calls.call_mut(id) else { return };
        call.timers.ok = None;
        if let Some(offer) = call.sdp.reoffer.take() {
            return self.take_reanswer(id, &offer, &request.request.body);
        }
        let Media::AwaitingAnswer { .. } = call.media else { return };
        let Media::AwaitingAnswer { offer, ports } = std::mem::replace(&mut call.media, Media::Running)
        else {
            return;
        };
        let answered = sdp::parse(&request.request.body)
            .and_then(|answer| sdp::read_answer(&offer, &answer, &call.sdp.local))
            .ok()
            .and_then(|stream| audio_codec(&stream.codec).map(|codec| (stream, codec)));
        match answered {
            Some((stream, codec)) => {
                call.leg.on_hold = !stream.direction.sends();
                call.sdp.codec = codec;
                call.sdp.stream = stream;
                call.media = Media::Pending(ports);
                self.start_media(id);
            }
            None => {
                tracing::info!(participant = %id, "no usable SDP answer in the ACK: hanging up");
                self.end_call(id, Cause::BadSdp, true);
            }
        }
    }

    /// Answers to our INVITEs, BYEs and session refreshes; false when the event is not ours.
    pub(in crate::conference) fn on_client_event(&mut self, event: &TxEvent) -> bool {
        if self.on_dial_event(event) {
            return true;
        }
        let (tx, response) = match event {
            TxEvent::Response { tx, response } => (*tx, Some(response)),
            TxEvent::Timeout { tx } | TxEvent::TransportError { tx } => (*tx, None),
            _ => return false,
        };
        let Some(&outgoing) = self.calls.requests.get(&tx) else { return false };
        let code = response.map(|r| r.response.status_code.code());
        if code.is_none_or(|c| c >= 200) {
            self.calls.requests.remove(&tx);
        }
        if let Outgoing::Refresh { id, invite_seq } = outgoing {
            if code.is_none_or(|c| c >= 200) {
                if let Some(call) = self.calls.call_mut(id) {
                    call.timers.reinvite_pending = false;
                    if !matches!(code, Some(200..=299)) {
                        // Refused: no answer to our re-offer will come.
                        call.sdp.reoffer = None;
                    }
                }
            }
            match (code, response) {
                (Some(200..=299), Some(response)) => self.refreshed(id, invite_seq, response),
                (Some(100..=199), _) => {}
                // Glare (RFC 3261 §14.1): both sides re-INVITEd; ours goes again after a delay.
                (Some(491), _) => {
                    if let Some(call) = self.calls.call_mut(id) {
                        let owns_call_id = call.party.direction == RecordDirection::Outbound;
                        let mut rng = sip_stack::rng::Rng::new(rand::random());
                        let delay = sip_stack::dialog::glare_delay(owns_call_id, &mut rng);
                        tracing::debug!(participant = %id, ?delay, "re-INVITE glare: retrying");
                        call.timers.retry_refresh_at = Some(self.now.at + delay);
                    }
                }
                // §10 of RFC 4028: a refresh answered 408 or 481 ends the session.
                (Some(408 | 481) | None, _) => self.end_call(id, Cause::SessionExpired, true),
                _ => tracing::info!(participant = %id, ?code, "session refresh refused"),
            }
        }
        true
    }

    pub(super) fn refreshed(
        &mut self,
        id: ParticipantId,
        invite_seq: Option<u32>,
        response: &InboundResponse,
    ) {
        let now = self.now.at;
        let Some(call) = self.calls.call_mut(id) else { return };
        let (interval, refresher) = session_timer::from_response(&response.response)
            .unwrap_or((call.timers.session_interval, Refresher::Uac));
        if let Some(session) = &mut call.timers.session {
            // We sent the refresh, so we are the UAC of this transaction.
            session.refreshed(now, interval, refresher == Refresher::Uac);
        }
        if let Some(seq) = invite_seq {
            let branch = new_branch();
            let via = call.via();
            let ack = call.dialog.ack(seq, &via, &branch);
            let bytes = Bytes::from(sip_stack::message::request_bytes(&ack));
            self.layer.send_stateless(call.peer, bytes);
            if let Some(offer) = call.sdp.reoffer.take() {
                self.take_reanswer(id, &offer, &response.response.body);
            }
        }
    }

    /// The answer to our offer within the dialog: new SRTP keys (a phone may re-key in any
    /// answer) or a new address reach the media workers, for audio and video alike; a video
    /// line the answer refuses stops the video.
    pub(super) fn take_reanswer(&mut self, id: ParticipantId, offer: &sdp::Session, body: &[u8]) {
        let Some(call) = self.calls.call_mut(id) else { return };
        let answered = sdp::parse(body).and_then(|answer| {
            sdp::read_answer(offer, &answer, &call.sdp.local).map(|stream| (answer, stream))
        });
        let (answer, stream) = match answered {
            Ok(answered) => answered,
            Err(e) => {
                return tracing::warn!(participant = %id, error = %e, "answer to our re-offer not taken")
            }
        };
        if (stream.srtp, stream.remote) != (call.sdp.stream.srtp, call.sdp.stream.remote) {
            call.sdp.stream.srtp = stream.srtp;
            call.sdp.stream.remote = stream.remote;
            self.out.media(MediaCommand::Update {
                id,
                config: leg_config(call.sdp.codec, &call.sdp.stream),
                remote: call.sdp.stream.remote,
                on_hold: call.leg.on_hold,
                srtp: call.sdp.stream.srtp,
            });
        }
        let Some(video) = &call.video else { return };
        let offered = offer.medias.get(video.stream.mline).is_some_and(|m| m.port != 0);
        match sdp::video::read_answer(offer, &answer, video.stream.mline, &video.local) {
            Ok(Some(new)) if (new.srtp, new.remote) != (video.stream.srtp, video.stream.remote) => {
                tracing::info!(participant = %id, remote = ?new.remote, "video moved by the answer to our re-offer");
                let stream = VideoStream { srtp: new.srtp, remote: new.remote, ..video.stream.clone() };
                self.use_video_stream(id, Some(stream));
            }
            Ok(Some(_)) => {}
            Ok(None) if offered => {
                tracing::info!(participant = %id, "video refused in the answer to our re-offer");
                self.use_video_stream(id, None);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(participant = %id, error = %e, "video answer to our re-offer not taken"),
        }
    }

    /// RFC 4028 §7.4: we refresh with UPDATE where the phone allows it, else re-INVITE.
    pub(super) fn send_refresh(&mut self, id: ParticipantId, now: Instant) {
        let Some(call) = self.calls.call_mut(id) else { return };
        let via = call.via();
        let method = if call.peer_allows_update { Method::Update } else { Method::Invite };
        let mut request = call.dialog.request(method, &via, &new_branch());
        let seq = request.cseq_header().ok().and_then(|c| c.typed().ok()).map(|c| c.seq);
        request.headers.retain(|h| !matches!(h, Header::ContentLength(_)));
        request.headers.push(Header::Other(
            "Session-Expires".into(),
            format!("{};refresher=uac", call.timers.session_interval),
        ));
        request.headers.push(Header::Supported("timer".into()));
        if method == Method::Invite {
            call.sdp.sdp_version += 1;
            let mut local = call.sdp.local.clone();
            local.codecs = vec![*sdp_codec(call.sdp.codec)];
            if call.leg.on_hold {
                local.direction = call.sdp.stream.direction;
            }
            let offer = call.reoffer_with(&local);
            let body = offer.to_string().into_bytes();
            call.sdp.reoffer = Some(Box::new(offer));
            request.headers.push(Header::ContentType("application/sdp".into()));
            request.headers.push(Header::ContentLength((body.len() as u32).into()));
            request.body = body;
        } else {
            request.headers.push(Header::ContentLength(0.into()));
        }
        match self.layer.send_request(now, request, call.peer) {
            Ok(tx) => {
                let invite_seq = (method == Method::Invite).then_some(seq).flatten();
                call.timers.reinvite_pending = method == Method::Invite;
                self.calls.requests.insert(tx, Outgoing::Refresh { id, invite_seq });
            }
            Err(e) => tracing::warn!(participant = %id, error = %e, "session refresh not sent"),
        }
    }
}

impl Call {
    /// A refresh in a re-INVITE or UPDATE (RFC 4028 §9): the interval and refresher it
    /// settles, in force from `now` and told in the 2xx.
    fn refreshed_by(
        &mut self,
        request: &rsip::Request,
        now: Instant,
        max_session_expires: u32,
        response: &mut rsip::Response,
    ) {
        let Some(session) = &mut self.timers.session else { return };
        let policy = SessionTimerPolicy {
            min_se: 90,
            session_expires: self.timers.session_interval,
            max_session_expires,
        };
        if let UasDecision::Use { interval, refresher, .. } = session_timer::negotiate_uas(request, &policy) {
            session.refreshed(now, interval, refresher == Refresher::Uas);
            self.timers.session_interval = interval;
            for h in (UasDecision::Use { interval, refresher, require_timer: false }).response_headers() {
                push_header(response, h);
            }
        }
    }

    /// Our answer to a new offer in the dialog, and the stream it settles.
    fn answer_offer(
        &mut self,
        offer: &sdp::Session,
        srtp_mode: SrtpMode,
        new_video: Option<&LocalVideo>,
    ) -> Result<(sdp::Session, AudioStream, Option<VideoStream>), SdpError> {
        self.sdp.sdp_version += 1;
        // The call's video keeps its port; a call without video takes one when it has ports
        // for it, else refuses the video line.
        let video = self.video.as_ref().map(|v| &v.local).or(new_video);
        let (session, version) = (self.sdp.sdp_session, self.sdp.sdp_version);
        let answered = sdp::answer_av(offer, &self.sdp.local, video, session, version)?;
        // Another suite means new contexts: under our old key they would use its keystream
        // again (RFC 3711 §9.1), so a new key goes with it.
        let suite = |s: &AudioStream| s.srtp.map(|k| k.suite);
        if suite(&answered.1).is_some()
            && suite(&self.sdp.stream).is_some_and(|old| Some(old) != suite(&answered.1))
        {
            self.sdp.local.srtp = srtp_policy(srtp_mode);
            let video = self.video.as_ref().map(|v| &v.local).or(new_video);
            return sdp::answer_av(offer, &self.sdp.local, video, session, version);
        }
        Ok(answered)
    }

    /// The answered stream in force (hold, codec, address, keys); what the media worker is
    /// to change.
    fn use_stream(&mut self, codec: AudioCodec, stream: AudioStream) -> MediaCommand {
        let on_hold = !stream.direction.sends();
        if on_hold != self.leg.on_hold {
            tracing::info!(participant = %self.id, on_hold, "hold changed");
        }
        self.leg.on_hold = on_hold;
        self.sdp.codec = codec;
        let update = MediaCommand::Update {
            id: self.id,
            config: leg_config(codec, &stream),
            remote: stream.remote,
            on_hold,
            srtp: stream.srtp,
        };
        self.sdp.stream = stream;
        update
    }

    /// An offer of the stream in force, for an offerless re-INVITE.
    fn reoffer(&mut self) -> sdp::Session {
        self.sdp.sdp_version += 1;
        let mut local = self.sdp.local.clone();
        local.codecs = vec![*sdp_codec(self.sdp.codec)];
        self.reoffer_with(&local)
    }

    /// A re-offer of the streams in force, audio as `local` says, every m-line of the session
    /// kept.
    fn reoffer_with(&self, local: &LocalAudio) -> sdp::Session {
        let video = self.video.as_ref().map(|v| (&v.local, &v.stream));
        let (session, version) = (self.sdp.sdp_session, self.sdp.sdp_version);
        sdp::reoffer_av(local, &self.sdp.stream, video, &self.sdp.mline_kinds, session, version)
    }
}
