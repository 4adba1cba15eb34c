//! VP8 encoding and decoding through libvpx (the system's, by `env-libvpx-sys`), behind the
//! [`Frame`] type, as [`super::h264`] does for H.264.
//!
//! The encoder runs in real time, one pass, constant bitrate, without lag or dropped
//! pictures, so one call gives one picture; error resilience is on (a receiver that lost a
//! packet recovers at the next keyframe or golden frame rather than never). A keyframe is made
//! when asked. The size comes from each picture: a new size restarts the encoder.

use std::ptr;

use vpx_sys::{
    vp8e_enc_control_id, vpx_codec_control_, vpx_codec_ctx_t, vpx_codec_cx_pkt_kind, vpx_codec_dec_cfg_t,
    vpx_codec_dec_init_ver, vpx_codec_decode, vpx_codec_destroy, vpx_codec_enc_cfg_t,
    vpx_codec_enc_config_default, vpx_codec_enc_init_ver, vpx_codec_encode, vpx_codec_err_t,
    vpx_codec_get_cx_data, vpx_codec_get_frame, vpx_codec_iter_t, vpx_codec_vp8_cx, vpx_codec_vp8_dx,
    vpx_image_t, vpx_img_fmt, vpx_kf_mode, vpx_rc_mode, VPX_DECODER_ABI_VERSION, VPX_DL_REALTIME,
    VPX_EFLAG_FORCE_KF, VPX_ENCODER_ABI_VERSION, VPX_ERROR_RESILIENT_DEFAULT, VPX_FRAME_IS_KEY,
};

use super::frame::Frame;
#[cfg(test)]
use super::frame::Yuv;
use super::h264::{EncoderSettings, VideoCodecError};

/// libvpx's speed for real time: fastest with quality still fit for a composed picture.
const CPU_USED: i32 = 8;

fn check(what: &str, err: vpx_codec_err_t) -> Result<(), VideoCodecError> {
    match err {
        vpx_codec_err_t::VPX_CODEC_OK => Ok(()),
        other => Err(VideoCodecError::Encoder(format!("VP8 {what}: {other:?}"))),
    }
}

/// One shared VP8 encoder.
pub struct Vp8Encoder {
    settings: EncoderSettings,
    /// Started with the first picture, at its size.
    ctx: Option<Box<vpx_codec_ctx_t>>,
    size: (usize, usize),
    /// The last picture's frame data.
    data: Vec<u8>,
    keyframe_asked: bool,
}

// SAFETY: a libvpx context is owned by this value alone and used from one thread at a time
// (through `&mut self`); it keeps no thread-local state.
unsafe impl Send for Vp8Encoder {}

impl std::fmt::Debug for Vp8Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vp8Encoder({}×{})", self.size.0, self.size.1)
    }
}

/// One encoded VP8 picture.
#[derive(Debug)]
pub struct Vp8Encoded<'a> {
    pub keyframe: bool,
    pub data: &'a [u8],
}

impl Vp8Encoder {
    pub fn new(settings: EncoderSettings) -> Vp8Encoder {
        Vp8Encoder { settings, ctx: None, size: (0, 0), data: Vec::new(), keyframe_asked: true }
    }

    pub fn ask_keyframe(&mut self) {
        self.keyframe_asked = true;
    }

    fn start(&mut self, width: usize, height: usize) -> Result<(), VideoCodecError> {
        self.stop();
        // SAFETY: libvpx fills the configuration it is given; the context is boxed so that
        // its address stays put for libvpx.
        unsafe {
            // Filled whole by libvpx (some of its fields are enums without a zero).
            let mut cfg = std::mem::MaybeUninit::<vpx_codec_enc_cfg_t>::uninit();
            check("configuration", vpx_codec_enc_config_default(vpx_codec_vp8_cx(), cfg.as_mut_ptr(), 0))?;
            let mut cfg = cfg.assume_init();
            cfg.g_w = width as u32;
            cfg.g_h = height as u32;
            // Timestamps in milliseconds.
            cfg.g_timebase.num = 1;
            cfg.g_timebase.den = 1000;
            cfg.rc_target_bitrate = (self.settings.bitrate_bps / 1000).max(1);
            cfg.rc_end_usage = vpx_rc_mode::VPX_CBR;
            cfg.rc_dropframe_thresh = 0;
            cfg.g_threads = 1;
            cfg.g_lag_in_frames = 0;
            cfg.g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
            // Keyframes when asked (and rarely otherwise): they cost several pictures' bits.
            cfg.kf_mode = vpx_kf_mode::VPX_KF_AUTO;
            cfg.kf_max_dist = 100 * self.settings.frame_rate.max(1);
            let mut ctx: Box<vpx_codec_ctx_t> = Box::new(std::mem::zeroed());
            let ver = VPX_ENCODER_ABI_VERSION as i32;
            check("encoder", vpx_codec_enc_init_ver(&mut *ctx, vpx_codec_vp8_cx(), &cfg, 0, ver))?;
            vpx_codec_control_(&mut *ctx, vp8e_enc_control_id::VP8E_SET_CPUUSED as i32, CPU_USED);
            self.ctx = Some(ctx);
        }
        self.size = (width, height);
        self.keyframe_asked = true;
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut ctx) = self.ctx.take() {
            // SAFETY: a context that was initialised, destroyed once.
            unsafe { vpx_codec_destroy(&mut *ctx) };
        }
    }

    /// Encodes one picture, `at_ms` into the stream.
    pub fn encode(&mut self, frame: &Frame, at_ms: u64) -> Result<Vp8Encoded<'_>, VideoCodecError> {
        if self.ctx.is_none() || self.size != (frame.width, frame.height) {
            self.start(frame.width, frame.height)?;
        }
        let Some(ctx) = self.ctx.as_mut() else {
            return Err(VideoCodecError::Encoder("VP8 not started".into()));
        };
        let flags = if std::mem::take(&mut self.keyframe_asked) { VPX_EFLAG_FORCE_KF as i64 } else { 0 };
        self.data.clear();
        let mut keyframe = false;
        // SAFETY: the image points into `frame`'s planes, which outlive the call; libvpx only
        // reads them. Packets are read before the next call into the encoder.
        unsafe {
            let mut image: vpx_image_t = std::mem::zeroed();
            image.fmt = vpx_img_fmt::VPX_IMG_FMT_I420;
            (image.w, image.h) = (frame.width as u32, frame.height as u32);
            (image.d_w, image.d_h) = (frame.width as u32, frame.height as u32);
            (image.x_chroma_shift, image.y_chroma_shift) = (1, 1);
            image.bit_depth = 8;
            image.bps = 12;
            image.planes[0] = frame.y.as_ptr() as *mut u8;
            image.planes[1] = frame.u.as_ptr() as *mut u8;
            image.planes[2] = frame.v.as_ptr() as *mut u8;
            image.stride[0] = frame.width as i32;
            image.stride[1] = (frame.width / 2) as i32;
            image.stride[2] = (frame.width / 2) as i32;
            let pts = at_ms as i64;
            check("encode", vpx_codec_encode(&mut **ctx, &image, pts, 1, flags, VPX_DL_REALTIME.into()))?;
            let mut iter: vpx_codec_iter_t = ptr::null();
            loop {
                let packet = vpx_codec_get_cx_data(&mut **ctx, &mut iter);
                if packet.is_null() {
                    break;
                }
                if (*packet).kind != vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                    continue;
                }
                let frame = (*packet).data.frame;
                keyframe |= frame.flags & VPX_FRAME_IS_KEY != 0;
                self.data
                    .extend_from_slice(std::slice::from_raw_parts(frame.buf as *const u8, frame.sz as usize));
            }
        }
        Ok(Vp8Encoded { keyframe, data: &self.data })
    }
}

impl Drop for Vp8Encoder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One leg's VP8 decoder.
pub struct Vp8Decoder {
    ctx: Box<vpx_codec_ctx_t>,
}

// SAFETY: as for the encoder: one owner, one thread at a time.
unsafe impl Send for Vp8Decoder {}

impl std::fmt::Debug for Vp8Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vp8Decoder")
    }
}

impl Vp8Decoder {
    pub fn new() -> Result<Vp8Decoder, VideoCodecError> {
        // SAFETY: the context is boxed so that its address stays put for libvpx.
        unsafe {
            let mut ctx: Box<vpx_codec_ctx_t> = Box::new(std::mem::zeroed());
            let cfg = vpx_codec_dec_cfg_t { threads: 1, w: 0, h: 0 };
            let err = vpx_codec_dec_init_ver(
                &mut *ctx,
                vpx_codec_vp8_dx(),
                &cfg,
                0,
                VPX_DECODER_ABI_VERSION as i32,
            );
            match err {
                vpx_codec_err_t::VPX_CODEC_OK => Ok(Vp8Decoder { ctx }),
                other => Err(VideoCodecError::Decoder(format!("VP8 decoder: {other:?}"))),
            }
        }
    }

    /// Decodes one frame into `frame` (its buffers reused); true when it completed a picture.
    pub fn decode_into(&mut self, data: &[u8], frame: &mut Frame) -> Result<bool, VideoCodecError> {
        let len =
            u32::try_from(data.len()).map_err(|_| VideoCodecError::Decoder("VP8 frame too large".into()))?;
        // SAFETY: libvpx reads `data` during the call; the image it returns is valid until the
        // next call into the decoder, and its planes are read (with their strides) before.
        unsafe {
            let err = vpx_codec_decode(&mut *self.ctx, data.as_ptr(), len, ptr::null_mut(), 0);
            if err != vpx_codec_err_t::VPX_CODEC_OK {
                return Err(VideoCodecError::Decoder(format!("VP8 decode: {err:?}")));
            }
            let mut iter: vpx_codec_iter_t = ptr::null();
            let mut done = false;
            loop {
                let image = vpx_codec_get_frame(&mut *self.ctx, &mut iter);
                if image.is_null() {
                    break;
                }
                let image = &*image;
                if image.fmt != vpx_img_fmt::VPX_IMG_FMT_I420 {
                    continue;
                }
                let (w, h) = (image.d_w as usize, image.d_h as usize);
                let strides = [0, 1, 2].map(|i| image.stride[i].max(0) as usize);
                let rows = [h, h.div_ceil(2), h.div_ceil(2)];
                let planes =
                    [0, 1, 2].map(|i| std::slice::from_raw_parts(image.planes[i], strides[i] * rows[i]));
                done = frame.copy_planes(w, h, planes, strides);
            }
            Ok(done)
        }
    }
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { vpx_codec_destroy(&mut *self.ctx) };
    }
}

#[cfg(test)]
mod tests {
    use super::super::vp8_rtp::{Depacketizer, Packetizer, Vp8Frame};
    use super::*;

    fn blank(width: usize, height: usize) -> Frame {
        Frame::filled(width, height, Yuv::from_rgb(16, 16, 16))
    }

    #[test]
    fn colours_survive_vp8_over_rtp_and_a_keyframe_comes_when_asked() {
        let (red, blue) = (Yuv::from_rgb(230, 30, 30), Yuv::from_rgb(30, 30, 230));
        let mut picture = Frame::filled(320, 240, red);
        picture.fill_rect(160, 0, 160, 240, blue);
        let settings = EncoderSettings { bitrate_bps: 500_000, frame_rate: 30, max_nal_bytes: None };
        let mut encoder = Vp8Encoder::new(settings);
        let mut packetizer = Packetizer { mtu: 1200, picture_id: 7 };
        let mut depacketizer = Depacketizer::default();
        let mut decoder = Vp8Decoder::new().unwrap();
        let mut decoded = Frame::filled(0, 0, red);
        let (mut pictures, mut seq) = (0, 0u16);
        for i in 0..10u64 {
            if i == 6 {
                encoder.ask_keyframe();
            }
            let encoded = encoder.encode(&picture, i * 33).unwrap();
            assert_eq!(encoded.keyframe, i == 0 || i == 6, "picture {i}");
            let mut payloads = Vec::new();
            packetizer.packetize(encoded.data, &mut payloads);
            let mut frames: Vec<Vp8Frame> = Vec::new();
            for (n, payload) in payloads.iter().enumerate() {
                depacketizer.push(seq, i as u32 * 3000, n + 1 == payloads.len(), payload, &mut frames);
                seq = seq.wrapping_add(1);
            }
            for frame in frames {
                if decoder.decode_into(&frame.data, &mut decoded).unwrap() {
                    pictures += 1;
                    assert_eq!((decoded.width, decoded.height), (320, 240));
                    let (l, r) = (decoded.mean(16, 16, 128, 208), decoded.mean(176, 16, 128, 208));
                    assert!(l.distance(red) <= 10 && r.distance(blue) <= 10, "{l:?} {r:?}");
                }
            }
        }
        assert_eq!(pictures, 10);
        // A new size restarts the encoder at a keyframe.
        assert!(encoder.encode(&blank(160, 120), 400).unwrap().keyframe);
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        let mut decoder = Vp8Decoder::new().unwrap();
        let mut frame = blank(2, 2);
        for junk in [
            &[][..],
            &[0x9d, 0x01, 0x2a],
            &[0xff; 64],
            &[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0xff, 0xff, 0xff, 0xff],
        ] {
            let _ = decoder.decode_into(junk, &mut frame);
        }
    }
}
