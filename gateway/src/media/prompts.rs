//! Voice prompts and tones, ready to play at the conference rate.
//!
//! The recorded prompts ship inside the binary (WAV files in `gateway/prompts/`); an operator
//! replaces any of them with a WAV file of their own through `[prompts]` in the config. Any
//! sample rate and channel count is accepted: channels are averaged and the rate converted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mixer::resample::Resampler;
use mixer::tone::Sine;

use crate::config::PromptsConfig;

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("prompt `{name}` ({path}): {error}")]
    File { name: &'static str, path: PathBuf, error: hound::Error },
    #[error("built-in prompt `{name}`: {error}")]
    BuiltIn { name: &'static str, error: hound::Error },
    #[error("prompt `{name}`: {bits}-bit {format:?} samples are not supported (16-bit PCM or float)")]
    Format { name: &'static str, bits: u16, format: hound::SampleFormat },
}

/// Everything the IVR and the conference play.
#[derive(Debug, Clone)]
pub struct Prompts {
    pub enter_pin: Arc<[i16]>,
    pub wrong_pin: Arc<[i16]>,
    pub goodbye: Arc<[i16]>,
    pub first_participant: Arc<[i16]>,
    /// Rising two-note chime when someone joins, falling when someone leaves.
    pub join_tone: Arc<[i16]>,
    pub leave_tone: Arc<[i16]>,
}

impl Prompts {
    /// Loads every prompt, at the conference `rate`.
    pub fn load(config: &PromptsConfig, rate: u32) -> Result<Prompts, PromptError> {
        let pick = |name: &'static str, path: &Option<PathBuf>, built_in: &'static [u8]| match path {
            Some(path) => from_file(name, path, rate),
            None => {
                decode(name, std::io::Cursor::new(built_in), rate).map_err(|error| into_built_in(name, error))
            }
        };
        Ok(Prompts {
            enter_pin: pick("enter_pin", &config.enter_pin, include_bytes!("../../prompts/enter_pin.wav"))?,
            wrong_pin: pick("wrong_pin", &config.wrong_pin, include_bytes!("../../prompts/wrong_pin.wav"))?,
            goodbye: pick("goodbye", &config.goodbye, include_bytes!("../../prompts/goodbye.wav"))?,
            first_participant: pick(
                "first_participant",
                &config.first_participant,
                include_bytes!("../../prompts/first_participant.wav"),
            )?,
            join_tone: chime(&[660.0, 880.0], rate),
            leave_tone: chime(&[880.0, 660.0], rate),
        })
    }
}

fn into_built_in(name: &'static str, error: PromptError) -> PromptError {
    match error {
        PromptError::File { error, .. } => PromptError::BuiltIn { name, error },
        other => other,
    }
}

fn from_file(name: &'static str, path: &Path, rate: u32) -> Result<Arc<[i16]>, PromptError> {
    let file = std::fs::File::open(path).map_err(|e| PromptError::File {
        name,
        path: path.into(),
        error: hound::Error::IoError(e),
    })?;
    decode(name, std::io::BufReader::new(file), rate).map_err(|error| match error {
        PromptError::File { error, .. } => PromptError::File { name, path: path.into(), error },
        other => other,
    })
}

/// A WAV file as mono samples at `rate`.
fn decode<R: std::io::Read>(name: &'static str, reader: R, rate: u32) -> Result<Arc<[i16]>, PromptError> {
    let file_error = |error| PromptError::File { name, path: PathBuf::new(), error };
    let mut wav = hound::WavReader::new(reader).map_err(file_error)?;
    let spec = wav.spec();
    let interleaved: Vec<i16> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => {
            wav.samples::<i16>().collect::<Result<_, _>>().map_err(file_error)?
        }
        (hound::SampleFormat::Float, 32) => wav
            .samples::<f32>()
            .map(|s| s.map(|v| (v * 32767.0).clamp(-32768.0, 32767.0) as i16))
            .collect::<Result<_, _>>()
            .map_err(file_error)?,
        (format, bits) => return Err(PromptError::Format { name, bits, format }),
    };
    let channels = usize::from(spec.channels.max(1));
    let mono: Vec<i16> = interleaved
        .chunks(channels)
        .map(|frame| (frame.iter().map(|&s| i32::from(s)).sum::<i32>() / frame.len() as i32) as i16)
        .collect();
    let mut resampler = Resampler::new(spec.sample_rate, rate);
    let mut out = vec![0; resampler.output_len(mono.len()) + 1];
    let n = resampler.process(&mono, &mut out);
    out.truncate(n);
    Ok(out.into())
}

/// Notes of 120 ms each with short fades, at a comfortable level.
fn chime(notes: &[f64], rate: u32) -> Arc<[i16]> {
    let note_len = rate as usize * 120 / 1000;
    let fade = rate as usize * 10 / 1000;
    let mut out = Vec::with_capacity(note_len * notes.len());
    for &frequency in notes {
        let mut note = vec![0i16; note_len];
        Sine::new(rate, frequency, 0.25).fill(&mut note);
        for i in 0..fade {
            let g = i as f64 / fade as f64;
            note[i] = (f64::from(note[i]) * g) as i16;
            note[note_len - 1 - i] = (f64::from(note[note_len - 1 - i]) * g) as i16;
        }
        out.extend_from_slice(&note);
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 16000;

    #[test]
    fn built_in_prompts_load_as_speech_at_the_conference_rate() {
        let prompts = Prompts::load(&PromptsConfig::default(), RATE).unwrap();
        for (name, samples) in [("enter_pin", &prompts.enter_pin), ("goodbye", &prompts.goodbye)] {
            let seconds = samples.len() as f64 / f64::from(RATE);
            assert!((1.0..10.0).contains(&seconds), "{name}: {seconds} s");
            assert!(mixer::tone::power(samples) > 1e5, "{name} is not silent");
        }
        assert_eq!(prompts.join_tone.len(), 2 * 1920);
        let wideband = Prompts::load(&PromptsConfig::default(), 48000).unwrap();
        let ratio = wideband.enter_pin.len() as f64 / prompts.enter_pin.len() as f64;
        assert!((ratio - 3.0).abs() < 0.01, "48 kHz prompts are three times longer: {ratio}");
    }

    #[test]
    fn a_replacement_file_is_resampled_and_a_missing_one_names_the_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..8000 {
            let s = ((i as f64 * 2.0 * std::f64::consts::PI * 400.0 / 8000.0).sin() * 8000.0) as i16;
            writer.write_sample(s).unwrap();
            writer.write_sample(s).unwrap();
        }
        writer.finalize().unwrap();
        let config = PromptsConfig { goodbye: Some(path), ..PromptsConfig::default() };
        let prompts = Prompts::load(&config, RATE).unwrap();
        let len = prompts.goodbye.len() as i64;
        assert!((len - 16000).abs() < 40, "one second at 16 kHz, got {len}");
        let share = mixer::tone::tone_share_db(&prompts.goodbye[2000..14000], RATE, 400.0);
        assert!(share > -1.0, "the 400 Hz tone survives: {share} dB");

        let missing =
            PromptsConfig { enter_pin: Some(dir.path().join("nope.wav")), ..PromptsConfig::default() };
        let error = Prompts::load(&missing, RATE).unwrap_err().to_string();
        assert!(error.contains("enter_pin") && error.contains("nope.wav"), "{error}");
    }
}
