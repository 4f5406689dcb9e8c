"""REST input as strict as WebSocket input; unknown routes and methods get the uniform error body."""

from __future__ import annotations

import pytest
from conftest import http

pytestmark = pytest.mark.e2e


def _refused(status: int, body: object, expected: int = 400, code: str = "bad_request") -> None:
    assert status == expected, (status, body)
    assert isinstance(body, dict) and set(body) == {"code", "message"}, body
    assert body["code"] == code and body["message"], body


@pytest.mark.parametrize(
    "body",
    [
        {"title": "\u202e\u200b"},
        {"title": "\u200b\u200b"},
        {"title": "\u3164"},
        {"title": "Friday \u202ejam"},
        {"title": "jam\x00"},
        {"title": 12},
        {"title": "x", "handover": "yes"},
        {"title": "x", "handover": 1},
        {"title": "x", "handover": "true"},
        {"title": "x", "handover": None},
        {"title": "x", "scheduled_start": 1999999999},
        {"title": "x", "scheduled_start": "2026-12-20"},
        {"title": "x", "scheduled_start": "20261220T180000Z"},
        {"title": "x", "scheduled_start": "next tuesday"},
        {"title": "x", "scheduled_start": True},
        {"title": "x", "lang": 1},
    ],
)
def test_create_space_refuses_lax_or_invisible_input(stack, body: dict) -> None:
    status, answer = http(stack, "POST", "/spaces", body, token=stack.mint_token("ada"))
    _refused(status, answer)


def test_a_strict_valid_body_is_accepted(stack) -> None:
    body = {"title": " Cuma   sohbeti ", "handover": True, "lang": "tr"}
    status, answer = http(stack, "POST", "/spaces", body, token=stack.mint_token("ada"))
    assert status == 201, answer
    assert answer["title"] == "Cuma sohbeti" and answer["handover"] is True


@pytest.mark.parametrize(
    "path",
    [
        "/spaces?cursor=",
        "/spaces?state=scheduled&cursor=",
        "/spaces/search?query=a&cursor=",
        "/spaces/by/creator/ada?cursor=",
        "/me/follows?cursor=",
        "/me/blocks?cursor=",
    ],
)
def test_an_empty_cursor_is_a_bad_request(stack, path: str) -> None:
    status, answer = http(stack, "GET", path, token=stack.mint_token("ada"))
    _refused(status, answer)


# `/` and `/admin` are not here: on the local stack they serve the web client and the admin
# console (devstack/web.py), which in AWS live outside API Gateway; test_web_static covers them.
@pytest.mark.parametrize("path", ["/nope", "/spaces/a/b/c", "/ws", "/admin/nope"])
def test_an_unknown_route_gets_the_uniform_404_and_never_echoes_the_token(stack, path: str) -> None:
    token = stack.mint_token("ada")
    status, answer = http(stack, "GET", path, token=token)
    _refused(status, answer, 404, "not_found")
    assert answer["message"] == "no such route"
    assert token not in str(answer)


@pytest.mark.parametrize(
    ("method", "path"), [("DELETE", "/spaces"), ("PATCH", "/whoami"), ("GET", "/ws/ticket")]
)
def test_an_unsupported_method_gets_the_uniform_404(stack, method: str, path: str) -> None:
    """As in AWS, where API Gateway answers both with the template's MISSING_AUTHENTICATION_TOKEN response."""
    status, answer = http(stack, method, path, token=stack.mint_token("ada"))
    _refused(status, answer, 404, "not_found")
    assert answer["message"] == "no such route"
