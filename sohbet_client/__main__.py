"""Command line: talk to a sohbet stack by hand.

    python -m sohbet_client --user ada create "Friday jam"
    python -m sohbet_client --user ada join SPACE_ID        # events as JSON lines; type commands on stdin
    python -m sohbet_client --user bob send hand.raise SPACE_ID
    python -m sohbet_client --user ada send speaker.mute SPACE_ID bob
    python -m sohbet_client --user ada send settings.update SPACE_ID speak_policy=invited title='"Jam"'
    python -m sohbet_client --user ada rest GET /whoami
    python -m sohbet_client --user ada token

In `join`, each stdin line is a command for that space: `hand.raise`, `speaker.mute bob`,
`reaction.send 🔥`, `settings.update handover=true`, or a raw JSON object.
Without --token, a token for --user comes from the local stack's POST /dev/token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from websockets.exceptions import WebSocketException

from sohbet_client.client import (
    ConnectionClosed,
    SohbetClient,
    SohbetError,
    describe_reactions,
    get_token,
    http_base_url,
    rest,
)

DEFAULT_URL = "ws://127.0.0.1:8000/"

# Fields a command takes positionally, after space_id.
POSITIONAL: dict[str, tuple[str, ...]] = {
    **{
        action: ("user_id",)
        for action in (
            "speaker.invite",
            "request.approve",
            "request.deny",
            "speaker.remove",
            "speaker.mute",
            "participant.remove",
            "cohost.add",
            "cohost.remove",
        )
    },
    "reaction.send": ("emoji",),
    "recording.set": ("on",),
    "captions.set": ("on",),
    "report.send": ("category", "user_id"),
}
NO_SPACE = frozenset({"ping"})


def _value(text: str) -> Any:
    """`true`, `3`, `null`, `"quoted"` are JSON; anything else is a plain string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_command(line: str, space_id: str | None = None) -> dict[str, Any] | None:
    """One command from a line: `ACTION [SPACE_ID] [positional ...] [key=value ...]` or a JSON object.

    With `space_id` given (the `join` prompt), the line does not repeat it.
    Returns None for a blank line; raises ValueError for one it cannot read.
    """
    line = line.strip()
    if not line:
        return None
    if line.startswith("{"):
        raw = json.loads(line)
        if not isinstance(raw, dict):
            raise ValueError("a JSON command must be an object")
        if space_id is not None and raw.get("action") not in NO_SPACE:
            raw.setdefault("space_id", space_id)
        return raw
    tokens = shlex.split(line)
    action, args = tokens[0], tokens[1:]
    message: dict[str, Any] = {"action": action}
    names = list(POSITIONAL.get(action, ()))
    if action not in NO_SPACE:
        if space_id is None:
            names.insert(0, "space_id")
        else:
            message["space_id"] = space_id
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key.isidentifier():
            message[key] = _value(value)
        elif names:
            message[names.pop(0)] = arg
        else:
            raise ValueError(f"unexpected argument {arg!r} for {action}")
    return message


def _print(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


async def _answer(client: SohbetClient, message: dict[str, Any]) -> bool:
    """Send one command and print its reply or error as a JSON line; True if it succeeded."""
    action = message.get("action")
    try:
        data = await client.request(message)
    except SohbetError as exc:
        error = {"type": "error", "action": action, "code": exc.code, "message": exc.message}
        _print({**error, "data": exc.data} if exc.data else error)
        return False
    except TimeoutError:
        _print({"type": "error", "action": action, "code": "timeout", "message": "no reply"})
        return False
    _print({"type": "reply", "action": action, "data": data})
    return True


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read stdin in a daemon thread (so Ctrl-C never waits for it); None marks the end."""

    def pump() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name="stdin", daemon=True).start()


async def _join(client: SohbetClient, space_id: str) -> int:
    if not await _answer(client, {"action": "space.join", "space_id": space_id}):
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    async def show_events() -> None:
        async for event in client.events():
            _print(event)
            if event.get("event") == "reactions":
                print("reactions:", describe_reactions(event), file=sys.stderr, flush=True)
        stop.set()  # the server closed the connection

    async def read_commands() -> None:
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        _stdin_lines(loop, lines)
        while (line := await lines.get()) is not None:
            try:
                message = parse_command(line, space_id)
            except ValueError as exc:
                _print({"type": "error", "code": "usage", "message": str(exc)})
                continue
            if message is not None:
                await _answer(client, message)
        # stdin ended: keep showing events until Ctrl-C.

    tasks = [asyncio.create_task(show_events()), asyncio.create_task(read_commands())]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        if client.closed_code is None:
            with contextlib.suppress(SohbetError, ConnectionClosed, TimeoutError):
                await client.send("space.leave", space_id=space_id, timeout=2)
    if client.closed_code is not None:
        _print({"type": "closed", "code": client.closed_code, "reason": client.closed_reason})
    return 0


async def _main(args: argparse.Namespace) -> int:
    base_url = args.base_url or http_base_url(args.url)
    token = args.token or await get_token(base_url, args.user, args.groups or None)
    if args.command == "token":
        print(token)
        return 0
    if args.command == "create":
        body: dict[str, Any] = {"title": args.title}
        for item in args.field:
            key, _, value = item.partition("=")
            body[key] = _value(value)
        status, answer = await rest(base_url, "POST", "/spaces", token, body)
        _print(answer)
        return 0 if status < 400 else 1
    if args.command == "rest":
        status, answer = await rest(
            base_url, args.method, args.path, token, None if args.body is None else json.loads(args.body)
        )
        _print({"status": status, "body": answer})
        return 0 if status < 400 else 1

    async with SohbetClient(
        args.url, token, timeout=args.timeout, auth=args.auth, rest_url=base_url
    ) as client:
        if args.command == "join":
            return await _join(client, args.space_id)
        message = parse_command(shlex.join([args.action, *args.fields]))
        assert message is not None
        return 0 if await _answer(client, message) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sohbet_client", description="Talk to a sohbet stack over its WebSocket and REST APIs."
    )
    parser.add_argument("--url", default=os.environ.get("SOHBET_URL", DEFAULT_URL), help="WebSocket URL")
    parser.add_argument("--base-url", help="REST base URL (default: from --url)")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="get a token for this user from the local stack's /dev/token")
    who.add_argument("--token", help="use this token")
    parser.add_argument("--groups", nargs="*", default=[], help="groups for the minted token (e.g. admins)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a reply")
    parser.add_argument(
        "--auth",
        choices=["ticket", "token"],
        default="ticket",
        help="connect with a single-use ticket from POST /ws/ticket (default) or the token in the URL",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("token", help="print a token")
    create = sub.add_parser("create", help="create a space (POST /spaces) and print it")
    create.add_argument("title")
    create.add_argument("--field", action="append", default=[], metavar="KEY=VALUE", help="extra body field")
    join = sub.add_parser("join", help="join a space, print its events; stdin lines are commands")
    join.add_argument("space_id")
    send = sub.add_parser("send", help="send one command and print the reply")
    send.add_argument("action", help="e.g. space.join, hand.raise, speaker.mute")
    send.add_argument("fields", nargs="*", help="SPACE_ID, positional fields, key=value")
    call = sub.add_parser("rest", help="one REST call")
    call.add_argument("method")
    call.add_argument("path")
    call.add_argument("body", nargs="?", help="JSON body")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130
    except (ConnectionClosed, WebSocketException, OSError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
