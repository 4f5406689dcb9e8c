"""docs/asyncapi.yaml against chalicelib/protocol.py: same commands, same codes, same validation."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from asyncapi_check import (
    command_schemas,
    event_schemas,
    is_valid_command,
    is_valid_server_message,
    load_document,
    load_schemas,
    server_schemas,
    validate_command,
    validate_server_message,
)
from jsonschema import Draft7Validator

from chalicelib import protocol
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.protocol import COMMAND_NAMES

BROADCAST = {
    "stage.changed",
    "listeners.count",
    "reactions",
    "settings.changed",
    "recording.changed",
    "captions.changed",
    "space.ended",
    "host.away",
    "host.back",
    "media.renewed",
}
PRIVATE = {
    "hand.raised",
    "hand.lowered",
    "hand.denied",
    "speaker.invited",
    "invite.declined",
    "participant.removed",
    "session.replaced",
    "user.warned",
    "notification",
    "media.moved",
    "media.promoted",
    "media.demoted",
}


def _models() -> dict[str, type[protocol.Command]]:
    union = typing.get_args(protocol.AnyCommand)[0]
    return {m.model_fields["action"].annotation.__args__[0]: m for m in typing.get_args(union)}


def _schema(name: str) -> dict[str, Any]:
    schema = load_schemas()[name]
    assert isinstance(schema, dict)
    return schema


def _event_part(name: str) -> dict[str, Any]:
    """The event-specific half of an event schema (allOf: [envelope, this])."""
    return _schema(event_schemas()[name])["allOf"][1]


# -- the document itself -------------------------------------------------------


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_document_parses_and_every_ref_resolves() -> None:
    doc = load_document()
    assert doc["asyncapi"] == "2.6.0"
    assert doc["servers"]["production"]["protocol"] == "wss"
    assert doc["servers"]["local"]["protocol"] == "ws"
    assert doc["servers"]["local"]["url"] == "127.0.0.1:8000"
    assert doc["components"]["securitySchemes"]["token"] == {
        **doc["components"]["securitySchemes"]["token"],
        "type": "httpApiKey",
        "in": "query",
        "name": "token",
    }
    query = doc["channels"]["/"]["bindings"]["ws"]["query"]
    assert set(query["properties"]) == {"ticket", "token"} and query["minProperties"] == 1
    refs = _refs(doc)
    assert len(refs) > 50
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"unresolvable $ref {ref}"
            node = node[part]


def test_every_schema_is_valid_draft7() -> None:
    for name, schema in load_schemas().items():
        try:
            Draft7Validator.check_schema(schema)
        except Exception as exc:
            raise AssertionError(f"components/schemas/{name}: {exc}") from exc


def test_message_names_match_payload_consts() -> None:
    for action, schema_name in command_schemas().items():
        assert _schema(schema_name)["properties"]["action"] == {"const": action}, schema_name
    for event in event_schemas():
        assert _event_part(event)["properties"]["event"] == {"const": event}, event
    assert {"reply", "error", "gateway_error"} <= server_schemas().keys()


# -- protocol.py and the document agree ------------------------------------------


def test_every_command_is_documented_and_vice_versa() -> None:
    assert set(command_schemas()) == set(COMMAND_NAMES)


def test_command_fields_and_required_fields_match_the_models() -> None:
    for action, model in _models().items():
        schema = _schema(command_schemas()[action])
        assert schema["additionalProperties"] is False, action
        assert set(schema["properties"]) == set(model.model_fields), action
        required = {name for name, f in model.model_fields.items() if f.is_required()}
        assert set(schema["required"]) == required, action


def test_error_codes_match_exactly() -> None:
    assert _schema("ErrorCode")["enum"] == [code.value for code in ErrorCode]
    assert "fixed" in _schema("ErrorCode")["description"]
    assert "fixed" in load_document()["info"]["description"]


def test_documented_events_and_their_delivery() -> None:
    assert set(event_schemas()) == BROADCAST | PRIVATE
    for event in BROADCAST:
        assert _schema(event_schemas()[event])["allOf"][0] == {"$ref": "#/components/schemas/BroadcastEvent"}
    for event in PRIVATE:
        assert _schema(event_schemas()[event])["allOf"][0] == {"$ref": "#/components/schemas/PrivateEvent"}


# -- server messages -------------------------------------------------------------

STAGE = [
    {"user_id": "ada", "role": "host", "present": True, "muted": False, "muted_by": None},
    {
        "user_id": "bob",
        "role": "speaker",
        "present": True,
        "muted": True,
        "muted_by": "host",
        "audio_state": "joined",
    },
    {"user_id": "cy", "role": "cohost", "present": False, "muted": True, "muted_by": "self", "extra": 1},
]
EVENT_PAYLOADS: dict[str, dict[str, Any]] = {
    "stage.changed": {"stage": STAGE, "reason": "approved", "user_id": "bob"},
    "listeners.count": {"listener_count": 10, "participant_count": 12},
    "reactions": {
        "counts": {"🔥": 12, "👏": 3},
        "total": 15,
        "recent": [{"user_id": "bob", "emoji": "🔥"}, {"user_id": "cy", "emoji": "👏"}],
    },
    "settings.changed": {"settings": {"speak_policy": "invited", "handover": True, "title": "t"}},
    "space.ended": {"reason": "ended_by_host"},
    "recording.changed": {"recording": True, "started_at": "2026-12-03T06:00:00.000000Z"},
    "captions.changed": {"captions": False, "lang": None},
    "host.away": {"grace_deadline": 1767225600.5},
    "host.back": {},
    "media.renewed": {"generation": 2},
    "hand.raised": {"user_id": "bob"},
    "hand.lowered": {"user_id": "bob"},
    "hand.denied": {},
    "speaker.invited": {"by": "ada"},
    "invite.declined": {"user_id": "bob"},
    "participant.removed": {},
    "session.replaced": {},
    "user.warned": {"reason": "spam"},
    "notification": {
        "notification": {
            "id": "sp1:live",
            "kind": "live",
            "space_id": "sp1",
            "title": "t",
            "actor_id": "ada",
            "scheduled_start": None,
            "created_at": "2026-12-01T18:00:00.000000Z",
            "read": False,
        }
    },
    "media.moved": {
        "media": {
            "Meeting": {
                "MeetingId": "m1",
                "MediaRegion": "us-east-1",
                "MediaPlacement": {"SignalingUrl": "http://127.0.0.1:8000/media/whip/m1"},
            },
            "Attendee": {
                "AttendeeId": "a1",
                "ExternalUserId": "u:bob",
                "JoinToken": "x",
                "Capabilities": {"Audio": "Receive", "Video": "None", "Content": "None"},
            },
        }
    },
}
EVENT_PAYLOADS["media.promoted"] = {"media": EVENT_PAYLOADS["media.moved"]["media"]}
EVENT_PAYLOADS["media.demoted"] = {}


def _event(name: str, **over: Any) -> dict[str, Any]:
    seq = 7 if name in BROADCAST else None
    return {**protocol.event(name, "sp1", seq, **EVENT_PAYLOADS[name]), **over}


def test_event_samples_cover_every_event() -> None:
    assert set(EVENT_PAYLOADS) == set(event_schemas())


@pytest.mark.parametrize("name", sorted(EVENT_PAYLOADS))
def test_events_from_the_builder_validate(name: str) -> None:
    validate_server_message(_event(name))
    # servers may add fields to events
    validate_server_message(_event(name, added_later="x"))


def test_private_events_may_omit_space_id() -> None:
    validate_server_message(protocol.event("session.replaced", None, None))
    validate_server_message(protocol.event("user.warned", None, None, reason="spam"))


def test_replies_and_errors_from_the_builders_validate() -> None:
    validate_server_message(protocol.reply("c1", {"seq": 3}))
    validate_server_message(protocol.reply(None))
    for code in ErrorCode:
        validate_server_message(protocol.error("c1", code, "no"))
        validate_server_message(protocol.error(None, code, "no", {"retry_after": 2}))
    validate_server_message(protocol.error("c1", ErrorCode.CONFLICT, "no", {}))
    validate_server_message({"message": "Internal server error", "connectionId": "abc=", "requestId": "r-1"})


BAD_SERVER_MESSAGES: list[tuple[str, Any]] = [
    ("not an object", ["reply"]),
    ("no type", {"ref": "c1", "ok": True, "data": {}}),
    ("unknown type", {"type": "notice", "message": "hi"}),
    ("reply ok false", {**protocol.reply("c1"), "ok": False}),
    ("reply without data", {"type": "reply", "ref": "c1", "ok": True}),
    ("reply extra field", {**protocol.reply("c1"), "extra": 1}),
    ("reply ref too long", protocol.reply("r" * 65)),
    ("error unknown code", {"type": "error", "ref": "c1", "code": "forbidden", "message": "no"}),
    ("error without message", {"type": "error", "ref": "c1", "code": "internal"}),
    ("error empty data", {**protocol.error("c1", ErrorCode.INTERNAL, "x"), "data": {}}),
    ("error data not object", {**protocol.error("c1", ErrorCode.INTERNAL, "x"), "data": "x"}),
    ("gateway error without requestId", {"message": "Forbidden", "connectionId": "abc="}),
    ("unknown event", protocol.event("stage.exploded", "sp1", 3)),
    ("event without name", {"type": "event", "space_id": "sp1", "seq": 1}),
    ("broadcast seq null", _event("stage.changed", seq=None)),
    ("broadcast missing seq", {k: v for k, v in _event("reactions").items() if k != "seq"}),
    ("broadcast missing space_id", {k: v for k, v in _event("reactions").items() if k != "space_id"}),
    ("seq zero", _event("host.back", seq=0)),
    ("seq string", _event("host.back", seq="7")),
    ("seq float", _event("host.back", seq=7.5)),
    ("private event with seq", _event("hand.raised", seq=3)),
    ("bad space_id", _event("hand.denied", space_id="a b")),
    ("stage not a list", _event("stage.changed", stage={})),
    ("stage bad role", _event("stage.changed", stage=[{**STAGE[0], "role": "listener"}])),
    ("stage bad muted_by", _event("stage.changed", stage=[{**STAGE[0], "muted_by": "cohost"}])),
    ("stage bad audio_state", _event("stage.changed", stage=[{**STAGE[0], "audio_state": "connected"}])),
    ("stage member missing present", _event("stage.changed", stage=[{"user_id": "a", "role": "host"}])),
    ("stage without reason", {k: v for k, v in _event("stage.changed").items() if k != "reason"}),
    ("count negative", _event("listeners.count", listener_count=-1)),
    ("count not int", _event("listeners.count", participant_count="3")),
    ("hand.raised without user_id", _event("hand.raised", user_id=None)),
    ("reactions emoji too long", _event("reactions", counts={"x" * 17: 1})),
    ("reactions count zero", _event("reactions", counts={"🔥": 0})),
    ("reactions no counts", _event("reactions", counts={})),
    ("reactions total missing", {k: v for k, v in _event("reactions").items() if k != "total"}),
    (
        "reactions six recent",
        _event("reactions", recent=[{"user_id": f"u{i}", "emoji": "🔥"} for i in range(6)]),
    ),
    ("reactions recent without user", _event("reactions", recent=[{"emoji": "🔥"}])),
    ("settings not object", _event("settings.changed", settings=[])),
    ("grace_deadline string", _event("host.away", grace_deadline="soon")),
    ("speaker.invited without by", {k: v for k, v in _event("speaker.invited").items() if k != "by"}),
    ("media not object", _event("media.moved", media="m")),
    (
        "media without Attendee",
        _event("media.moved", media={"Meeting": EVENT_PAYLOADS["media.moved"]["media"]["Meeting"]}),
    ),
    (
        "media signaling over ftp",
        _event(
            "media.moved",
            media={
                **EVENT_PAYLOADS["media.moved"]["media"],
                "Meeting": {
                    **EVENT_PAYLOADS["media.moved"]["media"]["Meeting"],
                    "MediaPlacement": {"SignalingUrl": "ftp://x"},
                },
            },
        ),
    ),
]


@pytest.mark.parametrize(("label", "message"), BAD_SERVER_MESSAGES, ids=[b[0] for b in BAD_SERVER_MESSAGES])
def test_bad_server_messages_fail(label: str, message: Any) -> None:
    with pytest.raises(AssertionError):
        validate_server_message(message)
    assert not is_valid_server_message(message)


def test_failure_message_says_what_is_wrong() -> None:
    with pytest.raises(AssertionError, match="a private event must not carry seq"):
        validate_server_message(_event("hand.raised", seq=3))
    with pytest.raises(AssertionError, match=r"unknown event 'stage\.exploded'"):
        validate_server_message(protocol.event("stage.exploded", "sp1", 3))
    with pytest.raises(AssertionError, match=r"code: 'forbidden' is not one of"):
        validate_server_message({"type": "error", "ref": None, "code": "forbidden", "message": "no"})


# -- commands: pydantic and JSON Schema accept the same messages ---------------

FILL = {"space_id": "sp_1.a:b-c", "user_id": "bob", "emoji": "👏", "category": "spam", "on": True}


def _base(action: str) -> dict[str, Any]:
    model = _models()[action]
    msg: dict[str, Any] = {"action": action, "ref": "r1"}
    for name, f in model.model_fields.items():
        if f.is_required() and name != "action":
            msg[name] = FILL[name]
    return msg


def _without(msg: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in msg.items() if k != key}


ID_VALUES: list[Any] = [
    "a",
    "x" * 64,
    "A-Z_a.z:0-9",
    "",
    "x" * 65,
    "a b",
    "ü",
    "abc\n",
    "a/b",
    123,
    None,
    ["a"],
]
OPTIONAL_VALUES: dict[str, list[Any]] = {
    "speak_policy": ["everyone", "following", "invited", None, "all", "", 1],
    "handover": [True, False, None],
    "title": ["t", "t" * 70, "t" * 71, "", None, 5],
    "emoji": ["🔥", "❤️", "x" * 16, "x" * 17, "", None, 5],
    "category": ["spam", "self_harm", "other", "nope", "", None],
    "note": ["", "n" * 500, "n" * 501, None, 5],
}


def command_samples() -> list[tuple[str, dict[str, Any]]]:
    samples: list[tuple[str, dict[str, Any]]] = []
    for action in sorted(COMMAND_NAMES):
        base = _base(action)
        model = _models()[action]
        samples += [
            (f"{action} valid", base),
            (f"{action} no ref", _without(base, "ref")),
            (f"{action} ref null", {**base, "ref": None}),
            (f"{action} ref 64", {**base, "ref": "r" * 64}),
            (f"{action} ref 65", {**base, "ref": "r" * 65}),
            (f"{action} ref empty", {**base, "ref": ""}),
            (f"{action} ref int", {**base, "ref": 5}),
            (f"{action} extra field", {**base, "extra": 1}),
            (f"{action} no action", _without(base, "action")),
            (f"{action} action typo", {**base, "action": action + "x"}),
            (f"{action} action int", {**base, "action": 1}),
        ]
        if "space_id" not in model.model_fields:
            samples.append((f"{action} stray space_id", {**base, "space_id": "sp1"}))
        for field in ("space_id", "user_id"):
            if field not in model.model_fields:
                continue
            samples.append((f"{action} missing {field}", _without(base, field)))
            samples += [(f"{action} {field}={v!r}", {**base, field: v}) for v in ID_VALUES]
        for field, values in OPTIONAL_VALUES.items():
            if field in model.model_fields:
                samples.append((f"{action} missing {field}", _without(base, field)))
                samples += [(f"{action} {field}={v!r}", {**base, field: v}) for v in values]
    samples += [
        ("not an object", ["ping"]),  # type: ignore[list-item]
        ("settings all at once", {**_base("settings.update"), "speak_policy": "invited", "handover": True}),
        ("report full", {**_base("report.send"), "user_id": "eve", "note": "long story"}),
    ]
    return samples


SAMPLES = command_samples()


def _pydantic_accepts(msg: Any) -> bool:
    try:
        protocol.parse_command(json.dumps(msg))
    except CommandError:
        return False
    return True


def test_samples_include_both_outcomes() -> None:
    outcomes = [_pydantic_accepts(msg) for _, msg in SAMPLES]
    assert len(SAMPLES) > 300
    assert outcomes.count(True) > 50 and outcomes.count(False) > 200


@pytest.mark.parametrize(("label", "msg"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_pydantic_and_schema_agree(label: str, msg: Any) -> None:
    pydantic_ok, schema_ok = _pydantic_accepts(msg), is_valid_command(msg)
    assert pydantic_ok == schema_ok, f"pydantic {'accepts' if pydantic_ok else 'refuses'}, schema does not"


def test_handover_accepts_only_booleans() -> None:
    for value in (1, 0, "true", "yes", "off"):
        msg = {**_base("settings.update"), "handover": value}
        assert not is_valid_command(msg)
        assert not _pydantic_accepts(msg), f"pydantic accepts handover={value!r}"


def test_validate_command_names_the_problem() -> None:
    with pytest.raises(AssertionError, match=r"unknown action 'hand\.wave'"):
        validate_command({"action": "hand.wave", "space_id": "sp1"})
    with pytest.raises(AssertionError, match="'space_id' is a required property"):
        validate_command({"action": "hand.raise", "ref": "c1"})
    with pytest.raises(AssertionError, match="'x' was unexpected"):
        validate_command({"action": "ping", "x": 1})
