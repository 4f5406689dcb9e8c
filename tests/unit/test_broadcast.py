"""The broadcast tier's pure parts and its publisher against a plain local HTTP server that
checks each request's SigV4 signature with botocore's signer (devstack/sigv4.py)."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.credentials import Credentials

from chalicelib import broadcast, config
from devstack.sigv4 import SignatureError, verify


@pytest.mark.parametrize(
    ("channel", "space_id"),
    [
        ("/spaces/ab12cd34ef56ab78", "ab12cd34ef56ab78"),
        ("/spaces/a-b", "a-b"),
        ("/spaces/*", None),
        ("/spaces/ab/cd", None),
        ("/other/ab12", None),
        ("spaces/ab12", None),
        ("/spaces/" + "a" * 51, None),
        ("/spaces/", None),
        (None, None),
        (["/spaces/ab"], None),
    ],
)
def test_only_a_space_channel_names_a_space(channel: Any, space_id: str | None) -> None:
    assert broadcast.space_of(channel) == space_id


@pytest.fixture
def settings() -> Iterator[Any]:
    def use(**values: Any) -> None:
        config.override(dataclasses.replace(config.from_environment(), **values))

    yield use
    config.override(None)


def test_which_spaces_the_tier_carries(settings: Any) -> None:
    settings(broadcast_http_url="")
    assert not broadcast.carries(True) and broadcast.client_info("sp1") is None
    settings(broadcast_http_url="https://x.appsync-api.us-east-1.amazonaws.com/event", broadcast_threshold=0)
    assert broadcast.carries(False) and broadcast.carries(True)
    settings(
        broadcast_http_url="https://x.appsync-api.us-east-1.amazonaws.com/event", broadcast_threshold=500
    )
    assert not broadcast.carries(False) and broadcast.carries(True)  # flagged once it reached 500
    settings(
        broadcast_http_url="https://x.appsync-api.us-east-1.amazonaws.com/event",
        broadcast_realtime_url="wss://x.appsync-realtime-api.us-east-1.amazonaws.com/event/realtime",
        naive_fanout=True,
    )
    assert not broadcast.carries(True)  # the benchmark's naive baseline never publishes
    assert broadcast.client_info("ab12") == {
        "channel": "/spaces/ab12",
        "realtime_url": "wss://x.appsync-realtime-api.us-east-1.amazonaws.com/event/realtime",
        "http_host": "x.appsync-api.us-east-1.amazonaws.com",
        "auth": "AWS_LAMBDA",
    }


@pytest.mark.parametrize(
    "event",
    [
        None,
        "token",
        {},
        {"authorizationToken": "x", "requestContext": {"operation": "EVENT_PUBLISH", "channel": "/spaces/a"}},
        {"authorizationToken": 7, "requestContext": {"operation": "EVENT_SUBSCRIBE", "channel": "/spaces/a"}},
        {"authorizationToken": "x", "requestContext": "EVENT_CONNECT"},
        {"authorizationToken": "not a jwt", "requestContext": {"operation": "EVENT_CONNECT"}},
    ],
)
def test_the_authorizer_refuses_what_is_not_a_valid_connect_or_subscribe(settings: Any, event: Any) -> None:
    settings(
        auth_issuer="https://issuer.invalid", auth_audience="client", auth_jwks_url="http://127.0.0.1:9/jwks"
    )
    assert broadcast.authorize(event) == {"isAuthorized": False, "ttlOverride": 0}


class EventApi(BaseHTTPRequestHandler):
    """POST /event: verifies the signature, then answers with the next scripted status."""

    script: list[tuple[int, Any]] = []
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        url = f"http://{self.headers['Host']}{self.path}"
        try:
            verify(
                "POST",
                url,
                {k.lower(): v for k, v in self.headers.items()},
                body,
                {"AK": "SK"},
                "us-east-1",
                service="appsync",
            )
        except SignatureError as exc:
            self._answer(403, {"errors": [{"errorType": exc.error_type, "message": exc.message}]})
            return
        self.seen.append(json.loads(body))
        status, answer = self.script.pop(0) if self.script else (200, {"successful": [], "failed": []})
        self._answer(status, answer)

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def event_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EventApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    EventApi.script, EventApi.seen = [], []
    yield f"http://127.0.0.1:{server.server_address[1]}/event"
    server.shutdown()


def publisher(url: str, secret: str = "SK") -> broadcast.Publisher:
    return broadcast.Publisher(url, "us-east-1", credentials=Credentials("AK", secret))


def test_one_signed_publish_carries_the_event_as_a_json_string(event_api: str) -> None:
    event = {"type": "event", "event": "stage.changed", "space_id": "ab12", "seq": 3, "stage": []}
    publisher(event_api).publish("/spaces/ab12", [event])
    assert EventApi.seen == [
        {"channel": "/spaces/ab12", "events": [json.dumps(event, separators=(",", ":"))]}
    ]


def test_throttling_is_retried_and_refusals_raise(event_api: str) -> None:
    EventApi.script = [
        (429, {}),
        (503, {}),
        (200, {"successful": [{"identifier": "i", "index": 0}], "failed": []}),
    ]
    p = publisher(event_api)
    p.publish("/spaces/ab12", [{"n": 1}])
    assert len(EventApi.seen) == 3 and p.published == 1

    EventApi.script = [(200, {"successful": [], "failed": [{"identifier": "i", "index": 0, "code": 400}]})]
    with pytest.raises(broadcast.PublishError, match="refused 1 events"):
        p.publish("/spaces/ab12", [{"n": 1}])
    EventApi.script = [(400, {"errors": [{"errorType": "BadRequestException"}]})]
    with pytest.raises(broadcast.PublishError, match="400"):
        p.publish("/spaces/ab12", [{"n": 1}])
    with pytest.raises(broadcast.PublishError, match="403"):  # signed with the wrong secret
        publisher(event_api, secret="wrong").publish("/spaces/ab12", [{"n": 1}])
    with pytest.raises(ValueError):
        p.publish("/spaces/ab12", [{"n": i} for i in range(6)])
    assert p.published == 1
