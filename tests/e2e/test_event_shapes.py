"""The events the emulator hands the app have the shape API Gateway's Lambda proxy events have.

The fixtures hold sample events as AWS documents them for WebSocket APIs with
Lambda proxy integrations; the emulator's real events are compared with them
key by key and type by type, and checked with Powertools' parser models.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
)
from conftest import Clients, await_until, fixture, recording

pytestmark = pytest.mark.e2e

# Maps whose keys come from the client (header names, query parameters), not from API Gateway.
OPEN_MAPS = {"headers", "multiValueHeaders", "queryStringParameters", "multiValueQueryStringParameters"}
REQUEST_TIME = re.compile(
    r"^\d{2}/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2} \+0000$"
)
URL_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]+=*$")


def json_type(value: Any) -> str:
    # bool before int: True is an int in Python, not in JSON
    for name, kind in (("boolean", bool), ("integer", int), ("number", float), ("string", str)):
        if isinstance(value, kind):
            return name
    if value is None:
        return "null"
    return "array" if isinstance(value, list) else "object"


def assert_same_shape(expected: Any, actual: Any, where: str = "event") -> None:
    """Same key set at every level and the same JSON type for every value."""
    assert json_type(actual) == json_type(expected), f"{where}: {json_type(actual)} != {json_type(expected)}"
    if isinstance(expected, dict):
        if where.rsplit(".", 1)[-1] in OPEN_MAPS:
            for key, value in actual.items():
                sample = next(iter(expected.values()))
                assert json_type(value) == json_type(sample), f"{where}.{key}"
                if isinstance(value, list):
                    assert all(isinstance(v, str) for v in value), f"{where}.{key}"
            return
        missing, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
        assert not missing and not extra, f"{where}: missing {missing}, extra {extra}"
        for key in expected:
            assert_same_shape(expected[key], actual[key], f"{where}.{key}")
    elif isinstance(expected, list) and expected:
        for i, item in enumerate(actual):
            assert_same_shape(expected[0], item, f"{where}[{i}]")


def assert_context_values(event: dict[str, Any]) -> None:
    ctx = event["requestContext"]
    assert REQUEST_TIME.match(ctx["requestTime"]), ctx["requestTime"]
    for key in ("connectedAt", "requestTimeEpoch"):
        value = ctx[key]
        assert type(value) is int and 1_600_000_000_000 < value < 10_000_000_000_000, (key, value)
    assert ctx["requestTimeEpoch"] >= ctx["connectedAt"]
    parsed = datetime.strptime(ctx["requestTime"], "%d/%b/%Y:%H:%M:%S %z")
    assert abs(parsed.timestamp() - ctx["requestTimeEpoch"] / 1000) < 1.0
    assert abs(datetime.now(tz=UTC).timestamp() - ctx["requestTimeEpoch"] / 1000) < 60
    assert URL_SAFE_ID.match(ctx["connectionId"]), ctx["connectionId"]
    assert ctx["messageDirection"] == "IN"
    assert ctx["stage"] == "dev"
    assert ctx["apiId"] and ctx["domainName"] and ctx["requestId"] and ctx["extendedRequestId"]


def test_fixtures_are_valid_powertools_events() -> None:
    APIGatewayWebSocketConnectEventModel.model_validate(fixture("apigw_ws_connect.json"))
    APIGatewayWebSocketMessageEventModel.model_validate(fixture("apigw_ws_message.json"))
    APIGatewayWebSocketDisconnectEventModel.model_validate(fixture("apigw_ws_disconnect.json"))


async def test_connect_message_disconnect_events_match_api_gateway(stack, clients: Clients) -> None:
    handlers = stack.gateway._handlers
    token = stack.mint_token("ada")

    with (
        recording(handlers, "$connect") as connects,
        recording(handlers, "$default") as messages,
        recording(handlers, "$disconnect") as disconnects,
    ):
        ws = await clients.open(token=token)
        reply = await ws.command({"action": "ping", "ref": "shape-1"})
        await ws.command(b"\x00\xffbinary")
        await ws.close()
        conn_id = reply["data"]["connection_id"]
        assert await await_until(lambda: disconnects.for_connection(conn_id), timeout=3)

    [connect_event] = connects.for_connection(conn_id)
    text_event, binary_event = messages.for_connection(conn_id)
    [disconnect_event] = disconnects.for_connection(conn_id)

    # $connect
    assert_same_shape(fixture("apigw_ws_connect.json"), connect_event)
    ctx = connect_event["requestContext"]
    assert (ctx["routeKey"], ctx["eventType"]) == ("$connect", "CONNECT")
    headers = connect_event["headers"]
    assert set(fixture("apigw_ws_connect.json")["headers"]) <= set(headers)
    assert set(connect_event["multiValueHeaders"]) == set(headers)
    assert all(connect_event["multiValueHeaders"][k][-1] == v for k, v in headers.items())
    assert headers["X-Forwarded-For"] == ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert headers["X-Forwarded-Port"] == str(stack.port)
    assert ctx["identity"]["userAgent"] == headers["User-Agent"]
    assert connect_event["queryStringParameters"] == {"token": token}
    assert connect_event["multiValueQueryStringParameters"] == {"token": [token]}
    assert connect_event["isBase64Encoded"] is False
    APIGatewayWebSocketConnectEventModel.model_validate(connect_event)

    # MESSAGE, text and binary
    for event in (text_event, binary_event):
        assert_same_shape(fixture("apigw_ws_message.json"), event)
        ctx = event["requestContext"]
        assert (ctx["routeKey"], ctx["eventType"]) == ("$default", "MESSAGE")
        assert ctx["connectedAt"] == connect_event["requestContext"]["connectedAt"]
        APIGatewayWebSocketMessageEventModel.model_validate(event)
    assert json.loads(text_event["body"]) == {"action": "ping", "ref": "shape-1"}
    assert text_event["isBase64Encoded"] is False
    assert binary_event["isBase64Encoded"] is True
    assert binary_event["body"] == "AP9iaW5hcnk="  # base64 of the bytes sent
    assert text_event["requestContext"]["messageId"] != binary_event["requestContext"]["messageId"]

    # $disconnect
    assert_same_shape(fixture("apigw_ws_disconnect.json"), disconnect_event)
    ctx = disconnect_event["requestContext"]
    assert (ctx["routeKey"], ctx["eventType"]) == ("$disconnect", "DISCONNECT")
    assert set(disconnect_event["headers"]) == set(fixture("apigw_ws_disconnect.json")["headers"])
    assert ctx["disconnectStatusCode"] == 1000  # the client closed normally
    assert ctx["connectedAt"] == connect_event["requestContext"]["connectedAt"]
    APIGatewayWebSocketDisconnectEventModel.model_validate(disconnect_event)

    every = [connect_event, text_event, binary_event, disconnect_event]
    for event in every:
        assert_context_values(event)
        assert event["requestContext"]["connectionId"] == conn_id
    assert len({e["requestContext"]["requestId"] for e in every}) == len(every)


async def test_disconnect_without_close_code_reports_1005(stack, clients: Clients) -> None:
    """A close frame with no status code: 1005 and API Gateway's reason text."""
    with recording(stack.gateway._handlers, "$disconnect") as disconnects:
        ws = await clients.open()
        conn_id = (await ws.command({"action": "ping", "ref": "r"}))["data"]["connection_id"]
        await ws.close(code=None)  # a close frame with no status code
        assert ws.closed_code == 1005  # the server answered with a close frame (echoing no code)
        assert await await_until(lambda: disconnects.for_connection(conn_id))
    ctx = disconnects.for_connection(conn_id)[0]["requestContext"]
    assert ctx["disconnectStatusCode"] == 1005
    assert ctx["disconnectReason"] == "Client-side close frame status not set"
