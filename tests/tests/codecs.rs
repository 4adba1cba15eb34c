//! The mixer's codecs against an independent implementation: ffmpeg (Debian `ffmpeg`).
//! G.722 is specified bit for bit, so encoder output and decoder output must match exactly.

use std::path::Path;
use std::process::Command;

use e2e::require_program;
use mixer::g722;
use mixer::tone::{snr_db, Sine};

/// 16 kHz mono signed 16-bit little-endian PCM, as ffmpeg options.
const RAW_PCM: &[&str] = &["-f", "s16le", "-ar", "16000", "-ac", "1"];

fn ffmpeg(args: &[&str]) {
    require_program("ffmpeg");
    let out = Command::new("ffmpeg").args(["-loglevel", "error", "-y"]).args(args).output().unwrap();
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn write_s16(path: &Path, pcm: &[i16]) {
    std::fs::write(path, pcm.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
}

fn read_s16(path: &Path) -> Vec<i16> {
    std::fs::read(path).unwrap().chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

/// Speech-like test signal: two tones and a sweep of levels.
fn signal() -> Vec<i16> {
    let mut pcm = vec![0i16; 32000];
    Sine::new(16000, 440.0, 0.2).fill(&mut pcm);
    Sine::new(16000, 3100.0, 0.1).add_to(&mut pcm);
    for (i, s) in pcm.iter_mut().enumerate() {
        // Fade in and out so the quantizer adapts through its range.
        let env = ((i as f64 / 32000.0) * std::f64::consts::PI).sin();
        *s = (f64::from(*s) * env) as i16;
    }
    pcm
}

#[test]
fn g722_encoder_and_decoder_match_ffmpeg_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let pcm = signal();
    let raw = dir.path().join("in.raw");
    write_s16(&raw, &pcm);

    // ffmpeg encodes; we encode the same samples: the same bytes.
    let theirs_coded = dir.path().join("theirs.g722");
    let (raw, coded) = (raw.to_str().unwrap(), theirs_coded.to_str().unwrap());
    ffmpeg(&[RAW_PCM, &["-i", raw, "-c:a", "g722", "-f", "g722", coded]].concat());
    let theirs = std::fs::read(&theirs_coded).unwrap();
    let mut ours = vec![0u8; pcm.len() / 2];
    let mut encoder = g722::Encoder::new();
    for (frame, out) in pcm.chunks(320).zip(ours.chunks_mut(160)) {
        encoder.encode(frame, out);
    }
    let differing = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
    assert_eq!(theirs.len(), ours.len());
    assert_eq!(differing, 0, "{differing} of {} encoded bytes differ from ffmpeg's", ours.len());

    // ffmpeg decodes its bytes; we decode the same bytes: the same samples.
    let theirs_decoded = dir.path().join("theirs.raw");
    ffmpeg(&[&["-f", "g722", "-i", coded][..], RAW_PCM, &[theirs_decoded.to_str().unwrap()]].concat());
    let theirs_pcm = read_s16(&theirs_decoded);
    let mut ours_pcm = vec![0i16; theirs.len() * 2];
    let mut decoder = g722::Decoder::new();
    for (frame, out) in theirs.chunks(160).zip(ours_pcm.chunks_mut(320)) {
        decoder.decode(frame, out);
    }
    let differing = ours_pcm.iter().zip(&theirs_pcm).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 0, "{differing} of {} decoded samples differ from ffmpeg's", ours_pcm.len());

    // And the signal survives the trip.
    let d = g722::CODEC_DELAY;
    let snr = snr_db(&pcm[8000..24000], &ours_pcm[8000 + d..24000 + d]);
    assert!(snr > 25.0, "SNR {snr:.1} dB");
}
