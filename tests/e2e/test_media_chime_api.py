"""The local stack's Chime SDK Meetings emulator, driven by real boto3 `chime-sdk-meetings` clients.

Each test serves a fresh MediaRegistry + ChimeMeetingsEmulator on a loopback port (rules and
clocks set per test), so what is checked is what botocore sends and parses: paths, JSON shapes,
modeled exceptions, idempotency, Chime's limits and rate limits, meetings ending on their own
and the EventBridge events they send. The app's own ChimeMediaAdapter is driven against it too.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.validate import ParamValidator

from chalicelib import media
from devstack.media.chime_api import PREFIX, ChimeMeetingsEmulator, ChimeRules
from devstack.media.events import EventBus, matches
from devstack.media.registry import Attendee, MediaRegistry, Meeting

pytestmark = pytest.mark.e2e

AUDIO_ONLY = {
    "Audio": {"EchoReduction": "AVAILABLE"},
    "Video": {"MaxResolution": "None"},
    "Content": {"MaxResolution": "None"},
}
RECEIVE = {"Audio": "Receive", "Video": "None", "Content": "None"}
SEND_RECEIVE = {"Audio": "SendReceive", "Video": "None", "Content": "None"}
UNKNOWN_ID = "11111111-2222-3333-4444-555555555555"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """A registry observer that keeps what it was told."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def capabilities_changed(self, attendee: Attendee) -> None:
        self.seen.append(("capabilities_changed", attendee))

    def attendee_deleted(self, attendee: Attendee) -> None:
        self.seen.append(("attendee_deleted", attendee))

    def meeting_deleted(self, meeting: Meeting) -> None:
        self.seen.append(("meeting_deleted", meeting))


class ChimeServer:
    """A registry and its REST emulator on 127.0.0.1:<free port>."""

    def __init__(self, rules: ChimeRules | None = None) -> None:
        import uvicorn
        from starlette.applications import Starlette

        self.clock = Clock()
        self.bus = EventBus()
        self.registry = MediaRegistry(clock=self.clock, event_sink=self.bus.put)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # see LocalStack
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.chime = ChimeMeetingsEmulator(self.registry, lambda: self.url, rules, clock=self.clock)
        config = uvicorn.Config(Starlette(routes=self.chime.routes()), log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the emulator did not start"
            time.sleep(0.01)

    @property
    def endpoint(self) -> str:
        return self.url + PREFIX

    def client(self, attempts: int = 1) -> Any:
        """A chime-sdk-meetings client; one attempt by default, so each call is one request."""
        return boto3.client(
            "chime-sdk-meetings",
            region_name="us-east-1",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"mode": "standard", "total_max_attempts": attempts}),
        )

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def server() -> Iterator[ChimeServer]:
    s = ChimeServer()
    yield s
    s.stop()


@pytest.fixture
def chime(server: ChimeServer) -> Any:
    return server.client()


def create_meeting(chime: Any, token: str = "token-1", max_count: int = 250, **extra: Any) -> dict[str, Any]:
    params = {
        "ClientRequestToken": token,
        "MediaRegion": "us-east-1",
        "ExternalMeetingId": f"space-{token}",
        "MeetingFeatures": {**AUDIO_ONLY, "Attendee": {"MaxCount": max_count}},
        **extra,
    }
    meeting: dict[str, Any] = chime.create_meeting(**params)["Meeting"]
    return meeting


def shape_errors(chime: Any, operation: str, body: dict[str, Any]) -> str:
    """What botocore's validator finds wrong in a response body against the operation's output shape."""
    shape = chime.meta.service_model.operation_model(operation).output_shape
    body = {k: v for k, v in body.items() if k != "ResponseMetadata"}
    report = ParamValidator().validate(body, shape)
    return str(report.generate_report()) if report.has_errors() else ""


# --------------------------------------------------------------------------- shapes


def test_create_meeting_answers_in_chimes_shape_with_a_whip_signaling_url(
    server: ChimeServer, chime: Any
) -> None:
    reply = chime.create_meeting(
        ClientRequestToken="t-shape",
        MediaRegion="eu-west-2",
        ExternalMeetingId="space-1",
        MeetingFeatures={**AUDIO_ONLY, "Attendee": {"MaxCount": 50}},
    )
    assert shape_errors(chime, "CreateMeeting", reply) == ""
    meeting = reply["Meeting"]
    meeting_id = meeting["MeetingId"]
    assert meeting["ExternalMeetingId"] == "space-1" and meeting["MediaRegion"] == "eu-west-2"
    assert meeting["MeetingFeatures"]["Attendee"] == {"MaxCount": 50}
    assert meeting["MeetingArn"] == f"arn:aws:chime:us-east-1:123456789012:meeting/{meeting_id}"
    placement = meeting["MediaPlacement"]
    # http(s) SignalingUrl: the embedded media server, reached with WHIP (Chime's is always wss://)
    assert placement["SignalingUrl"] == f"{server.url}/media/whip/{meeting_id}"
    assert all(server.url.split("://")[1] in url for url in placement.values())
    assert chime.get_meeting(MeetingId=meeting_id)["Meeting"] == meeting
    started = server.bus.of_type("chime:MeetingStarted", meeting_id)
    assert [e["detail"]["externalMeetingId"] for e in started] == ["space-1"]


def test_attendee_operations_answer_in_chimes_shape(chime: Any) -> None:
    meeting_id = create_meeting(chime)["MeetingId"]
    created = chime.create_attendee(MeetingId=meeting_id, ExternalUserId="u:ada", Capabilities=RECEIVE)
    assert shape_errors(chime, "CreateAttendee", created) == ""
    attendee = created["Attendee"]
    assert attendee["Capabilities"] == RECEIVE and attendee["ExternalUserId"] == "u:ada"
    got = chime.get_attendee(MeetingId=meeting_id, AttendeeId=attendee["AttendeeId"])
    assert got["Attendee"] == attendee
    batch = chime.batch_create_attendee(
        MeetingId=meeting_id, Attendees=[{"ExternalUserId": "u:b"}, {"ExternalUserId": "u:c"}]
    )
    assert shape_errors(chime, "BatchCreateAttendee", batch) == "" and batch["Errors"] == []
    # no Capabilities in an audio-only meeting: SendReceive audio, no video or content
    assert all(a["Capabilities"] == SEND_RECEIVE for a in batch["Attendees"])
    updated = chime.update_attendee_capabilities(
        MeetingId=meeting_id, AttendeeId=attendee["AttendeeId"], Capabilities=SEND_RECEIVE
    )
    assert shape_errors(chime, "UpdateAttendeeCapabilities", updated) == ""
    assert updated["Attendee"]["Capabilities"] == SEND_RECEIVE


def test_list_attendees_pages_with_next_token(chime: Any) -> None:
    meeting_id = create_meeting(chime)["MeetingId"]
    chime.batch_create_attendee(
        MeetingId=meeting_id, Attendees=[{"ExternalUserId": f"u:{i}"} for i in range(23)]
    )
    pages, token = [], None
    while True:
        page = chime.list_attendees(
            MeetingId=meeting_id, MaxResults=10, **({"NextToken": token} if token else {})
        )
        pages.append(page["Attendees"])
        token = page.get("NextToken")
        if not token:
            break
    assert [len(p) for p in pages] == [10, 10, 3]
    assert sorted(a["ExternalUserId"] for p in pages for a in p) == sorted(f"u:{i}" for i in range(23))


# --------------------------------------------------------------------------- idempotency and limits


def test_client_request_token_returns_the_same_meeting(chime: Any) -> None:
    first = create_meeting(chime, "same")
    assert create_meeting(chime, "same") == first
    assert create_meeting(chime, "other")["MeetingId"] != first["MeetingId"]


def test_max_count_and_external_user_id_idempotency(server: ChimeServer, chime: Any) -> None:
    meeting_id = create_meeting(chime, max_count=3)["MeetingId"]
    ids = [
        chime.create_attendee(MeetingId=meeting_id, ExternalUserId=f"u:{i}", Capabilities=RECEIVE)["Attendee"]
        for i in range(3)
    ]
    # the same ExternalUserId is the same attendee, capabilities as they were: no new seat
    again = chime.create_attendee(MeetingId=meeting_id, ExternalUserId="u:1", Capabilities=SEND_RECEIVE)
    assert again["Attendee"] == ids[1]
    with pytest.raises(chime.exceptions.LimitExceededException) as info:
        chime.create_attendee(MeetingId=meeting_id, ExternalUserId="u:3")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    batch = chime.batch_create_attendee(MeetingId=meeting_id, Attendees=[{"ExternalUserId": "u:4"}])
    assert batch["Attendees"] == [] and [e["ErrorCode"] for e in batch["Errors"]] == ["LimitExceeded"]
    chime.delete_attendee(MeetingId=meeting_id, AttendeeId=ids[0]["AttendeeId"])  # a seat frees up
    chime.create_attendee(MeetingId=meeting_id, ExternalUserId="u:3")
    assert len(server.registry.attendees(meeting_id)) == 3


def test_max_count_holds_under_concurrency(server: ChimeServer, chime: Any) -> None:
    meeting_id = create_meeting(chime, max_count=10)["MeetingId"]
    outcomes: list[str] = []
    barrier = threading.Barrier(30)

    def join(i: int) -> None:
        client = server.client()
        barrier.wait()
        try:
            client.create_attendee(MeetingId=meeting_id, ExternalUserId=f"u:{i}")
            outcomes.append("ok")
        except client.exceptions.LimitExceededException:
            outcomes.append("full")

    threads = [threading.Thread(target=join, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (outcomes.count("ok"), outcomes.count("full")) == (10, 20)
    assert len(server.registry.attendees(meeting_id)) == 10


def test_replicas_follow_their_primary(server: ChimeServer, chime: Any) -> None:
    primary = create_meeting(chime, "primary")["MeetingId"]
    replicas = [create_meeting(chime, f"r{i}", PrimaryMeetingId=primary) for i in range(4)]
    assert all(r["PrimaryMeetingId"] == primary for r in replicas)
    with pytest.raises(chime.exceptions.LimitExceededException):  # the default quota: 4 per primary
        create_meeting(chime, "r4", PrimaryMeetingId=primary)
    with pytest.raises(chime.exceptions.BadRequestException):  # no replica of a replica
        create_meeting(chime, "rr", PrimaryMeetingId=replicas[0]["MeetingId"])
    with pytest.raises(chime.exceptions.NotFoundException):
        create_meeting(chime, "orphan", PrimaryMeetingId=UNKNOWN_ID)

    chime.delete_meeting(MeetingId=primary)
    for meeting_id in [primary] + [r["MeetingId"] for r in replicas]:
        with pytest.raises(chime.exceptions.NotFoundException):
            chime.get_meeting(MeetingId=meeting_id)
    ended = {e["detail"]["meetingId"] for e in server.bus.of_type("chime:MeetingEnded")}
    assert ended == {primary} | {r["MeetingId"] for r in replicas}


# --------------------------------------------------------------------------- errors and rules


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c, m: c.get_meeting(MeetingId=UNKNOWN_ID), "NotFoundException"),
        (lambda c, m: c.delete_meeting(MeetingId=UNKNOWN_ID), "NotFoundException"),
        (lambda c, m: c.create_attendee(MeetingId=UNKNOWN_ID, ExternalUserId="u:x"), "NotFoundException"),
        (lambda c, m: c.delete_attendee(MeetingId=m, AttendeeId=UNKNOWN_ID), "NotFoundException"),
        (lambda c, m: c.get_meeting(MeetingId="not-a-guid"), "BadRequestException"),
        (lambda c, m: create_meeting(c, "big", max_count=251), "BadRequestException"),
        (lambda c, m: create_meeting(c, "bad token!"), "BadRequestException"),
        (lambda c, m: create_meeting(c, "mars", MediaRegion="mars-north-1"), "BadRequestException"),
        (lambda c, m: c.create_attendee(MeetingId=m, ExternalUserId="aws:x"), "BadRequestException"),
        (lambda c, m: c.create_attendee(MeetingId=m, ExternalUserId="u:<x>"), "BadRequestException"),
        (
            lambda c, m: c.create_attendee(
                MeetingId=m, ExternalUserId="u:x", Capabilities={**RECEIVE, "Audio": "Loud"}
            ),
            "BadRequestException",
        ),
        (  # video in a meeting created without video
            lambda c, m: c.create_attendee(
                MeetingId=m, ExternalUserId="u:x", Capabilities={**RECEIVE, "Video": "Receive"}
            ),
            "BadRequestException",
        ),
        (
            lambda c, m: c.batch_create_attendee(
                MeetingId=m, Attendees=[{"ExternalUserId": f"u:{i}"} for i in range(101)]
            ),
            "BadRequestException",
        ),
    ],
    ids=[
        "get-unknown",
        "delete-unknown",
        "attendee-in-unknown",
        "delete-unknown-attendee",
        "malformed-id",
        "max-count-251",
        "token-pattern",
        "media-region",
        "reserved-prefix",
        "external-user-id-pattern",
        "audio-enum",
        "video-without-video-feature",
        "batch-of-101",
    ],
)
def test_refusals_are_modeled_exceptions(chime: Any, call: Any, error: str) -> None:
    meeting_id = create_meeting(chime)["MeetingId"]
    with pytest.raises(chime.exceptions.ClientError) as info:
        call(chime, meeting_id)
    assert info.value.response["Error"]["Code"] == error
    assert type(info.value).__name__ == error  # botocore raised the modeled class


def test_content_may_only_receive_with_video(chime: Any) -> None:
    meeting_id = create_meeting(chime, MeetingFeatures={"Attendee": {"MaxCount": 5}})["MeetingId"]
    with pytest.raises(chime.exceptions.BadRequestException):
        chime.create_attendee(
            MeetingId=meeting_id,
            ExternalUserId="u:x",
            Capabilities={"Audio": "SendReceive", "Video": "None", "Content": "Receive"},
        )
    default = chime.create_attendee(MeetingId=meeting_id, ExternalUserId="u:y")["Attendee"]
    assert default["Capabilities"] == {
        "Audio": "SendReceive",
        "Video": "SendReceive",
        "Content": "SendReceive",
    }


def test_a_request_without_sigv4_is_unauthorized(server: ChimeServer) -> None:
    req = urllib.request.Request(server.endpoint + f"/meetings/{UNKNOWN_ID}")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 401
    assert info.value.headers["x-amzn-ErrorType"] == "UnauthorizedException"


def test_delete_attendee_kills_the_join_token_and_tells_the_audio_side(
    server: ChimeServer, chime: Any
) -> None:
    recorder = Recorder()
    server.registry.subscribe(recorder)
    meeting_id = create_meeting(chime)["MeetingId"]
    attendee = chime.create_attendee(MeetingId=meeting_id, ExternalUserId="u:ada")["Attendee"]
    assert server.registry.attendee_by_token(attendee["JoinToken"]).attendee_id == attendee["AttendeeId"]

    chime.delete_attendee(MeetingId=meeting_id, AttendeeId=attendee["AttendeeId"])

    assert server.registry.attendee_by_token(attendee["JoinToken"]) is None
    assert [(kind, a.attendee_id) for kind, a in recorder.seen] == [
        ("attendee_deleted", attendee["AttendeeId"])
    ]
    with pytest.raises(chime.exceptions.NotFoundException):
        chime.get_attendee(MeetingId=meeting_id, AttendeeId=attendee["AttendeeId"])


def test_capability_updates_reach_observers(server: ChimeServer, chime: Any) -> None:
    recorder = Recorder()
    server.registry.subscribe(recorder)
    meeting_id = create_meeting(chime)["MeetingId"]
    host, a, b = (
        chime.create_attendee(MeetingId=meeting_id, ExternalUserId=f"u:{n}", Capabilities=SEND_RECEIVE)[
            "Attendee"
        ]["AttendeeId"]
        for n in ("host", "a", "b")
    )
    chime.update_attendee_capabilities(MeetingId=meeting_id, AttendeeId=a, Capabilities=RECEIVE)
    chime.update_attendee_capabilities(MeetingId=meeting_id, AttendeeId=a, Capabilities=RECEIVE)  # no change
    chime.batch_update_attendee_capabilities_except(
        MeetingId=meeting_id, ExcludedAttendeeIds=[{"AttendeeId": host}], Capabilities=RECEIVE
    )
    assert [(kind, x.attendee_id, x.audio) for kind, x in recorder.seen] == [
        ("capabilities_changed", a, "Receive"),
        ("capabilities_changed", b, "Receive"),  # a already had Receive; the host is excluded
    ]
    audio = {x.attendee_id: x.audio for x in server.registry.list_attendees(meeting_id)}
    assert audio == {host: "SendReceive", a: "Receive", b: "Receive"}

    chime.delete_meeting(MeetingId=meeting_id)
    assert recorder.seen[-1][0] == "meeting_deleted" and recorder.seen[-1][1].meeting_id == meeting_id


def test_create_meeting_with_attendees(chime: Any) -> None:
    reply = chime.create_meeting_with_attendees(
        ClientRequestToken="t-with",
        MediaRegion="us-east-1",
        ExternalMeetingId="space-w",
        MeetingFeatures={**AUDIO_ONLY, "Attendee": {"MaxCount": 2}},
        Attendees=[{"ExternalUserId": f"u:{i}", "Capabilities": RECEIVE} for i in range(3)],
    )
    assert shape_errors(chime, "CreateMeetingWithAttendees", reply) == ""
    assert [a["ExternalUserId"] for a in reply["Attendees"]] == ["u:0", "u:1"]
    assert [(e["ExternalUserId"], e["ErrorCode"]) for e in reply["Errors"]] == [("u:2", "LimitExceeded")]


# --------------------------------------------------------------------------- request rules


def test_rate_limit_answers_throttling_past_the_rate() -> None:
    server = ChimeServer(ChimeRules(rate_limits=True, rates={"CreateAttendee": 10}))
    try:
        chime = server.client()
        meeting_id = create_meeting(chime)["MeetingId"]  # CreateMeeting has no rate here
        outcomes = []
        for i in range(15):  # the clock stands still: a burst of 10 is allowed, then none
            try:
                chime.create_attendee(MeetingId=meeting_id, ExternalUserId=f"u:{i}")
                outcomes.append(200)
            except chime.exceptions.ThrottlingException as exc:
                outcomes.append(exc.response["ResponseMetadata"]["HTTPStatusCode"])
        assert outcomes == [200] * 10 + [429] * 5
        server.clock.advance(0.35)  # 10/s: three more
        assert [_try(chime, meeting_id, f"v:{i}") for i in range(4)] == [True, True, True, False]
        assert len(server.registry.attendees(meeting_id)) == 13  # a throttled call changes nothing
    finally:
        server.stop()


def _try(chime: Any, meeting_id: str, user: str) -> bool:
    try:
        chime.create_attendee(MeetingId=meeting_id, ExternalUserId=user)
        return True
    except chime.exceptions.ThrottlingException:
        return False


def test_rate_limits_are_off_by_default(chime: Any) -> None:
    meeting_id = create_meeting(chime)["MeetingId"]
    for i in range(40):
        chime.create_attendee(MeetingId=meeting_id, ExternalUserId=f"u:{i}")


def test_concurrent_create_meeting_with_one_token_conflicts() -> None:
    server = ChimeServer(ChimeRules(create_meeting_seconds=2.0))
    try:
        results: list[str] = []
        clients = [server.client(), server.client()]

        def create(client: Any) -> None:
            try:
                results.append(create_meeting(client, "racing")["MeetingId"])
            except client.exceptions.ConflictException:
                results.append("conflict")

        first = threading.Thread(target=create, args=(clients[0],))
        first.start()
        deadline = time.monotonic() + 5
        while server.chime.count("CreateMeeting") == 0:  # the first is now in progress (2 s)
            assert time.monotonic() < deadline, "the first CreateMeeting never arrived"
            time.sleep(0.01)
        create(clients[1])
        first.join()
        assert results[0] == "conflict" and results[1] != "conflict"
        assert create_meeting(server.client(), "racing")["MeetingId"] == results[1]  # a re-read finds it
    finally:
        server.stop()


def test_injected_faults_answer_with_chime_errors(server: ChimeServer, chime: Any) -> None:
    meeting_id = create_meeting(chime)["MeetingId"]
    server.chime.fail_next("CreateAttendee", "ServiceUnavailable")
    with pytest.raises(chime.exceptions.ServiceUnavailableException):
        chime.create_attendee(MeetingId=meeting_id, ExternalUserId="u:x")
    assert server.registry.attendees(meeting_id) == {}  # nothing changed
    chime.create_attendee(MeetingId=meeting_id, ExternalUserId="u:x")  # only the next call
    with server.chime.failing("GetMeeting", "Forbidden"):
        for _ in range(2):
            with pytest.raises(chime.exceptions.ForbiddenException):
                chime.get_meeting(MeetingId=meeting_id)
    chime.get_meeting(MeetingId=meeting_id)
    assert server.chime.count("CreateAttendee") == 2
    with pytest.raises(ValueError):
        server.chime.fail_next("create_attendee")


# --------------------------------------------------------------------------- meetings ending on their own


def test_a_meeting_with_no_audio_for_five_minutes_ends_with_an_eventbridge_event(server: ChimeServer) -> None:
    chime = server.client()
    meeting_id = create_meeting(chime, "idle")["MeetingId"]
    server.clock.advance(299)
    assert server.registry.tick() == []
    server.clock.advance(2)
    assert [m.meeting_id for m in server.registry.tick()] == [meeting_id]
    with pytest.raises(chime.exceptions.NotFoundException):
        chime.get_meeting(MeetingId=meeting_id)
    (event,) = server.bus.of_type("chime:MeetingEnded", meeting_id)
    assert {k: event[k] for k in ("version", "source", "detail-type", "account", "region", "resources")} == {
        "version": "0",
        "source": "aws.chime",
        "detail-type": "Chime Meeting State Change",
        "account": "123456789012",
        "region": "us-east-1",
        "resources": [],
    }
    assert event["detail"] == {
        "version": "0",
        "eventType": "chime:MeetingEnded",
        "timestamp": int(server.clock.now * 1000),
        "meetingId": meeting_id,
        "externalMeetingId": "space-idle",
        "mediaRegion": "us-east-1",
    }
    assert event["time"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(server.clock.now))


def test_audio_connections_keep_a_meeting_until_thirty_minutes_alone_or_a_day(server: ChimeServer) -> None:
    chime = server.client()
    registry = server.registry
    primary = create_meeting(chime, "live")["MeetingId"]
    replica = create_meeting(chime, "live-r1", PrimaryMeetingId=primary)["MeetingId"]
    host = chime.create_attendee(MeetingId=primary, ExternalUserId="u:host")["Attendee"]["AttendeeId"]
    listener = chime.create_attendee(MeetingId=replica, ExternalUserId="u:l", Capabilities=RECEIVE)[
        "Attendee"
    ]
    registry.audio_connected(host)
    registry.audio_connected(listener["AttendeeId"])  # a replica's connections count for the session
    assert [e["detail"]["attendeeId"] for e in server.bus.of_type("chime:AttendeeJoined")] == [
        host,
        listener["AttendeeId"],
    ]
    server.clock.advance(3600)
    assert registry.tick() == []  # two connections: an hour is fine

    registry.audio_disconnected(listener["AttendeeId"], dropped=True)
    assert len(server.bus.of_type("chime:AttendeeDropped")) == 1
    server.clock.advance(29 * 60)
    assert registry.tick() == []
    server.clock.advance(61)  # fewer than two connections for more than 30 minutes
    assert {m.meeting_id for m in registry.tick()} == {primary, replica}

    day = create_meeting(chime, "day")["MeetingId"]
    a, b = (
        chime.create_attendee(MeetingId=day, ExternalUserId=u)["Attendee"]["AttendeeId"]
        for u in ("u:a", "u:b")
    )
    registry.audio_connected(a)
    registry.audio_connected(b)
    server.clock.advance(24 * 3600 - 1)
    registry.tick()
    assert registry.meeting_exists(day)
    server.clock.advance(1)
    assert [m.meeting_id for m in registry.tick()] == [day]


def test_auto_end_can_be_switched_off(server: ChimeServer) -> None:
    server.registry.auto_end = False
    meeting_id = create_meeting(server.client())["MeetingId"]
    server.clock.advance(2 * 24 * 3600)
    assert server.registry.tick() == [] and server.registry.meeting_exists(meeting_id)


def test_event_patterns_route_events_to_rules() -> None:
    bus = EventBus()
    got: list[str] = []
    pattern = {"source": ["aws.chime"], "detail": {"eventType": ["chime:MeetingEnded"]}}
    bus.add_rule("ended", pattern, lambda event, ctx: got.append(event["detail"]["meetingId"]), lambda: None)
    registry = MediaRegistry(event_sink=bus.put)
    meeting = registry.create_meeting(
        client_request_token="t", media_region="us-east-1", external_meeting_id="s"
    )
    assert got == []  # MeetingStarted does not match
    registry.delete_meeting(meeting.meeting_id)
    assert got == [meeting.meeting_id]
    assert matches(
        {"detail": {"eventType": [{"prefix": "chime:Attendee"}]}},
        {"detail": {"eventType": "chime:AttendeeLeft"}},
    )
    assert not matches(
        {"detail": {"eventType": [{"anything-but": ["chime:MeetingStarted"]}]}},
        {"detail": {"eventType": "chime:MeetingStarted"}},
    )


# --------------------------------------------------------------------------- the app's adapter against it


@pytest.fixture
def adapter(server: ChimeServer, monkeypatch: pytest.MonkeyPatch) -> media.ChimeMediaAdapter:
    """chalicelib's own client factory and adapter, pointed here as the local stack points them."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS", server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return media.ChimeMediaAdapter(media.make_chime_client("us-east-1"))


def test_the_adapters_credentials_carry_the_emulators_placement(
    server: ChimeServer, adapter: media.ChimeMediaAdapter
) -> None:
    meeting = adapter.create_meeting("space-adapter", max_attendees=250)
    attendee = adapter.create_attendee(meeting.meeting_id, "alice", "Receive")
    creds = media.credentials(meeting, attendee)
    assert (
        creds["Meeting"]["MediaPlacement"]["SignalingUrl"] == f"{server.url}/media/whip/{meeting.meeting_id}"
    )
    assert server.registry.attendee_by_token(creds["Attendee"]["JoinToken"]).audio == "Receive"
    # a rejoin is the same attendee, brought to the capability asked for now
    again = adapter.create_attendee(meeting.meeting_id, "alice", "SendReceive")
    assert again.attendee_id == attendee.attendee_id
    assert server.registry.get_attendee(meeting.meeting_id, attendee.attendee_id).audio == "SendReceive"
    # deletes are idempotent for the adapter (NotFound is success), and replicas end with the primary
    replica = adapter.create_meeting(
        "space-adapter-r1", max_attendees=250, primary_meeting_id=meeting.meeting_id
    )
    for _ in range(2):
        adapter.delete_attendee(meeting.meeting_id, attendee.attendee_id)
        adapter.delete_meeting(meeting.meeting_id)
    assert not server.registry.meeting_exists(replica.meeting_id)


def test_a_full_meeting_is_not_retried_but_an_outage_is(
    server: ChimeServer, adapter: media.ChimeMediaAdapter
) -> None:
    """botocore's standard mode retries LimitExceededException as throttling (~15 s of backoff);
    the app's client must not: a full meeting sends the user to a replica at once."""
    meeting = adapter.create_meeting("space-full", max_attendees=1)
    adapter.create_attendee(meeting.meeting_id, "first", "Receive")
    server.chime.reset()
    started = time.monotonic()
    with pytest.raises(media.MediaError) as info:
        adapter.create_attendee(meeting.meeting_id, "second", "Receive")
    assert (info.value.code, info.value.retryable) == ("LimitExceeded", False)
    assert server.chime.count("CreateAttendee") == 1 and time.monotonic() - started < 5

    server.chime.fail_next("CreateAttendee", "ServiceUnavailable", times=2)
    adapter.delete_meeting(meeting.meeting_id)
    other = adapter.create_meeting("space-outage", max_attendees=5)
    server.chime.reset()
    server.chime.fail_next("CreateAttendee", "ServiceUnavailable", times=1)
    adapter.create_attendee(other.meeting_id, "x", "Receive")
    assert server.chime.count("CreateAttendee") == 2  # one failure retried, then success


def test_a_throttled_call_is_tried_twice_not_five_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chime allows ~10 requests/s per operation, account and Region. Five attempts per throttled
    call (botocore's default before) from hundreds of concurrent joins is a retry storm that keeps
    the rate used up; the app's client tries twice and reports Throttling for the caller to map
    to `rate_limited`. https://docs.aws.amazon.com/chime-sdk/latest/dg/quotas-throttling.html"""
    server = ChimeServer(ChimeRules(rate_limits=True, rates={"CreateAttendee": 1}))
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS", server.endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        adapter = media.ChimeMediaAdapter(media.make_chime_client("us-east-1"))
        meeting = adapter.create_meeting("space-throttled", max_attendees=10)
        adapter.create_attendee(meeting.meeting_id, "first", "Receive")  # the bucket's one token
        server.chime.calls.clear()
        with pytest.raises(media.MediaError) as info:
            adapter.create_attendee(meeting.meeting_id, "second", "Receive")
        assert info.value.code == "Throttling"
        assert server.chime.count("CreateAttendee") == 2
    finally:
        server.stop()


def test_a_stack_in_a_region_without_the_chime_api_calls_a_control_region(
    server: ChimeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eu-west-1 hosts Chime meetings but has no Chime SDK Meetings API: a client there cannot
    connect in AWS (the emulator refuses it). The app calls the control Region and asks for
    MediaRegion eu-west-1. https://docs.aws.amazon.com/chime-sdk/latest/dg/chime-sdk-meetings-regions.html"""
    from chalicelib.config import control_region_for

    monkeypatch.setenv("AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS", server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    in_region = media.ChimeMediaAdapter(media.make_chime_client("eu-west-1"), media_region="eu-west-1")
    with pytest.raises(media.MediaError) as info:
        in_region.create_meeting("space-eu", max_attendees=10)
    assert info.value.code == "Forbidden"

    adapter = media.ChimeMediaAdapter(
        media.make_chime_client(control_region_for("eu-west-1")), media_region="eu-west-1"
    )
    meeting = adapter.create_meeting("space-eu", max_attendees=10)
    assert meeting.media_region == "eu-west-1"
    assert server.registry.get_meeting(meeting.meeting_id).media_region == "eu-west-1"


def test_the_adapter_maps_emulator_refusals(server: ChimeServer, adapter: media.ChimeMediaAdapter) -> None:
    with pytest.raises(media.MediaError) as info:
        adapter.create_attendee(UNKNOWN_ID, "alice", "Receive")
    assert (info.value.code, info.value.retryable) == ("NotFound", False)
    with pytest.raises(media.MediaError) as info:
        adapter.update_attendee_audio(UNKNOWN_ID, UNKNOWN_ID, "Receive")
    assert info.value.code == "NotFound"
    with pytest.raises(media.MediaError) as info:
        adapter.create_meeting("space-x", max_attendees=10, primary_meeting_id=UNKNOWN_ID)
    assert info.value.code == "NotFound"


def test_raw_error_responses_carry_the_error_type_header(server: ChimeServer) -> None:
    """What botocore reads: x-amzn-ErrorType and a JSON body with Code and Message."""
    chime = server.client()
    with pytest.raises(chime.exceptions.NotFoundException) as info:
        chime.get_meeting(MeetingId=UNKNOWN_ID)
    headers = info.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-errortype"] == "NotFoundException"
    assert headers["x-amzn-requestid"] == info.value.response["ResponseMetadata"]["RequestId"]
    assert json.loads(json.dumps(info.value.response["Error"]))["Code"] == "NotFoundException"
