"""Messages to clients through API Gateway's @connections management API.

Two ways to post, same semantics (SigV4-signed, 429 retried with backoff, 410
reported as gone, anything else counted as failed, never silently dropped):

- `SignedPoster`: the fan-out path. botocore signs each request (SigV4Auth)
  and a pooled keep-alive urllib3 client sends it; it skips boto3's per-call
  machinery (parameter validation, serialisation, event hooks), which costs
  about 1 ms of CPU per post.
- the boto3 `apigatewaymanagementapi` client: single sends, close and info,
  and the naive baseline the benchmark compares against.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from chalicelib.config import get_settings

log = logging.getLogger(__name__)

GONE, OK, FAILED = "gone", "ok", "failed"


@dataclass
class Delivery:
    delivered: int = 0
    gone: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    throttled: int = 0  # 429s that were retried
    queued: int = 0  # handed to the fan-out queue in shards

    def add(self, other: Delivery) -> None:
        self.delivered += other.delivered
        self.gone += other.gone
        self.failed += other.failed
        self.throttled += other.throttled
        self.queued += other.queued


class SignedPoster:
    """post_to_connection as a signed HTTP POST over a pooled keep-alive connection."""

    RETRYABLE = frozenset({429, 500, 502, 503, 504})

    def __init__(self, endpoint: str, region: str, workers: int, max_attempts: int = 5) -> None:
        import boto3
        import urllib3
        from botocore.auth import SigV4Auth

        self.endpoint = endpoint.rstrip("/")
        self.region = region
        self.max_attempts = max_attempts
        self._session = boto3.session.Session()
        self._signer_class = SigV4Auth
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=workers,
            block=True,
            retries=False,
            timeout=urllib3.Timeout(connect=2.0, read=5.0),
        )

    def _signed_headers(self, url: str, data: bytes) -> dict[str, str]:
        from botocore.awsrequest import AWSRequest

        credentials = self._session.get_credentials()
        request = AWSRequest(method="POST", url=url, data=data)
        self._signer_class(credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(request)
        return dict(request.headers.items())

    def post(self, connection_id: str, data: bytes) -> tuple[str, int]:
        """Returns (outcome, number of 429s retried)."""
        url = f"{self.endpoint}/@connections/{quote(connection_id, safe='')}"
        throttled = 0
        for attempt in range(self.max_attempts):
            try:
                response = self._pool.request("POST", url, body=data, headers=self._signed_headers(url, data))
                status = response.status
            except Exception:
                log.warning("post failed to reach API Gateway: %s", connection_id)
                status = 503
            if status == 200:
                return OK, throttled
            if status == 410:
                return GONE, throttled
            if status not in self.RETRYABLE or attempt == self.max_attempts - 1:
                log.warning("post_to_connection answered %s", status)
                return FAILED, throttled
            if status == 429:
                throttled += 1
            # full jitter, as botocore's standard mode: base 50 ms, cap 2 s
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
        return FAILED, throttled


class Pusher:
    """Sends to one connection or many; sorts the outcomes into delivered, gone and failed."""

    def __init__(self, endpoint: str, region: str, workers: int, naive: bool = False) -> None:
        import boto3
        from botocore.config import Config

        self.endpoint = endpoint
        self.naive = naive
        self.client = boto3.session.Session().client(
            "apigatewaymanagementapi",
            endpoint_url=endpoint,
            region_name=region,
            config=Config(
                # standard mode retries 429 LimitExceeded with backoff
                retries={"mode": "standard", "max_attempts": 5},
                max_pool_connections=max(workers, 10),
                connect_timeout=2,
                read_timeout=5,
                tcp_keepalive=True,
            ),
        )
        self._gone = self.client.exceptions.GoneException
        self._poster = SignedPoster(endpoint, region, workers)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="push")

    def send(self, connection_id: str, message: dict[str, Any] | bytes) -> bool:
        """Post one message with boto3; False when the connection is gone."""
        data = message if isinstance(message, bytes) else encode(message)
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data)
        except self._gone:
            return False
        return True

    def send_many(self, connection_ids: Iterable[str], message: dict[str, Any] | bytes) -> Delivery:
        """Post the same message to many connections: in parallel, or one by one with boto3 (naive)."""
        data = message if isinstance(message, bytes) else encode(message)
        ids = list(dict.fromkeys(connection_ids))
        result = Delivery()
        if not ids:
            return result
        if self.naive:
            for cid in ids:
                self._record(result, cid, self._boto3_outcome(cid, data))
            return result
        outcomes = self._pool.map(lambda cid: (cid, self._poster.post(cid, data)), ids)
        for cid, (outcome, throttled) in outcomes:
            result.throttled += throttled
            self._record(result, cid, outcome)
        return result

    def _boto3_outcome(self, cid: str, data: bytes) -> str:
        try:
            return OK if self.send(cid, data) else GONE
        except Exception:
            log.warning("post_to_connection failed", exc_info=True)
            return FAILED

    @staticmethod
    def _record(result: Delivery, cid: str, outcome: str) -> None:
        if outcome == OK:
            result.delivered += 1
        elif outcome == GONE:
            result.gone.append(cid)
        else:
            result.failed.append(cid)

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


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode()


@lru_cache(maxsize=1)
def get_pusher() -> Pusher:
    settings = get_settings()
    return Pusher(
        settings.websocket_endpoint, settings.region, settings.fanout_workers, settings.naive_fanout
    )
