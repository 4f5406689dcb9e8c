"""Entry points that app.py's declarations call: parse, authorise, dispatch, answer."""

from __future__ import annotations

import json
from typing import Any

from chalice import Response

from chalicelib import api, auth, commands, connections, protocol
from chalicelib.observability import logger
from chalicelib.protocol import CommandError, ErrorCode
from chalicelib.push import get_pusher

# -- WebSocket ---------------------------------------------------------------


def ws_connect(event: Any) -> Any:
    raw = event.to_dict()
    try:
        identity = auth.identity_from_query(raw.get("queryStringParameters"))
    except auth.AuthError as exc:
        return _refuse(401, ErrorCode.UNAUTHORIZED, exc.message)
    refusal = commands.connect_refusal(identity)
    if refusal is not None:
        return _refuse(403, refusal.code, refusal.message)
    connections.register(event.connection_id, identity, raw["requestContext"]["connectedAt"])
    logger.info("connected", extra={"connection_id": event.connection_id, "user_id": identity.user_id})
    return None


def _refuse(status: int, code: ErrorCode, message: str) -> Response:
    return Response(body=json.dumps({"code": code.value, "message": message}), status_code=status)


def ws_message(event: Any) -> None:
    connection_id = event.connection_id
    raw = event.to_dict()
    ref = None
    try:
        if raw.get("isBase64Encoded"):
            raise CommandError(ErrorCode.BAD_REQUEST, "binary frames are not supported; send JSON text")
        try:
            ref = protocol.read_ref(json.loads(event.body))
        except (TypeError, ValueError):
            ref = None
        command = protocol.parse_command(event.body)
        caller = connections.lookup(connection_id)
        if caller is None:
            raise CommandError(ErrorCode.UNAUTHORIZED, "connection is not registered; reconnect")
        data = commands.dispatch(caller, command)
        answer = protocol.reply(command.ref, data)
    except CommandError as exc:
        answer = protocol.error(ref, exc.code, exc.message, exc.data)
    except Exception:
        logger.exception("command failed", extra={"connection_id": connection_id})
        answer = protocol.error(ref, ErrorCode.INTERNAL, "internal error")
    if not get_pusher().send(connection_id, answer):
        commands.connection_gone(connection_id)


def ws_disconnect(event: Any) -> None:
    commands.connection_gone(event.connection_id)


# -- queues and schedules ----------------------------------------------------


def moderation_batch(event: Any) -> Any:
    return {"batchItemFailures": []}


def fanout_batch(event: Any) -> Any:
    return {"batchItemFailures": []}


def sweep(event: Any) -> Any:
    return None


# -- REST --------------------------------------------------------------------


@api.endpoint
def whoami(request: Any) -> dict[str, Any]:
    identity = api.caller(request)
    return {"user_id": identity.user_id, "username": identity.username, "groups": sorted(identity.groups)}
