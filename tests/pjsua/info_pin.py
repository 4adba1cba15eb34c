"""A pjsua2 phone that dials a room and sends its PIN as SIP INFO (application/dtmf-relay).

Usage: info_pin.py GATEWAY_HOST:PORT USER PASSWORD NUMBER DIGITS SECONDS [late] [public=IP]
With `late`, the INVITE carries no SDP (the gateway offers in its 200, pjsua answers in the ACK).
With `public=IP`, the SDP advertises IP for media (as a phone behind NAT would, wrongly) while
the packets come from 127.0.0.1. Before hanging up it prints RX and the RTP packets received.
Prints CONFIRMED once the call is up and DISCONNECTED <code> when it ends; stays in the call
for SECONDS after sending the digits, then hangs up.
"""

import sys

import pjsua2 as pj

from phone import Call, account_config, dial, endpoint, hang_up, run_for


def main():
    gateway, user, password, number, digits, seconds = sys.argv[1:7]
    extra = sys.argv[7:]
    late = "late" in extra
    public = next((a.split("=", 1)[1] for a in extra if a.startswith("public=")), None)
    host = gateway.split(":")[0]
    ep = endpoint()
    config = account_config(f"sip:{user}@{gateway}", user, password)
    if public:
        config.mediaConfig.transportConfig.publicAddress = public
    account = pj.Account()
    account.create(config)

    call = Call(account)
    op = pj.CallOpParam(True)
    if late:
        op.opt.flag |= pj.PJSUA_CALL_NO_SDP_OFFER
    dial(ep, call, f"sip:{number}@{gateway}", op)

    dtmf = pj.CallSendDtmfParam()
    dtmf.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
    dtmf.digits = digits
    call.sendDtmf(dtmf)
    print("SENT", digits, "host", host, flush=True)
    run_for(ep, call, float(seconds))
    if call.disconnected is None:
        print("RX", call.getStreamStat(0).rtcp.rxStat.pkt, flush=True)
    hang_up(ep, call)
    ep.libDestroy()


if __name__ == "__main__":
    main()
