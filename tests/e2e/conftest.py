"""What every end-to-end test shares: the local stack, WebSocket test clients, REST and polling helpers.

Fixtures:
- `stack` (session): one local stack on free loopback ports.
- `clients`: opens WebSocket clients (`Client`, built on sohbet_client) for a test and closes them at
  its end; every frame any of them received is checked against docs/asyncapi.yaml.
- `aws_calls`: every AWS operation the process makes, counted.
- `no_scan`: fails a test during which a DynamoDB Scan was issued (modules opt in with usefixtures).
- `settings`: override app settings for one test.

Tests are plain `async def` functions run by pytest-asyncio on one session-wide event loop
(pyproject.toml), so module-scoped fixtures can hold connections across tests. Helpers that are not
fixtures are imported from here: `from conftest import Room, http, uid, ...`. For example:

    async def test_a_raised_hand_reaches_the_host(clients: Clients) -> None:
        room = await Room.open(clients)  # a live space, its host joined
        listener = await room.listener()
        await listener.send("hand.raise", space_id=room.sid)
        await room.host.event("hand.raised", user_id=listener.user)

The few reaches into internals (the stack's Chime emulator, settings, stored spaces and
reports) live here too, so a change of layout is fixed in one file.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import dataclasses
import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from asyncapi_check import validate_server_message
from botocore.config import Config

from devstack.stack import LocalStack, StackOptions
from devstack.stats import AWS_CALLS, AwsCallCounter, install_call_counter
from sohbet_client import SohbetClient, SohbetError

FIXTURES = Path(__file__).parent / "fixtures"
TIMEOUT = 5.0
EVENT_TIMEOUT = 5.0


# -- the stack -------------------------------------------------------------------


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    install_call_counter()
    local = LocalStack(
        StackOptions(
            port=0,
            sqs_visibility_timeout=1,
            schedule_seconds=0.5,
            extra_env={
                "HOST_GRACE_SECONDS": "2",
                # A dropped socket leaves at once here, as most tests expect; the reconnect grace
                # (production default 60 s) is tested in test_reconnect.py with its own settings.
                "RECONNECT_GRACE_SECONDS": "0",
                "LISTENER_COUNT_INTERVAL_SECONDS": "0.5",
                # Tests pipeline hundreds of commands and open many sockets per user; the
                # production limits are tested on a stack of their own (test_edges_limits.py).
                "COMMAND_BURST": "1000",
                "COMMAND_HARD_LIMIT": "1000",
                "MAX_CONNECTIONS_PER_USER": "100",
                # per-user quotas: tested with their own values (test_quotas.py)
                "QUOTA_LIVE_SPACES_PER_HOUR": "100000",
                "QUOTA_SCHEDULED_SPACES_PER_DAY": "100000",
                "QUOTA_REPORTS_PER_HOUR": "100000",
                "QUOTA_HAND_TOGGLES_PER_MINUTE": "100000",
            },
        )
    ).start()
    yield local
    local.stop()


@pytest.fixture
def aws_calls() -> AwsCallCounter:
    """Every AWS operation any botocore client in this process makes, counted by a botocore event hook."""
    AWS_CALLS.reset()
    return AWS_CALLS


def aws_client(stack: Any, service: str) -> Any:
    return stack.aws.client(service)


# -- settings ----------------------------------------------------------------------


@contextlib.contextmanager
def settings_overridden(**values: str) -> Iterator[None]:
    """App settings (by their environment names) changed inside the block, then put back."""
    from chalicelib.config import get_settings

    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


@pytest.fixture
def settings() -> Iterator[Callable[..., None]]:
    """settings(NAME="value", ...): set for the rest of the test, then put back as they were."""
    with contextlib.ExitStack() as undo:
        yield lambda **values: undo.enter_context(settings_overridden(**values))


@contextlib.contextmanager
def listener_count_interval(seconds: float) -> Iterator[None]:
    """Coalesce listener counts over `seconds` (so a join's own cost can be measured without them)."""
    with settings_overridden(LISTENER_COUNT_INTERVAL_SECONDS=str(seconds)):
        yield


@contextlib.contextmanager
def schedules_paused(stack: Any) -> Iterator[None]:
    """Stop the scheduled sweep for a while: its queries would be counted with what is measured."""
    scheduler = stack.scheduler
    jobs, scheduler.jobs = scheduler.jobs, []
    time.sleep(0.5)  # let a sweep that already started finish
    try:
        yield
    finally:
        scheduler.jobs = jobs


# -- ids, time, waiting ----------------------------------------------------------------


def uid(prefix: str = "u") -> str:
    """A user or title token unique to this run (users are global: follows, blocks, suspensions)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def iso(delta: timedelta) -> str:
    return (datetime.now(tz=UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def fixture(name: str) -> dict[str, Any]:
    """A JSON file from tests/e2e/fixtures."""
    return json.loads((FIXTURES / name).read_text())


def wait_until(predicate: Callable[[], Any], timeout: float = 3.0, interval: float = 0.05) -> Any:
    """Poll (blocking) until `predicate()` is truthy; its last value (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


async def await_until(predicate: Callable[[], Any], timeout: float = 3.0, interval: float = 0.05) -> Any:
    """wait_until for async code: the event loop runs meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


async def until(predicate: Callable[[], Any], timeout: float = EVENT_TIMEOUT, what: str = "") -> Any:
    """Like await_until, but a timeout fails the test."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


# -- REST -----------------------------------------------------------------------------


def http(
    stack: LocalStack,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    headers: dict | None = None,
) -> tuple[int, Any]:
    """A plain HTTP call to the stack; returns (status, parsed JSON body or text)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(stack.base_url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def token(stack: Any, user: str) -> str:
    return str(stack.mint_token(user))


def admin_token(stack: Any, name: str = "root") -> str:
    return str(stack.mint_token(name, ["admins"]))


_CREATED: list[tuple[str, str]] = []  # (space id, host) of spaces whose host has not joined


def create_space(stack: Any, host: str, title: str | None = None, **fields: Any) -> dict[str, Any]:
    """POST /spaces as `host`; ended after the test (by `no_scan`) unless the host joins it."""
    body = {"title": title or f"space of {host}", **fields}
    status, space = http(stack, "POST", "/spaces", body, token=token(stack, host))
    assert status == 201, (status, space)
    _CREATED.append((space["id"], host))
    return space


def live_space(stack: Any, host: str, title: str = "safety") -> str:
    """A live space's id (left live after the test)."""
    status, body = http(stack, "POST", "/spaces", {"title": title}, token=token(stack, host))
    assert status == 201, body
    return str(body["id"])


def get_space(stack: Any, space_id: str) -> dict[str, Any]:
    status, space = http(stack, "GET", f"/spaces/{space_id}", token=token(stack, "viewer"))
    assert status == 200, (status, space)
    return space


def roles(space: dict[str, Any]) -> dict[str, str]:
    """{user_id: role} of everyone on stage, from a GET /spaces/{id} body."""
    return {e["user_id"]: e["role"] for e in space["stage"]}


def entry(space: dict[str, Any], user: str) -> dict[str, Any] | None:
    return next((e for e in space["stage"] if e["user_id"] == user), None)


async def until_rest(stack: Any, space_id: str, check: Callable[[dict[str, Any]], bool], what: str) -> dict:
    """Poll GET /spaces/{id} until `check(space)` holds."""
    deadline = time.monotonic() + EVENT_TIMEOUT
    while True:
        space = await asyncio.to_thread(get_space, stack, space_id)
        if check(space):
            return space
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {space}")
        await asyncio.sleep(0.05)


def case_of(stack: Any, target_type: str, target_id: str, status: str = "open") -> dict[str, Any] | None:
    code, body = http(
        stack,
        "GET",
        f"/admin/cases?target_type={target_type}&target_id={target_id}&status={status}",
        token=admin_token(stack),
    )
    assert code == 200, body
    return body["data"][0] if body["data"] else None


def wait_for_case(
    stack: Any, target_type: str, target_id: str, reports: int, timeout: float = 8.0
) -> dict[str, Any]:
    """The target's open case once triage has counted `reports` reports into it."""
    deadline = time.monotonic() + timeout
    while True:
        case = case_of(stack, target_type, target_id)
        if case is not None and case["report_count"] >= reports:
            return case
        if time.monotonic() > deadline:
            raise AssertionError(f"no case with {reports} reports for {target_type}#{target_id}: {case}")
        time.sleep(0.1)


# -- straight to the stores (the reaches into chalicelib) --------------------------------


def local_media() -> Any:
    """What the media service (the stack's Chime emulator, docs/media.md) holds: its MediaRegistry
    (`attendees(meeting_id)`, `meetings()`, `meeting_exists(id)`, `attendee_by_token(token)`)."""
    return LocalStack.running().media


def chime() -> Any:
    """The stack's Chime API: fault injection (`fail_next`, `failing`) answered with real Chime
    errors, and the calls it served (`count`)."""
    return LocalStack.running().chime


def gateway() -> Any:
    """The stack's WebSocket gateway emulator: @connections fault injection (`fail_next`, `failing`)."""
    return LocalStack.running().gateway


@contextlib.contextmanager
def chime_rules(**changes: Any) -> Iterator[None]:
    """Switch Chime's request rules on for a block, e.g. chime_rules(rate_limits=True, rates={...})."""
    emulator = chime()
    saved = emulator.rules
    emulator.rules = dataclasses.replace(saved, **changes)
    emulator.reset()  # fresh rate-limit buckets
    try:
        yield
    finally:
        emulator.rules = saved


def attendee_of(meeting_id: str, user: str) -> Any:
    """`user`'s attendee in the meeting at the media service, or None: the one named after them
    (people on stage), else the pooled one their member item records (listeners, chalicelib/pool.py)."""
    from chalicelib import media
    from chalicelib.models import Member

    attendees = local_media().attendees(meeting_id)
    external = media.external_user_id(user)
    for attendee in attendees.values():
        if attendee.external_user_id == external:
            return attendee
    for member in Member.by_user.query(user):
        if member.meeting_id == meeting_id and member.attendee_id in attendees:
            return attendees[member.attendee_id]
    return None


def audio(meeting_id: str, user: str) -> str | None:
    """The Audio capability of `user`'s attendee at the media service; None: no attendee."""
    attendee = attendee_of(meeting_id, user)
    return None if attendee is None else str(attendee.audio)


def stored_space(space_id: str) -> Any:
    """The space's stored record (a strongly consistent read through the app's model)."""
    from chalicelib.models import Space

    return Space.get(space_id, consistent_read=True)


def attendees_of(space_id: str) -> dict[str, Any]:
    """The attendees the media service holds for the space's meeting."""
    meeting_id = stored_space(space_id).meeting_id
    assert meeting_id
    return dict(local_media().attendees(meeting_id))


def has_attendee(space_id: str, user_id: str) -> bool:
    meeting_id = stored_space(space_id).meeting_id
    assert meeting_id
    return attendee_of(meeting_id, user_id) is not None


def stored_member(space_id: str, user_id: str) -> Any:
    """The user's member item in the space (strongly consistent), or None."""
    from chalicelib.spaces import store

    return store.get_member(space_id, user_id)


def listener_count(space_id: str) -> int:
    """The exact listener count, summed from the counter shards (not the coalesced one GET shows)."""
    from chalicelib import counters

    return int(counters.listeners(space_id))


@contextlib.contextmanager
def suspended(stack: Any, user_id: str, seconds: int = 600) -> Iterator[None]:
    """The user's account suspended (written straight to the users table) inside the block."""
    dynamodb = aws_client(stack, "dynamodb")
    table = stack.env["USERS_TABLE"]
    until = str(int(time.time()) + seconds)
    dynamodb.put_item(TableName=table, Item={"user_id": {"S": user_id}, "suspended_until": {"N": until}})
    try:
        yield
    finally:
        dynamodb.delete_item(TableName=table, Key={"user_id": {"S": user_id}})


def now_iso() -> str:
    from chalicelib.clock import now_iso as app_now_iso

    return str(app_now_iso())


def stored_reports(report_ids: list[str]) -> set[str]:
    from chalicelib.models import Report

    return {r.report_id for r in Report.batch_get(report_ids)}


def connection_record(stack: Any, conn_id: str) -> dict[str, Any] | None:
    """The connection's item in the connections table, read straight from moto (not through the app)."""
    items = aws_client(stack, "dynamodb").query(
        TableName=stack.env["CONNECTIONS_TABLE"],
        KeyConditionExpression="connection_id = :id",
        ExpressionAttributeValues={":id": {"S": conn_id}},
        ConsistentRead=True,
    )["Items"]
    return items[0] if items else None


# -- the moderation queue, fed directly --------------------------------------------------


def report_message(
    space: str, reporter: str, target: str | None, category: str = "spam", **extra: Any
) -> dict:
    return {
        "v": 1,
        "report_id": uuid.uuid4().hex,
        "created_at": now_iso(),
        "reporter_id": reporter,
        "space_id": space,
        "user_id": target,
        "category": category,
        "note": None,
        "snapshot": {"taken_at": now_iso(), "test": True},
        **extra,
    }


def send_reports(stack: Any, bodies: list[str]) -> None:
    sqs = aws_client(stack, "sqs")
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=stack.env["MODERATION_QUEUE_URL"],
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])],
        )


# -- the gateway's handlers and @connections ------------------------------------------------


class Recorder:
    """Events passed to one handler while installed, newest last."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(copy.deepcopy(event))

    def for_connection(self, conn_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["requestContext"]["connectionId"] == conn_id]


@contextlib.contextmanager
def recording(handlers: dict[str, Any], route_key: str) -> Iterator[Recorder]:
    """Wrap handlers[route_key] so that every event it gets is recorded; restore on exit."""
    original = handlers[route_key]
    recorder = Recorder()

    def wrapper(event: dict[str, Any], context: Any) -> Any:
        recorder.add(event)
        return original(event, context)

    handlers[route_key] = wrapper
    try:
        yield recorder
    finally:
        handlers[route_key] = original


@contextlib.contextmanager
def replaced(handlers: dict[str, Any], route_key: str, handler: Callable[..., Any]) -> Iterator[None]:
    original = handlers[route_key]
    handlers[route_key] = handler
    try:
        yield
    finally:
        handlers[route_key] = original


def management_client(endpoint: str) -> Any:
    """boto3's apigatewaymanagementapi client, as the app builds it, pointed at the emulator."""
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )


def ws_url(stack: Any, token: str | None = None, stage: bool = False) -> str:
    url = stack.ws_url + (stack.options.stage if stage else "")
    return url if token is None else f"{url}?token={token}"


# -- no Scan, ever -------------------------------------------------------------------

_SCANS: list[str] = []


class _ScanAlarm(collections.Counter):  # type: ignore[type-arg]
    """AWS_CALLS.calls, remembering every Scan even when someone resets the counter."""

    def __setitem__(self, key: Any, value: Any) -> None:
        if key == "dynamodb:Scan":
            _SCANS.append(threading.current_thread().name)
        super().__setitem__(key, value)


def _install_scan_alarm() -> None:
    # The counter's hook sits on every botocore client the process creates
    # (devstack.stats.install_call_counter); this sees what it counts.
    with AWS_CALLS._lock:
        if not isinstance(AWS_CALLS.calls, _ScanAlarm):
            AWS_CALLS.calls = _ScanAlarm(AWS_CALLS.calls)


@pytest.fixture
def no_scan(stack: Any) -> Iterator[None]:
    """Principle 1: no request path ever scans a table. Fails the test that caused one.

    Also ends the spaces the test created and their host never joined (a host who
    joined and left ends theirs after the grace period): the sweep reads every live
    space each run, so spaces left live would slow down every later test.
    """
    _install_scan_alarm()
    before = len(_SCANS)
    yield
    while _CREATED:
        space_id, creator = _CREATED.pop()
        http(stack, "POST", f"/spaces/{space_id}/end", token=token(stack, creator))
    assert _SCANS[before:] == [], f"dynamodb:Scan issued during this test (threads {_SCANS[before:]})"


# -- WebSocket clients -------------------------------------------------------------------


class Client(SohbetClient):
    """sohbet_client's client as a test uses it: typed commands (`send`), the raw answer frame
    (`call`), events by name with waiting (`event`), and raw frames in and out (`recv`, `command`)."""

    def __init__(self, url: str, token: str | None, user: str, *, check: bool = True) -> None:
        # The token in the URL, so a refused $connect surfaces as the handshake's status;
        # tickets, the client's default, are tested in test_edges_client.py and test_edges_identity.py.
        super().__init__(url, token, keep_frames=True, auth="token")
        self.user = user
        self.check = check  # whether its frames are checked against docs/asyncapi.yaml

    @property
    def user_id(self) -> str:
        return self.user

    # -- events

    def events(self, name: str | None = None, since: int = 0, **match: Any) -> list[dict[str, Any]]:
        """Events received so far (from index `since` of `received`) named `name` with these fields."""
        return [
            f
            for f in self.received[since:]
            if f.get("type") == "event"
            and (name is None or f.get("event") == name)
            and all(f.get(k) == v for k, v in match.items())
        ]

    async def event(
        self, name: str, since: int = 0, timeout: float = EVENT_TIMEOUT, **match: Any
    ) -> dict[str, Any]:
        """The first event named `name` with these fields received from index `since` on (waits for it)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(name, since, **match)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                seen = [f.get("event") for f in self.received[since:] if f.get("type") == "event"]
                raise AssertionError(f"{self.user}: no {name} event matching {match}; got {seen}")
            await asyncio.sleep(0.01)

    async def drain(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Every event received, after waiting a moment (to check that something did NOT arrive)."""
        await asyncio.sleep(seconds)
        return self.events()

    @property
    def mark(self) -> int:
        return len(self.received)

    def broadcast_seqs(self, space_id: str) -> list[int]:
        return [f["seq"] for f in self.events(space_id=space_id) if "seq" in f]

    # -- commands

    async def call(self, action: str, **fields: Any) -> dict[str, Any]:
        """Send a command; its reply or error frame as it came."""
        return await self.answer({"action": action, **fields})

    async def alive(self) -> None:
        """The connection still answers."""
        pong = await self.send("ping")
        assert pong["user_id"] == self.user

    # -- raw frames (the frame log of keep_frames, read in order)

    async def recv(self, timeout: float = TIMEOUT) -> Any:
        """The next frame of any kind, in arrival order (a JSON object parsed, anything else raw)."""
        return await self.next_frame(timeout)

    async def command(self, message: Any, timeout: float = TIMEOUT) -> Any:
        """Send one frame as it is (a dict is JSON-encoded) and read the next frame."""
        await self.send_raw(message)
        return await self.recv(timeout)

    async def ping_raw(self, ref: str = "p") -> dict[str, Any]:
        """A hand-written ping and its reply frame, read from the frame log."""
        answer = await self.command({"action": "ping", "ref": ref})
        assert answer["type"] == "reply", answer
        assert answer["ref"] == ref and answer["ok"] is True, answer
        return dict(answer)

    async def connection_id(self) -> str:
        return str((await self.ping_raw("whoami"))["data"]["connection_id"])


class Clients:
    """Connections opened during one test; closed (and their frames checked) at the end."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.all: list[Client] = []

    def client(
        self,
        user: str = "ada",
        *,
        token: str | None = None,
        no_token: bool = False,
        stage: bool = False,
        check: bool = True,
    ) -> Client:
        """A client not connected yet (connect() it), with a token minted for `user` unless given.

        `no_token`: connect without one (to see the refusal); `stage`: the /{stage} URL, as in production.
        """
        url = self.stack.ws_url + (self.stack.options.stage if stage else "")
        minted = None if no_token else token if token is not None else self.stack.mint_token(user)
        client = Client(url, minted, user, check=check)
        self.all.append(client)
        return client

    async def open(self, user: str = "ada", **options: Any) -> Client:
        """A connected client for `user` (see `client` for the options)."""
        client = self.client(user, **options)
        await client.connect()
        return client

    async def people(self, *users: str) -> list[Client]:
        return [await self.open(user) for user in users]

    async def join(self, user: str, space_id: str) -> tuple[Client, dict[str, Any]]:
        if (space_id, user) in _CREATED:
            _CREATED.remove((space_id, user))
        client = await self.open(user)
        return client, await client.send("space.join", space_id=space_id)

    async def serves_others(self) -> None:
        """The process still accepts a new connection and answers on it."""
        client = await self.open("grace")
        assert (await client.ping_raw("alive"))["data"]["user_id"] == "grace"
        await client.close()

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.all), return_exceptions=True)

    def check_frames(self) -> None:
        for client in self.all:
            if not client.check:
                continue
            assert client.invalid_frames == [], (client.user, client.invalid_frames[:3])
            for frame in client.received:
                validate_server_message(frame)

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.close()
        if exc_type is None:
            self.check_frames()


class Room:
    """A live space with its host joined, and helpers to bring people in and on stage."""

    def __init__(self, clients: Clients, space: dict[str, Any], host: Client, snapshot: dict[str, Any]):
        self.clients = clients
        self.stack = clients.stack
        self.sid: str = space["id"]
        self.host = host
        self.snapshot = snapshot  # the host's join reply
        self.meeting_id: str = snapshot["media"]["Meeting"]["MeetingId"]

    @classmethod
    async def open(cls, clients: Clients, **fields: Any) -> Room:
        """Create a space (POST /spaces with these fields) as a new host who then joins it."""
        host_id = uid("host")
        space = await asyncio.to_thread(create_space, clients.stack, host_id, **fields)
        host, snapshot = await clients.join(host_id, space["id"])
        return cls(clients, space, host, snapshot)

    async def listener(self, prefix: str = "l") -> Client:
        client, snapshot = await self.clients.join(uid(prefix), self.sid)
        assert snapshot["role"] == "listener"
        return client

    async def listeners(self, count: int, prefix: str = "l") -> list[Client]:
        """`count` new listeners, joined one by one."""
        return [await self.listener(prefix) for _ in range(count)]

    async def promote(self, client: Client, role: str) -> None:
        """The host makes a member a co-host, or invites them to speak and they accept."""
        if role == "cohost":
            await self.host.send("cohost.add", space_id=self.sid, user_id=client.user)
        else:
            await self.host.send("speaker.invite", space_id=self.sid, user_id=client.user)
            await client.send("invite.accept", space_id=self.sid)

    async def speaker(self, prefix: str = "s") -> Client:
        client = await self.listener(prefix)
        await self.promote(client, "speaker")
        return client

    async def cohost(self, prefix: str = "c") -> Client:
        client = await self.listener(prefix)
        await self.promote(client, "cohost")
        return client

    async def get(self) -> dict[str, Any]:
        return await asyncio.to_thread(get_space, self.stack, self.sid)

    def audio(self, client: Client) -> str | None:
        return audio(self.meeting_id, client.user)

    async def unchanged(self, before: dict[str, Any], *still_usable: Client) -> None:
        """A refused command changed nothing, and the refused connections still answer."""
        assert settled(await self.get()) == settled(before)
        for client in still_usable:
            await alive(client)


def settled(space: dict[str, Any]) -> dict[str, Any]:
    """A space as GET shows it, minus the coalesced participant count (published in the background)."""
    return {k: v for k, v in space.items() if k != "participant_count"}


@pytest.fixture
async def clients(stack: Any) -> AsyncIterator[Clients]:
    """Open WebSocket clients with `await clients.open(user)`; closed and checked after the test."""
    async with Clients(stack) as opened:
        yield opened


async def refused(call: Awaitable[Any], code: str) -> SohbetError:
    """Await a command that must fail with `code`."""
    try:
        data = await call
    except SohbetError as err:
        assert err.code == code, f"expected {code}, got {err.code}: {err.message}"
        return err
    raise AssertionError(f"expected {code}, got a reply {data}")


async def alive(client: Client) -> None:
    """The connection still answers."""
    await client.alive()


async def join_all(space_id: str, *persons: Client) -> dict[str, dict[str, Any]]:
    return {p.user: await p.send("space.join", space_id=space_id) for p in persons}


async def bring_on_stage(host: Client, speaker: Client, space_id: str) -> None:
    await speaker.send("hand.raise", space_id=space_id)
    await host.send("request.approve", space_id=space_id, user_id=speaker.user)
    await speaker.event("stage.changed", user_id=speaker.user)


def assert_consecutive(client: Client, space_id: str, start: int | None = None) -> list[int]:
    """Broadcasts a continuously present member got: numbered one by one, none missed, none twice.

    Posts to one connection may overtake each other (API Gateway promises no order either), so
    the numbers are compared as a set; a client orders them by seq.

    `start`, a join's reply seq: what is numbered after it must all arrive. One numbered up to it
    may arrive too (numbered while the join was under way, its recipients read once the membership
    was stored, and the snapshot taken again as the seq moved): the snapshot includes it, and a
    client drops a seq it has seen (docs/asyncapi.yaml, "Event ordering"). Never twice, though.
    """
    received = client.broadcast_seqs(space_id)
    assert len(received) == len(set(received)), (client.user, start, received)
    seqs = sorted(s for s in received if start is None or s > start)
    if seqs:
        first = seqs[0] if start is None else start + 1
        assert seqs == list(range(first, first + len(seqs))), (client.user, start, received)
    return seqs
