"""A pjsua2 phone with mandatory SRTP (SDES keys in RTP/SAVP) that dials a room, holds and
resumes the call by re-INVITE (each re-offer carrying its crypto line again), then sends a
re-INVITE without SDP (the gateway offers in its 2xx, pjsua answers in the ACK), and counts
the RTP packets it decrypts from the gateway in each stage. It plays TONE_WAV into the call
throughout.

Usage: srtp_hold.py GATEWAY_HOST:PORT USER PASSWORD NUMBER TONE_WAV
Prints CONFIRMED once the call is up, then `RX <stage> <packets>` after each stage (talking,
held, resumed, reoffered; pjsua counts afresh for each stream a re-INVITE makes), then DONE;
DISCONNECTED <code> if the call ends early.
"""

import sys

import pjsua2 as pj

from phone import Call, account_config, dial, endpoint, hang_up, run_for


class PlayingCall(Call):
    def __init__(self, account, player):
        super().__init__(account)
        self.player = player
        self.audio = None

    def onCallMediaState(self, prm):
        # Each re-INVITE makes a new stream: the player is connected to it again. (The call
        # info is held while its media list is read: the list points into it.)
        info = self.getInfo()
        for i, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.audio = self.getAudioMedia(i)
                self.player.startTransmit(self.audio)


def received(call):
    return call.getStreamStat(0).rtcp.rxStat.pkt


def main():
    gateway, user, password, number, tone = sys.argv[1:6]
    ep = endpoint()
    config = account_config(f"sip:{user}@{gateway}", user, password)
    # SDES over plain SIP (a test on loopback; deployments use TLS).
    config.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_MANDATORY
    config.mediaConfig.srtpSecureSignaling = 0
    account = pj.Account()
    account.create(config)
    player = pj.AudioMediaPlayer()
    player.createPlayer(tone)

    call = PlayingCall(account, player)
    dial(ep, call, f"sip:{number}@{gateway}", pj.CallOpParam(True))
    run_for(ep, call, 2)
    print("RX talking", received(call), flush=True)
    call.setHold(pj.CallOpParam(True))
    run_for(ep, call, 2)
    print("RX held", received(call), flush=True)
    resume = pj.CallOpParam(True)
    resume.opt.flag |= pj.PJSUA_CALL_UNHOLD
    call.reinvite(resume)
    run_for(ep, call, 2)
    print("RX resumed", received(call), flush=True)
    offerless = pj.CallOpParam(True)
    offerless.opt.flag |= pj.PJSUA_CALL_NO_SDP_OFFER
    call.reinvite(offerless)
    run_for(ep, call, 2)
    print("RX reoffered", received(call), flush=True)
    hang_up(ep, call)
    print("DONE", flush=True)
    ep.libDestroy()


if __name__ == "__main__":
    main()
