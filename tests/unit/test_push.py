"""push.py against a stand-in for API Gateway's @connections management API on loopback.

`FakeGateway` plays scripted statuses per connection id (429 throttling, 410 gone,
5xx, 403) and records every request as it arrived on the wire, so the tests check
what a real gateway would see: a valid SigV4 signature for `execute-api`, the body
bytes unchanged, the connection id percent-encoded in the path.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials

from chalicelib.push import FAILED, GONE, OK, Delivery, Pusher, SignedPoster, SigV4Signer, encode

REGION = "eu-central-1"
KEY, SECRET, TOKEN = "AKIDPUSHTEST", "push-test-secret", "push-test-session-token"

ERROR_TYPES = {
    403: "ForbiddenException",
    410: "GoneException",
    413: "PayloadTooLargeException",
    429: "LimitExceededException",
}


@dataclass
class Seen:
    """One request as it arrived at the gateway."""

    method: str
    raw_path: str
    connection_id: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int
    peer_port: int = 0  # the client's port: one per TCP connection


class FakeGateway:
    """`/@connections/{id}` on 127.0.0.1: each id answers its scripted statuses in turn, then 200."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[int]] = {}
        self.drop_after: set[str] = set()  # ids after whose answer the server closes the connection
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-gateway", daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeGateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        with self._lock:
            self.scripts.clear()
            self.seen.clear()
            self.drop_after.clear()

    def play(self, connection_id: str, *statuses: int) -> None:
        with self._lock:
            self.scripts[connection_id] = list(statuses)

    def requests_for(self, connection_id: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.connection_id == connection_id]

    def _next_status(self, connection_id: str) -> int:
        with self._lock:
            script = self.scripts.get(connection_id)
            return script.pop(0) if script else 200

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the pooled clients expect

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                raw_path = self.path
                connection_id = unquote(raw_path.rsplit("/", 1)[-1])
                status = gateway._next_status(connection_id)
                headers = {k.lower(): v for k, v in self.headers.items()}
                peer = self.client_address[1]
                gateway._record(Seen(self.command, raw_path, connection_id, headers, body, status, peer))
                payload = b""
                if status >= 400:
                    payload = json.dumps({"message": ERROR_TYPES.get(status, "error")}).encode()
                elif self.command == "GET":
                    payload = json.dumps({"connectedAt": "2024-01-01T00:00:00Z"}).encode()
                self.send_response(status)
                self.send_header("x-amzn-RequestId", "req-1")
                if status in ERROR_TYPES:
                    self.send_header("x-amzn-ErrorType", ERROR_TYPES[status])
                if payload:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                if connection_id in gateway.drop_after:
                    # closed without a "Connection: close": as an idle timeout looks to the client
                    self.close_connection = True

            do_POST = do_GET = do_DELETE = _serve

        return Handler


def sigv4_problems(seen: Seen) -> list[str]:
    """Why this request's SigV4 signature would not verify at API Gateway ([] when it does)."""
    auth = seen.headers.get("authorization", "")
    algorithm, _, rest = auth.partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        return [f"not SigV4: {auth!r}"]
    fields = dict(part.strip().split("=", 1) for part in rest.split(","))
    key, date, region, service, terminator = fields["Credential"].split("/")
    problems = []
    if (key, region, service, terminator) != (KEY, REGION, "execute-api", "aws4_request"):
        problems.append(f"credential scope {fields['Credential']}")
    amz_date = seen.headers.get("x-amz-date", "")
    if not amz_date.startswith(date):
        problems.append(f"X-Amz-Date {amz_date!r} outside the scope's date {date}")
    signed = fields["SignedHeaders"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        problems.append(f"signed headers {signed}")
    if seen.headers.get("x-amz-security-token") != TOKEN:
        problems.append("session token missing")
    request = AWSRequest(
        method=seen.method,
        url=f"http://{seen.headers['host']}{seen.raw_path}",
        data=seen.body,
        headers={name: seen.headers[name] for name in signed if name != "host"},
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(KEY, SECRET, TOKEN), service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if fields["Signature"] != expected:
        problems.append("signature does not verify (path, body or headers differ from what was signed)")
    return problems


@pytest.fixture(scope="module")
def gateway_server() -> Iterator[FakeGateway]:
    server = FakeGateway().start()
    yield server
    server.stop()


@pytest.fixture
def gateway(gateway_server: FakeGateway) -> FakeGateway:
    gateway_server.reset()
    return gateway_server


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials the gateway can check the signatures against (the env chain: what Lambda gives)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def poster(gateway: FakeGateway) -> SignedPoster:
    return SignedPoster(gateway.endpoint, REGION, workers=4)


# --------------------------------------------------------------------------- SignedPoster

CONNECTION_IDS = {
    "L0SM9cOFvHcCIhw=": "L0SM9cOFvHcCIhw%3D",
    "a-b_c.d~e": "a-b_c.d~e",
    "x/y+z==": "x%2Fy%2Bz%3D%3D",
    "sp ace?#": "sp%20ace%3F%23",
}


@pytest.mark.parametrize(
    ("statuses", "outcome", "throttled", "attempts"),
    [
        pytest.param([200], OK, 0, 1, id="ok"),
        pytest.param([429, 429, 200], OK, 2, 3, id="throttled-twice"),
        pytest.param([503, 502, 200], OK, 0, 3, id="5xx-then-ok"),
        pytest.param([429, 410], GONE, 1, 2, id="throttled-then-gone"),
        pytest.param([410], GONE, 0, 1, id="gone"),
        pytest.param([500] * 5, FAILED, 0, 5, id="5xx-until-max"),
        pytest.param([429] * 5, FAILED, 4, 5, id="throttled-until-max"),
        pytest.param([403], FAILED, 0, 1, id="forbidden"),
        pytest.param([413], FAILED, 0, 1, id="too-large"),
    ],
)
def test_post_outcome_per_scripted_status(
    gateway: FakeGateway, statuses: list[int], outcome: str, throttled: int, attempts: int
) -> None:
    gateway.play("conn", *statuses)
    assert poster(gateway).post("conn", b'{"event":"x"}') == (outcome, throttled)
    assert [s.status for s in gateway.requests_for("conn")] == statuses[:attempts]
    assert len(gateway.requests_for("conn")) == attempts  # 410 and 4xx are never retried


def test_every_attempt_is_signed_for_execute_api_and_carries_the_body_unchanged(gateway: FakeGateway) -> None:
    body = "Merhaba dünya 🎙 \x00\xff".encode() + bytes(range(256))
    gateway.play("conn", 429, 500, 200)
    assert poster(gateway).post("conn", body) == (OK, 1)
    seen = gateway.requests_for("conn")
    assert len(seen) == 3
    for request in seen:
        assert request.method == "POST"
        assert request.body == body
        assert "x-amz-date" in request.headers
        assert sigv4_problems(request) == []
    # each retry is signed afresh, not a replay of the first signature's headers object
    assert all("execute-api" in r.headers["authorization"] for r in seen)


def test_connection_ids_are_percent_encoded_in_the_path(gateway: FakeGateway) -> None:
    signed = poster(gateway)
    for connection_id, encoded in CONNECTION_IDS.items():
        assert signed.post(connection_id, b"{}") == (OK, 0)
        (request,) = gateway.requests_for(connection_id)
        assert request.raw_path == f"/@connections/{encoded}"
        assert sigv4_problems(request) == []


def test_the_signed_path_is_the_one_boto3_sends(gateway: FakeGateway) -> None:
    """The fast path and boto3's own client put the same bytes on the wire for the same id."""
    pusher = Pusher(gateway.endpoint, REGION, workers=2)
    for connection_id in CONNECTION_IDS:
        assert pusher.send(connection_id, b"{}") is True
        assert pusher._poster.post(connection_id, b"{}") == (OK, 0)
        by_boto3, by_poster = gateway.requests_for(connection_id)
        assert by_boto3.raw_path == by_poster.raw_path
        assert sigv4_problems(by_boto3) == [] and sigv4_problems(by_poster) == []


def test_an_unreachable_gateway_fails_after_its_attempts() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    unreachable = SignedPoster(f"http://127.0.0.1:{port}", REGION, workers=1, max_attempts=2)
    assert unreachable.post("conn", b"{}") == (FAILED, 0)


# --------------------------------------------------------------------------- SigV4Signer


def botocore_signature(headers: dict[str, str], path: str, body: bytes, creds: Credentials) -> str:
    """What botocore's SigV4Auth computes for the same request at the same instant."""
    request = AWSRequest(
        method="POST",
        url=f"http://{headers['Host']}{path}",
        data=body,
        headers={k: v for k, v in headers.items() if k not in ("Host", "Authorization")},
    )
    request.context["timestamp"] = headers["X-Amz-Date"]
    signer = SigV4Auth(creds, "execute-api", REGION)
    return signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)


def _signature_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].rsplit("Signature=", 1)[1]


@pytest.mark.parametrize("token", [TOKEN, None], ids=["session-token", "no-token"])
@pytest.mark.parametrize("host", ["127.0.0.1:8000", "abc123.execute-api.eu-central-1.amazonaws.com"])
@pytest.mark.parametrize("connection_id", list(CONNECTION_IDS))
def test_the_hmac_signer_computes_botocores_signature(
    token: str | None, host: str, connection_id: str
) -> None:
    creds = Credentials(KEY, SECRET, token)
    signer = SigV4Signer(REGION, credentials=creds)
    body = "ş🎙".encode() + bytes(range(256))
    for prefix in ("", "/prod"):
        path = f"{prefix}/@connections/{CONNECTION_IDS[connection_id]}"
        headers = signer.headers(host, path, body, now=1_764_000_000 + len(prefix))
        assert _signature_of(headers) == botocore_signature(headers, path, body, creds)
        assert headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY}/20251124/{REGION}/")
        assert headers.get("X-Amz-Security-Token") == token
        # a different body, path or secret gives another signature (the check above can fail)
        assert _signature_of(signer.headers(host, path, body + b"!", now=1_764_000_000 + len(prefix))) != (
            _signature_of(headers)
        )
        other = SigV4Signer(REGION, credentials=Credentials(KEY, SECRET + "x", token))
        assert _signature_of(other.headers(host, path, body, now=1_764_000_000 + len(prefix))) != (
            _signature_of(headers)
        )


ISSUED = [("AKIDONE", "secret-one", "token-one"), ("AKIDTWO", "secret-two", "token-two")]


def test_the_signer_uses_refreshed_credentials_and_a_new_day_key() -> None:
    clock = [datetime(2025, 11, 24, 12, tzinfo=UTC)]
    issued = iter(ISSUED[1:])

    def refresh() -> dict[str, str]:
        key, secret, token = next(issued)
        expiry = (clock[0] + timedelta(hours=1)).isoformat()
        return {"access_key": key, "secret_key": secret, "token": token, "expiry_time": expiry}

    key, secret, token = ISSUED[0]
    creds = RefreshableCredentials(
        key, secret, token, clock[0] + timedelta(hours=1), refresh, "test", time_fetcher=lambda: clock[0]
    )
    signer = SigV4Signer(REGION, credentials=creds)
    path, body = "/@connections/abc", b"{}"
    first = signer.headers("h", path, body, now=clock[0].timestamp())
    clock[0] += timedelta(days=1)  # the credentials expired; a new day needs a new signing key
    second = signer.headers("h", path, body, now=clock[0].timestamp())
    assert "Credential=AKIDONE/20251124/" in first["Authorization"]
    assert first["X-Amz-Security-Token"] == "token-one"
    assert "Credential=AKIDTWO/20251125/" in second["Authorization"]
    assert second["X-Amz-Security-Token"] == "token-two"
    assert _signature_of(first) == botocore_signature(first, path, body, Credentials(*ISSUED[0]))
    assert _signature_of(second) == botocore_signature(second, path, body, Credentials(*ISSUED[1]))


def test_posts_share_one_keep_alive_connection_and_survive_its_close(gateway: FakeGateway) -> None:
    signed = SignedPoster(gateway.endpoint + "/prod", REGION, workers=1)
    for i in range(5):
        assert signed.post(f"k{i}", b"{}") == (OK, 0)
    assert len({s.peer_port for s in gateway.seen}) == 1
    gateway.drop_after.add("k4-last")
    assert signed.post("k4-last", b"{}") == (OK, 0)
    # the server closed the kept-alive connection: the next post goes out once, on a new one
    assert signed.post("after-close", b"{}") == (OK, 0)
    (after,) = gateway.requests_for("after-close")
    assert after.peer_port != gateway.seen[0].peer_port
    assert after.raw_path == "/prod/@connections/after-close"
    assert all(sigv4_problems(s) == [] for s in gateway.seen)


# --------------------------------------------------------------------------- Pusher


def test_send_many_sorts_outcomes_and_posts_each_connection_once(gateway: FakeGateway) -> None:
    gateway.play("ok-1", 200)
    gateway.play("ok-2", 429, 429, 200)
    gateway.play("gone-1", 410)
    gateway.play("bad-1", 403)
    gateway.play("bad-2", *[503] * 5)
    ids = ["ok-1", "gone-1", "ok-1", "bad-1", "ok-2", "gone-1", "bad-2"]
    message = {"type": "event", "event": "stage.changed", "text": "ş"}

    result = Pusher(gateway.endpoint, REGION, workers=4).send_many(ids, message)

    assert result.delivered == 2
    assert result.gone == ["gone-1"]
    assert sorted(result.failed) == ["bad-1", "bad-2"]
    assert result.throttled == 2
    assert result.queued == 0
    for cid, attempts in {"ok-1": 1, "gone-1": 1, "bad-1": 1, "ok-2": 3, "bad-2": 5}.items():
        seen = gateway.requests_for(cid)
        assert len(seen) == attempts, cid
        assert all(s.body == encode(message) for s in seen)


def test_send_many_of_nobody_posts_nothing(gateway: FakeGateway) -> None:
    assert Pusher(gateway.endpoint, REGION, workers=2).send_many([], b"{}") == Delivery()
    assert gateway.seen == []


def test_naive_mode_gives_the_same_outcomes_one_by_one_with_boto3(gateway: FakeGateway) -> None:
    ids = ["n-ok", "n-gone", "n-ok", "n-forbidden", "n-ok-2"]
    expected = {"delivered": 2, "gone": ["n-gone"], "failed": ["n-forbidden"]}
    results = {}
    for naive in (False, True):
        gateway.reset()
        gateway.play("n-gone", 410)
        gateway.play("n-forbidden", 403)
        result = Pusher(gateway.endpoint, REGION, workers=4, naive=naive).send_many(ids, b'{"e":1}')
        results[naive] = result
        assert {"delivered": result.delivered, "gone": result.gone, "failed": result.failed} == expected
        assert sorted(s.connection_id for s in gateway.seen) == sorted(dict.fromkeys(ids))
        assert all(sigv4_problems(s) == [] for s in gateway.seen)
    # naive: boto3's post_to_connection, sequentially in the given order
    assert [s.connection_id for s in gateway.seen] == list(dict.fromkeys(ids))
    assert all("Boto3" in s.headers.get("user-agent", "") for s in gateway.seen)
    assert results[True] == results[False]


def test_single_send_close_and_info_report_gone(gateway: FakeGateway) -> None:
    pusher = Pusher(gateway.endpoint, REGION, workers=1)
    assert pusher.send("live", {"type": "reply"}) is True
    info = pusher.info("live")
    assert info is not None and "ConnectedAt" in info
    assert pusher.close("live") is True
    for method in ("send", "close", "info"):
        gateway.play("dead", 410)
        args = ("dead", b"{}") if method == "send" else ("dead",)
        assert getattr(pusher, method)(*args) in (False, None)
    assert [s.method for s in gateway.requests_for("dead")] == ["POST", "DELETE", "GET"]
