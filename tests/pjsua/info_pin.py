"""A pjsua2 phone that dials a room and sends its PIN as SIP INFO (application/dtmf-relay).

Usage: info_pin.py GATEWAY_HOST:PORT USER PASSWORD NUMBER DIGITS SECONDS [late] [public=IP]
With `late`, the INVITE carries no SDP (the gateway offers in its 200, pjsua answers in the ACK).
With `public=IP`, the SDP advertises IP for media (as a phone behind NAT would, wrongly) while
the packets come from 127.0.0.1. Before hanging up it prints RX and the RTP packets received.
Prints CONFIRMED once the call is up and DISCONNECTED <code> when it ends; stays in the call
for SECONDS after sending the digits, then hangs up.
"""

import sys
import time

import pjsua2 as pj


class Call(pj.Call):
    def __init__(self, account):
        super().__init__(account)
        self.confirmed = False
        self.disconnected = None

    def onCallState(self, prm):
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
            print("CONFIRMED", flush=True)
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = info.lastStatusCode
            print("DISCONNECTED", info.lastStatusCode, flush=True)


def main():
    gateway, user, password, number, digits, seconds = sys.argv[1:7]
    extra = sys.argv[7:]
    late = "late" in extra
    public = next((a.split("=", 1)[1] for a in extra if a.startswith("public=")), None)
    host = gateway.split(":")[0]
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
    if public:
        account_config.mediaConfig.transportConfig.publicAddress = public
    account = pj.Account()
    account.create(account_config)

    call = Call(account)
    op = pj.CallOpParam(True)
    if late:
        op.opt.flag |= pj.PJSUA_CALL_NO_SDP_OFFER
    call.makeCall(f"sip:{number}@{gateway}", op)
    deadline = time.time() + 10
    while not call.confirmed and call.disconnected is None and time.time() < deadline:
        ep.libHandleEvents(20)
    if not call.confirmed:
        print("NOT CONFIRMED", call.disconnected, flush=True)
        ep.libDestroy()
        sys.exit(1)

    dtmf = pj.CallSendDtmfParam()
    dtmf.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
    dtmf.digits = digits
    call.sendDtmf(dtmf)
    print("SENT", digits, "host", host, flush=True)
    deadline = time.time() + float(seconds)
    while call.disconnected is None and time.time() < deadline:
        ep.libHandleEvents(20)
    if call.disconnected is None:
        print("RX", call.getStreamStat(0).rtcp.rxStat.pkt, flush=True)
        call.hangup(pj.CallOpParam(True))
        for _ in range(50):
            ep.libHandleEvents(20)
    ep.libDestroy()


if __name__ == "__main__":
    main()
