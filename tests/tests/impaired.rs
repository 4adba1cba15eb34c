//! Calls over a bad network: the gateway and two baresip phones in network namespaces of their
//! own, joined by a link that drops 20 % of the UDP datagrams each way and holds the rest for
//! 0–200 ms (`netem delay 100ms 100ms loss 20%`), so SIP is retransmitted and RTP arrives late,
//! reordered and with gaps.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::baresip::{Baresip, PhoneOptions};
use e2e::impair::{Link, GATEWAY_IP, PHONES_IP};
use e2e::room::{joined, tones_heard, PHONE_PASSWORD};
use e2e::{free_port, read_wav, wait_until, write_tone_wav, Gateway};
use mixer::tone::tone_share_db;

/// A phone in the phones' namespace (the calling thread must be there), registered to `gw`
/// over the lossy link, sending a tone at `frequency` in PCMU and recording what it hears.
fn phone(gw: &Gateway, user: &str, frequency: f64) -> Baresip {
    let wav = gw.dir.path().join(format!("{user}.wav"));
    write_tone_wav(&wav, 8000, frequency, 120).unwrap();
    let mut phone = Baresip::start(&PhoneOptions {
        audio_source: Some(wav),
        extra_config: vec!["ausrc_srate 8000".into(), "ausrc_channels 1".into()],
        record: true,
        ip: Some(PHONES_IP),
    })
    .unwrap();
    phone
        .add_account(&format!(
            "<sip:{user}@{}>;auth_pass={PHONE_PASSWORD};regint=600;audio_codecs=PCMU/8000/1",
            gw.sip
        ))
        .unwrap();
    // Each lost REGISTER or challenge costs a retransmission (500 ms, then doubling).
    phone.wait_event("REGISTER_OK", 0, Duration::from_secs(30)).unwrap();
    phone
}

#[test]
fn a_call_over_a_link_with_loss_and_jitter_is_set_up_and_both_sides_are_heard() {
    let link = Link::new(0.2, Duration::from_millis(200), 0x5eed_1234).unwrap();
    // The gateway's side: SIP and RTP on the link, the API on its own loopback.
    let base = (free_port() & !1).min(60_000);
    let rtp = format!("[rtp]\naddress = \"{GATEWAY_IP}\"\nport_min = {base}\nport_max = {}\n", base + 99);
    let gw = Gateway::start_at(SocketAddr::new(GATEWAY_IP, free_port()), "", &rtp).unwrap();
    gw.admin(&["room", "add", "--number", "3000"]);
    for user in ["alice", "bob"] {
        gw.admin(&["user", "add", user, "--password", PHONE_PASSWORD]);
    }

    link.enter_phones();
    let mut alice = phone(&gw, "alice", 500.0);
    let mut bob = phone(&gw, "bob", 1100.0);
    for p in [&mut alice, &mut bob] {
        let from = p.events.len();
        p.command("dial", &format!("sip:3000@{}", gw.sip)).unwrap();
        p.wait_event("CALL_ESTABLISHED", from, Duration::from_secs(30)).unwrap();
    }
    link.enter_gateway();
    assert!(wait_until(Duration::from_secs(20), || joined(&gw, "3000") == 2), "{}", gw.log());

    // Ten seconds of conversation through the loss and jitter.
    std::thread::sleep(Duration::from_secs(10));
    alice.command("hangup", "").unwrap();
    bob.command("hangup", "").unwrap();
    let loss = link.udp_loss();
    assert!((0.15..0.25).contains(&loss), "the link dropped {:.1} % of datagrams", loss * 100.0);
    for (who, phone, own, other) in [("alice", &alice, 500.0, 1100.0), ("bob", &bob, 1100.0, 500.0)] {
        let recording = phone.recordings("dec.wav");
        assert_eq!(recording.len(), 1, "{}", phone.log());
        let heard = tones_heard(&recording[0], &[other, own], 8.0);
        eprintln!("{who} hears {heard:?} (dB: the other phone's tone, its own)");
        assert!(heard[0] > -10.0, "{who} does not hear the other phone: {heard:?}");
        assert!(heard[1] < -20.0, "{who} hears itself: {heard:?}");
        // And most of the time: the other's tone in most 100 ms stretches of those 8 s.
        let (rate, samples) = read_wav(&recording[0]).unwrap();
        let end = samples.len().saturating_sub(rate as usize / 2);
        let window = &samples[end.saturating_sub(8 * rate as usize)..end];
        let chunks: Vec<&[i16]> = window.chunks(rate as usize / 10).collect();
        let audible = chunks
            .iter()
            .filter(|c| {
                let rms = (c.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / c.len() as f64).sqrt();
                rms > 1000.0 && tone_share_db(c, rate, other) > -10.0
            })
            .count();
        let share = audible as f64 / chunks.len() as f64;
        eprintln!("{who} hears the other phone in {:.0} % of 100 ms stretches", share * 100.0);
        assert!(share > 0.5, "{who} hears the other phone only {:.0} % of the time", share * 100.0);
    }
}
