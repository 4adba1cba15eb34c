//! The call-control core in virtual time: a phone's messages go in as inputs at chosen times,
//! the core's timers run at their exact deadlines, and what it sends is read from a loopback
//! socket standing for the phone. The admission look-ups (room, trunk) run against a real
//! SQLite database and come back as inputs, as they do in the gateway.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mixer::source::SourcePolicy;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::{Command, Core, Input};
use crate::clock::Now;
use crate::config::{Config, TrunkConfig, TrustedSource};
use crate::media::prompts::Prompts;
use crate::media::{Media, MediaEvent};
use crate::sip::transport::{Inbound, Transports};
use crate::state::Shared;
use crate::storage::{Room, Storage};

/// A room reached through a trunk that trusts the phone's address, so no digest round.
const DID: &str = "5551000";

struct Harness {
    core: Core,
    commands: mpsc::Receiver<Command>,
    /// Stands for the phone: what the core sends arrives here.
    phone: StdUdpSocket,
    gateway: SocketAddr,
    t0: Now,
    /// What the phone received, with when (seconds of virtual time).
    heard: Vec<(f64, String)>,
    _media_events: mpsc::Receiver<MediaEvent>,
    _inbound: mpsc::Receiver<Inbound>,
    _closing: watch::Sender<bool>,
    _db: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Harness {
        let db = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.database.url = format!("sqlite://{}", db.path().join("core.db").display());
        config.rtp.address = [127, 0, 0, 1].into();
        config.trunks.push(TrunkConfig {
            name: "carrier".into(),
            proxy: "127.0.0.1:9".into(),
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
            inbound_sources: vec![TrustedSource::Ip([127, 0, 0, 1].into())],
        });
        let storage = Storage::connect(&config.database.url, 2).await.unwrap();
        let room = Room {
            number: "1000".into(),
            name: "Core".into(),
            pin: None,
            moderator_pin: None,
            max_participants: None,
            dids: vec![DID.into()],
        };
        storage.add_room(&room, 0).await.unwrap();
        let shared = Shared::new(config, storage);
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let gateway = socket.local_addr().unwrap();
        let (inbound_tx, inbound) = mpsc::channel(16);
        let (closing, closing_rx) = watch::channel(false);
        let transports = Transports::new(vec![socket], inbound_tx, shared.clone(), closing_rx);
        let (media, media_events) =
            Media::start(16_000, Duration::from_secs(30), None, SourcePolicy::default(), &shared.metrics)
                .unwrap();
        let prompts = Prompts::load(&shared.config.prompts, 16_000).unwrap();
        let (commands_tx, commands) = mpsc::channel(16);
        // The only clock read: the origin of virtual time.
        #[allow(clippy::disallowed_methods)]
        let t0 = Now::read();
        let core = Core::new(&shared, transports, media, prompts, commands_tx, t0);
        let phone = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        phone.set_nonblocking(true).unwrap();
        Harness {
            core,
            commands,
            phone,
            gateway,
            t0,
            heard: vec![],
            _media_events: media_events,
            _inbound: inbound,
            _closing: closing,
            _db: db,
        }
    }

    fn secs(&self) -> f64 {
        (self.core.now.at - self.t0.at).as_secs_f64()
    }

    fn set_time(&mut self, secs: f64) {
        self.core.now = self.t0.after(Duration::from_secs_f64(secs));
    }

    /// Hands the core one input and keeps what it sent.
    fn input(&mut self, input: Input) {
        self.core.handle(input);
        self.core.flush();
        let mut buf = [0u8; 65_536];
        // Loopback delivers at once: what was sent is there to read.
        while let Ok(n) = self.phone.recv(&mut buf) {
            let at = self.secs();
            self.heard.push((at, String::from_utf8_lossy(&buf[..n]).into_owned()));
        }
    }

    /// The phone sends `text` at `secs`.
    fn phone_sends(&mut self, secs: f64, text: &str) {
        self.set_time(secs);
        let src = self.phone.local_addr().unwrap();
        self.input(Input::Inbound(Inbound::Datagram {
            socket: 0,
            src,
            bytes: Bytes::from(text.to_string()),
        }));
    }

    /// Waits for the look-ups an INVITE started and hands their result in (at the same time).
    async fn admission(&mut self) {
        let command = tokio::time::timeout(Duration::from_secs(10), self.commands.recv())
            .await
            .expect("admission finishes")
            .expect("the core's sender is alive");
        self.input(Input::Command(command));
    }

    /// Runs every deadline up to `secs`, each at its exact time.
    fn run_until(&mut self, secs: f64) {
        let end = self.t0.at + Duration::from_secs_f64(secs);
        while let Some(at) = self.core.poll_timeout().filter(|&at| at <= end) {
            self.core.now = self.t0.after(at - self.t0.at);
            self.input(Input::Timer);
        }
        self.set_time(secs);
    }

    /// (time, message) of what the phone got whose first line starts with `start`.
    fn heard(&self, start: &str) -> Vec<(f64, &str)> {
        self.heard.iter().filter(|(_, m)| m.starts_with(start)).map(|(at, m)| (*at, m.as_str())).collect()
    }

    fn phone(&self) -> SocketAddr {
        self.phone.local_addr().unwrap()
    }
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// An INVITE to the room's DID with a PCMU offer and the given extra header lines.
fn invite(phone: SocketAddr, gateway: SocketAddr, extra: &str) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=sendrecv\r\n",
        phone.port() + 2
    );
    format!(
        "INVITE sip:{DID}@{gateway} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {phone};branch=z9hG4bKcore1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+15550001@{phone}>;tag=phone1\r\n\
         To: <sip:{DID}@{gateway}>\r\n\
         Call-ID: core-test-1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:+15550001@{phone}>\r\n\
         {extra}\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The ACK for the 2xx `ok`.
fn ack(phone: SocketAddr, gateway: SocketAddr, ok: &str) -> String {
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
fn ok_to(request: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        out.push_str(&format!("{name}: {}\r\n", header(request, name).unwrap()));
    }
    out.push_str("Session-Expires: 90;refresher=uac\r\nContent-Length: 0\r\n\r\n");
    out
}

/// Calls the room, is answered and ACKs at time 0; returns the 200.
async fn answered_call(h: &mut Harness, extra: &str) -> String {
    let text = invite(h.phone(), h.gateway, extra);
    h.phone_sends(0.0, &text);
    h.admission().await;
    let ok = h.heard("SIP/2.0 200").first().map(|(_, m)| m.to_string()).expect("the call is answered");
    let ack = ack(h.phone(), h.gateway, &ok);
    h.phone_sends(0.0, &ack);
    ok
}

#[tokio::test]
async fn a_session_nobody_refreshes_ends_with_bye_at_the_rfc_4028_moment() {
    let mut h = Harness::new().await;
    let ok = answered_call(&mut h, "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n").await;
    assert_eq!(header(&ok, "Session-Expires"), Some("90;refresher=uac"));
    h.run_until(59.999);
    assert!(h.heard("BYE").is_empty(), "no BYE before the session expires");
    h.run_until(120.0);
    let byes = h.heard("BYE");
    // §10: the interval minus min(32 s, interval / 3) = 90 - 30.
    assert_eq!(byes.first().map(|(at, _)| *at), Some(60.0), "{byes:?}");
    // Unanswered, the BYE is sent again on Timer E: T1 doubling up to T2.
    let times: Vec<f64> = byes.iter().take(6).map(|(at, _)| *at).collect();
    assert_eq!(times, [60.0, 60.5, 61.5, 63.5, 67.5, 71.5]);
    assert_eq!(h.heard("SIP/2.0 200").len(), 1, "the ACK stopped the 2xx retransmissions");
}

#[tokio::test]
async fn a_refresh_from_the_phone_moves_the_expiry() {
    let mut h = Harness::new().await;
    answered_call(&mut h, "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n").await;
    h.run_until(40.0);
    let update = format!(
        "UPDATE sip:gateway@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch=z9hG4bKcoreupd\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15550001@{phone}>;tag=phone1\r\nTo: {to}\r\n\
         Call-ID: core-test-1\r\nCSeq: 2 UPDATE\r\nSupported: timer\r\n\
         Session-Expires: 90;refresher=uac\r\nContent-Length: 0\r\n\r\n",
        gw = h.gateway,
        phone = h.phone(),
        to = header(h.heard("SIP/2.0 200")[0].1, "To").unwrap(),
    );
    h.phone_sends(40.0, &update);
    let answers = h.heard("SIP/2.0 200");
    assert_eq!(answers.last().map(|(at, m)| (*at, header(m, "CSeq"))), Some((40.0, Some("2 UPDATE"))));
    h.run_until(99.999);
    assert!(h.heard("BYE").is_empty(), "refreshed at 40 s: good until 100 s");
    h.run_until(130.0);
    assert_eq!(h.heard("BYE").first().map(|(at, _)| *at), Some(100.0));
}

#[tokio::test]
async fn the_gateway_refreshes_by_update_at_half_the_interval_when_it_is_the_refresher() {
    let mut h = Harness::new().await;
    let ok = answered_call(
        &mut h,
        "Supported: timer\r\nAllow: INVITE, ACK, BYE, CANCEL, UPDATE\r\nSession-Expires: 90;refresher=uas\r\n",
    )
    .await;
    assert_eq!(header(&ok, "Session-Expires"), Some("90;refresher=uas"));
    h.run_until(44.999);
    assert!(h.heard("UPDATE").is_empty());
    h.run_until(45.0);
    let update = h.heard("UPDATE").first().map(|(at, m)| (*at, m.to_string())).expect("a refresh");
    assert_eq!(update.0, 45.0);
    assert_eq!(header(&update.1, "Session-Expires"), Some("90;refresher=uac"));
    let answer = ok_to(&update.1);
    h.phone_sends(45.0, &answer);
    h.run_until(89.999);
    assert_eq!(h.heard("UPDATE").len(), 1, "the next refresh waits another half interval");
    h.run_until(90.0);
    let second = h.heard("UPDATE").last().map(|(at, m)| (*at, m.to_string())).unwrap();
    assert_eq!(second.0, 90.0);
    let answer = ok_to(&second.1);
    h.phone_sends(90.0, &answer);
    h.run_until(130.0);
    assert_eq!(h.heard("UPDATE").iter().map(|(at, _)| *at).collect::<Vec<_>>(), [45.0, 90.0]);
    assert!(h.heard("BYE").is_empty(), "refreshed sessions do not expire");
}

#[tokio::test]
async fn a_phone_that_does_not_allow_update_is_refreshed_by_re_invite() {
    let mut h = Harness::new().await;
    answered_call(
        &mut h,
        "Supported: timer\r\nAllow: INVITE, ACK, BYE, CANCEL\r\nSession-Expires: 90;refresher=uas\r\n",
    )
    .await;
    h.run_until(45.0);
    let reinvites = h.heard("INVITE");
    assert_eq!(reinvites.len(), 1, "{:?}", h.heard);
    let (at, reinvite) = reinvites[0];
    assert_eq!(at, 45.0);
    assert_eq!(header(reinvite, "Content-Type"), Some("application/sdp"), "a re-INVITE carries an offer");
    assert!(h.heard("UPDATE").is_empty());
}

#[tokio::test]
async fn an_interval_below_min_se_gets_422_naming_it() {
    let mut h = Harness::new().await;
    let text = invite(h.phone(), h.gateway, "Supported: timer\r\nSession-Expires: 30\r\n");
    h.phone_sends(0.0, &text);
    h.admission().await;
    let refusals = h.heard("SIP/2.0 422");
    assert_eq!(refusals.len(), 1, "{:?}", h.heard);
    assert_eq!(header(refusals[0].1, "Min-SE"), Some("90"));
    assert!(h.heard("SIP/2.0 200").is_empty());
}
