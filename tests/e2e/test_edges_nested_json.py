"""Deeply nested JSON (defect 6): refused as bad_request, and the socket survives it."""

from __future__ import annotations

import asyncio

import pytest
from conftest import http
from e2e_support import command, connect, ping

pytestmark = pytest.mark.e2e

DEPTH = 5000  # far past Python's recursion limit, well under 128 KB


def _nested(depth: int = DEPTH) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "frame",
    [
        _nested(),
        '{"action": "ping", "ref": "deep", "x": ' + _nested() + "}",
        '{"action": ' + _nested() + "}",
        '{"action": "space.join", "ref": "deep", "space_id": ' + _nested() + "}",
    ],
    ids=["bare-array", "extra-field", "action", "field"],
)
def test_a_deeply_nested_frame_is_a_bad_request_and_the_socket_lives_on(stack, frame: str) -> None:
    async def scenario() -> dict:
        async with connect(stack, "ada") as ws:
            answer = await command(ws, frame)
            await ping(ws, "after")  # the socket is still served
            return answer

    answer = asyncio.run(scenario())
    assert answer["type"] == "error", answer
    assert answer["code"] == "bad_request", answer


def test_nesting_within_the_limit_is_judged_on_its_content(stack) -> None:
    """A modestly nested value gets the ordinary validation error, not a depth error."""

    async def scenario() -> dict:
        async with connect(stack, "ada") as ws:
            return await command(ws, {"action": "ping", "ref": "ok", "x": [[[1]]]})

    answer = asyncio.run(scenario())
    assert answer["code"] == "bad_request" and "nested" not in answer["message"], answer


@pytest.mark.parametrize("path", ["/spaces", "/reports"])
def test_a_deeply_nested_rest_body_is_a_400(stack, path: str) -> None:
    token = stack.mint_token("ada")
    for body in (_nested(), '{"title": ' + _nested() + "}"):
        status, answer = http(stack, "POST", path, body.encode(), token=token)
        assert status == 400, (status, answer)
        assert answer["code"] == "bad_request", answer
