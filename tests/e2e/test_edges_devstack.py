"""The local stack's own doors: oversized requests, quiet refusals, signed @connections, no orphans."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import websockets
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from e2e_support import connect, connection_id, management_client, ping, recv_json, serves_others
from edges_support import ChildStack, alive
from websockets.exceptions import InvalidStatus

pytestmark = pytest.mark.e2e


# -- oversized requests ----------------------------------------------------------------


def _raw(stack: Any, head: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", stack.port), timeout=timeout) as sock:
        sock.sendall(head)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


def _upgrade(target: bytes, extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )


@pytest.mark.parametrize("size", [9_000, 70_000, 1_000_000])
def test_a_huge_websocket_request_line_gets_414_or_431_at_once(stack, size: int) -> None:
    began = time.monotonic()
    answer = _raw(stack, _upgrade(b"/?token=" + b"a" * size))
    assert answer.split(b"\r\n")[0] in (
        b"HTTP/1.1 414 URI Too Long",
        b"HTTP/1.1 431 Request Header Fields Too Large",
    )
    assert time.monotonic() - began < 3
    asyncio.run(serves_others(stack))


def test_a_huge_header_line_gets_431(stack) -> None:
    answer = _raw(stack, _upgrade(b"/", b"X-Big: " + b"b" * 9_000 + b"\r\n"))
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_too_many_headers_get_431(stack) -> None:
    extra = b"".join(b"X-H%d: v\r\n" % i for i in range(120))
    assert _raw(stack, b"GET /whoami HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n").startswith(b"HTTP/1.1 431 ")


def test_a_huge_plain_http_request_line_gets_414(stack) -> None:
    answer = _raw(stack, b"GET /" + b"a" * 66_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 414 ")


def test_a_head_that_never_ends_gets_431_not_a_hang(stack) -> None:
    answer = _raw(stack, b"GET /" + b"a" * 200_000)
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_a_long_but_acceptable_token_url_still_connects(stack) -> None:
    """Real tokens are ~1 KB; the limit leaves room for far more."""

    async def scenario() -> dict[str, Any]:
        url = f"{stack.ws_url}?token={stack.mint_token('ada')}&pad={'p' * 6000}"
        async with websockets.connect(url) as ws:
            return await ping(ws)

    assert asyncio.run(scenario())["data"]["user_id"] == "ada"


# -- refused handshakes are answers, not errors ----------------------------------------


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_refused_handshakes_are_not_logged_as_errors(stack) -> None:
    errors = _Errors()
    loggers = [
        logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "devstack", "devstack.gateway")
    ]
    for logger in loggers:
        logger.addHandler(errors)

    async def scenario() -> list[int]:
        statuses = []
        for url in (stack.ws_url, f"{stack.ws_url}?token=nope", f"{stack.ws_url}?ticket=nope"):
            with pytest.raises(InvalidStatus) as refused:
                async with websockets.connect(url):
                    pass
            statuses.append(refused.value.response.status_code)
        return statuses

    try:
        assert asyncio.run(scenario()) == [401, 401, 401]
    finally:
        for logger in loggers:
            logger.removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]


# -- @connections needs SigV4 ------------------------------------------------------------


def _signed(url: str, method: str, body: bytes, secret: str = "testing", when: str | None = None) -> dict:
    """Headers of a request signed with botocore's SigV4 signer (at `when`, or now)."""
    request = AWSRequest(method=method, url=url, data=body)
    signer = SigV4Auth(Credentials("testing", secret), "execute-api", "us-east-1")
    if when is None:
        signer.add_auth(request)
        return dict(request.headers.items())
    request.headers["X-Amz-Date"] = when
    request.context["timestamp"] = when
    signed = signer.signed_headers(signer.headers_to_sign(request))
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    request.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential=testing/{when[:8]}/us-east-1/execute-api/aws4_request, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return dict(request.headers.items())


def _call(url: str, method: str, body: bytes, headers: dict) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers.get("x-amzn-ErrorType", "")
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("x-amzn-ErrorType", "")


def test_connections_api_refuses_unsigned_and_badly_signed_requests(stack) -> None:
    async def scenario() -> dict[str, tuple[int, str]]:
        async with connect(stack, "ada") as ws:
            cid = await connection_id(ws)
            url = f"{stack.base_url}/@connections/{cid.replace('=', '%3D')}"
            body = b'{"type":"event","event":"forged"}'
            results = {
                "unsigned POST": _call(url, "POST", body, {}),
                "unsigned GET": _call(url, "GET", b"", {}),
                "unsigned DELETE": _call(url, "DELETE", b"", {}),
                "bearer": _call(url, "POST", body, {"Authorization": "Bearer x"}),
                "wrong secret": _call(url, "POST", body, _signed(url, "POST", body, secret="nope")),
                "tampered body": _call(url, "POST", body + b" ", _signed(url, "POST", body)),
                "other connection": _call(url + "X", "POST", body, _signed(url, "POST", body)),
                "stale": _call(url, "POST", body, _signed(url, "POST", body, when="20200101T000000Z")),
            }
            # nothing forged reached the socket, and it is still open
            answer = await ping(ws, "after")
            assert answer["ref"] == "after"
            results["signed POST"] = _call(url, "POST", body, _signed(url, "POST", body))
            assert (await recv_json(ws))["event"] == "forged"
            return results

    results = asyncio.run(scenario())
    assert results.pop("signed POST") == (200, "")
    for name, (status, error_type) in results.items():
        assert status == 403, name
        assert error_type.endswith("Exception"), name


def test_boto3_clients_signing_with_the_local_credentials_are_served(stack) -> None:
    async def scenario() -> None:
        async with connect(stack, "ada") as ws:
            cid = await connection_id(ws)
            client = management_client(stack.base_url)
            client.post_to_connection(ConnectionId=cid, Data=b'{"hello":1}')
            assert await recv_json(ws) == {"hello": 1}
            assert "ConnectedAt" in client.get_connection(ConnectionId=cid)

    asyncio.run(scenario())


# -- the embedded AWS dies with its stack ---------------------------------------------------


def test_moto_dies_with_a_stack_killed_hard(tmp_path: Path) -> None:
    child = ChildStack(tmp_path)
    try:
        motos = [
            pid
            for pid in child.children()
            if b"devstack.moto_server" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(motos) == 1, child.children()
        os.kill(child.process.pid, signal.SIGKILL)  # no clean-up code runs
        child.process.wait(timeout=10)
        deadline = time.monotonic() + 5
        while alive(motos[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(motos[0]), "moto outlived its stack"
    finally:
        child.stop()
