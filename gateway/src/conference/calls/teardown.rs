//! Ending calls, and their records.

use super::*;

impl Core {
    /// Ends a call: BYE to the phone when `send_bye`, the leg out of the mix, the record
    /// written.
    pub(in crate::conference) fn end_call(&mut self, id: ParticipantId, cause: Cause, send_bye: bool) {
        let Some(mut call) = self.calls.calls.remove(&id) else { return };
        self.calls.by_dialog.remove(&call.dialog.id);
        if let Some(tx) = call.invite_tx {
            self.calls.answered.remove(&tx);
        }
        if send_bye {
            let via = call.via();
            let bye = call.dialog.request(Method::Bye, &via, &new_branch());
            match self.layer.send_request(self.now.at, bye, call.peer) {
                Ok(tx) => {
                    self.calls.requests.insert(tx, Outgoing::Bye);
                }
                Err(e) => tracing::warn!(participant = %id, error = %e, "BYE not sent"),
            }
        }
        let running = matches!(call.media, Media::Running);
        if running {
            self.out.media(MediaCommand::Remove(id));
            let labels =
                RoomCodecLabels { room: call.room.number.to_string(), codec: call.sdp.codec.name().into() };
            self.shared.metrics.media.active_legs.get_or_create(&labels).dec();
        }
        if call.joined() && self.calls.joined_in_room(&call.room.number, id) > 0 {
            self.out.media(MediaCommand::Play(
                Audience::Room(call.room.number.clone()),
                self.prompts.leave_tone.clone(),
            ));
        }
        self.count_call(cause.as_str());
        self.calls.star.remove(&id);
        if self.calls.in_room(&call.room.number).next().is_none() {
            self.calls.layouts.remove(&call.room.number);
        } else if let Some((_, presenter)) = self.calls.layouts.get_mut(&call.room.number) {
            // The presenter gone, the active speaker takes the place (the worker did likewise).
            if *presenter == Some(id) {
                *presenter = None;
            }
        }
        self.publish_left(id, &call.room.number);
        tracing::info!(participant = %id, room = %call.room.number, cause = cause.as_str(), "call ended");
        self.write_record(call.record(Some((self.now.unix_ms, cause.as_str()))));
        call.timers.ok = None;
    }

    /// A call record for the database; the shell writes it until the database takes it (a
    /// record is never only logged), and shutdown waits for every write.
    pub(in crate::conference) fn write_record(&mut self, record: CallRecord) {
        self.out.push(Output::Record(Box::new(record)));
    }

    /// The record of a call refused with `response` (404, 486, 488, 403…): the response
    /// copies the request's From, To and Call-ID.
    pub(in crate::conference) fn write_refusal(&mut self, response: &rsip::Response, room: Option<&str>) {
        let header = |pick: fn(&Header) -> Option<&str>| response.headers.iter().find_map(pick).unwrap_or("");
        let uri = |value: &str| NameAddr::parse(value).map(|n| n.uri.to_string()).unwrap_or_default();
        let call_id = header(|h| match h {
            Header::CallId(c) => Some(c.value()),
            _ => None,
        });
        let to = NameAddr::parse(header(|h| match h {
            Header::To(t) => Some(t.value()),
            _ => None,
        }));
        let now = self.now.unix_ms;
        self.write_record(CallRecord {
            leg_id: format!("{call_id}-{}", to.as_ref().ok().and_then(|t| t.tag()).unwrap_or("")),
            call_id: call_id.to_string(),
            direction: RecordDirection::Inbound,
            from_uri: uri(header(|h| match h {
                Header::From(f) => Some(f.value()),
                _ => None,
            })),
            to_uri: to.map(|t| t.uri.to_string()).unwrap_or_default(),
            room_number: room.map(str::to_string),
            started_at_ms: now,
            answered_at_ms: None,
            ended_at_ms: Some(now),
            cause: response.status_code.code().to_string(),
            codec: None,
        });
    }

    /// Hangs up every call, and cancels every call out (shutdown).
    pub(in crate::conference) fn end_all_calls(&mut self, cause: Cause) {
        self.cancel_all_dialing();
        let ids: Vec<ParticipantId> = self.calls.calls.keys().copied().collect();
        for id in ids {
            self.end_call(id, cause, true);
        }
        let ids: Vec<ParticipantId> = self.calls.browsers.keys().copied().collect();
        for id in ids {
            self.end_browser(id, cause, true);
        }
    }
}
