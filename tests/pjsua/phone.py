"""What the pjsua2 test phones share: an endpoint on loopback without a sound device, an
account registered nowhere (digest credentials for the gateway's challenges), and a call out
that reports its state on standard output."""

import sys
import time

import pjsua2 as pj


def endpoint(port=0):
    """A started endpoint with a UDP transport on 127.0.0.1:`port` (0: any)."""
    ep = pj.Endpoint()
    ep.libCreate()
    config = pj.EpConfig()
    config.logConfig.level = 1
    config.uaConfig.userAgent = "pjsua2-test"
    ep.libInit(config)
    transport = pj.TransportConfig()
    transport.boundAddress = "127.0.0.1"
    transport.port = port
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
    ep.libStart()
    ep.audDevManager().setNullDev()
    return ep


def account_config(uri, user=None, password=None):
    """An account at `uri`, with media on loopback and credentials when given."""
    config = pj.AccountConfig()
    config.idUri = uri
    if user is not None:
        config.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
    config.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    return config


class Call(pj.Call):
    """A call that prints CONFIRMED once up and DISCONNECTED <code> when it ends."""

    def __init__(self, account, call_id=pj.PJSUA_INVALID_ID):
        super().__init__(account, call_id)
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


def dial(ep, call, uri, op):
    """Calls `uri` and waits up to 10 s for the call to be up; exits with NOT CONFIRMED if not."""
    call.makeCall(uri, op)
    deadline = time.time() + 10
    while not call.confirmed and call.disconnected is None and time.time() < deadline:
        ep.libHandleEvents(20)
    if not call.confirmed:
        print("NOT CONFIRMED", call.disconnected, flush=True)
        ep.libDestroy()
        sys.exit(1)


def run_for(ep, call, seconds):
    """Handles events for `seconds`, or until the call ends."""
    deadline = time.time() + seconds
    while call.disconnected is None and time.time() < deadline:
        ep.libHandleEvents(20)


def hang_up(ep, call):
    """Ends the call if it is still up, and lets the BYE go out."""
    if call.disconnected is None:
        call.hangup(pj.CallOpParam(True))
        for _ in range(50):
            ep.libHandleEvents(20)
