"""sohbet_client against a tiny fake server (websockets.serve on a free loopback port)."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from asyncapi_check import validate_command
from websockets.asyncio.server import Server, ServerConnection, serve

from chalicelib.protocol import COMMAND_NAMES
from sohbet_client import (
    COMMAND_METHODS,
    ConnectionClosed,
    Gap,
    SohbetClient,
    SohbetError,
    describe_reactions,
    get_token,
    http_base_url,
    rest,
    with_token,
)
from sohbet_client import __main__ as cli

Handler = Callable[[ServerConnection, dict[str, Any]], Awaitable[None]]

pytestmark = pytest.mark.timeout(15)  # a client that hangs fails its test, not the session


def reply(msg: dict[str, Any], data: dict[str, Any] | None = None) -> str:
    return json.dumps({"type": "reply", "ref": msg.get("ref"), "ok": True, "data": data or {}})


def event(name: str, space_id: str | None = "sp1", seq: int | None = None, **payload: Any) -> str:
    frame: dict[str, Any] = {"type": "event", "event": name}
    if space_id is not None:
        frame["space_id"] = space_id
    if seq is not None:
        frame["seq"] = seq
    return json.dumps({**frame, **payload})


async def echo(ws: ServerConnection, msg: dict[str, Any]) -> None:
    await ws.send(reply(msg, {k: v for k, v in msg.items() if k != "ref"}))


class FakeServer:
    """Serves one handler; records every command and the request path of every connection."""

    def __init__(self, handler: Handler = echo) -> None:
        self.handler = handler
        self.commands: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.close_codes: list[int | None] = []  # as the server saw each connection end
        self.server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> FakeServer:
        self.server = await serve(self._serve, "127.0.0.1", 0)
        port = next(iter(self.server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.paths.append(ws.request.path)
        try:
            async for raw in ws:
                msg = json.loads(raw)
                self.commands.append(msg)
                await self.handler(ws, msg)
        finally:
            self.close_codes.append(ws.close_code)

    def actions(self) -> list[str]:
        return [str(c.get("action")) for c in self.commands]


def client_for(server: FakeServer, **kwargs: Any) -> SohbetClient:
    # the fake speaks only WebSocket: the token goes in the URL (tickets: tests/e2e/test_edges_client.py)
    return SohbetClient(server.url, "t0k", auth="token", **kwargs)


# -- connecting ------------------------------------------------------------------


async def test_token_goes_in_the_query() -> None:
    assert with_token("ws://h:1/", "a b") == "ws://h:1/?token=a+b"
    assert with_token("wss://h/prod?x=1&token=old", "new") == "wss://h/prod?x=1&token=new"
    assert http_base_url("ws://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert http_base_url("wss://abc.execute-api.us-east-1.amazonaws.com/prod") == (
        "https://abc.execute-api.us-east-1.amazonaws.com"
    )

    async with FakeServer() as server, client_for(server) as client:
        assert await client.ping() == {"action": "ping"}
    assert server.paths == ["/?token=t0k"]
    assert client.closed


async def test_send_before_connect_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not connected"):
        await SohbetClient("ws://127.0.0.1:9/", "t").ping()


async def test_without_a_token_the_url_has_none() -> None:
    async with FakeServer() as server, SohbetClient(server.url, None) as client:
        await client.ping()
    assert server.paths == ["/"]


# -- raw frames, for protocol tools and tests -------------------------------------------


async def test_answer_returns_the_reply_or_error_frame_as_it_came() -> None:
    async def refuse_hands(ws: ServerConnection, msg: dict[str, Any]) -> None:
        if msg["action"] == "hand.raise":
            await ws.send(
                json.dumps({"type": "error", "ref": msg["ref"], "code": "not_allowed", "message": "no"})
            )
        else:
            await echo(ws, msg)

    async with FakeServer(refuse_hands) as server, client_for(server) as client:
        error = await client.answer({"action": "hand.raise", "space_id": "sp1"})
        assert error == {"type": "error", "ref": error["ref"], "code": "not_allowed", "message": "no"}
        ok = await client.answer({"action": "ping", "ref": "mine"})
        assert ok == {"type": "reply", "ref": "mine", "ok": True, "data": {"action": "ping"}}


async def test_the_frame_log_gives_every_frame_in_order_then_closed() -> None:
    async def chatty(ws: ServerConnection, msg: dict[str, Any]) -> None:
        await ws.send(event("hand.raised", user_id="bob"))
        await ws.send("not json")
        await echo(ws, msg)
        await ws.close(4000, "bye")

    async with FakeServer(chatty) as server:
        client = await client_for(server, keep_frames=True).connect()
        await client.send_raw({"action": "ping", "ref": "r1"})
        assert (await client.next_frame())["event"] == "hand.raised"
        assert await client.next_frame() == "not json"
        assert (await client.next_frame())["ref"] == "r1"  # replies too, even with no one waiting
        with pytest.raises(ConnectionClosed) as closed:
            await client.next_frame()
        assert (closed.value.code, closed.value.reason) == (4000, "bye")
        with pytest.raises(ConnectionClosed):
            await client.next_frame()  # and again, for every later reader
        await client.close()

        plain = await client_for(server).connect()
        with pytest.raises(RuntimeError, match="keep_frames"):
            await plain.next_frame()
        await plain.close()


async def test_a_list_is_sent_as_one_fragmented_message() -> None:
    async with FakeServer() as server, client_for(server, keep_frames=True) as client:
        text = json.dumps({"action": "ping", "ref": "frag", "pad": "x" * 100})
        await client.send_raw([text[i : i + 16] for i in range(0, len(text), 16)])
        assert (await client.next_frame())["data"]["pad"] == "x" * 100
    assert server.commands == [json.loads(text)]


async def test_close_without_a_code_and_abort_as_the_server_sees_them() -> None:
    async with FakeServer() as server:
        client = await client_for(server).connect()
        await client.ping()
        await client.close(code=None)
        assert client.closed
        dropped = await client_for(server).connect()
        await dropped.ping()
        dropped.abort()  # no closing handshake at all
        await dropped.wait_closed()
        assert dropped.closed_code == 1006
        for _ in range(100):
            if len(server.close_codes) == 2:
                break
            await asyncio.sleep(0.01)
    assert server.close_codes == [1005, 1006]


# -- replies and errors ------------------------------------------------------------


async def test_fifty_concurrent_commands_get_their_own_replies_out_of_order() -> None:
    held: list[dict[str, Any]] = []

    async def answer_all_at_once(ws: ServerConnection, msg: dict[str, Any]) -> None:
        held.append(msg)
        if len(held) == 50:
            random.Random(7).shuffle(held)
            for m in held:
                await ws.send(reply(m, {"space": m["space_id"], "seq": int(m["space_id"][2:])}))

    async with FakeServer(answer_all_at_once) as server, client_for(server) as client:
        results = await asyncio.gather(*(client.join(f"sp{i}") for i in range(50)))
        assert [r["space"] for r in results] == [f"sp{i}" for i in range(50)]
        refs = [c["ref"] for c in server.commands]
        assert len(set(refs)) == 50
        assert [c["ref"] for c in held] != refs  # really answered out of order
        assert client.last_seq == {f"sp{i}": i for i in range(50)}  # join replies set the seq
        assert client.unmatched == [] and not client._pending


async def test_error_frame_raises_sohbet_error_with_code() -> None:
    async def refuse_hands(ws: ServerConnection, msg: dict[str, Any]) -> None:
        if msg["action"] == "hand.raise":
            frame = {"type": "error", "ref": msg["ref"], "code": "not_allowed", "message": "invited only"}
            await ws.send(json.dumps({**frame, "data": {"speak_policy": "invited"}}))
        else:
            await echo(ws, msg)

    async with FakeServer(refuse_hands) as server, client_for(server) as client:
        with pytest.raises(SohbetError) as caught:
            await client.raise_hand("sp1")
        assert caught.value.code == "not_allowed"
        assert caught.value.message == "invited only"
        assert caught.value.data == {"speak_policy": "invited"}
        assert str(caught.value) == "not_allowed: invited only"
        assert await client.ping() == {"action": "ping"}  # the connection is still fine


async def test_timeout_then_a_late_reply_is_unmatched() -> None:
    late: list[dict[str, Any]] = []

    async def slow(ws: ServerConnection, msg: dict[str, Any]) -> None:
        if msg["action"] == "space.end":
            late.append(msg)
        else:
            for m in late:
                await ws.send(reply(m))
            await echo(ws, msg)

    async with FakeServer(slow) as server, client_for(server, timeout=0.2) as client:
        with pytest.raises(asyncio.TimeoutError):
            await client.end("sp1")
        assert not client._pending
        await client.ping()
        assert [f["ref"] for f in client.unmatched] == [late[0]["ref"]]


async def test_uncorrelated_frames_do_not_become_events() -> None:
    async def noisy(ws: ServerConnection, msg: dict[str, Any]) -> None:
        await ws.send(
            json.dumps({"message": "Internal server error", "connectionId": "c=", "requestId": "r"})
        )
        await ws.send(
            json.dumps({"type": "error", "ref": None, "code": "bad_request", "message": "not JSON"})
        )
        await ws.send("not json")
        await ws.send(event("host.back", seq=1))
        await echo(ws, msg)

    async with FakeServer(noisy) as server, client_for(server) as client:
        await client.ping()
        assert [f.get("type") for f in client.unmatched] == [None, "error"]
        assert client.invalid_frames == ["not json"]
        assert (await client.next_event())["event"] == "host.back"
        assert len(client.received) == 4
        assert client.pending_events() == []


# -- events and seq ----------------------------------------------------------------


def fire(n: int) -> dict[str, Any]:
    return {"counts": {"🔥": n}, "total": n, "recent": [{"user_id": "bob", "emoji": "🔥"}]}


def clap(n: int) -> dict[str, Any]:
    return {"counts": {"👏": n}, "total": n, "recent": [{"user_id": "bob", "emoji": "👏"}]}


async def test_gap_triggers_space_sync_and_resets_seq() -> None:
    async def gappy(ws: ServerConnection, msg: dict[str, Any]) -> None:
        if msg["action"] == "space.join":
            await ws.send(reply(msg, {"seq": 5, "role": "listener"}))
            await ws.send(event("stage.changed", seq=6, stage=[], reason="approved"))
            await ws.send(event("reactions", seq=8, **fire(1)))  # 7 went missing
        elif msg["action"] == "space.sync":
            await ws.send(reply(msg, {"seq": 10, "role": "listener"}))
            await ws.send(event("reactions", seq=9, **clap(1)))  # older than the snapshot
            await ws.send(event("reactions", seq=10, **clap(1)))
            await ws.send(event("hand.denied"))  # private: no seq
            await ws.send(event("host.away", seq=11, grace_deadline=1.0))

    resynced: list[tuple[str, dict[str, Any]]] = []

    async def on_resync(space_id: str, data: dict[str, Any]) -> None:
        resynced.append((space_id, data))

    async with FakeServer(gappy) as server, client_for(server, on_resync=on_resync) as client:
        assert (await client.join("sp1"))["seq"] == 5
        seen = [await client.next_event() for _ in range(4)]
        assert [(e["event"], e.get("seq")) for e in seen] == [
            ("stage.changed", 6),
            ("reactions", 8),
            ("hand.denied", None),
            ("host.away", 11),
        ]
        assert client.gaps == [Gap("sp1", 7, 8)]
        assert server.actions() == ["space.join", "space.sync"]
        assert server.commands[1]["space_id"] == "sp1"
        assert client.stale == 2
        assert client.last_seq == {"sp1": 11}
        assert client.resyncs == resynced == [("sp1", {"seq": 10, "role": "listener"})]


async def test_without_auto_resync_a_gap_is_only_recorded() -> None:
    async def gappy(ws: ServerConnection, msg: dict[str, Any]) -> None:
        if msg["action"] == "space.join":
            await ws.send(reply(msg, {"seq": 1}))
            await ws.send(event("host.back", seq=4))
        else:
            await echo(ws, msg)

    async with FakeServer(gappy) as server, client_for(server, auto_resync=False) as client:
        await client.join("sp1")
        assert (await client.next_event("host.back"))["seq"] == 4
        await client.ping()
        assert client.gaps == [Gap("sp1", 2, 4)]
        assert server.actions() == ["space.join", "ping"]
        assert client.last_seq == {"sp1": 4}


async def test_duplicate_and_stale_events_are_dropped() -> None:
    async def repeats(ws: ServerConnection, msg: dict[str, Any]) -> None:
        if msg["action"] == "space.join":
            await ws.send(reply(msg, {"seq": 5}))
            for seq in (5, 6, 6, 4, 7):
                await ws.send(event("reactions", seq=seq, **fire(seq)))
            await ws.send(event("reactions", space_id="sp2", seq=1, **fire(1)))  # another space

    async with FakeServer(repeats) as server, client_for(server) as client:
        await client.join("sp1")
        got = [await client.next_event("reactions") for _ in range(3)]
        assert [(e["space_id"], e["seq"]) for e in got] == [("sp1", 6), ("sp1", 7), ("sp2", 1)]
        # only the admitted events are counted: 6 + 7 fires in sp1 (the stale 5, 6, 4 are not)
        assert client.reaction_totals == {"sp1": {"🔥": 13}, "sp2": {"🔥": 1}}
        assert describe_reactions(got[0]) == "🔥 6  (bob)"
        assert client.stale == 3 and client.gaps == []
        assert client.last_seq == {"sp1": 7, "sp2": 1}
        assert server.actions() == ["space.join"]


async def test_events_that_beat_the_join_reply_are_kept() -> None:
    async def racy(ws: ServerConnection, msg: dict[str, Any]) -> None:
        if msg["action"] == "space.join":
            await ws.send(event("stage.changed", seq=4, stage=[], reason="joined"))
            await ws.send(reply(msg, {"seq": 3}))
            await ws.send(event("host.back", seq=5))
        elif msg["action"] == "space.leave":
            await ws.send(reply(msg))

    async with FakeServer(racy) as server, client_for(server) as client:
        await client.join("sp1")
        assert (await client.next_event())["seq"] == 4
        assert (await client.next_event())["seq"] == 5
        assert client.gaps == [] and client.stale == 0
        await client.leave("sp1")
        assert client.last_seq == {}
        assert server.actions() == ["space.join", "space.leave"]


async def test_next_event_filters_by_name_and_predicate() -> None:
    async def burst(ws: ServerConnection, msg: dict[str, Any]) -> None:
        await ws.send(event("hand.raised", user_id="bob"))
        await ws.send(event("hand.raised", user_id="cy"))
        await ws.send(event("hand.lowered", user_id="bob"))
        await ws.send(event("hand.raised", user_id="dee"))
        await echo(ws, msg)

    async with FakeServer(burst) as server, client_for(server) as client:
        await client.ping()
        cy = await client.next_event("hand.raised", predicate=lambda e: e["user_id"] == "cy")
        assert cy["user_id"] == "cy"  # bob's hand.raised was dropped on the way
        assert (await client.next_event("hand.raised"))["user_id"] == "dee"
        with pytest.raises(asyncio.TimeoutError):
            await client.next_event("hand.raised", timeout=0.1)
        assert len(client.received) == 5  # everything is still on record


# -- closing -----------------------------------------------------------------------


async def test_server_close_fails_pending_commands_and_ends_events() -> None:
    async def kick(ws: ServerConnection, msg: dict[str, Any]) -> None:
        if msg["action"] == "space.end":
            await ws.send(event("session.replaced"))
            await ws.close(4001, "replaced")
        # anything else: never answered

    async with FakeServer(kick) as server, client_for(server) as client:
        waiting = asyncio.create_task(client.raise_hand("sp1"))
        await asyncio.sleep(0.05)
        with pytest.raises(ConnectionClosed) as caught:
            await client.end("sp1")
        assert caught.value.code == 4001 and caught.value.reason == "replaced"
        with pytest.raises(ConnectionClosed):
            await waiting
        assert (client.closed_code, client.closed_reason) == (4001, "replaced")
        assert [e["event"] async for e in client.events()] == ["session.replaced"]
        assert [e async for e in client.events()] == []  # a second reader ends too
        with pytest.raises(ConnectionClosed):
            await client.next_event()
        with pytest.raises(ConnectionClosed):
            await client.ping()
        assert server.actions() == ["hand.raise", "space.end"]


async def test_client_close_ends_events_and_is_idempotent() -> None:
    async with FakeServer() as server:
        client = await client_for(server).connect()
        consumer = asyncio.create_task(asyncio.wait_for(_collect(client), 5))
        await client.ping()
        await client.close()
        assert await consumer == []
        assert client.closed_code == 1000
        await client.close()


async def _collect(client: SohbetClient) -> list[dict[str, Any]]:
    return [e async for e in client.events()]


# -- one method per command ----------------------------------------------------------


def _args(action: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if action == "ping":
        return (), {}
    if action in cli.POSITIONAL and cli.POSITIONAL[action] == ("user_id",):
        return ("sp1", "bob"), {}
    if action == "reaction.send":
        return ("sp1", "🔥"), {}
    if action in ("recording.set", "captions.set"):
        return ("sp1", True), {}
    if action == "report.send":
        return ("sp1", "harassment"), {"user_id": "eve", "note": "slurs"}
    if action == "settings.update":
        return ("sp1",), {"speak_policy": "invited", "handover": True, "title": "Friday jam"}
    return ("sp1",), {}


async def test_every_command_has_a_method_that_sends_a_valid_frame() -> None:
    assert set(COMMAND_METHODS) == set(COMMAND_NAMES)

    async with FakeServer() as server, client_for(server) as client:
        for action, method in sorted(COMMAND_METHODS.items()):
            args, kwargs = _args(action)
            data = await getattr(client, method)(*args, **kwargs)
            assert data["action"] == action
            validate_command(server.commands[-1])
        assert server.actions() == sorted(COMMAND_METHODS)
        # optional fields left as None are not sent
        await client.report("sp1", "spam")
        assert server.commands[-1] == {
            "action": "report.send",
            "ref": server.commands[-1]["ref"],
            "space_id": "sp1",
            "category": "spam",
        }


# -- REST ------------------------------------------------------------------------


class _Api(BaseHTTPRequestHandler):
    def _answer(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/dev/token":
            if body.get("user") == "bad name":
                self._answer(400, {"code": "bad_request", "message": "user"})
            else:
                self._answer(200, {"token": f"tok-{body['user']}-{','.join(body.get('groups', []))}"})
        else:
            self._answer(201, {"path": self.path, "body": body, "auth": self.headers.get("Authorization")})

    def do_GET(self) -> None:
        if self.headers.get("Authorization"):
            self._answer(200, {"user_id": "ada"})
        else:
            self._answer(401, {"code": "unauthorized", "message": "missing bearer token"})

    def do_DELETE(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


async def test_rest_helpers() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        assert await get_token(base, "ada") == "tok-ada-"
        assert await get_token(base, "root", ["admins"]) == "tok-root-admins"
        with pytest.raises(RuntimeError, match="HTTP 400"):
            await get_token(base, "bad name")
        assert await rest(base, "GET", "/whoami") == (
            401,
            {"code": "unauthorized", "message": "missing bearer token"},
        )
        assert await rest(base, "GET", "/whoami", token="t") == (200, {"user_id": "ada"})
        status, body = await rest(base, "post", "/spaces", token="t", body={"title": "Jam"})
        assert (status, body) == (201, {"path": "/spaces", "body": {"title": "Jam"}, "auth": "Bearer t"})
        assert await rest(base, "DELETE", "/blocks/bob", token="t") == (204, None)
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- CLI ---------------------------------------------------------------------------


def test_cli_reads_command_lines() -> None:
    parse = cli.parse_command
    assert parse("  ") is None
    assert parse("hand.raise", "sp1") == {"action": "hand.raise", "space_id": "sp1"}
    assert parse("ping", "sp1") == {"action": "ping"}
    assert parse("speaker.mute bob", "sp1") == {"action": "speaker.mute", "space_id": "sp1", "user_id": "bob"}
    assert parse("reaction.send 🔥", "sp1") == {"action": "reaction.send", "space_id": "sp1", "emoji": "🔥"}
    assert parse("report.send harassment eve note='said things'", "sp1") == {
        "action": "report.send",
        "space_id": "sp1",
        "category": "harassment",
        "user_id": "eve",
        "note": "said things",
    }
    assert parse('settings.update handover=true title="Friday jam" speak_policy=invited', "sp1") == {
        "action": "settings.update",
        "space_id": "sp1",
        "handover": True,
        "title": "Friday jam",
        "speak_policy": "invited",
    }
    assert parse('{"action": "hand.lower"}', "sp1") == {"action": "hand.lower", "space_id": "sp1"}
    assert parse('{"action": "ping", "ref": "x"}', "sp1") == {"action": "ping", "ref": "x"}
    # without a current space (the `send` subcommand) the space id comes first
    assert parse("speaker.mute sp9 bob") == {"action": "speaker.mute", "space_id": "sp9", "user_id": "bob"}
    with pytest.raises(ValueError, match="unexpected argument"):
        parse("hand.raise extra", "sp1")
    with pytest.raises(ValueError):
        parse("[1, 2]", "sp1")


async def test_cli_send_prints_the_reply(capsys: pytest.CaptureFixture[str]) -> None:
    async def refuse_mute(ws: ServerConnection, msg: dict[str, Any]) -> None:
        if msg["action"] == "speaker.mute":
            await ws.send(
                json.dumps({"type": "error", "ref": msg["ref"], "code": "conflict", "message": "no"})
            )
        else:
            await echo(ws, msg)

    async with FakeServer(refuse_mute) as server:
        parser = cli.build_parser()
        args = parser.parse_args(
            ["--url", server.url, "--token", "t", "--auth", "token", "send", "space.join", "sp1"]
        )
        assert await cli._main(args) == 0
        args = parser.parse_args(
            ["--url", server.url, "--token", "t", "--auth", "token", "send", "speaker.mute", "sp1", "bob"]
        )
        assert await cli._main(args) == 1
        assert server.actions() == ["space.join", "speaker.mute"]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {"type": "reply", "action": "space.join", "data": {"action": "space.join", "space_id": "sp1"}},
        {"type": "error", "action": "speaker.mute", "code": "conflict", "message": "no"},
    ]
