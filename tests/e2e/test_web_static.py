"""The web client's static files on the local stack, beside (not over) every other route."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from conftest import http
from websockets.sync.client import connect

pytestmark = pytest.mark.e2e


def _get(stack, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(stack.base_url + path, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def test_the_page_and_its_modules(stack) -> None:
    status, ctype, body = _get(stack, "/")
    assert status == 200 and ctype.startswith("text/html")
    assert b'<script type="module" src="app/main.js">' in body
    status, ctype, body = _get(stack, "/app/main.js")
    assert status == 200 and "javascript" in ctype
    assert _get(stack, "/app/no-such-file.js")[0] == 404
    assert _get(stack, "/app/../README.md")[0] == 404  # no way out of web/


def test_the_admin_console_page(stack) -> None:
    for path in ("/admin", "/admin/"):
        status, ctype, body = _get(stack, path)
        assert status == 200 and ctype.startswith("text/html"), path
        # relative links: the same from /admin and /admin/, and from a copy of web/ on any host
        assert b'<script type="module" src="../app/admin/main.js">' in body
    for module in ("main.js", "api.js", "view.js", "admin.css"):
        assert _get(stack, f"/app/admin/{module}")[0] == 200


def test_other_routes_are_not_shadowed(stack) -> None:
    assert _get(stack, "/openapi.yaml")[0] == 200
    assert http(stack, "GET", "/whoami")[0] == 401  # still the app's REST route
    assert http(stack, "GET", "/admin/cases")[0] == 401  # the admin API beside the console
    status, body = http(stack, "GET", "/admin/nope", token=stack.mint_token("ada"))
    assert (status, body["code"]) == (404, "not_found")
    status, body = http(stack, "POST", "/dev/token", {"user": "ada"})
    assert status == 200 and body["token"]

    # The WebSocket upgrade at / (sync client: the browser tests' driver may own this thread's loop).
    with connect(f"{stack.ws_url}?token={stack.mint_token('ada')}", open_timeout=5) as ws:
        ws.send(json.dumps({"action": "ping", "ref": "p"}))
        assert json.loads(ws.recv(timeout=5))["data"]["user_id"] == "ada"
