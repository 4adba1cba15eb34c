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
import time

import pjsua2 as pj


class Call(pj.Call):
    def __init__(self, account, player):
        super().__init__(account)
        self.player = player
        self.audio = None
        self.confirmed = False
        self.disconnected = None

    def onCallMediaState(self, prm):
        # Each re-INVITE makes a new stream: the player is connected to it again. (The call
        # info is held while its media list is read: the list points into it.)
        info = self.getInfo()
        for i, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.audio = self.getAudioMedia(i)
                self.player.startTransmit(self.audio)

    def onCallState(self, prm):
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
            print("CONFIRMED", flush=True)
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = info.lastStatusCode
            print("DISCONNECTED", info.lastStatusCode, flush=True)


def run_for(ep, call, seconds):
    deadline = time.time() + seconds
    while call.disconnected is None and time.time() < deadline:
        ep.libHandleEvents(20)


def received(call):
    return call.getStreamStat(0).rtcp.rxStat.pkt


def main():
    gateway, user, password, number, tone = sys.argv[1:6]
    ep = pj.Endpoint()
    ep.libCreate()
    config = pj.EpConfig()
    config.logConfig.level = 1
    config.uaConfig.userAgent = "pjsua2-test"
    ep.libInit(config)
    transport = pj.TransportConfig()
    transport.boundAddress = "127.0.0.1"
    transport.port = 0
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
    ep.libStart()
    ep.audDevManager().setNullDev()

    account_config = pj.AccountConfig()
    account_config.idUri = f"sip:{user}@{gateway}"
    account_config.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
    account_config.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    # SDES over plain SIP (a test on loopback; deployments use TLS).
    account_config.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_MANDATORY
    account_config.mediaConfig.srtpSecureSignaling = 0
    account = pj.Account()
    account.create(account_config)

    player = pj.AudioMediaPlayer()
    player.createPlayer(tone)

    call = Call(account, player)
    call.makeCall(f"sip:{number}@{gateway}", pj.CallOpParam(True))
    deadline = time.time() + 10
    while not call.confirmed and call.disconnected is None and time.time() < deadline:
        ep.libHandleEvents(20)
    if not call.confirmed:
        print("NOT CONFIRMED", call.disconnected, flush=True)
        ep.libDestroy()
        sys.exit(1)

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
    if call.disconnected is None:
        call.hangup(pj.CallOpParam(True))
        for _ in range(50):
            ep.libHandleEvents(20)
    print("DONE", flush=True)
    ep.libDestroy()


if __name__ == "__main__":
    main()
