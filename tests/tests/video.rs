//! Video phones in a room: baresip phones sending H.264 of known colours through the gateway's
//! composed picture, each decoding what it receives.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::baresip::Baresip;
use e2e::room::{dial, gateway, phone_playing};
use e2e::{require_program, wait_until, write_tone_wav, Gateway};

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

/// A registered phone whose camera shows `colour`, offering H.264 in `mode`.
fn video_phone(gw: &Gateway, user: &str, colour: &str, frequency: f64) -> Baresip {
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
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    phone_playing(gw, user, &wav, "PCMU;video_codecs=H264", &extra)
}

/// What `phone` shows now: its last decoded picture (the `snapshot` module's PNG), scaled by
/// ffmpeg to 64×36 RGB pixels.
fn picture(phone: &mut Baresip, name: &str) -> Vec<[u8; 3]> {
    let png = phone.dir().join(format!("{name}.png"));
    phone.command("snapshot_recv", &png.display().to_string()).unwrap();
    assert!(wait_until(Duration::from_secs(5), || png.exists()), "no snapshot\n{}", phone.log());
    // Written once complete, but give a writer that is still flushing its last bytes a moment.
    let mut raw = Vec::new();
    let ok = wait_until(Duration::from_secs(5), || {
        let out = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-i"])
            .arg(&png)
            .args(["-vf", "scale=64:36", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .output()
            .unwrap();
        raw = out.stdout;
        raw.len() == 64 * 36 * 3
    });
    assert!(ok, "snapshot does not decode");
    raw.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect()
}

/// The mean colour of a rectangle of a 64×36 picture, in its middle half.
fn mean(picture: &[[u8; 3]], x: usize, y: usize, w: usize, h: usize) -> [u8; 3] {
    let (mut sum, mut n) = ([0u32; 3], 0);
    for row in y + h / 4..y + h * 3 / 4 {
        for col in x + w / 4..x + w * 3 / 4 {
            for c in 0..3 {
                sum[c] += u32::from(picture[row * 64 + col][c]);
            }
            n += 1;
        }
    }
    sum.map(|s| (s / n) as u8)
}

/// Whether `rgb` is near `expected`, channel by channel.
fn near(rgb: [u8; 3], expected: [u8; 3]) -> bool {
    rgb.iter().zip(expected).all(|(a, b)| a.abs_diff(b) <= 40)
}

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];
/// The canvas's background.
const BACKGROUND: [u8; 3] = [16, 16, 16];

#[test]
fn two_video_phones_see_each_other_in_the_grid() {
    let gw = gateway("[video]\nwidth = 640\nheight = 360\nframe_rate = 15\n");
    gw.admin(&["room", "add", "--number", "1000"]);
    let mut red = video_phone(&gw, "red", "red", 440.0);
    let mut blue = video_phone(&gw, "blue", "blue", 660.0);
    dial(&mut red, &gw, "1000");
    dial(&mut blue, &gw, "1000");
    // Both phones see both cameras, in join order: red top left, blue top right, the
    // bottom row empty.
    for (phone, name) in [(&mut red, "red"), (&mut blue, "blue")] {
        let mut seen = Vec::new();
        let ok = wait_until(Duration::from_secs(15), || {
            let p = picture(phone, &format!("{name}-{}", seen.len()));
            seen.push([mean(&p, 0, 0, 32, 18), mean(&p, 32, 0, 32, 18), mean(&p, 0, 18, 64, 18)]);
            let [left, right, bottom] = seen[seen.len() - 1];
            near(left, RED) && near(right, BLUE) && near(bottom, BACKGROUND)
        });
        assert!(ok, "{name} saw {seen:?}\n{}", gw.log());
    }
}
