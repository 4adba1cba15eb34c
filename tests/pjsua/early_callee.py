"""A pjsua2 phone that answers calls with early media first: 183 with SDP and a tone file
played into the call, then after EARLY seconds 200 OK and silence.

Usage: early_callee.py PORT TONE_WAV EARLY_SECONDS TOTAL_SECONDS
Prints LISTENING once its port is open, then EARLY and ANSWERED as the call goes.
"""

import sys
import time

import pjsua2 as pj

from phone import account_config, endpoint


class Call(pj.Call):
    def __init__(self, account, call_id, player):
        super().__init__(account, call_id)
        self.player = player
        self.audio = None
        self.disconnected = False

    def onCallMediaState(self, prm):
        info = self.getInfo()
        for i, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                if self.audio is None:
                    self.audio = self.getAudioMedia(i)
                    self.player.startTransmit(self.audio)

    def onCallState(self, prm):
        if self.getInfo().state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True


class Account(pj.Account):
    def __init__(self, player):
        super().__init__()
        self.player = player
        self.call = None

    def onIncomingCall(self, prm):
        self.call = Call(self, prm.callId, self.player)
        op = pj.CallOpParam()
        op.statusCode = 183
        self.call.answer(op)
        print("EARLY", flush=True)


def main():
    port, tone, early, total = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    ep = endpoint(port)
    player = pj.AudioMediaPlayer()
    player.createPlayer(tone)

    account = Account(player)
    account.create(account_config(f"sip:callee@127.0.0.1:{port}"))
    print("LISTENING", flush=True)

    deadline = time.time() + total
    answered_at = None
    early_since = None
    while time.time() < deadline:
        ep.libHandleEvents(20)
        call = account.call
        if call is None or call.disconnected:
            continue
        if early_since is None:
            early_since = time.time()
        if answered_at is None and time.time() - early_since >= early:
            if call.audio is not None:
                player.stopTransmit(call.audio)
            op = pj.CallOpParam()
            op.statusCode = 200
            call.answer(op)
            answered_at = time.time()
            print("ANSWERED", flush=True)
    ep.libDestroy()


if __name__ == "__main__":
    main()
