"""`python -m devstack`: start the local stack and serve until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time

from devstack.stack import LocalStack, StackOptions


def main() -> None:
    parser = argparse.ArgumentParser(description="Run sohbet's whole backend on this machine.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--stage", default="dev")
    parser.add_argument(
        "--media-address",
        action="append",
        default=[a for a in os.environ.get("SOHBET_MEDIA_ADDRESS", "").split(",") if a],
        metavar="IP",
        help=(
            "advertise this address (e.g. your LAN IP 192.168.1.20) as the embedded media server's "
            "ICE candidate instead of the bind address, so a phone on the same network can send and "
            "receive audio; also SOHBET_MEDIA_ADDRESS. Off by default: media stays on loopback. "
            "Use with --host 0.0.0.0 (or that IP) so the phone reaches the signaling too."
        ),
    )
    parser.add_argument(
        "--broadcast",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("SOHBET_BROADCAST", "") == "1",
        help=(
            "publish room events once to the embedded AppSync Events emulator (the broadcast tier, "
            "as deployed) instead of posting them to every member; also SOHBET_BROADCAST=1. "
            "`make dev` turns it on."
        ),
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    began = time.perf_counter()
    options = StackOptions(
        host=args.host,
        port=args.port,
        stage=args.stage,
        media_addresses=tuple(args.media_address),
        broadcast=args.broadcast,
    )
    stack = LocalStack(options).start()
    ready = time.perf_counter() - began
    base = stack.base_url
    tier = "broadcast tier on" if options.broadcast else "broadcast tier off: --broadcast"
    limits = "on" if stack.chime.rules.rate_limits else "off; LOCAL_CHIME_RATE_LIMITS=1 for Chime's"
    print(
        f"""
sohbet local stack ready in {ready:.1f}s
  WebSocket   {stack.ws_url}?ticket=TICKET   (POST {base}/ws/ticket, Bearer TOKEN; or ?token=TOKEN)
  REST        {base}/            (e.g. GET {base}/whoami with Authorization: Bearer TOKEN)
  @connections {base}/@connections/{{connection_id}}   (SigV4-signed, local credentials)
  AppSync Events {base}/event (publish, SigV4), ws://…/event/realtime ({tier})
  Chime SDK Meetings API {base}/_aws/chime-sdk-meetings  (rate limits {limits})
  audio (WHIP) {base}/media/whip/{{MeetingId}}   (ICE candidates on {", ".join(stack.media_addresses)})
  embedded AWS (moto) {stack.aws.endpoint}

Get a token:
  curl -s -X POST {base}/dev/token -d '{{"user": "ada"}}'
  curl -s -X POST {base}/dev/token -d '{{"user": "root", "groups": ["admins"]}}'
Then:
  python -m websockets "{stack.ws_url}?token=TOKEN"   and send {{"action": "ping"}}
Ctrl-C stops everything.
""",
        flush=True,
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    print("stopping…", flush=True)
    stack.stop()


if __name__ == "__main__":
    main()
