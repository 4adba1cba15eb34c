//! Video phones in a room: baresip phones sending H.264 of known colours through the gateway's
//! composed picture, each decoding what it receives.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::baresip::Baresip;
use e2e::room::{dial, gateway, participant, phone_playing};
use e2e::sipua::{self, Offer};
use e2e::{http_request, metric, require_program, wait_until, write_tone_wav, Gateway, API_TOKEN};
use serde_json::Value;

/// A few seconds of one colour as H.264 in MP4, for a phone's camera (`avformat` loops it).
fn colour_video(dir: &Path, colour: &str) -> PathBuf {
    require_program("ffmpeg");
    let path = dir.join(format!("{colour}.mp4"));
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("color=c={colour}:s=320x240:r=15"))
        .args(["-t", "30", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "15"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

/// A registered phone whose camera shows `colour` (its `extra` config lines added). baresip offers H.264 in packetization mode 0
/// when its account names `H264` (the first of its two H.264 codecs), and in mode 1 beside
/// mode 0 and other codecs with its defaults.
fn video_phone(gw: &Gateway, user: &str, colour: &str, frequency: f64, codecs: &str) -> Baresip {
    video_phone_with(gw, user, colour, frequency, codecs, &[])
}

fn video_phone_with(
    gw: &Gateway,
    user: &str,
    colour: &str,
    frequency: f64,
    codecs: &str,
    more: &[&str],
) -> Baresip {
    let wav = gw.dir.path().join(format!("{user}.wav"));
    write_tone_wav(&wav, 8000, frequency, 60).unwrap();
    let video = colour_video(gw.dir.path(), colour);
    let extra = [
        "module avcodec.so".to_string(),
        "module avformat.so".into(),
        "module snapshot.so".into(),
        // A display, or baresip offers its camera send-only.
        "module vidbridge.so".into(),
        format!("video_display vidbridge,{user}"),
        format!("video_source avformat,{}", video.display()),
        "video_size 320x240".into(),
        "video_fps 15".into(),
        "video_bitrate 300000".into(),
    ];
    let extra: Vec<&str> = extra.iter().map(String::as_str).chain(more.iter().copied()).collect();
    phone_playing(gw, user, &wav, &format!("PCMU{codecs}"), &extra)
}

/// The room's canvas in these tests.
const W: usize = 640;
const H: usize = 360;

/// What `phone` shows now: its last decoded picture (the `snapshot` module's PNG), as RGB
/// pixels through ffmpeg.
fn picture(phone: &mut Baresip, name: &str) -> Vec<[u8; 3]> {
    let png = phone.dir().join(format!("{name}.png"));
    phone.command("snapshot_recv", &png.display().to_string()).unwrap();
    assert!(wait_until(Duration::from_secs(5), || png.exists()), "no snapshot\n{}", phone.log());
    // The file appears before its last bytes may be written: read until it decodes whole.
    let mut raw = Vec::new();
    let ok = wait_until(Duration::from_secs(5), || {
        let out = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-i"])
            .arg(&png)
            .args(["-vf", &format!("scale={W}:{H}"), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .output()
            .unwrap();
        raw = out.stdout;
        raw.len() == W * H * 3
    });
    assert!(ok, "snapshot does not decode");
    raw.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect()
}

/// The mean colour of the middle half of a rectangle.
fn mean(picture: &[[u8; 3]], x: usize, y: usize, w: usize, h: usize) -> [u8; 3] {
    let (mut sum, mut n) = ([0u64; 3], 0);
    for row in y + h / 4..y + h * 3 / 4 {
        for col in x + w / 4..x + w * 3 / 4 {
            for c in 0..3 {
                sum[c] += u64::from(picture[row * W + col][c]);
            }
            n += 1;
        }
    }
    sum.map(|s| (s / n) as u8)
}

/// Pixels of a rectangle bright enough to be letters of a name.
fn letters(picture: &[[u8; 3]], x: usize, y: usize, w: usize, h: usize) -> usize {
    (y..y + h)
        .flat_map(|row| (x..x + w).map(move |col| picture[row * W + col]))
        .filter(|p| p.iter().all(|&c| c > 180))
        .count()
}

/// Whether `rgb` is near `expected`, channel by channel.
fn near(rgb: [u8; 3], expected: [u8; 3]) -> bool {
    rgb.iter().zip(expected).all(|(a, b)| a.abs_diff(b) <= 40)
}

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];
/// ffmpeg's `lime`.
const GREEN: [u8; 3] = [0, 255, 0];
/// The canvas's background.
const BACKGROUND: [u8; 3] = [16, 16, 16];

/// What a check sees of a picture: the mean colour of each quarter (top left, top right,
/// bottom left, bottom right, in their middle halves) and the letters in each.
#[derive(Debug, Clone, Copy)]
struct Quarters {
    colour: [[u8; 3]; 4],
    letters: [usize; 4],
}

impl Quarters {
    fn of(picture: &[[u8; 3]]) -> Quarters {
        let corner = |i: usize| ((i % 2) * W / 2, (i / 2) * H / 2);
        Quarters {
            colour: [0, 1, 2, 3].map(|i| mean(picture, corner(i).0, corner(i).1, W / 2, H / 2)),
            letters: [0, 1, 2, 3].map(|i| letters(picture, corner(i).0, corner(i).1, W / 2, H / 2)),
        }
    }
}

/// Waits until `phone`'s picture passes `check`.
fn wait_for_picture(
    gw: &Gateway,
    phone: &mut Baresip,
    name: &str,
    what: &str,
    check: impl Fn(&Quarters) -> bool,
) {
    let mut seen = Vec::new();
    let ok = wait_until(Duration::from_secs(15), || {
        let p = picture(phone, &format!("{name}-{}", seen.len()));
        seen.push(Quarters::of(&p));
        check(&seen[seen.len() - 1])
    });
    assert!(ok, "{name} never saw {what}: {seen:?}\n{}", gw.log());
}

fn patch_layout(gw: &Gateway, layout: &str) -> Value {
    let body = format!(r#"{{"layout":"{layout}"}}"#);
    let (status, text) =
        http_request(gw.http, "PATCH", "/api/v1/conferences/1000", Some(API_TOKEN), Some(&body)).unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// A name drawn large in an empty tile: some letters, the rest the background.
const NAME_LETTERS: usize = 300;

#[test]
fn video_phones_see_each_other_and_a_phone_without_video_by_name_and_the_api_changes_the_picture() {
    let gw = gateway("[video]\nwidth = 640\nheight = 360\nframe_rate = 15\nshow_names = false\n");
    gw.admin(&["room", "add", "--number", "1000"]);
    let mut red = video_phone(&gw, "red", "red", 440.0, ";video_codecs=H264");
    let mut blue = video_phone(&gw, "blue", "blue", 660.0, "");
    let mut carol = e2e::room::phone(&gw, "carol", 880.0, "PCMU", &[]);
    dial(&mut red, &gw, "1000");
    dial(&mut blue, &gw, "1000");
    dial(&mut carol, &gw, "1000");
    // Both video phones see the room in join order: red top left, blue top right, the audio
    // phone's name bottom left, and the last quarter empty.
    let grid = |q: &Quarters| {
        near(q.colour[0], RED)
            && near(q.colour[1], BLUE)
            && q.letters[2] > NAME_LETTERS
            && near(q.colour[3], BACKGROUND)
            && q.letters[0] + q.letters[1] + q.letters[3] == 0
    };
    wait_for_picture(&gw, &mut red, "red", "the grid", grid);
    wait_for_picture(&gw, &mut blue, "blue", "the grid", grid);

    // The API shows each camera as decoded; the room encodes once per picture for both.
    let ok = wait_until(Duration::from_secs(5), || {
        let video = &participant(&gw, "1000", "red")["video"];
        video["codec"] == "H264"
            && video["width"] == 320
            && video["height"] == 240
            && video["fps"].as_f64() > Some(0.0)
    });
    assert!(ok, "{}", participant(&gw, "1000", "red"));
    // Receivers in both packetization modes decoded the one stream above.
    assert_eq!(participant(&gw, "1000", "red")["video"]["packetization_mode"], 0);
    assert_eq!(participant(&gw, "1000", "blue")["video"]["packetization_mode"], 1);
    assert!(participant(&gw, "1000", "carol").get("video").is_none());
    let encodes = metric(&gw, r#"gateway_video_encodes_total{room="1000"}"#);
    let sent: u64 = ["red", "blue"]
        .iter()
        .map(|u| participant(&gw, "1000", u)["video"]["packets_sent"].as_u64().unwrap())
        .sum();
    assert!(encodes > 0.0 && sent as f64 >= encodes, "{encodes} encodes, {sent} packets");

    // Everyone talks (each sends a tone): the speaker layout shows the first to have taken
    // the floor, red, on the whole canvas.
    let conference = patch_layout(&gw, "speaker");
    assert_eq!(conference["layout"], "speaker");
    wait_for_picture(&gw, &mut blue, "blue-speaker", "red alone", |q| q.colour.iter().all(|&c| near(c, RED)));
    // Red's camera hidden: red, still the speaker, is shown by its name.
    let path =
        format!("/api/v1/conferences/1000/participants/{}/video-mute", participant(&gw, "1000", "red")["id"]);
    let (status, text) = http_request(gw.http, "POST", &path, Some(API_TOKEN), None).unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["video_muted"], true);
    wait_for_picture(&gw, &mut blue, "blue-named", "red's name alone", |q| {
        q.letters.iter().sum::<usize>() > NAME_LETTERS
            && q.colour.iter().all(|&c| !near(c, RED) && !near(c, BLUE))
    });
    // Back to the grid: red's tile has its name in place of its camera.
    patch_layout(&gw, "grid");
    wait_for_picture(&gw, &mut blue, "blue-grid", "red's name in its tile", |q| {
        q.letters[0] > NAME_LETTERS && near(q.colour[1], BLUE)
    });
    // The presenter layout: blue large above the others, whoever talks.
    let (status, _) = http_request(
        gw.http,
        "PATCH",
        "/api/v1/conferences/1000",
        Some(API_TOKEN),
        Some(r#"{"layout":"presenter"}"#),
    )
    .unwrap();
    assert_eq!(status, 400, "the presenter layout names its presenter");
    let blue_id = participant(&gw, "1000", "blue")["id"].clone();
    let body = format!(r#"{{"layout":"presenter","presenter":{blue_id}}}"#);
    let (status, text) =
        http_request(gw.http, "PATCH", "/api/v1/conferences/1000", Some(API_TOKEN), Some(&body)).unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["presenter"], blue_id);
    wait_for_picture(&gw, &mut red, "red-presenter", "blue presenting", |q| {
        near(q.colour[0], BLUE) && near(q.colour[1], BLUE)
    });
}

#[test]
fn a_rooms_own_layout_starts_its_conferences() {
    let gw = gateway("[video]\nwidth = 640\nheight = 360\nframe_rate = 15\nshow_names = false\n");
    let create =
        |body: &str| http_request(gw.http, "POST", "/api/v1/rooms", Some(API_TOKEN), Some(body)).unwrap();
    for bad in [r#"{"number":"1000","layout":"presenter"}"#, r#"{"number":"1000","layout":"mosaic"}"#] {
        let (status, text) = create(bad);
        assert_eq!(status, 400, "{bad}: {text}");
        assert!(text.contains("layout"), "{text}");
    }
    let (status, text) = create(r#"{"number":"1000","layout":"speaker"}"#);
    assert_eq!(status, 201, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["layout"], "speaker");
    // The gateway's default is the grid; this room's conference starts with the speaker alone:
    // red, the first to talk, on blue's whole picture.
    let mut red = video_phone(&gw, "red", "red", 440.0, "");
    let mut blue = video_phone(&gw, "blue", "blue", 660.0, "");
    dial(&mut red, &gw, "1000");
    dial(&mut blue, &gw, "1000");
    wait_for_picture(&gw, &mut blue, "blue", "red alone", |q| q.colour.iter().all(|&c| near(c, RED)));
    let (status, text) =
        http_request(gw.http, "GET", "/api/v1/conferences/1000", Some(API_TOKEN), None).unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["layout"], "speaker");
    // Clearing the room's layout leaves the live conference as it is.
    let (status, text) =
        http_request(gw.http, "PATCH", "/api/v1/rooms/1000", Some(API_TOKEN), Some(r#"{"layout":null}"#))
            .unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["layout"], Value::Null);
    let (_, text) = http_request(gw.http, "GET", "/api/v1/conferences/1000", Some(API_TOKEN), None).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["layout"], "speaker");
    let (status, text) = http_request(
        gw.http,
        "PATCH",
        "/api/v1/rooms/1000",
        Some(API_TOKEN),
        Some(r#"{"layout":"presenter"}"#),
    )
    .unwrap();
    assert_eq!(status, 400, "{text}");
}

/// What a scripted viewer got of the room's picture: when each keyframe (IDR) began, and the
/// media SSRC.
struct Viewer {
    socket: UdpSocket,
    gateway: SocketAddr,
    ssrc: Option<u32>,
    keyframes: Vec<Instant>,
}

impl Viewer {
    /// Reads what came for `time`; each packet starting an IDR picture (a single IDR NAL unit,
    /// or the first fragment of one) is a keyframe.
    fn watch(&mut self, time: Duration) {
        let end = Instant::now() + time;
        let mut buf = [0u8; 2048];
        while Instant::now() < end {
            let Ok(n) = self.socket.recv(&mut buf) else { continue };
            let packet = &buf[..n];
            if n < 14 || (192..=223).contains(&packet[1]) {
                continue; // RTCP
            }
            self.ssrc = Some(u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]));
            let payload = &packet[12..];
            let starts_idr = match payload[0] & 0x1F {
                5 => true,
                28 => payload[1] & 0x80 != 0 && payload[1] & 0x1F == 5,
                _ => false,
            };
            if starts_idr {
                self.keyframes.push(Instant::now());
            }
        }
    }

    /// A REMB (draft-alvestrand-rmcat-remb) asking for at most `bps` of the room's picture.
    fn remb(&self, bps: u32) {
        assert!(bps < 1 << 18, "exponent 0");
        let media = self.ssrc.expect("RTP seen first");
        let mut remb = vec![0x8F, 206, 0, 5, 0, 0, 0x12, 0x34, 0, 0, 0, 0];
        remb.extend_from_slice(b"REMB");
        remb.extend_from_slice(&[1, (bps >> 16) as u8, (bps >> 8) as u8, bps as u8]);
        remb.extend_from_slice(&media.to_be_bytes());
        self.socket.send_to(&remb, self.gateway).unwrap();
    }

    /// A PLI for the room's picture (RFC 4585 §6.3.1), on the video port (rtcp-mux).
    fn pli(&self) {
        let media = self.ssrc.expect("RTP seen first");
        let mut pli = vec![0x81, 206, 0, 2, 0, 0, 0x12, 0x34];
        pli.extend_from_slice(&media.to_be_bytes());
        self.socket.send_to(&pli, self.gateway).unwrap();
    }
}

#[test]
fn a_viewers_pli_gets_a_keyframe_soon_a_flood_a_bounded_number_and_its_remb_the_low_tier() {
    let gw = gateway(
        "[video]\nwidth = 320\nheight = 180\nframe_rate = 15\nkeyframe_interval_ms = 500\n\
         [video.low]\nwidth = 160\nheight = 90\nframe_rate = 5\n",
    );
    gw.admin(&["room", "add", "--number", "1000"]);
    gw.admin(&["user", "add", "viewer", "--password", "viewer-pass-1"]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
    let video = socket.local_addr().unwrap();
    let audio = UdpSocket::bind("127.0.0.1:0").unwrap();
    let offer = Offer::PcmuAndVideo { video };
    let call =
        sipua::call_offering(gw.sip, "viewer", "viewer-pass-1", "1000", audio.local_addr().unwrap(), offer)
            .unwrap();
    let gateway = call.gateway_video.expect("the video line answered");
    let mut viewer = Viewer { socket, gateway, ssrc: None, keyframes: Vec::new() };
    // A new viewer starts at a keyframe; none follows unasked.
    viewer.watch(Duration::from_secs(2));
    assert_eq!(viewer.keyframes.len(), 1, "one keyframe to start with\n{}", gw.log());

    // One PLI: a keyframe within a frame or two (the last one is long past the interval).
    let asked = Instant::now();
    viewer.pli();
    viewer.watch(Duration::from_secs(1));
    assert_eq!(viewer.keyframes.len(), 2, "a keyframe for the PLI");
    let delay = viewer.keyframes[1] - asked;
    assert!(delay < Duration::from_millis(400), "keyframe {delay:?} after the PLI");

    // A hundred PLIs in a second: at most one keyframe per 500 ms, and the last request is
    // still served.
    let before = viewer.keyframes.len();
    let start = Instant::now();
    for i in 1..=100 {
        viewer.pli();
        viewer.watch((start + Duration::from_millis(10 * i)).saturating_duration_since(Instant::now()));
    }
    let flooded = start.elapsed();
    viewer.watch(Duration::from_secs(1));
    let flood = viewer.keyframes.len() - before;
    // The first at once, then one per 500 ms: three in a second, and one more at most for a
    // flood that overran its second.
    let most = 2 + (flooded.as_millis() / 500) as usize;
    assert!((2..=most).contains(&flood), "{flood} keyframes for 100 PLIs in {flooded:?}");
    let requests = participant(&gw, "1000", "viewer")["video"]["keyframe_requests"].as_u64().unwrap();
    assert!(requests >= 100, "{requests} requests counted");

    // Asking for less than the canvas's bitrate moves the viewer to the low tier, which
    // starts with a keyframe, at its own frame rate.
    assert_eq!(participant(&gw, "1000", "viewer")["video"]["tier"], 0);
    viewer.watch(Duration::from_secs(1));
    let before = viewer.keyframes.len();
    viewer.remb(100_000);
    let ok = wait_until(Duration::from_secs(5), || participant(&gw, "1000", "viewer")["video"]["tier"] == 1);
    assert!(ok, "{}", participant(&gw, "1000", "viewer"));
    viewer.watch(Duration::from_secs(1));
    assert!(viewer.keyframes.len() > before, "the low tier starts at a keyframe");
    assert_eq!(participant(&gw, "1000", "viewer")["video"]["max_bitrate_bps"], 100_000);
    call.hang_up().unwrap();
}

#[test]
fn two_gateways_cascaded_by_a_call_out_show_each_other_without_feeding_back() {
    let video = "[video]\nwidth = 640\nheight = 360\nframe_rate = 15\n";
    let b = gateway(video);
    b.admin(&["room", "add", "--number", "2000"]);
    b.admin(&["user", "add", "gateway-a", "--password", "cascade-secret"]);
    let a = gateway(&format!(
        "{video}[[trunk]]\nname = \"b\"\nproxy = \"sip:{}\"\nusername = \"gateway-a\"\n\
         password = \"cascade-secret\"\nregister = false\n",
        b.sip
    ));
    a.admin(&["room", "add", "--number", "1000"]);
    let mut red = video_phone(&a, "red", "red", 440.0, ";video_codecs=H264");
    let mut blue = video_phone(&b, "blue", "blue", 660.0, "");
    dial(&mut red, &a, "1000");
    dial(&mut blue, &b, "2000");
    let body = format!(r#"{{"to": "sip:2000@{}", "trunk": "b"}}"#, b.sip);
    let (status, text) =
        http_request(a.http, "POST", "/api/v1/conferences/1000/dial", Some(API_TOKEN), Some(&body)).unwrap();
    assert_eq!(status, 202, "{text}");
    // Each side sees its phone and the other room as one tile. Neither room's picture comes
    // back to it: the other room's tile is that room's phone alone, whole, not a grid with
    // this room's picture in it.
    let seen = |colour| move |q: &Quarters| near(q.colour[1], colour) && near(q.colour[2], BACKGROUND);
    wait_for_picture(&a, &mut red, "red", "red and the other room", move |q| {
        near(q.colour[0], RED) && seen(BLUE)(q)
    });
    wait_for_picture(&b, &mut blue, "blue", "blue and the other room", move |q| {
        near(q.colour[0], BLUE) && seen(RED)(q)
    });
    let cascade = participants_with_video(&b, "2000", "gateway-a");
    assert_eq!(cascade["video"]["codec"], "H264", "{cascade}");
}

/// The participant authenticated as `user`, once it reports video.
fn participants_with_video(gw: &Gateway, room: &str, user: &str) -> Value {
    let mut found = Value::Null;
    wait_until(Duration::from_secs(5), || {
        found = participant(gw, room, user);
        found["video"]["frames_decoded"].as_u64() > Some(0)
    });
    found
}

#[test]
fn a_vp8_phone_and_an_h264_phone_see_each_other() {
    let gw = gateway("[video]\nwidth = 640\nheight = 360\nframe_rate = 15\n");
    gw.admin(&["room", "add", "--number", "1000"]);
    let mut red = video_phone(&gw, "red", "red", 440.0, ";video_codecs=H264");
    let mut green = video_phone_with(&gw, "green", "lime", 660.0, ";video_codecs=VP8", &["module vp8.so"]);
    dial(&mut red, &gw, "1000");
    dial(&mut green, &gw, "1000");
    let both = |q: &Quarters| near(q.colour[0], RED) && near(q.colour[1], GREEN);
    wait_for_picture(&gw, &mut red, "red", "red and green", both);
    wait_for_picture(&gw, &mut green, "green", "red and green", both);
    assert_eq!(participants_with_video(&gw, "1000", "green")["video"]["codec"], "VP8");
    assert_eq!(participant(&gw, "1000", "red")["video"]["codec"], "H264");
}

/// A process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// ffmpeg sending a colour as RTP to `to`, encoded with `codec` (its arguments) as payload
/// type `pt`, at real speed: a hardware MCU's stream, from an independent encoder and
/// packetizer.
fn ffmpeg_rtp(colour: &str, codec: &[&str], pt: u8, to: SocketAddr) -> Killed {
    require_program("ffmpeg");
    let child = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-nostdin", "-re", "-f", "lavfi", "-i"])
        .arg(format!("color=c={colour}:s=320x240:r=15"))
        .args(["-t", "60", "-g", "15", "-pix_fmt", "yuv420p"])
        .args(codec)
        .args(["-payload_type", &pt.to_string(), "-f", "rtp"])
        .arg(format!("rtp://{to}?pkt_size=1200"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Killed(child)
}

#[test]
fn mcu_streams_of_h264_and_vp8_rtp_from_ffmpeg_are_seen_by_a_phone() {
    let gw = gateway("[video]\nwidth = 640\nheight = 360\nframe_rate = 15\nshow_names = false\n");
    gw.admin(&["room", "add", "--number", "1000"]);
    let mut red = video_phone(&gw, "red", "red", 440.0, "");
    dial(&mut red, &gw, "1000");
    // Two MCU stand-ins, each a SIP leg offering one codec, its picture from ffmpeg.
    let mut ffmpegs = Vec::new();
    let mut calls = Vec::new();
    for (user, colour, pt, codec) in [
        (
            "mcu-h264",
            "blue",
            sipua::H264_PT,
            &["-c:v", "libx264", "-profile:v", "baseline", "-tune", "zerolatency"][..],
        ),
        ("mcu-vp8", "lime", sipua::VP8_PT, &["-c:v", "libvpx", "-deadline", "realtime", "-b:v", "300k"][..]),
    ] {
        gw.admin(&["user", "add", user, "--password", "mcu-pass-1"]);
        let audio = UdpSocket::bind("127.0.0.1:0").unwrap();
        let video = UdpSocket::bind("127.0.0.1:0").unwrap();
        let at = video.local_addr().unwrap();
        let offer = if pt == sipua::VP8_PT {
            Offer::PcmuAndVp8 { video: at }
        } else {
            Offer::PcmuAndVideo { video: at }
        };
        let call =
            sipua::call_offering(gw.sip, user, "mcu-pass-1", "1000", audio.local_addr().unwrap(), offer)
                .unwrap();
        let to = call.gateway_video.expect("the video line answered");
        ffmpegs.push(ffmpeg_rtp(colour, codec, pt, to));
        calls.push((call, audio, video));
        // Join order is grid order: wait until this one shows before the next joins.
        let (user, colour) = (user.to_string(), colour);
        let ok = wait_until(Duration::from_secs(10), || {
            participant(&gw, "1000", &user)["video"]["fps"].as_f64() > Some(0.0)
        });
        assert!(ok, "{user} ({colour}): {}\n{}", participant(&gw, "1000", &user), gw.log());
    }
    assert_eq!(participant(&gw, "1000", "mcu-h264")["video"]["codec"], "H264");
    assert_eq!(participant(&gw, "1000", "mcu-vp8")["video"]["codec"], "VP8");
    wait_for_picture(&gw, &mut red, "red", "red, blue and green", |q| {
        near(q.colour[0], RED) && near(q.colour[1], BLUE) && near(q.colour[2], GREEN)
    });
    for (call, _, _) in calls {
        call.hang_up().unwrap();
    }
}

/// An offer of PCMU to `audio` and, unless `video` is None, H.264 in mode 1 to it.
fn offer(audio: SocketAddr, video: Option<SocketAddr>, version: u32) -> String {
    let mut sdp = format!(
        "v=0\r\no=- 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        audio.port()
    );
    match video {
        Some(video) => sdp.push_str(&format!(
            "m=video {} RTP/AVP 109\r\na=rtpmap:109 H264/90000\r\n\
             a=fmtp:109 profile-level-id=42e01f;packetization-mode=1\r\na=rtcp-mux\r\na=sendrecv\r\n",
            video.port()
        )),
        None => sdp.push_str("m=video 0 RTP/AVP 109\r\n"),
    }
    sdp
}

/// The port of the answer's video line (0: refused).
fn video_port(answer: &str) -> u16 {
    answer
        .lines()
        .find_map(|l| l.strip_prefix("m=video "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

#[test]
fn video_added_by_reinvite_starts_a_keyframe_by_info_comes_our_reoffers_answer_moves_it_and_removing_it_stops_it(
) {
    let gw = gateway("[video]\nwidth = 320\nheight = 180\nframe_rate = 15\n[video.low]\nenabled = false\n");
    gw.admin(&["room", "add", "--number", "1000"]);
    gw.admin(&["user", "add", "late", "--password", "late-pass-1"]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
    let video = socket.local_addr().unwrap();
    let audio = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut call = sipua::call(gw.sip, "late", "late-pass-1", "1000", audio).unwrap();
    assert_eq!(call.gateway_video, None, "an audio call");
    // A re-INVITE adds video: the answer takes it, and the room's picture comes.
    let answer = call.reinvite(&offer(audio, Some(video), 2)).unwrap();
    let port = video_port(&answer);
    assert_ne!(port, 0, "{answer}");
    let mut viewer =
        Viewer { socket, gateway: SocketAddr::new(gw.sip.ip(), port), ssrc: None, keyframes: Vec::new() };
    viewer.watch(Duration::from_secs(2));
    assert_eq!(viewer.keyframes.len(), 1, "the picture starts at a keyframe\n{}", gw.log());
    // SIP INFO picture_fast_update (RFC 5168) asks for another.
    let fast_update =
        "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n<media_control><vc_primitive><to_encoder>\
                       <picture_fast_update/></to_encoder></vc_primitive></media_control>\r\n";
    call.info("application/media_control+xml", fast_update).unwrap();
    viewer.watch(Duration::from_secs(1));
    assert_eq!(viewer.keyframes.len(), 2, "a keyframe for the INFO");
    // The API's figures come from the media worker's periodic report.
    let counted = wait_until(Duration::from_secs(3), || {
        participant(&gw, "1000", "late")["video"]["keyframe_requests"].as_u64() >= Some(1)
    });
    assert!(counted, "{}", participant(&gw, "1000", "late"));
    // A re-INVITE without an offer: the gateway offers the streams in force, and the answer
    // in the ACK moves the video to another port; the picture follows it there.
    let moved = UdpSocket::bind("127.0.0.1:0").unwrap();
    moved.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
    let ours = call.reinvite_offerless(&offer(audio, Some(moved.local_addr().unwrap()), 3)).unwrap();
    assert_eq!(video_port(&ours), port, "{ours}");
    let old = std::mem::replace(&mut viewer.socket, moved);
    let rtp_within = |socket: &UdpSocket, time: Duration| {
        let mut buf = [0u8; 2048];
        let mut packets = 0;
        let end = Instant::now() + time;
        while Instant::now() < end {
            if let Ok(n) = socket.recv(&mut buf) {
                packets += usize::from(n > 12 && !(192..=223).contains(&buf[1]));
            }
        }
        packets
    };
    assert!(
        rtp_within(&viewer.socket, Duration::from_secs(1)) > 0,
        "no picture at the new port\n{}",
        gw.log()
    );
    rtp_within(&old, Duration::from_millis(100));
    assert_eq!(rtp_within(&old, Duration::from_millis(300)), 0, "the picture still goes to the old port");
    // A re-offer that refuses video stops the picture; the call goes on.
    let answer = call.reinvite(&offer(audio, None, 4)).unwrap();
    assert_eq!(video_port(&answer), 0, "{answer}");
    viewer.watch(Duration::from_millis(300));
    assert_eq!(
        rtp_within(&viewer.socket, Duration::from_secs(1)),
        0,
        "no picture after the video line was refused"
    );
    call.hang_up().unwrap();
}
