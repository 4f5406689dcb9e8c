"""The media port: Chime adapter against the real botocore model (Stubber), pure rules.

(The same adapter against the local stack's Chime emulator: tests/e2e/test_media_chime_api.py.)

Stubber validates parameter names, types, required members and lengths; it does
not check enums or regex patterns, so a hook checks every request we send
against the model's enums and patterns as well.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.model import OperationModel, Shape
from botocore.stub import Stubber
from botocore.validate import ParamValidator

from chalicelib import media
from chalicelib.config import from_environment
from chalicelib.media import (
    AUDIO_CAPABILITIES,
    Attendee,
    ChimeMediaAdapter,
    MediaError,
    Meeting,
    adapter_for,
    audio_capability,
    client_request_token,
    credentials,
    external_user_id,
    get_media,
    make_chime_client,
    user_id_from_external,
)

MEETING_ID = "11111111-2222-3333-4444-555555555555"
REPLICA_ID = "66666666-7777-8888-9999-aaaaaaaaaaaa"
ATTENDEE_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SPACE_ID = "01J9ZQ4Y8W3V2T1S0R9Q8P7N6M"
PLACEMENT = {
    "AudioHostUrl": "abc.k.m3.ue1.app.chime.aws:3478",
    "AudioFallbackUrl": f"wss://haxrp.m3.ue1.app.chime.aws:443/calls/{MEETING_ID}",
    "SignalingUrl": f"wss://signal.m3.ue1.app.chime.aws/control/{MEETING_ID}",
    "TurnControlUrl": "https://ccp.cp.ue1.app.chime.aws/v2/turn_sessions",
    "EventIngestionUrl": "https://data.svc.ue1.ingest.chime.aws/v1/client-events",
}
# Chime's documented ExternalUserId pattern (not in botocore's model).
EXTERNAL_USER_ID_PATTERN = re.compile(r"[-_&@+=,(){}\[\]/«».:|'\"#a-zA-Z0-9À-ÿ\s]*")


# --------------------------------------------------------------------------- model checks


def _model_violations(shape: Shape, value: Any, path: str) -> list[str]:
    """Enum and pattern violations of `value` against `shape` (what Stubber skips)."""
    problems: list[str] = []
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            if name in value:
                problems += _model_violations(member, value[name], f"{path}.{name}")
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            problems += _model_violations(shape.member, item, f"{path}[{i}]")
    elif shape.type_name == "string":
        enum = shape.metadata.get("enum")
        if enum and value not in enum:
            problems.append(f"{path}={value!r} not in {enum}")
        pattern = shape.metadata.get("pattern")
        if pattern and not re.fullmatch(pattern, value):
            problems.append(f"{path}={value!r} does not match {pattern}")
    return problems


@pytest.fixture
def chime_client() -> Iterator[Any]:
    """A real chime-sdk-meetings client that checks enums/patterns of every request it is asked to send."""
    client = boto3.client(
        "chime-sdk-meetings",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    problems: list[str] = []

    def check(params: dict[str, Any], model: OperationModel, **_: Any) -> None:
        problems.extend(_model_violations(model.input_shape, params, model.name))

    client.meta.events.register("before-parameter-build.chime-sdk-meetings.*", check)
    yield client
    assert problems == []


@pytest.fixture
def stub(chime_client: Any) -> Iterator[Stubber]:
    with Stubber(chime_client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def adapter(chime_client: Any) -> ChimeMediaAdapter:
    return ChimeMediaAdapter(chime_client, media_region="us-east-1")


def _features(max_count: int) -> dict[str, Any]:
    return {
        "Audio": {"EchoReduction": "AVAILABLE"},
        "Video": {"MaxResolution": "None"},
        "Content": {"MaxResolution": "None"},
        "Attendee": {"MaxCount": max_count},
    }


def _meeting_response(primary: str | None = None, meeting_id: str = MEETING_ID) -> dict[str, Any]:
    body: dict[str, Any] = {
        "MeetingId": meeting_id,
        "ExternalMeetingId": SPACE_ID,
        "MediaRegion": "us-east-1",
        "MediaPlacement": PLACEMENT,
        "MeetingFeatures": _features(250),
    }
    if primary:
        body["PrimaryMeetingId"] = primary
    return {"Meeting": body}


def _attendee_response(audio: str, external: str = "u:alice") -> dict[str, Any]:
    return {
        "Attendee": {
            "ExternalUserId": external,
            "AttendeeId": ATTENDEE_ID,
            "JoinToken": "secret-join-token",
            "Capabilities": {"Audio": audio, "Video": "None", "Content": "None"},
        }
    }


# --------------------------------------------------------------------------- the service model


def test_model_accepts_the_meeting_features_we_send(chime_client: Any) -> None:
    shape = chime_client.meta.service_model.shape_for("MeetingFeaturesConfiguration")
    assert set(shape.members) == {"Audio", "Video", "Content", "Attendee"}
    assert "AVAILABLE" in shape.members["Audio"].members["EchoReduction"].enum
    assert "None" in shape.members["Video"].members["MaxResolution"].enum
    assert "None" in shape.members["Content"].members["MaxResolution"].enum
    assert shape.members["Attendee"].members["MaxCount"].metadata["max"] == media.MAX_ATTENDEES_PER_MEETING


def test_audio_capability_values_are_the_model_enum(chime_client: Any) -> None:
    enum = chime_client.meta.service_model.shape_for("MediaCapabilities").enum
    assert set(enum) == AUDIO_CAPABILITIES


# --------------------------------------------------------------------------- Chime adapter: requests


@pytest.mark.parametrize(
    ("primary", "max_attendees"),
    [(None, 250), (MEETING_ID, 100)],
    ids=["primary", "replica"],
)
def test_create_meeting_request(
    stub: Stubber, adapter: ChimeMediaAdapter, primary: str | None, max_attendees: int
) -> None:
    expected: dict[str, Any] = {
        "ClientRequestToken": client_request_token(SPACE_ID, primary),
        "MediaRegion": "us-east-1",
        "ExternalMeetingId": SPACE_ID,
        "MeetingFeatures": _features(max_attendees),
    }
    if primary:
        expected["PrimaryMeetingId"] = primary
    meeting_id = REPLICA_ID if primary else MEETING_ID
    stub.add_response("create_meeting", _meeting_response(primary, meeting_id), expected)

    meeting = adapter.create_meeting(SPACE_ID, max_attendees=max_attendees, primary_meeting_id=primary)

    assert meeting == Meeting(meeting_id, SPACE_ID, "us-east-1", PLACEMENT, primary)


def test_create_meeting_token_is_deterministic(stub: Stubber, adapter: ChimeMediaAdapter) -> None:
    token = client_request_token(SPACE_ID, None)
    for _ in range(2):
        stub.add_response(
            "create_meeting",
            _meeting_response(),
            {
                "ClientRequestToken": token,
                "MediaRegion": "us-east-1",
                "ExternalMeetingId": SPACE_ID,
                "MeetingFeatures": _features(250),
            },
        )
        adapter.create_meeting(SPACE_ID, max_attendees=250)
    assert 2 <= len(token) <= 64
    assert client_request_token(SPACE_ID, MEETING_ID) != token
    assert client_request_token(SPACE_ID + "#r1", None) != token


@pytest.mark.parametrize("audio", ["SendReceive", "Receive"])
def test_create_attendee_request(stub: Stubber, adapter: ChimeMediaAdapter, audio: str) -> None:
    stub.add_response(
        "create_attendee",
        _attendee_response(audio),
        {
            "MeetingId": MEETING_ID,
            "ExternalUserId": "u:alice",
            "Capabilities": {"Audio": audio, "Video": "None", "Content": "None"},
        },
    )
    attendee = adapter.create_attendee(MEETING_ID, "alice", audio)
    assert attendee == Attendee(ATTENDEE_ID, "u:alice", "secret-join-token", MEETING_ID, audio)


def test_create_attendee_pads_a_one_char_user_id(stub: Stubber, adapter: ChimeMediaAdapter) -> None:
    stub.add_response(
        "create_attendee",
        _attendee_response("Receive", external="u:x"),
        {
            "MeetingId": MEETING_ID,
            "ExternalUserId": "u:x",
            "Capabilities": {"Audio": "Receive", "Video": "None", "Content": "None"},
        },
    )
    assert adapter.create_attendee(MEETING_ID, "x", "Receive").external_user_id == "u:x"


def test_create_attendee_fixes_capabilities_of_an_existing_attendee(
    stub: Stubber, adapter: ChimeMediaAdapter
) -> None:
    """ExternalUserId is Chime's idempotency key: a rejoin gets the old attendee, with old capabilities."""
    receive = {"Audio": "Receive", "Video": "None", "Content": "None"}
    stub.add_response(
        "create_attendee",
        _attendee_response("SendReceive"),
        {"MeetingId": MEETING_ID, "ExternalUserId": "u:alice", "Capabilities": receive},
    )
    stub.add_response(
        "update_attendee_capabilities",
        _attendee_response("Receive"),
        {"MeetingId": MEETING_ID, "AttendeeId": ATTENDEE_ID, "Capabilities": receive},
    )
    assert adapter.create_attendee(MEETING_ID, "alice", "Receive").audio == "Receive"


@pytest.mark.parametrize("audio", ["SendReceive", "Receive"])
def test_update_attendee_audio_request(stub: Stubber, adapter: ChimeMediaAdapter, audio: str) -> None:
    stub.add_response(
        "update_attendee_capabilities",
        _attendee_response(audio),
        {
            "MeetingId": MEETING_ID,
            "AttendeeId": ATTENDEE_ID,
            "Capabilities": {"Audio": audio, "Video": "None", "Content": "None"},
        },
    )
    adapter.update_attendee_audio(MEETING_ID, ATTENDEE_ID, audio)


def test_delete_requests(stub: Stubber, adapter: ChimeMediaAdapter) -> None:
    stub.add_response("delete_attendee", {}, {"MeetingId": MEETING_ID, "AttendeeId": ATTENDEE_ID})
    stub.add_response("delete_meeting", {}, {"MeetingId": MEETING_ID})
    adapter.delete_attendee(MEETING_ID, ATTENDEE_ID)
    adapter.delete_meeting(MEETING_ID)


@pytest.mark.parametrize(
    "call",
    [
        lambda a: a.create_attendee(MEETING_ID, "alice", "Speak"),
        lambda a: a.update_attendee_audio(MEETING_ID, ATTENDEE_ID, "receive"),
        lambda a: a.create_meeting("x", max_attendees=250),
        lambda a: a.create_meeting(SPACE_ID, max_attendees=251),
        lambda a: a.create_meeting(SPACE_ID, max_attendees=0),
    ],
    ids=["bad-audio-create", "bad-audio-update", "short-space-id", "too-many-attendees", "zero-attendees"],
)
def test_invalid_input_is_refused_before_any_call(
    stub: Stubber, adapter: ChimeMediaAdapter, call: Any
) -> None:
    with pytest.raises(MediaError) as info:
        call(adapter)
    assert (info.value.retryable, info.value.code) == (False, "BadRequest")


# --------------------------------------------------------------------------- Chime adapter: errors

_CREATE_MEETING = (
    "create_meeting",
    lambda a: a.create_meeting(SPACE_ID, max_attendees=250),
)
_CREATE_ATTENDEE = ("create_attendee", lambda a: a.create_attendee(MEETING_ID, "alice", "Receive"))
_UPDATE = (
    "update_attendee_capabilities",
    lambda a: a.update_attendee_audio(MEETING_ID, ATTENDEE_ID, "Receive"),
)
_DELETE_ATTENDEE = ("delete_attendee", lambda a: a.delete_attendee(MEETING_ID, ATTENDEE_ID))
_DELETE_MEETING = ("delete_meeting", lambda a: a.delete_meeting(MEETING_ID))


@pytest.mark.parametrize(
    ("op", "code", "status", "outcome"),
    [
        (_DELETE_MEETING, "NotFoundException", 404, "success"),
        (_DELETE_ATTENDEE, "NotFoundException", 404, "success"),
        (_DELETE_ATTENDEE, "NotFound", 404, "success"),
        (_CREATE_MEETING, "ThrottlingException", 429, "retryable"),
        (_CREATE_ATTENDEE, "ServiceUnavailableException", 503, "retryable"),
        (_UPDATE, "ServiceFailureException", 500, "retryable"),
        (_CREATE_MEETING, "LimitExceededException", 400, "retryable"),
        (_DELETE_MEETING, "ThrottlingException", 429, "retryable"),
        (_UPDATE, "ConflictException", 409, "retryable"),
        (_CREATE_MEETING, "BadRequestException", 400, "fatal"),
        (_CREATE_ATTENDEE, "ForbiddenException", 403, "fatal"),
        (_DELETE_ATTENDEE, "UnauthorizedException", 401, "fatal"),
        (_CREATE_ATTENDEE, "NotFoundException", 404, "fatal"),
        (_UPDATE, "NotFoundException", 404, "fatal"),
        (_CREATE_ATTENDEE, "LimitExceededException", 400, "fatal"),
        (_CREATE_ATTENDEE, "UnprocessableEntityException", 422, "fatal"),
    ],
    ids=lambda v: v[0] if isinstance(v, tuple) else str(v),
)
def test_error_mapping(
    stub: Stubber, adapter: ChimeMediaAdapter, op: Any, code: str, status: int, outcome: str
) -> None:
    method, call = op
    stub.add_client_error(method, service_error_code=code, service_message="nope", http_status_code=status)
    if outcome == "success":
        assert call(adapter) is None
        return
    with pytest.raises(MediaError) as info:
        call(adapter)
    assert info.value.retryable is (outcome == "retryable")
    assert info.value.code == code.removesuffix("Exception")
    assert isinstance(info.value.__cause__, botocore.exceptions.ClientError)


class _RaisingClient:
    """Stands in for the client where Stubber cannot: transport-level failures."""

    class meta:  # mimics boto3 client.meta
        region_name = "us-east-1"

    def __init__(self, exc: Exception) -> None:
        self._exc = exc

    def delete_meeting(self, **_: Any) -> Any:
        raise self._exc


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (botocore.exceptions.EndpointConnectionError(endpoint_url="https://x"), True),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="https://x"), True),
        (botocore.exceptions.ParamValidationError(report="bad"), False),
    ],
    ids=["connect", "read-timeout", "param-validation"],
)
def test_transport_errors(exc: Exception, retryable: bool) -> None:
    with pytest.raises(MediaError) as info:
        ChimeMediaAdapter(_RaisingClient(exc)).delete_meeting(MEETING_ID)
    assert info.value.retryable is retryable


def test_non_botocore_errors_propagate() -> None:
    with pytest.raises(KeyError):
        ChimeMediaAdapter(_RaisingClient(KeyError("bug"))).delete_meeting(MEETING_ID)


def test_make_chime_client_config() -> None:
    client = make_chime_client("eu-central-1")
    config = client.meta.config
    assert client.meta.region_name == "eu-central-1"
    assert client.meta.service_model.service_name == "chime-sdk-meetings"
    # Two attempts in all, not five: at Chime's ~10 requests/s a throttled call retried from every
    # concurrent join only deepens the throttling. LimitExceededException is not retried at all
    # (tests/e2e/test_media_chime_api.py counts the attempts at the emulator).
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}
    assert (config.connect_timeout, config.read_timeout) == (2, 5)


# --------------------------------------------------------------------------- Regions


@pytest.mark.parametrize(
    ("stack_region", "control", "media_region"),
    [
        ("us-east-1", "us-east-1", "us-east-1"),
        ("eu-central-1", "eu-central-1", "eu-central-1"),
        # no Chime SDK Meetings API in eu-west-1 (botocore has no endpoint there): the control
        # plane's home Region takes the calls, the meetings are still hosted in eu-west-1
        ("eu-west-1", "us-east-1", "eu-west-1"),
    ],
)
def test_the_control_region_has_the_api_and_meetings_are_hosted_in_the_stacks_region(
    fresh_media: pytest.MonkeyPatch, stack_region: str, control: str, media_region: str
) -> None:
    import boto3

    from chalicelib.config import CHIME_CONTROL_REGIONS

    assert set(boto3.session.Session().get_available_regions("chime-sdk-meetings")) == CHIME_CONTROL_REGIONS
    fresh_media.setenv("AWS_REGION", stack_region)
    for name in ("CHIME_CONTROL_REGION", "MEDIA_REGION"):
        fresh_media.delenv(name, raising=False)
    # from the environment as read now, not the process's cached settings: a local stack may run
    # in this process (pytest-xdist mixes unit and e2e files) and cache them at any moment
    port = adapter_for(from_environment())
    client = port._client
    assert client.meta.region_name == control
    with Stubber(client) as stub:
        params = {
            "ClientRequestToken": client_request_token(SPACE_ID, None),
            "MediaRegion": media_region,
            "ExternalMeetingId": SPACE_ID,
            "MeetingFeatures": _features(250),
        }
        stub.add_response("create_meeting", _meeting_response(), params)
        port.create_meeting(SPACE_ID, max_attendees=250)
        stub.assert_no_pending_responses()


def test_a_space_can_be_hosted_in_another_media_region(stub: Stubber, adapter: ChimeMediaAdapter) -> None:
    params = {
        "ClientRequestToken": client_request_token(SPACE_ID, None),
        "MediaRegion": "ap-south-1",
        "ExternalMeetingId": SPACE_ID,
        "MeetingFeatures": _features(250),
    }
    stub.add_response("create_meeting", _meeting_response(), params)
    adapter.create_meeting(SPACE_ID, max_attendees=250, media_region="ap-south-1")


def test_the_control_region_can_be_chosen(fresh_media: pytest.MonkeyPatch) -> None:
    fresh_media.setenv("AWS_REGION", "eu-west-1")
    fresh_media.setenv("CHIME_CONTROL_REGION", "eu-central-1")
    fresh_media.setenv("MEDIA_REGION", "eu-west-2")
    settings = from_environment()
    assert (settings.chime_control_region, settings.media_region) == ("eu-central-1", "eu-west-2")


# --------------------------------------------------------------------------- BatchCreateAttendee


def test_create_attendees_is_one_batch_call_with_per_item_errors(
    stub: Stubber, adapter: ChimeMediaAdapter
) -> None:
    receive = {"Audio": "Receive", "Video": "None", "Content": "None"}
    stub.add_response(
        "batch_create_attendee",
        {
            "Attendees": [
                {
                    "ExternalUserId": "p:0.0",
                    "AttendeeId": ATTENDEE_ID,
                    "JoinToken": "t0",
                    "Capabilities": receive,
                }
            ],
            "Errors": [{"ExternalUserId": "p:0.1", "ErrorCode": "LimitExceeded", "ErrorMessage": "full"}],
        },
        {
            "MeetingId": MEETING_ID,
            "Attendees": [
                {"ExternalUserId": "p:0.0", "Capabilities": receive},
                {"ExternalUserId": "p:0.1", "Capabilities": receive},
            ],
        },
    )
    out = adapter.create_attendees(MEETING_ID, ["p:0.0", "p:0.1"], "Receive")
    first, second = out["p:0.0"], out["p:0.1"]
    assert isinstance(first, media.Attendee) and first.join_token == "t0"
    assert isinstance(second, media.MediaError) and second.code == "LimitExceeded"


def test_create_attendees_refuses_more_than_a_hundred_before_any_call(adapter: ChimeMediaAdapter) -> None:
    with pytest.raises(media.MediaError) as refused:
        adapter.create_attendees(MEETING_ID, [f"p:0.{i}" for i in range(101)], "Receive")
    assert refused.value.code == "BadRequest"


def test_a_create_meeting_conflict_asks_again_for_the_same_meeting(
    stub: Stubber, adapter: ChimeMediaAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent CreateMeeting calls with one ClientRequestToken: Chime may answer the later one
    ConflictException. Asking again with the same token returns the meeting, not a failed join."""
    monkeypatch.setattr(media.time, "sleep", lambda s: None)
    stub.add_client_error("create_meeting", "ConflictException", "same request", 409)
    stub.add_response("create_meeting", _meeting_response())
    assert adapter.create_meeting(SPACE_ID, max_attendees=250).meeting_id == MEETING_ID


# --------------------------------------------------------------------------- pure rules


@pytest.mark.parametrize(
    ("role", "muted", "expected"),
    [
        ("host", False, "SendReceive"),
        ("host", True, "Receive"),
        ("cohost", False, "SendReceive"),
        ("cohost", True, "Receive"),
        ("speaker", False, "SendReceive"),
        ("speaker", True, "Receive"),
        ("listener", False, "Receive"),
        ("listener", True, "Receive"),
    ],
)
def test_audio_capability(role: str, muted: bool, expected: str) -> None:
    assert audio_capability(role, muted) == expected


def test_audio_capability_rejects_unknown_role() -> None:
    with pytest.raises(ValueError):
        audio_capability("admin", False)


@pytest.mark.parametrize(
    ("user_id", "expected_prefix"),
    [
        ("x", "u:"),
        ("3f1c2d4e-1111-2222-3333-444455556666", "u:"),
        ("google-oauth2|1234567890", "u:"),
        ("şükrü.öztürk", "b:"),
        ("a b", "b:"),
        ("y" * 62, "u:"),
        ("y" * 63, "h:"),
        ("z" * 200, "h:"),
    ],
    ids=["one-char", "uuid", "pipe", "turkish", "space", "62", "63", "long"],
)
def test_external_user_id(user_id: str, expected_prefix: str) -> None:
    external = external_user_id(user_id)
    assert external.startswith(expected_prefix)
    assert 2 <= len(external) <= 64
    assert EXTERNAL_USER_ID_PATTERN.fullmatch(external)
    assert external == external_user_id(user_id)
    assert user_id_from_external(external) == (None if expected_prefix == "h:" else user_id)


def test_credentials_shape_is_valid_chime_json(chime_client: Any) -> None:
    model = chime_client.meta.service_model
    meeting = Meeting(REPLICA_ID, SPACE_ID + "#r1", "us-east-1", PLACEMENT, MEETING_ID)
    attendee = Attendee(ATTENDEE_ID, "u:alice", "secret-join-token", REPLICA_ID, "Receive")

    creds = credentials(meeting, attendee)

    assert set(creds) == {"Meeting", "Attendee"}
    for key in ("Meeting", "Attendee"):
        report = ParamValidator().validate(creds[key], model.shape_for(key))
        assert not report.has_errors(), report.generate_report()
        assert _model_violations(model.shape_for(key), creds[key], key) == []
    assert creds["Meeting"]["MediaPlacement"] == PLACEMENT
    assert creds["Meeting"]["PrimaryMeetingId"] == MEETING_ID
    assert creds["Attendee"] == {
        "AttendeeId": ATTENDEE_ID,
        "ExternalUserId": "u:alice",
        "JoinToken": "secret-join-token",
        "Capabilities": {"Audio": "Receive", "Video": "None", "Content": "None"},
    }


# --------------------------------------------------------------------------- selection


@pytest.fixture
def fresh_media(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    # Through the modules as they are now: an e2e stack in the same session may have
    # re-imported chalicelib.config since this file was imported.
    def forget() -> None:
        importlib.import_module("chalicelib.config").get_settings.cache_clear()
        importlib.import_module("chalicelib.media").reset_media()

    forget()
    yield monkeypatch
    monkeypatch.undo()
    forget()


def test_get_media_builds_one_chime_adapter(fresh_media: pytest.MonkeyPatch) -> None:
    fresh_media.setenv("AWS_REGION", "eu-west-2")
    port = get_media()
    assert isinstance(port, ChimeMediaAdapter)
    assert get_media() is port


def test_the_chime_client_honours_the_service_endpoint_variable(fresh_media: pytest.MonkeyPatch) -> None:
    """How the local stack points the app's unchanged adapter at its Chime emulator."""
    fresh_media.delenv("AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS", raising=False)
    fresh_media.delenv("AWS_ENDPOINT_URL", raising=False)  # the local stack sets it for moto
    assert (
        make_chime_client("us-east-1").meta.endpoint_url == "https://meetings-chime.us-east-1.amazonaws.com"
    )
    fresh_media.setenv("AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS", "http://127.0.0.1:9/_aws/chime-sdk-meetings")
    assert make_chime_client("us-east-1").meta.endpoint_url == "http://127.0.0.1:9/_aws/chime-sdk-meetings"
