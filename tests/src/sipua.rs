//! A scripted SIP phone for tests that need what no real phone does on command: sending RTP
//! from a socket of the test's choice (a phone that moves to a new address, a stranger's
//! socket beside it). It calls over UDP with digest authentication, offers PCMU (or Opus), and
//! streams a tone as RTP from whichever socket the test names.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sip_stack::digest::Challenge;

/// An answered call from a scripted phone.
pub struct ScriptedCall {
    sip: UdpSocket,
    gateway: SocketAddr,
    call_id: String,
    from: String,
    to: String,
    cseq: u32,
    /// Where the gateway wants this leg's RTP (its SDP answer).
    pub gateway_rtp: SocketAddr,
    /// And its video's, when the answer took the video line.
    pub gateway_video: Option<SocketAddr>,
}

/// Calls `number` at `gateway` as `user`, offering PCMU to `rtp` (the address in the SDP).
pub fn call(
    gateway: SocketAddr,
    user: &str,
    password: &str,
    number: &str,
    rtp: SocketAddr,
) -> anyhow::Result<ScriptedCall> {
    call_offering(gateway, user, password, number, rtp, Offer::Pcmu)
}

/// The audio a scripted phone offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Pcmu,
    /// Opus only (payload type [`OPUS_PT`]), with DTX, as browsers offer it.
    Opus,
    /// PCMU, and H.264 in packetization mode 1 (payload type [`H264_PT`]) to `video` with
    /// `rtcp-mux`, NACK, PLI and FIR, as a room system offers it.
    PcmuAndVideo {
        video: SocketAddr,
    },
    /// PCMU, and VP8 (payload type [`VP8_PT`]) to `video` with `rtcp-mux` and PLI.
    PcmuAndVp8 {
        video: SocketAddr,
    },
}

/// The payload type of VP8 in an [`Offer::PcmuAndVp8`].
pub const VP8_PT: u8 = 100;

/// The payload type of H.264 in an [`Offer::PcmuAndVideo`].
pub const H264_PT: u8 = 109;

/// The payload type of Opus in an [`Offer::Opus`].
pub const OPUS_PT: u8 = 111;

/// [`call`], offering `offer`.
pub fn call_offering(
    gateway: SocketAddr,
    user: &str,
    password: &str,
    number: &str,
    rtp: SocketAddr,
    offer: Offer,
) -> anyhow::Result<ScriptedCall> {
    let sip = UdpSocket::bind("127.0.0.1:0")?;
    sip.set_read_timeout(Some(Duration::from_millis(100)))?;
    let local = sip.local_addr()?;
    let call_id = format!("scripted-{}-{}", local.port(), std::process::id());
    let from = format!("<sip:{user}@{gateway}>;tag=s{}", local.port());
    let uri = format!("sip:{number}@{gateway}");
    let audio = match offer {
        Offer::Pcmu | Offer::PcmuAndVideo { .. } | Offer::PcmuAndVp8 { .. } => {
            "0 101\r\na=rtpmap:0 PCMU/8000\r\n".to_string()
        }
        Offer::Opus => format!(
            "{OPUS_PT} 101\r\na=rtpmap:{OPUS_PT} opus/48000/2\r\na=fmtp:{OPUS_PT} useinbandfec=1;usedtx=1\r\n"
        ),
    };
    let video = match offer {
        Offer::PcmuAndVideo { video } => format!(
            "m=video {port} RTP/AVP {H264_PT}\r\na=rtpmap:{H264_PT} H264/90000\r\n\
             a=fmtp:{H264_PT} profile-level-id=42e01f;packetization-mode=1\r\n\
             a=rtcp-fb:{H264_PT} nack\r\na=rtcp-fb:{H264_PT} nack pli\r\na=rtcp-fb:{H264_PT} ccm fir\r\n\
             a=rtcp-mux\r\na=content:main\r\na=sendrecv\r\n",
            port = video.port()
        ),
        Offer::PcmuAndVp8 { video } => format!(
            "m=video {port} RTP/AVP {VP8_PT}\r\na=rtpmap:{VP8_PT} VP8/90000\r\n\
             a=rtcp-fb:{VP8_PT} nack\r\na=rtcp-fb:{VP8_PT} nack pli\r\na=rtcp-mux\r\na=sendrecv\r\n",
            port = video.port()
        ),
        _ => String::new(),
    };
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {audio}\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n{video}",
        ip = rtp.ip(),
        port = rtp.port()
    );
    let invite = |cseq: u32, auth: Option<&str>| {
        let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
        format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKscr{cseq}{port};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:{user}@{local}>\r\n{auth}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            port = local.port()
        )
    };
    let first = exchange(&sip, gateway, &invite(1, None))?;
    let answered = if first.starts_with("SIP/2.0 401") {
        // A final non-2xx is acknowledged in its own transaction (RFC 3261 §17.1.1.3).
        let ack = format!(
            "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKscr1{port};rport\r\nMax-Forwards: 70\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            to = header(&first, "To").context("no To")?,
            port = local.port()
        );
        sip.send_to(ack.as_bytes(), gateway)?;
        let challenge = header(&first, "WWW-Authenticate").context("401 without a challenge")?;
        let challenge = Challenge::parse(challenge)?;
        let auth = challenge.answer(user, password, "INVITE", &uri, 1, "scripted");
        exchange(&sip, gateway, &invite(2, Some(&auth)))?
    } else {
        first
    };
    if !answered.starts_with("SIP/2.0 200") {
        bail!("call not answered: {answered}");
    }
    let to = header(&answered, "To").context("no To")?.to_string();
    let cseq = if answered.contains(" 2 INVITE") { 2 } else { 1 };
    let (_, body) = answered.split_once("\r\n\r\n").context("no body")?;
    let ip = body.lines().find_map(|l| l.strip_prefix("c=IN IP4 ")).context("no c= line")?.trim();
    let port = body.lines().find_map(|l| l.strip_prefix("m=audio ")).context("no m= line")?;
    let port: u16 = port.split(' ').next().unwrap_or("").parse()?;
    let gateway_rtp = SocketAddr::new(ip.parse()?, port);
    let video_port = body.lines().find_map(|l| l.strip_prefix("m=video ")).and_then(|l| l.split(' ').next());
    let gateway_video = video_port
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|&p| p != 0)
        .map(|p| SocketAddr::new(gateway_rtp.ip(), p));
    let call = ScriptedCall { sip, gateway, call_id, from, to, cseq, gateway_rtp, gateway_video };
    call.send(&call.request("ACK", cseq))?;
    Ok(call)
}

impl ScriptedCall {
    fn request(&self, method: &str, cseq: u32) -> String {
        let local = self.sip.local_addr().map(|a| a.to_string()).unwrap_or_default();
        format!(
            "{method} sip:{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKscr{method}{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            gw = self.gateway,
            from = self.from,
            to = self.to,
            id = self.call_id
        )
    }

    fn send(&self, message: &str) -> anyhow::Result<()> {
        self.sip.send_to(message.as_bytes(), self.gateway)?;
        Ok(())
    }

    /// Puts the call on hold (a re-INVITE offering `sendonly`, RFC 3264 §8.4) and acknowledges
    /// the answer.
    pub fn hold(&mut self, rtp: SocketAddr) -> anyhow::Result<()> {
        self.cseq += 1;
        let sdp = format!(
            "v=0\r\no=- 1 2 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n\
             a=rtpmap:0 PCMU/8000\r\na=sendonly\r\n",
            ip = rtp.ip(),
            port = rtp.port()
        );
        let head = self.request("INVITE", self.cseq);
        let invite = head.replace(
            "Content-Length: 0\r\n",
            &format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n", sdp.len()),
        ) + &sdp;
        let ok = exchange(&self.sip, self.gateway, &invite)?;
        if !ok.starts_with("SIP/2.0 200") {
            bail!("hold answered {ok}");
        }
        self.send(&self.request("ACK", self.cseq))
    }

    /// Sends a re-INVITE offering `sdp` and acknowledges its 200; returns the answer's body.
    pub fn reinvite(&mut self, sdp: &str) -> anyhow::Result<String> {
        self.cseq += 1;
        let head = self.request("INVITE", self.cseq);
        let invite = head.replace(
            "Content-Length: 0\r\n",
            &format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n", sdp.len()),
        ) + sdp;
        let ok = exchange(&self.sip, self.gateway, &invite)?;
        if !ok.starts_with("SIP/2.0 200") {
            bail!("re-INVITE answered {ok}");
        }
        self.send(&self.request("ACK", self.cseq))?;
        Ok(ok.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
    }

    /// Sends a re-INVITE without an offer, and acknowledges the gateway's offer in its 200
    /// with `answer` (RFC 3261 §14.2); returns the gateway's offer.
    pub fn reinvite_offerless(&mut self, answer: &str) -> anyhow::Result<String> {
        self.cseq += 1;
        let ok = exchange(&self.sip, self.gateway, &self.request("INVITE", self.cseq))?;
        if !ok.starts_with("SIP/2.0 200") {
            bail!("re-INVITE answered {ok}");
        }
        let ack = self.request("ACK", self.cseq).replace(
            "Content-Length: 0\r\n",
            &format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n", answer.len()),
        ) + answer;
        self.send(&ack)?;
        Ok(ok.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
    }

    /// Sends an INFO with `body` of `content_type` and waits for its 200.
    pub fn info(&mut self, content_type: &str, body: &str) -> anyhow::Result<()> {
        self.cseq += 1;
        let head = self.request("INFO", self.cseq);
        let info = head.replace(
            "Content-Length: 0\r\n",
            &format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", body.len()),
        ) + body;
        let ok = exchange(&self.sip, self.gateway, &info)?;
        if !ok.starts_with("SIP/2.0 200") {
            bail!("INFO answered {ok}");
        }
        Ok(())
    }

    /// Waits for a BYE from the gateway and answers it; returns whether one came in `within`.
    pub fn wait_for_bye(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 65_535];
        while Instant::now() < deadline {
            let Ok((n, from)) = self.sip.recv_from(&mut buf) else { continue };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("BYE ") {
                let ok = answer(&text, "200 OK");
                let _ = self.sip.send_to(ok.as_bytes(), from);
                return true;
            }
        }
        false
    }

    /// Hangs up (BYE) and waits for its 200.
    pub fn hang_up(self) -> anyhow::Result<()> {
        let bye = exchange(&self.sip, self.gateway, &self.request("BYE", self.cseq + 1))?;
        if !bye.starts_with("SIP/2.0 200") {
            bail!("BYE answered {bye}");
        }
        Ok(())
    }
}

/// A PCMU stream of a tone: one SSRC, sequential packets, 20 ms each.
pub struct ToneStream {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    phase: f64,
    frequency: f64,
}

impl ToneStream {
    pub fn new(ssrc: u32, frequency: f64) -> ToneStream {
        ToneStream { ssrc, seq: 1, timestamp: 0, phase: 0.0, frequency }
    }

    /// The next 20 ms packet.
    pub fn next_packet(&mut self) -> Vec<u8> {
        let mut packet = Vec::with_capacity(172);
        packet.extend_from_slice(&[0x80, 0]);
        packet.extend_from_slice(&self.seq.to_be_bytes());
        packet.extend_from_slice(&self.timestamp.to_be_bytes());
        packet.extend_from_slice(&self.ssrc.to_be_bytes());
        if self.frequency == 0.0 {
            // Silence: µ-law's zero, without a sine to compute.
            packet.resize(12 + 160, 0xFF);
        } else {
            for _ in 0..160 {
                let sample = (self.phase.sin() * 8000.0) as i16;
                self.phase += 2.0 * std::f64::consts::PI * self.frequency / 8000.0;
                packet.push(mixer::g711::ulaw_encode(sample));
            }
        }
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(160);
        packet
    }

    /// Sends `duration` of the tone from `socket` to `to` at real speed; returns every datagram
    /// `socket` received meanwhile.
    pub fn play(&mut self, socket: &UdpSocket, to: SocketAddr, duration: Duration) -> Vec<Vec<u8>> {
        socket.set_nonblocking(true).expect("non-blocking");
        let start = Instant::now();
        let mut heard = Vec::new();
        let mut buf = [0u8; 2048];
        let mut sent = 0u32;
        while start.elapsed() < duration {
            let due = start + Duration::from_millis(20 * u64::from(sent));
            if Instant::now() >= due {
                let _ = socket.send_to(&self.next_packet(), to);
                sent += 1;
            }
            while let Ok(n) = socket.recv(&mut buf) {
                heard.push(buf[..n].to_vec());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        heard
    }
}

/// Sends a request over UDP and returns its final response (one whose CSeq is the
/// request's), waiting at most 5 s; `socket` needs a read timeout.
pub fn exchange(socket: &UdpSocket, to: SocketAddr, message: &str) -> anyhow::Result<String> {
    let cseq = header(message, "CSeq").unwrap_or("").to_string();
    socket.send_to(message.as_bytes(), to)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65_535];
    while Instant::now() < deadline {
        let Ok(n) = socket.recv(&mut buf) else { continue };
        let response = String::from_utf8_lossy(&buf[..n]).into_owned();
        let final_response = response.starts_with("SIP/2.0 ") && !response.starts_with("SIP/2.0 1");
        if final_response && header(&response, "CSeq") == Some(cseq.as_str()) {
            return Ok(response);
        }
    }
    bail!("no final response to {}", message.lines().next().unwrap_or(""))
}

/// A response to `request` with `status` (`200 OK`): its Via, From, To, Call-ID and CSeq.
fn answer(request: &str, status: &str) -> String {
    let copied: Vec<&str> = request
        .split("\r\n")
        .filter(|l| {
            let name = l.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
            ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str())
        })
        .collect();
    format!("SIP/2.0 {status}\r\n{}\r\nContent-Length: 0\r\n\r\n", copied.join("\r\n"))
}

/// The value of the first header called `name` (case-insensitive) in a message's text.
pub fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
