"""Messages to clients through API Gateway's @connections management API."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from chalicelib.config import get_settings

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    delivered: int = 0
    gone: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class Pusher:
    """post_to_connection / delete_connection / get_connection with the outcomes sorted out.

    botocore's standard retry mode retries 429 LimitExceeded with backoff;
    GoneException (410) is an answer, not an error: the connection is gone.
    """

    def __init__(self, endpoint: str, workers: int) -> None:
        import boto3
        from botocore.config import Config

        self.endpoint = endpoint
        self.client = boto3.session.Session().client(
            "apigatewaymanagementapi",
            endpoint_url=endpoint,
            config=Config(
                retries={"mode": "standard", "max_attempts": 5},
                max_pool_connections=max(workers, 10),
                connect_timeout=2,
                read_timeout=5,
                tcp_keepalive=True,
            ),
        )
        self._gone = self.client.exceptions.GoneException
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="push")

    def send(self, connection_id: str, message: dict[str, Any] | bytes) -> bool:
        """Post one message; False when the connection is gone."""
        data = message if isinstance(message, bytes) else json.dumps(message, default=str).encode()
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data)
        except self._gone:
            return False
        return True

    def send_many(self, connection_ids: Iterable[str], message: dict[str, Any]) -> Delivery:
        """Post the same message to many connections in parallel."""
        data = json.dumps(message, default=str).encode()
        ids = list(dict.fromkeys(connection_ids))
        result = Delivery()
        if not ids:
            return result

        def post(cid: str) -> tuple[str, bool | None]:
            try:
                return cid, self.send(cid, data)
            except Exception:
                log.warning("post_to_connection failed", extra={"connection_id": cid}, exc_info=True)
                return cid, None

        outcomes = [post(ids[0])] if len(ids) == 1 else list(self._pool.map(post, ids))
        for cid, ok in outcomes:
            if ok:
                result.delivered += 1
            elif ok is False:
                result.gone.append(cid)
            else:
                result.failed.append(cid)
        return result

    def close(self, connection_id: str) -> bool:
        try:
            self.client.delete_connection(ConnectionId=connection_id)
        except self._gone:
            return False
        return True

    def info(self, connection_id: str) -> dict[str, Any] | None:
        try:
            return self.client.get_connection(ConnectionId=connection_id)
        except self._gone:
            return None


@lru_cache(maxsize=1)
def get_pusher() -> Pusher:
    settings = get_settings()
    return Pusher(settings.websocket_endpoint, settings.fanout_workers)
