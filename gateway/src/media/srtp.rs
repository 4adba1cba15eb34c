//! SRTP and SRTCP (RFC 3711) for SIP legs whose keys came in SDP (SDES, RFC 4568): one
//! context for what the peer sends, keyed with its key, one for what we send, keyed with ours.

use sip_stack::sdp::sdes::{Key, SrtpKeys, Suite};
use srtp::context::Context;
use srtp::option;
use srtp::protection_profile::ProtectionProfile;

/// A master key is this long; the salt is the rest of the 30 bytes.
const MASTER_KEY: usize = 16;

#[derive(Debug, thiserror::Error)]
#[error("SRTP context: {0}")]
pub struct SrtpError(String);

/// Both directions of one leg.
pub struct Srtp {
    keys: SrtpKeys,
    inbound: Context,
    outbound: Context,
    /// The SSRC whose packets last authenticated.
    source: Option<u32>,
    /// Other SSRCs tried since: the context keeps state for each before it checks a packet, so
    /// forged packets from many SSRCs are cut off here.
    strangers: usize,
}

/// SSRCs other than the known one that may be tried (a phone changes SSRC rarely).
const MAX_STRANGERS: usize = 16;

impl std::fmt::Debug for Srtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Srtp").field("suite", &self.keys.suite).finish_non_exhaustive()
    }
}

/// Packets replayed within this many of the newest are refused (RFC 3711 §3.3.2's minimum).
const REPLAY_WINDOW: usize = 64;

/// A context for one direction; `inbound` ones refuse replays.
fn context(suite: Suite, key: &Key, inbound: bool) -> Result<Context, SrtpError> {
    let profile = match suite {
        Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
    };
    let provider = srtp::crypto::default_provider().map_err(|e| SrtpError(e.to_string()))?;
    let (master_key, salt) = key.0.split_at(MASTER_KEY);
    let (rtp_replay, rtcp_replay) = if inbound {
        (
            Some(option::srtp_replay_protection(REPLAY_WINDOW)),
            Some(option::srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    Context::new(master_key, salt, profile, rtp_replay, rtcp_replay, provider.crypto())
        .map_err(|e| SrtpError(e.to_string()))
}

impl Srtp {
    pub fn new(keys: SrtpKeys) -> Result<Srtp, SrtpError> {
        let inbound = context(keys.suite, &keys.remote, true)?;
        let outbound = context(keys.suite, &keys.local, false)?;
        Ok(Srtp { keys, inbound, outbound, source: None, strangers: 0 })
    }

    /// After a re-INVITE: each direction whose key (or suite) changed starts a new context;
    /// an unchanged one keeps its context, with its rollover counter and SRTCP index, so no
    /// keystream is used twice (RFC 3711 §9.1). Call control gives us a new key of our own
    /// whenever the suite changes.
    pub fn rekey(current: &mut Option<Srtp>, keys: Option<SrtpKeys>) -> Result<(), SrtpError> {
        let (Some(srtp), Some(new)) = (current.as_mut(), keys) else {
            *current = keys.map(Srtp::new).transpose()?;
            return Ok(());
        };
        let old = srtp.keys;
        if (old.suite, old.remote) != (new.suite, new.remote) {
            srtp.inbound = context(new.suite, &new.remote, true)?;
            (srtp.source, srtp.strangers) = (None, 0);
        }
        if (old.suite, old.local) != (new.suite, new.local) {
            srtp.outbound = context(new.suite, &new.local, false)?;
        }
        srtp.keys = new;
        Ok(())
    }

    /// The plain RTP packet, or `None` when it does not authenticate (or is a replay): such a
    /// packet is dropped, as RFC 3711 §3.3 asks.
    pub fn unprotect_rtp(&mut self, datagram: &[u8]) -> Option<bytes::BytesMut> {
        // The SSRC sits at bytes 8..12 of the (unencrypted) header.
        let ssrc = u32::from_be_bytes(datagram.get(8..12)?.try_into().ok()?);
        let stranger = self.source != Some(ssrc);
        if stranger {
            if self.strangers >= MAX_STRANGERS {
                return None;
            }
            self.strangers += 1;
        }
        let plain = self.inbound.decrypt_rtp(datagram).ok()?;
        if stranger {
            (self.source, self.strangers) = (Some(ssrc), 0);
        }
        Some(plain)
    }

    pub fn protect_rtp(&mut self, packet: &[u8]) -> Option<bytes::BytesMut> {
        self.outbound.encrypt_rtp(packet).ok()
    }

    pub fn unprotect_rtcp(&mut self, datagram: &[u8]) -> Option<bytes::BytesMut> {
        self.inbound.decrypt_rtcp(datagram).ok()
    }

    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Option<bytes::BytesMut> {
        self.outbound.encrypt_rtcp(packet).ok()
    }
}

#[cfg(test)]
mod tests {
    use rtc_shared::marshal::{Marshal, Unmarshal};

    use super::*;

    fn keys(remote: u8, local: u8) -> SrtpKeys {
        SrtpKeys { suite: Suite::AesCm128HmacSha1_80, remote: Key([remote; 30]), local: Key([local; 30]) }
    }

    fn packet(sequence_number: u16) -> Vec<u8> {
        let header = rtp::header::Header {
            version: 2,
            payload_type: 9,
            sequence_number,
            timestamp: 160 * u32::from(sequence_number),
            ssrc: 0x1234_5678,
            ..Default::default()
        };
        let packet = rtp::Packet { header, payload: bytes::Bytes::from_static(&[0x55; 160]) };
        packet.marshal().unwrap().to_vec()
    }

    #[test]
    fn what_one_side_protects_the_other_unprotects_and_tampering_is_dropped() {
        let mut phone = Srtp::new(keys(2, 1)).unwrap();
        let mut gateway = Srtp::new(keys(1, 2)).unwrap();
        for seq in 0..5 {
            let plain = packet(seq);
            let protected = phone.protect_rtp(&plain).unwrap();
            assert_ne!(&protected[12..172], &plain[12..], "the payload is encrypted");
            assert_eq!(protected.len(), plain.len() + 10, "an 80-bit tag");
            let back = gateway.unprotect_rtp(&protected).unwrap();
            let parsed = rtp::Packet::unmarshal(&mut &back[..]).unwrap();
            assert_eq!((parsed.header.sequence_number, parsed.payload.len()), (seq, 160));
            // A replay is refused.
            assert!(gateway.unprotect_rtp(&protected).is_none());
        }
        let mut tampered = phone.protect_rtp(&packet(9)).unwrap();
        tampered[20] ^= 1;
        assert!(gateway.unprotect_rtp(&tampered).is_none(), "a changed payload fails authentication");
        let wrong_key = Srtp::new(keys(3, 3)).unwrap().protect_rtp(&packet(10));
        assert!(gateway.unprotect_rtp(&wrong_key.unwrap()).is_none());
    }

    #[test]
    fn a_reoffer_with_new_keys_rekeys_and_one_with_the_same_keys_does_not() {
        let mut phone = Srtp::new(keys(2, 1)).unwrap();
        let mut gateway = Some(Srtp::new(keys(1, 2)).unwrap());
        let first = phone.protect_rtp(&packet(1)).unwrap();
        assert!(gateway.as_mut().unwrap().unprotect_rtp(&first).is_some());
        // The same keys: the context (and its replay window) stays.
        Srtp::rekey(&mut gateway, Some(keys(1, 2))).unwrap();
        assert!(gateway.as_mut().unwrap().unprotect_rtp(&first).is_none(), "still a replay");
        // The phone's re-offer brings a new key: what it sends with it is taken.
        let mut rekeyed_phone = Srtp::new(keys(2, 5)).unwrap();
        Srtp::rekey(&mut gateway, Some(keys(5, 2))).unwrap();
        let second = rekeyed_phone.protect_rtp(&packet(2)).unwrap();
        assert!(gateway.as_mut().unwrap().unprotect_rtp(&second).is_some());
        // A re-offer of plain RTP ends SRTP.
        Srtp::rekey(&mut gateway, None).unwrap();
        assert!(gateway.is_none());
    }

    #[test]
    fn forged_packets_from_many_ssrcs_are_cut_off_and_the_phone_still_gets_through() {
        let mut phone = Srtp::new(keys(2, 1)).unwrap();
        let mut gateway = Srtp::new(keys(1, 2)).unwrap();
        assert!(gateway.unprotect_rtp(&phone.protect_rtp(&packet(1)).unwrap()).is_some());
        let mut forger = Srtp::new(keys(7, 7)).unwrap();
        for ssrc in 0..100u32 {
            let mut forged = packet(2);
            forged[8..12].copy_from_slice(&ssrc.to_be_bytes());
            assert!(gateway.unprotect_rtp(&forger.protect_rtp(&forged).unwrap()).is_none());
        }
        assert_eq!(gateway.strangers, MAX_STRANGERS, "no more than this many tried");
        // The phone's own SSRC is never a stranger.
        assert!(gateway.unprotect_rtp(&phone.protect_rtp(&packet(3)).unwrap()).is_some());
    }

    #[test]
    fn a_new_remote_key_keeps_our_outbound_context_and_its_counters() {
        let report = [0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78];
        let mut gateway = Some(Srtp::new(keys(1, 2)).unwrap());
        let mut phone = Srtp::new(keys(2, 1)).unwrap();
        for _ in 0..3 {
            let sent = gateway.as_mut().unwrap().protect_rtcp(&report).unwrap();
            assert!(phone.unprotect_rtcp(&sent).is_some());
        }
        // The phone re-offers with a new key of its own; ours stays, and so does our context:
        // its SRTCP index goes on (a new context would start again at 0, reusing keystream,
        // and the phone would take it for a replay).
        Srtp::rekey(&mut gateway, Some(keys(9, 2))).unwrap();
        let sent = gateway.as_mut().unwrap().protect_rtcp(&report).unwrap();
        assert!(phone.unprotect_rtcp(&sent).is_some(), "our SRTCP index was reset");
        let mut rekeyed_phone = Srtp::new(keys(2, 9)).unwrap();
        let from_phone = rekeyed_phone.protect_rtp(&packet(1)).unwrap();
        assert!(gateway.as_mut().unwrap().unprotect_rtp(&from_phone).is_some());
    }

    #[test]
    fn rtcp_goes_both_ways_too() {
        let mut phone = Srtp::new(keys(2, 1)).unwrap();
        let mut gateway = Srtp::new(keys(1, 2)).unwrap();
        // A minimal receiver report: V=2, RC=0, PT=201, length 1, SSRC.
        let report = [0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78];
        let protected = gateway.protect_rtcp(&report).unwrap();
        assert_eq!(&phone.unprotect_rtcp(&protected).unwrap()[..], &report);
    }
}
