//! A SIP load generator over loopback UDP, for measuring a running gateway (SIPp is not in
//! Debian 12): authenticated REGISTERs per second, or whole calls per second (INVITE → 401 →
//! ACK → INVITE with credentials → 200 → ACK → BYE → 200, each call a leg of a conference for
//! its short life). It keeps `--window` flows outstanding on one socket and counts completions.
//!
//! ```sh
//! sipload register --gateway 127.0.0.1:5060 --users 100 --password secret --seconds 10
//! sipload call --gateway 127.0.0.1:5060 --room 1000 --users 100 --password secret --seconds 10
//! ```
//! `ops/loadtest.sh` starts a gateway, creates the users and room, and runs both.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use e2e::load::{or_exit, parse_flags, value, Target};
use rsip::prelude::*;
use sip_stack::digest::Challenge;
use sip_stack::message::{parse, Inbound, InboundResponse};

struct Options {
    to: Target,
    mode: String,
    seconds: u64,
    window: usize,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or("usage: sipload register|call [--gateway ADDR] [--users N] …")?;
    let mut o = Options { to: Target::new(100, "load", "load-password"), mode, seconds: 10, window: 100 };
    parse_flags(2, |flag, v| {
        if o.to.set(flag, v)? {
            return Ok(true);
        }
        match flag {
            "--seconds" => o.seconds = value(flag, v)?,
            "--window" => o.window = value(flag, v)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(o)
}

/// Where one flow (a registration or a call) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Unauthenticated,
    Authenticated,
    Bye,
}

struct Flow {
    user: String,
    step: Step,
    started: Instant,
    answered: Option<Instant>,
    from_tag: String,
    to_tag: Option<String>,
    /// The last request, for retransmission.
    last: Vec<u8>,
    sent_at: Instant,
}

struct Load {
    socket: UdpSocket,
    local: SocketAddr,
    o: Options,
    flows: HashMap<String, Flow>,
    next: u64,
    completed: u64,
    failed: u64,
    retransmitted: u64,
    setup_ms: Vec<f64>,
    media_sink: SocketAddr,
}

fn main() {
    let o = or_exit(options());
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(Duration::from_millis(5))).expect("timeout");
    // RTP the gateway sends to the calls goes to a socket nobody reads.
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind sink");
    let mut load = Load {
        local: socket.local_addr().unwrap(),
        socket,
        media_sink: sink.local_addr().unwrap(),
        o,
        flows: HashMap::new(),
        next: 0,
        completed: 0,
        failed: 0,
        retransmitted: 0,
        setup_ms: Vec::new(),
    };
    load.run();
}

impl Load {
    fn run(&mut self) {
        let calls = self.o.mode == "call";
        let start = Instant::now();
        let end = start + Duration::from_secs(self.o.seconds);
        let mut buf = vec![0u8; 65_535];
        while Instant::now() < end {
            while self.flows.len() < self.o.window {
                self.start_flow();
            }
            match self.socket.recv_from(&mut buf) {
                Ok((n, _)) => {
                    if let Ok(Inbound::Response(r)) = parse(&buf[..n]) {
                        self.on_response(r);
                    }
                }
                Err(_) => self.retransmit(),
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let what =
            if calls { "calls (INVITE/401/ACK/INVITE/200/ACK/BYE/200)" } else { "authenticated REGISTERs" };
        println!(
            "{} {what} in {elapsed:.1} s: {:.0}/s; {} failed, {} retransmissions, window {}",
            self.completed,
            self.completed as f64 / elapsed,
            self.failed,
            self.retransmitted,
            self.o.window
        );
        if calls && !self.setup_ms.is_empty() {
            self.setup_ms.sort_by(f64::total_cmp);
            let at = |q: f64| self.setup_ms[((self.setup_ms.len() - 1) as f64 * q) as usize];
            println!("setup (first INVITE to 200): p50 {:.1} ms, p99 {:.1} ms", at(0.5), at(0.99));
        }
    }

    fn start_flow(&mut self) {
        self.next += 1;
        let call_id = format!("load-{}-{}", std::process::id(), self.next);
        let user = self.o.to.user(self.next as usize);
        let mut flow = Flow {
            user,
            step: Step::Unauthenticated,
            started: Instant::now(),
            answered: None,
            from_tag: format!("f{}", self.next),
            to_tag: None,
            last: Vec::new(),
            sent_at: Instant::now(),
        };
        let request = self.request(&call_id, &flow, 1, None);
        self.send(&mut flow, request);
        self.flows.insert(call_id, flow);
    }

    fn send(&self, flow: &mut Flow, bytes: Vec<u8>) {
        let _ = self.socket.send_to(&bytes, self.o.to.gateway);
        flow.last = bytes;
        flow.sent_at = Instant::now();
    }

    /// Resends what has waited longer than T1 (a lost datagram under load).
    fn retransmit(&mut self) {
        let now = Instant::now();
        let late: Vec<String> = self
            .flows
            .iter()
            .filter(|(_, f)| now.duration_since(f.sent_at) > Duration::from_millis(500))
            .map(|(id, _)| id.clone())
            .collect();
        for id in late {
            let Some(mut flow) = self.flows.remove(&id) else { continue };
            if now.duration_since(flow.started) > Duration::from_secs(32) {
                self.failed += 1;
                continue;
            }
            self.retransmitted += 1;
            let bytes = std::mem::take(&mut flow.last);
            self.send(&mut flow, bytes);
            self.flows.insert(id, flow);
        }
    }

    fn uri(&self) -> String {
        match self.o.mode.as_str() {
            "call" => format!("sip:{}@{}", self.o.to.room, self.o.to.gateway),
            _ => format!("sip:{}", self.o.to.gateway),
        }
    }

    /// The flow's request with CSeq `seq`, with credentials when `auth` is given.
    fn request(&self, call_id: &str, flow: &Flow, seq: u32, auth: Option<String>) -> Vec<u8> {
        let calls = self.o.mode == "call";
        let method = if calls { "INVITE" } else { "REGISTER" };
        let uri = self.uri();
        let (to, contact_extra, body) = if calls {
            let sdp = format!(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
                 a=sendrecv\r\n",
                self.media_sink.port()
            );
            (uri.clone(), String::new(), sdp)
        } else {
            (format!("sip:{}@{}", flow.user, self.o.to.gateway), ";expires=600".into(), String::new())
        };
        let mut text = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};rport;branch=z9hG4bK{branch:016x}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{gw}>;tag={tag}\r\nTo: <{to}>\r\nCall-ID: {call_id}\r\n\
             CSeq: {seq} {method}\r\nContact: <sip:{user}@{local}>{contact_extra}\r\n",
            local = self.local,
            branch = rand_u64(),
            user = flow.user,
            gw = self.o.to.gateway,
            tag = flow.from_tag,
        );
        if let Some(auth) = auth {
            text.push_str(&format!("Authorization: {auth}\r\n"));
        }
        if calls {
            text.push_str("Content-Type: application/sdp\r\n");
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        text.into_bytes()
    }

    /// An ACK (for a non-2xx: the INVITE's branch; for a 2xx: a new one) or a BYE.
    fn in_dialog(&self, method: &str, call_id: &str, flow: &Flow, seq: u32, branch: &str) -> Vec<u8> {
        let to_tag = flow.to_tag.as_deref().map(|t| format!(";tag={t}")).unwrap_or_default();
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};rport;branch={branch}\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@{gw}>;tag={tag}\r\nTo: <{uri}>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {seq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            uri = self.uri(),
            local = self.local,
            user = flow.user,
            gw = self.o.to.gateway,
            tag = flow.from_tag,
        )
        .into_bytes()
    }

    fn on_response(&mut self, r: InboundResponse) {
        let call_id = r.envelope.call_id.clone();
        let Some(mut flow) = self.flows.remove(&call_id) else { return };
        let code = r.response.status_code.code();
        let method = r.envelope.cseq.method;
        let branch = r.envelope.top_via.params.iter().find_map(|p| match p {
            rsip::Param::Branch(b) => Some(b.to_string()),
            _ => None,
        });
        if code < 200 {
            self.flows.insert(call_id, flow);
            return;
        }
        // A late answer to an earlier retransmission: already dealt with.
        let seq = r.envelope.cseq.seq;
        if (flow.step == Step::Authenticated && seq == 1)
            || (flow.step == Step::Bye && seq == 2 && code != 200)
        {
            self.flows.insert(call_id, flow);
            return;
        }
        flow.to_tag = r.envelope.to.tag().map(|t| t.to_string());
        let calls = self.o.mode == "call";
        match (flow.step, code, method) {
            (Step::Unauthenticated, 401, _) => {
                if calls {
                    // §17.1.1.3: the ACK of a non-2xx goes in the INVITE's transaction.
                    let ack = self.in_dialog("ACK", &call_id, &flow, 1, branch.as_deref().unwrap_or(""));
                    let _ = self.socket.send_to(&ack, self.o.to.gateway);
                }
                let challenge = r.response.headers.iter().find_map(|h| match h {
                    rsip::Header::WwwAuthenticate(v) => Challenge::parse(v.value()).ok(),
                    _ => None,
                });
                let Some(challenge) = challenge else {
                    self.failed += 1;
                    return;
                };
                let method_name = if calls { "INVITE" } else { "REGISTER" };
                let auth = challenge.answer(
                    &flow.user,
                    &self.o.to.password,
                    method_name,
                    &self.uri(),
                    1,
                    &format!("{:08x}", rand_u64()),
                );
                flow.step = Step::Authenticated;
                flow.to_tag = None;
                let request = self.request(&call_id, &flow, 2, Some(auth));
                self.send(&mut flow, request);
                self.flows.insert(call_id, flow);
            }
            (Step::Authenticated, 200, rsip::Method::Register) => self.completed += 1,
            (Step::Authenticated, 200, rsip::Method::Invite) => {
                let now = Instant::now();
                flow.answered = Some(now);
                self.setup_ms.push(now.duration_since(flow.started).as_secs_f64() * 1000.0);
                let ack = self.in_dialog("ACK", &call_id, &flow, 2, &format!("z9hG4bK{:016x}", rand_u64()));
                let _ = self.socket.send_to(&ack, self.o.to.gateway);
                flow.step = Step::Bye;
                let bye = self.in_dialog("BYE", &call_id, &flow, 3, &format!("z9hG4bK{:016x}", rand_u64()));
                self.send(&mut flow, bye);
                self.flows.insert(call_id, flow);
            }
            // A retransmitted 200 to the INVITE while the BYE is out: ACK it again.
            (Step::Bye, 200, rsip::Method::Invite) => {
                let ack = self.in_dialog("ACK", &call_id, &flow, 2, &format!("z9hG4bK{:016x}", rand_u64()));
                let _ = self.socket.send_to(&ack, self.o.to.gateway);
                self.flows.insert(call_id, flow);
            }
            (Step::Bye, 200, rsip::Method::Bye) => self.completed += 1,
            (_, code, _) => {
                if self.failed < 5 {
                    eprintln!("flow {call_id} failed with {code} ({method})");
                }
                self.failed += 1;
            }
        }
    }
}

/// Random enough for branches and tags, without a dependency.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}
