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
}

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
        Ok(Srtp { keys, inbound, outbound: context(keys.suite, &keys.local, false)? })
    }

    pub fn keys(&self) -> SrtpKeys {
        self.keys
    }

    /// After a re-INVITE: new keys start new contexts; the same keys keep the old ones, with
    /// their rollover counters and replay windows (RFC 3711 §3.3.1).
    pub fn rekey(current: &mut Option<Srtp>, keys: Option<SrtpKeys>) -> Result<(), SrtpError> {
        if current.as_ref().map(Srtp::keys) != keys {
            *current = keys.map(Srtp::new).transpose()?;
        }
        Ok(())
    }

    /// The plain RTP packet, or `None` when it does not authenticate (or is a replay): such a
    /// packet is dropped, as RFC 3711 §3.3 asks.
    pub fn unprotect_rtp(&mut self, datagram: &[u8]) -> Option<bytes::BytesMut> {
        self.inbound.decrypt_rtp(datagram).ok()
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
    fn rtcp_goes_both_ways_too() {
        let mut phone = Srtp::new(keys(2, 1)).unwrap();
        let mut gateway = Srtp::new(keys(1, 2)).unwrap();
        // A minimal receiver report: V=2, RC=0, PT=201, length 1, SSRC.
        let report = [0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78];
        let protected = gateway.protect_rtcp(&report).unwrap();
        assert_eq!(&phone.unprotect_rtcp(&protected).unwrap()[..], &report);
    }
}
