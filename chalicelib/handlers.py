"""Entry points called by app.py. Filled in by the WebSocket, queue and REST work."""

from __future__ import annotations

from typing import Any


def ws_connect(event: Any) -> Any:
    return {"statusCode": 200}


def ws_message(event: Any) -> Any:
    return {"statusCode": 200}


def ws_disconnect(event: Any) -> Any:
    return {"statusCode": 200}


def moderation_batch(event: Any) -> Any:
    return {"batchItemFailures": []}


def fanout_batch(event: Any) -> Any:
    return {"batchItemFailures": []}


def sweep(event: Any) -> Any:
    return None


def whoami(request: Any) -> Any:
    return {}
