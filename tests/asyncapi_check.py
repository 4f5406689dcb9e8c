"""Check WebSocket messages against docs/asyncapi.yaml.

    from asyncapi_check import validate_server_message, validate_command

    validate_server_message(frame)   # AssertionError saying what is wrong, if anything
    validate_command({"action": "hand.raise", "ref": "c1", "space_id": "sp1"})

The schema for a server message is picked by its `type` (reply, error, event;
an event by its `event` name, and an unknown name fails); a frame with no
`type` must be API Gateway's own error frame. A command's schema is picked by
its `action`. The schemas are the document's components/schemas (JSON Schema
draft-07, as AsyncAPI 2.6 uses it), with `pattern` read as ECMA-262 does: `$`
is the very end of the string, not "before a final newline" as in Python.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema import Draft7Validator, ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT7

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"
DOC_URI = "urn:sohbet:asyncapi"
SCHEMAS = "#/components/schemas/"
GATEWAY_ERROR_KEYS = frozenset({"message", "connectionId", "requestId"})
_MAX_LISTED = 5


@functools.lru_cache(maxsize=1)
def load_document() -> dict[str, Any]:
    """The whole AsyncAPI document."""
    doc = yaml.safe_load(DOC_PATH.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), f"{DOC_PATH} is not a YAML mapping"
    return doc


def load_schemas() -> dict[str, Any]:
    """components/schemas: JSON Schemas by name (their $refs point into the document)."""
    schemas = load_document()["components"]["schemas"]
    assert isinstance(schemas, dict)
    return schemas


def _ref_name(ref: str, prefix: str) -> str:
    assert ref.startswith(prefix), f"expected a $ref under {prefix}, got {ref}"
    return ref[len(prefix) :]


def _channel_messages(operation: str) -> dict[str, str]:
    """{message name: payload schema name} for the channel's publish or subscribe operation."""
    doc = load_document()
    out: dict[str, str] = {}
    for channel in doc["channels"].values():
        op = channel.get(operation)
        if not op:
            continue
        message = op["message"]
        refs = message.get("oneOf", [message])
        for item in refs:
            key = _ref_name(item["$ref"], "#/components/messages/")
            msg = doc["components"]["messages"][key]
            out[msg["name"]] = _ref_name(msg["payload"]["$ref"], SCHEMAS)
    return out


@functools.lru_cache(maxsize=1)
def command_schemas() -> dict[str, str]:
    """{action: schema name} for every client-to-server command in the document."""
    return _channel_messages("publish")


@functools.lru_cache(maxsize=1)
def server_schemas() -> dict[str, str]:
    """{message name: schema name} for server-to-client messages: reply, error, gateway_error, events."""
    return _channel_messages("subscribe")


def event_schemas() -> dict[str, str]:
    """{event name: schema name}."""
    return {k: v for k, v in server_schemas().items() if k not in ("reply", "error", "gateway_error")}


@functools.lru_cache(maxsize=256)
def _python_pattern(pattern: str) -> re.Pattern[str]:
    # ECMA-262 `$` (no multiline flag) matches only at the end; Python's also before a final "\n".
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _python_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = jsonschema.validators.extend(Draft7Validator, {"pattern": _ecma_pattern})


@functools.lru_cache(maxsize=1)
def _registry() -> Registry[Any]:
    return Registry().with_resource(DOC_URI, DRAFT7.create_resource(load_document()))


@functools.lru_cache(maxsize=128)
def validator(schema_name: str) -> Any:
    """A draft-07 validator for components/schemas/<schema_name>."""
    assert schema_name in load_schemas(), f"no schema {schema_name!r} in {DOC_PATH.name}"
    return Validator({"$ref": f"{DOC_URI}{SCHEMAS}{schema_name}"}, registry=_registry())


def _explain(error: ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "<message>"
    if error.validator == "not" and error.validator_value == {"required": ["seq"]}:
        return f"{where}: a private event must not carry seq"
    return f"{where}: {error.message}"


def errors(schema_name: str, instance: Any) -> list[str]:
    """What is wrong with `instance` under the named schema ([] if it is valid)."""
    found = sorted(
        validator(schema_name).iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]
    )
    return [_explain(e) for e in found]


def _fail(kind: str, schema_name: str, msg: Any, problems: list[str]) -> None:
    listed = "\n  ".join(problems[:_MAX_LISTED])
    more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    shown = json.dumps(msg, ensure_ascii=False, default=str)
    if len(shown) > 600:
        shown = shown[:600] + "..."
    raise AssertionError(
        f"{kind} does not match {DOC_PATH.name} ({schema_name}):\n  {listed}{more}\nmessage: {shown}"
    )


def server_schema_for(msg: Any) -> str:
    """The schema name a server-to-client message must match; AssertionError if there is none."""
    assert isinstance(msg, dict), f"a server message must be a JSON object, got {type(msg).__name__}: {msg!r}"
    kind = msg.get("type")
    if kind is None and msg.keys() >= GATEWAY_ERROR_KEYS:
        return server_schemas()["gateway_error"]
    if kind in ("reply", "error"):
        return server_schemas()[kind]
    if kind == "event":
        name = msg.get("event")
        events = event_schemas()
        assert name in events, f"unknown event {name!r} (not in {DOC_PATH.name}): {msg!r}"
        return events[name]
    raise AssertionError(f"unknown server message type {kind!r}: {msg!r}")


def validate_server_message(msg: Any) -> None:
    """AssertionError unless `msg` (a parsed server-to-client frame) matches the document."""
    schema_name = server_schema_for(msg)
    problems = errors(schema_name, msg)
    if problems:
        _fail("server message", schema_name, msg, problems)


def validate_command(msg: Any) -> None:
    """AssertionError unless `msg` (a parsed client-to-server frame) is a command the document allows."""
    assert isinstance(msg, dict), f"a command must be a JSON object, got {type(msg).__name__}: {msg!r}"
    action = msg.get("action")
    commands = command_schemas()
    assert isinstance(action, str) and action in commands, f"unknown action {action!r}: {msg!r}"
    schema_name = commands[action]
    problems = errors(schema_name, msg)
    if problems:
        _fail("command", schema_name, msg, problems)


def is_valid_command(msg: Any) -> bool:
    try:
        validate_command(msg)
    except AssertionError:
        return False
    return True


def is_valid_server_message(msg: Any) -> bool:
    try:
        validate_server_message(msg)
    except AssertionError:
        return False
    return True
