"""The app's REST routes on the same port as the WebSocket API, answering as API Gateway would."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import jwt
import pytest
from conftest import http
from cryptography.hazmat.primitives.asymmetric import rsa

pytestmark = pytest.mark.e2e


def _request(stack, method: str, path: str, headers: dict[str, str]) -> tuple[int, Any, Any]:
    """(status, headers, parsed body) for requests whose response headers matter."""
    req = urllib.request.Request(stack.base_url + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, response_headers, raw = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        status, response_headers, raw = err.code, err.headers, err.read()
    return status, response_headers, json.loads(raw) if raw else None


def test_whoami_with_a_bearer_token(stack) -> None:
    status, body = http(stack, "GET", "/whoami", token=stack.mint_token("ada"))
    assert status == 200
    assert body == {"user_id": "ada", "username": "ada", "groups": []}


def test_whoami_reports_groups_from_the_token(stack) -> None:
    status, body = http(stack, "GET", "/whoami", token=stack.mint_token("root", ["admins", "ops"]))
    assert status == 200
    assert body["user_id"] == "root"
    assert body["groups"] == ["admins", "ops"]


def test_whoami_without_a_token_is_401(stack) -> None:
    status, body = http(stack, "GET", "/whoami")
    assert status == 401
    assert body["code"] == "unauthorized"
    assert isinstance(body["message"], str) and body["message"]


@pytest.mark.parametrize("scheme", ["Bearer", "Basic", ""])
def test_whoami_with_a_forged_or_malformed_token_is_401(stack, scheme: str) -> None:
    now = int(time.time())
    forged = jwt.encode(
        {
            "sub": "admin",
            "iss": stack.idp.issuer,
            "aud": stack.idp.audience,
            "token_use": "id",
            "iat": now,
            "exp": now + 600,
            "cognito:groups": ["admins"],
        },
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": stack.idp.kid},
    )
    status, body = http(stack, "GET", "/whoami", headers={"Authorization": f"{scheme} {forged}".strip()})
    assert status == 401
    assert body["code"] == "unauthorized"


def test_an_unknown_path_is_the_uniform_404(stack) -> None:
    """API Gateway's MISSING_AUTHENTICATION_TOKEN, as the template's gateway response sets it."""
    for method in ("GET", "POST", "DELETE"):
        status, body = http(stack, method, "/no/such/route")
        assert status == 404, method
        assert body == {"code": "not_found", "message": "no such route"}, method


def test_an_unknown_path_with_credentials_is_still_404(stack) -> None:
    status, body = http(stack, "GET", "/no/such/route", token=stack.mint_token("ada"))
    assert status == 404
    assert body == {"code": "not_found", "message": "no such route"}


def test_cors_preflight(stack) -> None:
    status, headers, _ = _request(
        stack,
        "OPTIONS",
        "/whoami",
        {
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "*"
    methods = {m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "OPTIONS"} <= methods
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert "authorization" in allowed


def test_cors_headers_on_the_actual_response(stack) -> None:
    status, headers, body = _request(
        stack,
        "GET",
        "/whoami",
        {"Origin": "https://app.example.com", "Authorization": f"Bearer {stack.mint_token('ada')}"},
    )
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Content-Type"].startswith("application/json")
    assert body["user_id"] == "ada"


def test_rest_and_websocket_share_one_port(stack) -> None:
    assert stack.ws_url.startswith(stack.base_url.replace("http://", "ws://"))
    status, _ = http(stack, "GET", "/whoami", token=stack.mint_token("ada"))
    assert status == 200
