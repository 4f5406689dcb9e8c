"""JSON nesting depth: a pure rule, checked without AWS (defect 6)."""

from __future__ import annotations

import pytest

from chalicelib import protocol
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.jsonin import MAX_JSON_DEPTH, load_json


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [5000, 100_000])
def test_parse_command_refuses_deep_nesting_as_bad_request(depth: int) -> None:
    with pytest.raises(CommandError) as caught:
        protocol.parse_command('{"action": "ping", "x": ' + _nested(depth) + "}")
    assert caught.value.code == ErrorCode.BAD_REQUEST
    assert "nested" in caught.value.message


def test_parse_command_refuses_nesting_past_the_documented_limit() -> None:
    deep = MAX_JSON_DEPTH + 1
    with pytest.raises(CommandError) as caught:
        protocol.parse_command('{"action": "ping", "x": ' + _nested(deep - 1) + "}")
    assert "nested" in caught.value.message
    with pytest.raises(CommandError) as caught:  # within the limit: judged on content
        protocol.parse_command('{"action": "ping", "x": ' + _nested(deep - 2) + "}")
    assert "nested" not in caught.value.message


def test_load_json_gives_value_error_not_recursion_error() -> None:
    with pytest.raises(ValueError):
        load_json(_nested(50_000))
    assert load_json('{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}
