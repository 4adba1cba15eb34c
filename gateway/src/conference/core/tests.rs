//! The call-control core in virtual time: a phone's messages go in as inputs at chosen times,
//! the core's timers run at their exact deadlines, and its outputs are read as they come: what
//! it sends the phone, and what it tells the media worker. The admission look-ups (room, trunk)
//! run against a real SQLite database and come back as inputs, as they do in the gateway.

mod harness;

use super::{Command, Input};
use crate::media::{MediaEvent, ParticipantId};
use harness::*;

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
    // The BYE's retransmissions and its timeout (Timer F, 64 T1 after it was sent) are
    // counted for the operator.
    let metrics = h.core.shared.metrics.encode();
    let count = |event: &str| {
        let name = format!("gateway_sip_transaction_events_total{{event=\"{event}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&name)).and_then(|v| v.parse::<f64>().ok())
    };
    let retransmitted = h.heard("BYE").len() as f64 - 1.0;
    assert_eq!(count("retransmitted"), Some(retransmitted), "{metrics}");
    assert_eq!(count("timed_out"), Some(1.0), "{metrics}");
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
    let text = invite(h.phone(), h.gateway, DID, "Supported: timer\r\nSession-Expires: 30\r\n");
    h.phone_sends(0.0, &text);
    h.admission().await;
    let refusals = h.heard("SIP/2.0 422");
    assert_eq!(refusals.len(), 1, "{:?}", h.heard);
    assert_eq!(header(refusals[0].1, "Min-SE"), Some("90"));
    assert!(h.heard("SIP/2.0 200").is_empty());
}

/// An INFO carrying `digit` (application/dtmf-relay), CSeq `seq`.

#[tokio::test]
async fn silence_at_the_pin_prompt_counts_as_wrong_three_times_then_goodbye_and_bye() {
    let mut h = Harness::new().await;
    call_to(&mut h, PIN_DID, "").await;
    let me = ParticipantId(1);
    assert_eq!(h.played("play"), [(0.0, "play 1 enter_pin")]);
    // The digit timeout (15 s) runs from the end of the prompt.
    h.media_says(4.0, MediaEvent::PromptFinished { id: me });
    h.run_until(18.999);
    assert!(h.played("play 1 wrong_pin").is_empty());
    h.run_until(19.0);
    assert_eq!(h.played("play 1 wrong_pin"), [(19.0, "play 1 wrong_pin")]);
    h.media_says(21.0, MediaEvent::PromptFinished { id: me });
    h.run_until(50.0);
    assert_eq!(
        h.played("play 1"),
        [(0.0, "play 1 enter_pin"), (19.0, "play 1 wrong_pin"), (36.0, "play 1 wrong_pin")]
    );
    h.media_says(38.0, MediaEvent::PromptFinished { id: me });
    h.run_until(53.0);
    assert_eq!(h.played("play 1 goodbye"), [(53.0, "play 1 goodbye")]);
    assert!(h.heard("BYE").is_empty(), "the goodbye is heard to its end");
    h.media_says(56.0, MediaEvent::PromptFinished { id: me });
    assert_eq!(h.heard("BYE").first().map(|(at, _)| *at), Some(56.0));
    assert_eq!(h.played("remove"), [(56.0, "remove 1")]);
    assert!(h.played("join").is_empty(), "never in the mix");
}

#[tokio::test]
async fn the_right_pin_by_sip_info_joins_the_mix_at_its_hash() {
    let mut h = Harness::new().await;
    call_to(&mut h, PIN_DID, "").await;
    h.media_says(4.0, MediaEvent::PromptFinished { id: ParticipantId(1) });
    for (n, digit) in "1234#".chars().enumerate() {
        let at = 5.0 + n as f64;
        let text = info(&h, 2 + n as u32, digit);
        h.phone_sends(at, &text);
    }
    assert_eq!(h.played("join"), [(9.0, "join 1")]);
    let answered: Vec<f64> =
        h.heard("SIP/2.0 200").iter().filter(|(_, m)| m.contains(" INFO\r\n")).map(|(at, _)| *at).collect();
    assert_eq!(answered, [5.0, 6.0, 7.0, 8.0, 9.0], "every INFO answered when it came");
    h.run_until(60.0);
    assert!(h.played("play 1 wrong_pin").is_empty(), "no digit timeout once joined");
    assert!(h.heard("BYE").is_empty());
}

#[tokio::test]
async fn a_wrong_pin_is_told_at_its_hash_and_the_next_try_is_timed_from_there() {
    let mut h = Harness::new().await;
    call_to(&mut h, PIN_DID, "").await;
    h.media_says(4.0, MediaEvent::PromptFinished { id: ParticipantId(1) });
    for (n, digit) in "9999#".chars().enumerate() {
        let text = info(&h, 2 + n as u32, digit);
        h.phone_sends(5.0 + n as f64, &text);
    }
    assert_eq!(h.played("play 1 wrong_pin"), [(9.0, "play 1 wrong_pin")]);
    h.run_until(23.999);
    assert_eq!(h.played("play 1 wrong_pin").len(), 1);
    h.run_until(24.0);
    assert_eq!(h.played("play 1 wrong_pin").len(), 2, "the second try timed out 15 s after the first");
    assert!(h.played("join").is_empty());
}

#[tokio::test]
async fn a_cancel_before_the_answer_gets_487_and_the_late_admission_is_dropped() {
    let mut h = Harness::new().await;
    let text = invite(h.phone(), h.gateway, DID, "");
    h.phone_sends(0.0, &text);
    let cancel = cancel(&h);
    h.phone_sends(0.1, &cancel);
    let answers: Vec<(f64, Option<&str>)> =
        h.heard("SIP/2.0 200").iter().map(|(at, m)| (*at, header(m, "CSeq"))).collect();
    assert_eq!(answers, [(0.1, Some("1 CANCEL"))]);
    assert_eq!(h.heard("SIP/2.0 487").iter().map(|(at, _)| *at).collect::<Vec<_>>(), [0.1]);
    h.admission().await;
    assert!(h.heard("SIP/2.0 200").iter().all(|(_, m)| header(m, "CSeq") == Some("1 CANCEL")));
    assert!(h.played("add").is_empty(), "no media for a cancelled call");
}

#[tokio::test]
async fn no_rtp_ends_the_call_when_the_media_worker_says_so() {
    let mut h = Harness::new().await;
    answered_call(&mut h, "").await;
    assert_eq!(h.played("add"), [(0.0, "add 1")]);
    h.media_says(30.0, MediaEvent::RtpTimeout { id: ParticipantId(1) });
    assert_eq!(h.heard("BYE").first().map(|(at, _)| *at), Some(30.0));
    assert_eq!(h.played("remove"), [(30.0, "remove 1")]);
}

#[tokio::test]
async fn shutdown_hangs_up_every_call_at_once() {
    let mut h = Harness::new().await;
    answered_call(&mut h, "").await;
    h.set_time(12.5);
    h.input(Input::Shutdown);
    assert_eq!(h.heard("BYE").first().map(|(at, _)| *at), Some(12.5));
    assert_eq!(h.core.calls.byes_in_flight(), 1, "the loop waits for the BYE's answer");
    let bye = h.heard("BYE")[0].1.to_string();
    let answer = ok_to(&bye);
    h.phone_sends(12.6, &answer);
    assert_eq!(h.core.calls.byes_in_flight(), 0);
    // Draining from then on: a new call is refused at once, without a look-up.
    h.phone_sends(12.7, &nth_call(&invite(h.phone(), h.gateway, DID, ""), 2));
    let refused = h.heard("SIP/2.0 503");
    assert_eq!(refused.first().map(|(at, _)| *at), Some(12.7), "{refused:?}");
    assert_eq!(header(refused[0].1, "Retry-After"), Some("30"));
}

#[tokio::test]
async fn a_phone_re_invite_during_our_refresh_re_invite_is_glare_491_and_ours_is_retried_within_2_s() {
    let mut h = Harness::new().await;
    answered_call(
        &mut h,
        "Supported: timer\r\nAllow: INVITE, ACK, BYE\r\nSession-Expires: 90;refresher=uas\r\n",
    )
    .await;
    h.run_until(45.0);
    let ours = h.heard("INVITE").first().map(|(_, m)| m.to_string()).expect("our refresh re-INVITE");
    let to = header(h.heard("SIP/2.0 200")[0].1, "To").unwrap().to_string();
    let theirs = reinvite(&h, &to, 2);
    h.phone_sends(45.1, &theirs);
    assert_eq!(h.heard("SIP/2.0 491").iter().map(|(at, _)| *at).collect::<Vec<_>>(), [45.1]);
    // The phone refuses ours the same way: we try again after a random 0-2 s (§14.1: we do not
    // own the Call-ID).
    let mut refusal = ok_to(&ours).replace("SIP/2.0 200 OK", "SIP/2.0 491 Request Pending");
    refusal = refusal.replace("Session-Expires: 90;refresher=uac\r\n", "");
    h.phone_sends(45.2, &refusal);
    h.run_until(50.0);
    let retries: Vec<f64> = h
        .heard("INVITE")
        .iter()
        .filter(|(_, m)| header(m, "Via") != header(&ours, "Via"))
        .map(|(at, _)| *at)
        .collect();
    assert!(!retries.is_empty(), "{:?}", h.heard("INVITE"));
    assert!((45.2..=47.2).contains(&retries[0]), "retried at {}", retries[0]);
    // The retry is one new transaction, resent on Timer A until answered.
    let branches: std::collections::HashSet<_> =
        h.heard("INVITE").iter().filter_map(|(_, m)| header(m, "Via")).collect();
    assert_eq!(branches.len(), 2, "ours and its one retry");
    assert_eq!(retries.get(1).map(|at| ((at - retries[0]) * 1000.0).round()), Some(500.0));
}

/// The phone's response `code` to the core's request `request`, with `to_tag` and `sdp`.

#[tokio::test]
async fn a_call_out_nobody_answers_is_cancelled_at_the_ring_timeout() {
    let mut h = Harness::new().await;
    h.dial(0.0, 20).await;
    let invite = h.heard("INVITE").first().map(|(at, m)| (*at, m.to_string())).expect("our INVITE");
    assert_eq!(invite.0, 0.0);
    h.run_until(1.0);
    let ringing = reply(&invite.1, "180 Ringing", "far1", h.phone(), None);
    h.phone_sends(1.0, &ringing);
    // Ringing: no more INVITE retransmissions (Timer A stops in Proceeding).
    h.run_until(19.999);
    assert_eq!(h.heard("INVITE").iter().map(|(at, _)| *at).collect::<Vec<_>>(), [0.0, 0.5]);
    assert!(h.heard("CANCEL").is_empty());
    h.run_until(20.0);
    let cancel = h.heard("CANCEL").first().map(|(at, m)| (*at, m.to_string())).expect("a CANCEL");
    assert_eq!(cancel.0, 20.0);
    assert_eq!(header(&cancel.1, "Via"), header(&invite.1, "Via"), "the CANCEL names the INVITE's branch");
    let cancelled = reply(&cancel.1, "200 OK", "far1", h.phone(), None);
    h.phone_sends(20.1, &cancelled);
    let terminated = reply(&invite.1, "487 Request Terminated", "far1", h.phone(), None);
    h.phone_sends(20.1, &terminated);
    assert_eq!(h.heard("ACK").iter().map(|(at, _)| *at).collect::<Vec<_>>(), [20.1], "the 487 is ACKed");
    assert!(h.played("add").is_empty(), "nothing joined the room");
}

#[tokio::test]
async fn early_media_joins_the_room_at_183_and_the_answer_keeps_the_leg() {
    let mut h = Harness::new().await;
    h.dial(0.0, 60).await;
    let invite = h.heard("INVITE")[0].1.to_string();
    let sdp = far_sdp(h.phone().port() + 2);
    let progress = reply(&invite, "183 Session Progress", "far1", h.phone(), Some(&sdp));
    h.phone_sends(2.0, &progress);
    assert_eq!(h.played("add"), [(2.0, "add 1")], "the far end's announcement plays into the room");
    let ok = reply(&invite, "200 OK", "far1", h.phone(), Some(&sdp));
    h.phone_sends(5.0, &ok);
    assert_eq!(h.heard("ACK").iter().map(|(at, _)| *at).collect::<Vec<_>>(), [5.0]);
    assert_eq!(h.played("add").len(), 1, "the early leg is the call's leg");
    assert!(h.played("remove").is_empty());
    h.run_until(70.0);
    assert!(h.heard("CANCEL").is_empty(), "answered calls are not cancelled at the ring timeout");
}

#[tokio::test]
async fn hold_and_resume_by_re_invite_reach_the_media_plane() {
    let mut h = Harness::new().await;
    let ok = answered_call(&mut h, "").await;
    let to = header(&ok, "To").unwrap().to_string();
    let hold = reinvite(&h, &to, 2).replace("a=sendrecv", "a=sendonly");
    let resume = reinvite(&h, &to, 3);
    h.phone_sends(10.0, &hold);
    let answer = h.heard("SIP/2.0 200").last().map(|(at, m)| (*at, m.to_string())).unwrap();
    assert_eq!(answer.0, 10.0);
    assert!(answer.1.contains("a=recvonly"), "held: we only listen\n{}", answer.1);
    assert_eq!(h.played("update"), [(10.0, "update 1 PCMU held")]);
    h.phone_sends(30.0, &resume);
    let answer = h.heard("SIP/2.0 200").last().map(|(at, m)| (*at, m.to_string())).unwrap();
    assert_eq!(answer.0, 30.0);
    assert!(answer.1.contains("a=sendrecv"), "resumed\n{}", answer.1);
    assert_eq!(h.played("update"), [(10.0, "update 1 PCMU held"), (30.0, "update 1 PCMU live")]);
}

#[tokio::test]
async fn a_re_invite_offering_another_codec_changes_the_leg_codec() {
    let mut h = Harness::new().await;
    let ok = answered_call(&mut h, "").await;
    let to = header(&ok, "To").unwrap().to_string();
    let reinvite = reinvite(&h, &to, 2)
        .replace("RTP/AVP 0 101", "RTP/AVP 8 101")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000");
    h.phone_sends(7.0, &reinvite);
    let answer = h.heard("SIP/2.0 200").last().map(|(at, m)| (*at, m.to_string())).unwrap();
    assert_eq!(answer.0, 7.0);
    assert!(answer.1.contains("m=audio 20000 RTP/AVP 8"), "the answer takes PCMA\n{}", answer.1);
    assert_eq!(h.played("update"), [(7.0, "update 1 PCMA live")]);
}

/// The `n`th call's version of a message of the first call: its own Call-ID, tag and branches.

#[tokio::test]
async fn a_caller_out_of_pin_tries_is_refused_until_the_block_window_passes() {
    let mut h = Harness::with(|c| {
        c.conference.pin_failures_per_source = 3;
        c.conference.pin_block_secs = 600;
    })
    .await;
    call_to(&mut h, PIN_DID, "").await;
    for attempt in 0..3u32 {
        for (n, digit) in "9999#".chars().enumerate() {
            let seq = 2 + attempt * 5 + n as u32;
            let text = info(&h, seq, digit);
            h.phone_sends(5.0 + f64::from(attempt) * 10.0 + n as f64, &text);
        }
    }
    assert_eq!(h.played("play 1 goodbye").iter().map(|(at, _)| *at).collect::<Vec<_>>(), [29.0]);
    // The same caller ID through the same trunk, a minute later: refused at admission.
    let second = nth_call(&invite(h.phone(), h.gateway, PIN_DID, ""), 2);
    h.phone_sends(90.0, &second);
    h.admission().await;
    let refused: Vec<(f64, Option<&str>)> =
        h.heard("SIP/2.0 403").iter().map(|(at, m)| (*at, header(m, "Call-ID"))).collect();
    assert_eq!(refused, [(90.0, Some("core-test-2"))]);
    // The window runs from the last wrong PIN (29 s): at 629 s the caller may try again.
    let third = nth_call(&invite(h.phone(), h.gateway, PIN_DID, ""), 3);
    h.phone_sends(628.9, &third);
    h.admission().await;
    assert_eq!(h.heard("SIP/2.0 403").len(), 2, "still blocked just before the window ends");
    let fourth = nth_call(&invite(h.phone(), h.gateway, PIN_DID, ""), 4);
    h.phone_sends(629.0, &fourth);
    h.admission().await;
    let answered: Vec<Option<&str>> =
        h.heard("SIP/2.0 200").iter().map(|(_, m)| header(m, "Call-ID")).collect();
    assert!(answered.contains(&Some("core-test-4")), "{answered:?}");
}

#[tokio::test]
async fn a_cancel_after_the_answer_changes_nothing() {
    let mut h = Harness::new().await;
    answered_call(&mut h, "").await;
    let cancel = cancel(&h);
    h.phone_sends(3.0, &cancel);
    assert!(h.heard("SIP/2.0 487").is_empty(), "the INVITE already had its final response");
    let cancel_answers: Vec<f64> = h
        .heard("SIP/2.0 200")
        .iter()
        .filter(|(_, m)| header(m, "CSeq") == Some("1 CANCEL"))
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(cancel_answers, [3.0], "§9.2: the CANCEL itself is answered");
    h.run_until(40.0);
    assert!(h.heard("BYE").is_empty(), "the call goes on");
    assert!(h.played("remove").is_empty());
}

#[tokio::test]
async fn a_2xx_never_acked_is_resent_on_t1_doubling_to_t2_and_the_call_ends_at_64_t1() {
    let mut h = Harness::new().await;
    let text = invite(h.phone(), h.gateway, DID, "");
    h.phone_sends(0.0, &text);
    h.admission().await;
    h.run_until(40.0);
    let oks: Vec<f64> = h.heard("SIP/2.0 200").iter().map(|(at, _)| *at).collect();
    assert_eq!(oks, [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]);
    // §13.3.1.4: no ACK in 64*T1, the dialog ends with a BYE.
    assert_eq!(h.heard("BYE").first().map(|(at, _)| *at), Some(32.0));
}

#[tokio::test]
async fn each_call_keeps_its_own_deadline_among_many() {
    let mut h = Harness::new().await;
    let sessions = [(1, 0.0, 90), (2, 1.0, 120), (3, 2.0, 180)];
    for (n, at, interval) in sessions {
        let extra = format!("Supported: timer\r\nSession-Expires: {interval};refresher=uac\r\n");
        let text = nth_call(&invite(h.phone(), h.gateway, DID, &extra), n);
        h.phone_sends(at, &text);
        h.admission().await;
        let ok = h.heard("SIP/2.0 200").last().map(|(_, m)| m.to_string()).unwrap();
        let ack =
            nth_call(&ack(h.phone(), h.gateway, &ok.replace(&format!("core-test-{n}"), "core-test-1")), n);
        h.phone_sends(at, &ack);
    }
    h.run_until(200.0);
    let byes: Vec<(f64, Option<&str>)> = h
        .heard("BYE")
        .iter()
        .map(|(at, m)| (*at, header(m, "Call-ID")))
        .filter(|(at, _)| at.fract() == 0.0)
        .collect();
    // Each at its interval minus min(32 s, interval / 3) after its answer.
    assert_eq!(
        byes,
        [(60.0, Some("core-test-1")), (89.0, Some("core-test-2")), (150.0, Some("core-test-3"))],
        "{:?}",
        h.heard("BYE").iter().map(|(at, m)| (*at, header(m, "Call-ID"))).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_trunk_named_by_a_name_not_yet_resolved_registers_once_the_answer_comes_in() {
    let mut h = Harness::with(|config| {
        let mut named = trunk("named", "sip:registrar.example.test:5070");
        named.password = Some("secret".into());
        named.register = true;
        config.trunks.push(named);
    })
    .await;
    h.core.start();
    h.drain();
    let name = ("registrar.example.test".to_string(), 5070);
    assert_eq!(h.asked, [(0.0, name.clone())], "the name is asked for once, and nothing waits for it");
    assert!(h.heard("REGISTER").is_empty());
    // The answer arrives: the next try (the client's retry, 2 s ± 20 %) goes to that address.
    h.set_time(0.5);
    h.input(Input::Command(Command::Resolved { name, addr: Some(h.phone) }));
    h.run_until(2.5);
    let first = h.heard("REGISTER").first().map(|(at, _)| *at).expect("a REGISTER once resolved");
    assert!((1.6..=2.4).contains(&first), "retried at {first}");
    assert_eq!(h.asked.len(), 1, "a resolved name is not asked for again");
}
