//! An SDP offer from anyone: parsing and answering it never panics, and an answer we make is
//! SDP we can parse, its video included; so is reading it as the answer to our own offer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_stack::sdp::sdes::{Key, Srtp, KEY_LEN};
use sip_stack::sdp::video::{self, Feedback, LocalVideo, VideoKind};
use sip_stack::sdp::{answer_av, offer, parse, Direction, LocalAudio, G722, OPUS, PCMU};

fuzz_target!(|data: &[u8]| {
    let Ok(offered) = parse(data) else { return };
    let local = LocalAudio {
        address: [127, 0, 0, 1].into(),
        port: 20000,
        codecs: vec![OPUS, G722, PCMU],
        ptime: 20,
        direction: Direction::SendRecv,
        // SDES crypto lines are read too.
        srtp: Srtp::Optional(Key([1; KEY_LEN])),
    };
    let local_video = LocalVideo {
        port: 20002,
        codecs: vec![VideoKind::H264, VideoKind::Vp8],
        h264_level_idc: 31,
        max_fs: 3600,
        max_fr: 30,
        max_receive_kbps: 2000,
        direction: Direction::SendRecv,
        feedback: Feedback::ALL,
        srtp: Srtp::Optional(Key([2; KEY_LEN])),
    };
    if let Ok((ours, _, _)) = answer_av(&offered, &local, Some(&local_video), 1, 1) {
        parse(ours.to_string().as_bytes()).expect("our answer parses");
    }
    let mut ours = offer(&local, 1, 1);
    ours.medias.push(video::offer_media(&local_video, None));
    let _ = video::read_answer(&ours, &offered, 1, &local_video);
});
