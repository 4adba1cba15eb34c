//! The harness: a core at virtual time zero, a phone's address, and what came out of it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip_stack::transport::{ConnectionId, Peer, Transport};
use tokio::sync::OwnedSemaphorePermit;

use crate::clock::Now;
use crate::conference::core::{Core, Input, Lookup, Output};
use crate::conference::shell::look_up;
use crate::config::{Config, TrunkConfig, TrustedSource};
use crate::control::{Control, DialRequest};
use crate::dns::HostPort;
use crate::media::prompts::Prompts;
use crate::media::{Audience, MediaCommand, MediaEvent, ParticipantId};
use crate::signalling::sip::auth::Context;
use crate::signalling::sip::trunks::TrunkOutput;
use crate::state::Shared;
use crate::storage::{Room, Storage};

/// Rooms reached through a trunk that trusts the phone's address, so no digest round: one
/// open, one behind PIN 1234.
pub(super) const DID: &str = "5551000";
pub(super) const PIN_DID: &str = "5552000";

/// A trunk named `name` at `proxy` that neither registers nor pings, and trusts nobody.
pub(super) fn trunk(name: &str, proxy: &str) -> TrunkConfig {
    TrunkConfig {
        name: name.into(),
        proxy: proxy.to_string().try_into().unwrap(),
        transport: Default::default(),
        username: "gateway".into(),
        auth_username: None,
        password: None,
        realm: None,
        domain: None,
        register: false,
        expires: 300,
        tls_ca_file: None,
        options_interval_secs: 0,
        caller_id: None,
        identity_header: Default::default(),
        inbound_sources: vec![],
    }
}

pub(super) struct Harness {
    pub(super) core: Core,
    /// What the look-up tasks get, as in the gateway.
    pub(super) ctx: Context,
    /// Look-ups the core asked for, not yet run.
    pub(super) lookups: VecDeque<(Box<Lookup>, OwnedSemaphorePermit)>,
    /// The phone's address: what the core sends there is what the phone hears.
    pub(super) phone: SocketAddr,
    pub(super) gateway: SocketAddr,
    pub(super) t0: Now,
    /// What the phone received, with when (seconds of virtual time).
    pub(super) heard: Vec<(f64, String)>,
    /// The media commands in short (`play 1 enter_pin`), with when.
    pub(super) played: Vec<(f64, String)>,
    /// Names the core asked to have resolved, with when.
    pub(super) asked: Vec<(f64, HostPort)>,
    pub(super) _db: tempfile::TempDir,
}

impl Harness {
    pub(super) async fn new() -> Harness {
        Harness::with(|_| {}).await
    }

    /// A harness whose default configuration `change` edits first.
    pub(super) async fn with(change: impl FnOnce(&mut Config)) -> Harness {
        let db = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        change(&mut config);
        config.database.url = format!("sqlite://{}", db.path().join("core.db").display());
        config.rtp.address = [127, 0, 0, 1].into();
        let mut carrier = trunk("carrier", "sip:127.0.0.1:9");
        carrier.inbound_sources = vec![TrustedSource::Ip([127, 0, 0, 1].into())];
        config.trunks.push(carrier);
        let storage = Storage::connect(&config.database.url, 2).await.unwrap();
        let room = Room {
            number: "1000".into(),
            name: "Core".into(),
            pin: None,
            moderator_pin: None,
            max_participants: None,
            dids: vec![DID.into()],
            layout: None,
        };
        storage.add_room(&room, 0).await.unwrap();
        let pin_room =
            Room { number: "2000".into(), pin: Some("1234".into()), dids: vec![PIN_DID.into()], ..room };
        storage.add_room(&pin_room, 0).await.unwrap();
        let shared = Shared::new(config, storage);
        let gateway: SocketAddr = ([127, 0, 0, 1], 5060).into();
        let prompts = Prompts::load(&shared.config.prompts, 16_000).unwrap();
        // The only clock read: the origin of virtual time.
        #[allow(clippy::disallowed_methods)]
        let t0 = Now::read();
        let core = Core::new(&shared, gateway, Default::default(), prompts, t0);
        Harness {
            core,
            ctx: Context::new(&shared),
            lookups: VecDeque::new(),
            phone: ([127, 0, 0, 1], 5070).into(),
            gateway,
            t0,
            heard: vec![],
            played: vec![],
            asked: vec![],
            _db: db,
        }
    }

    pub(super) fn secs(&self) -> f64 {
        (self.core.now.at - self.t0.at).as_secs_f64()
    }

    pub(super) fn set_time(&mut self, secs: f64) {
        self.core.now = self.t0.after(Duration::from_secs_f64(secs));
    }

    /// Hands the core one input and takes its outputs.
    pub(super) fn input(&mut self, input: Input) {
        self.core.handle(input);
        self.drain();
    }

    pub(super) fn drain(&mut self) {
        self.core.flush();
        while let Some(output) = self.core.poll_output() {
            let at = self.secs();
            match output {
                Output::Transmit(t) if t.to.addr == self.phone => {
                    self.heard.push((at, String::from_utf8_lossy(&t.bytes).into_owned()));
                }
                Output::Media(command) => {
                    let short = self.short(&command);
                    self.played.push((at, short));
                }
                Output::Lookup { lookup, permit } => self.lookups.push_back((lookup, permit)),
                Output::Trunk(TrunkOutput::Resolve(name)) => self.asked.push((at, name)),
                _ => {}
            }
        }
    }

    pub(super) fn short(&self, command: &MediaCommand) -> String {
        let p = &self.core.prompts;
        let prompts = [
            (&p.enter_pin, "enter_pin"),
            (&p.wrong_pin, "wrong_pin"),
            (&p.goodbye, "goodbye"),
            (&p.first_participant, "first_participant"),
            (&p.join_tone, "join_tone"),
            (&p.leave_tone, "leave_tone"),
        ];
        match command {
            MediaCommand::Add(setup) => format!("add {}", setup.id.0),
            MediaCommand::Remove(id) => format!("remove {}", id.0),
            MediaCommand::Join(id) => format!("join {}", id.0),
            MediaCommand::Update { id, config, on_hold, .. } => {
                format!("update {} {} {}", id.0, config.codec.name(), if *on_hold { "held" } else { "live" })
            }
            MediaCommand::Play(audience, samples) => {
                let name = prompts.iter().find(|(p, _)| Arc::ptr_eq(p, samples)).map_or("?", |(_, n)| n);
                match audience {
                    Audience::Leg(id) => format!("play {} {name}", id.0),
                    Audience::Room(room) => format!("play room {room} {name}"),
                }
            }
            other => format!("{other:?}").split([' ', '(', '{']).next().unwrap_or_default().to_lowercase(),
        }
    }

    /// The media worker reports `event` at `secs`.
    pub(super) fn media_says(&mut self, secs: f64, event: MediaEvent) {
        self.set_time(secs);
        self.input(Input::Media(event));
    }

    /// (time, command) of the media commands starting with `start`.
    pub(super) fn played(&self, start: &str) -> Vec<(f64, &str)> {
        self.played.iter().filter(|(_, c)| c.starts_with(start)).map(|(at, c)| (*at, c.as_str())).collect()
    }

    /// The phone sends `text` at `secs`.
    pub(super) fn phone_sends(&mut self, secs: f64, text: &str) {
        self.set_time(secs);
        let peer = Peer { transport: Transport::Udp, addr: self.phone, connection: Some(ConnectionId(0)) };
        self.input(Input::Message { peer, bytes: Bytes::from(text.to_string()) });
    }

    /// Runs the look-up an INVITE started and hands its verdict in (at the same time).
    pub(super) async fn admission(&mut self) {
        let (lookup, permit) = self.lookups.pop_front().expect("the INVITE asked for its look-ups");
        let command = look_up(&self.ctx, *lookup).await;
        drop(permit);
        self.input(Input::Command(command));
    }

    /// Runs every deadline up to `secs`, each at its exact time.
    pub(super) fn run_until(&mut self, secs: f64) {
        let end = self.t0.at + Duration::from_secs_f64(secs);
        while let Some(at) = self.core.poll_timeout().filter(|&at| at <= end) {
            self.core.now = self.t0.after(at - self.t0.at);
            self.input(Input::Timer);
        }
        self.set_time(secs);
    }

    /// (time, message) of what the phone got whose first line starts with `start`.
    pub(super) fn heard(&self, start: &str) -> Vec<(f64, &str)> {
        self.heard.iter().filter(|(_, m)| m.starts_with(start)).map(|(at, m)| (*at, m.as_str())).collect()
    }

    pub(super) fn phone(&self) -> SocketAddr {
        self.phone
    }
}

pub(super) fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// An INVITE to `did` with a PCMU offer and the given extra header lines.
pub(super) fn invite(phone: SocketAddr, gateway: SocketAddr, did: &str, extra: &str) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=sendrecv\r\n",
        phone.port() + 2
    );
    format!(
        "INVITE sip:{did}@{gateway} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {phone};branch=z9hG4bKcore1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+15550001@{phone}>;tag=phone1\r\n\
         To: <sip:{did}@{gateway}>\r\n\
         Call-ID: core-test-1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:+15550001@{phone}>\r\n\
         {extra}\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The phone's re-INVITE in the first call's dialog (`to` with our tag), CSeq `seq`, the same
/// offer in SDP version `seq`.
pub(super) fn reinvite(h: &Harness, to: &str, seq: u32) -> String {
    invite(h.phone(), h.gateway, DID, "")
        .replace("branch=z9hG4bKcore1", &format!("branch=z9hG4bKre{seq}"))
        .replace("CSeq: 1 INVITE", &format!("CSeq: {seq} INVITE"))
        .replace(&format!("To: <sip:{DID}@{}>", h.gateway), &format!("To: {to}"))
        .replace("o=- 1 1 IN", &format!("o=- 1 {seq} IN"))
}

/// The CANCEL of the first call's INVITE.
pub(super) fn cancel(h: &Harness) -> String {
    format!(
        "CANCEL sip:{DID}@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch=z9hG4bKcore1\r\n\
     Max-Forwards: 70\r\nFrom: <sip:+15550001@{phone}>;tag=phone1\r\nTo: <sip:{DID}@{gw}>\r\n\
     Call-ID: core-test-1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
        gw = h.gateway,
        phone = h.phone(),
    )
}

/// The ACK for the 2xx `ok`.
pub(super) fn ack(phone: SocketAddr, gateway: SocketAddr, ok: &str) -> String {
    let to = header(ok, "To").unwrap();
    format!(
        "ACK sip:{DID}@{gateway} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {phone};branch=z9hG4bKcoreack\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+15550001@{phone}>;tag=phone1\r\n\
         To: {to}\r\n\
         Call-ID: core-test-1\r\n\
         CSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The phone's 200 to the core's in-dialog request `request`.
pub(super) fn ok_to(request: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        out.push_str(&format!("{name}: {}\r\n", header(request, name).unwrap()));
    }
    out.push_str("Session-Expires: 90;refresher=uac\r\nContent-Length: 0\r\n\r\n");
    out
}

/// Calls the open room, is answered and ACKs at time 0; returns the 200.
pub(super) async fn answered_call(h: &mut Harness, extra: &str) -> String {
    call_to(h, DID, extra).await
}

/// Calls `did`, is answered and ACKs at time 0; returns the 200.
pub(super) async fn call_to(h: &mut Harness, did: &str, extra: &str) -> String {
    let text = invite(h.phone(), h.gateway, did, extra);
    h.phone_sends(0.0, &text);
    h.admission().await;
    let ok = h.heard("SIP/2.0 200").first().map(|(_, m)| m.to_string()).expect("the call is answered");
    let ack = ack(h.phone(), h.gateway, &ok);
    h.phone_sends(0.0, &ack);
    ok
}

pub(super) fn info(h: &Harness, seq: u32, digit: char) -> String {
    let to = header(h.heard("SIP/2.0 200")[0].1, "To").unwrap().to_string();
    let body = format!("Signal={digit}\r\nDuration=160\r\n");
    format!(
        "INFO sip:gateway@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch=z9hG4bKinfo{seq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15550001@{phone}>;tag=phone1\r\nTo: {to}\r\n\
         Call-ID: core-test-1\r\nCSeq: {seq} INFO\r\nContent-Type: application/dtmf-relay\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len(),
        gw = h.gateway,
        phone = h.phone(),
    )
}

pub(super) fn reply(
    request: &str,
    code: &str,
    to_tag: &str,
    contact: SocketAddr,
    sdp: Option<&str>,
) -> String {
    let mut out = format!("SIP/2.0 {code}\r\n");
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        out.push_str(&format!("{name}: {}\r\n", header(request, name).unwrap()));
    }
    out.push_str(&format!(
        "To: {};tag={to_tag}\r\nContact: <sip:far@{contact}>\r\n",
        header(request, "To").unwrap()
    ));
    match sdp {
        Some(body) => out.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )),
        None => out.push_str("Content-Length: 0\r\n\r\n"),
    }
    out
}

pub(super) fn far_sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 7 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

impl Harness {
    /// Dials the phone out of room 1000 at `secs`, ringing at most `ring` seconds.
    pub(super) async fn dial(&mut self, secs: f64, ring: u32) {
        let room = self.core.shared.storage.room("1000").await.unwrap().unwrap();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = DialRequest {
            to: format!("sip:far@{}", self.phone()),
            trunk: None,
            ring_timeout_secs: Some(ring),
        };
        self.set_time(secs);
        self.input(Input::Control(Control::Dial { room, request, next_hop: None, reply }));
        assert_eq!(answer.await.unwrap(), Ok(ParticipantId(1)));
    }
}

pub(super) fn nth_call(text: &str, n: u32) -> String {
    text.replace("core-test-1", &format!("core-test-{n}"))
        .replace("tag=phone1", &format!("tag=phone{n}"))
        .replace("branch=z9hG4bK", &format!("branch=z9hG4bKcall{n}"))
}
