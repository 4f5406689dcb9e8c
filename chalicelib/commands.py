"""WebSocket commands: authorise from the verified caller, then act."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chalicelib import connections, protocol
from chalicelib.auth import Identity
from chalicelib.models import Connection
from chalicelib.protocol import CommandError


def connect_refusal(identity: Identity) -> CommandError | None:
    """Why this identity may not open a connection, if it may not."""
    return None


def connection_gone(connection_id: str) -> None:
    """A socket closed or answered 410: forget it and what hung on it."""
    connections.forget(connection_id)


def ping(caller: Connection, command: protocol.Ping) -> dict[str, Any]:
    return {"user_id": caller.user_id, "connection_id": caller.connection_id, "server_time": time.time()}


HANDLERS: dict[str, Callable[[Connection, Any], dict[str, Any]]] = {
    "ping": ping,
}


def dispatch(caller: Connection, command: Any) -> dict[str, Any]:
    return HANDLERS[command.action](caller, command)
