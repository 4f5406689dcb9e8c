"""Messages to clients through API Gateway's @connections management API.

Two ways to post, same semantics (SigV4-signed, 429 retried with backoff, 410
reported as gone, anything else counted as failed, never silently dropped):

- `SignedPoster`: the fan-out path. Each request is signed with SigV4 by
  `SigV4Signer` (hmac, a signing key cached per day) and sent over pooled
  keep-alive `http.client` connections; it skips boto3's per-call machinery
  (parameter validation, serialisation, event hooks: about 1 ms of CPU per
  post) and urllib3's (most of the old path's 0.5 ms).
- the boto3 `apigatewaymanagementapi` client: single sends, close and info,
  and the naive baseline the benchmark compares against.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import queue
import random
import ssl
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

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
    published: int = 0  # publishes to the broadcast tier (one reaches every subscriber)

    def add(self, other: Delivery) -> None:
        self.delivered += other.delivered
        self.gone += other.gone
        self.failed += other.failed
        self.throttled += other.throttled
        self.queued += other.queued
        self.published += other.published


class SigV4Signer:
    """SigV4 for `execute-api` POSTs, computed with hmac and a signing key cached per day.

    The same canonical request and signature botocore's SigV4Auth computes (checked in
    tests/unit/test_push.py), at a fraction of its CPU: botocore builds an AWSRequest,
    header maps and the signing key afresh for every call.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
    """

    def __init__(self, region: str, service: str = "execute-api", credentials: Any = None) -> None:
        self.region = region
        self.service = service
        if credentials is None:
            import boto3

            # botocore's credential chain: environment (Lambda), profile, container, instance
            # metadata; refreshable credentials refresh themselves in get_frozen_credentials().
            credentials = boto3.session.Session().get_credentials()
        self._credentials = credentials
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret: str, datestamp: str) -> bytes:
        key = self._keys.get((secret, datestamp))
        if key is None:
            k = hmac.new(("AWS4" + secret).encode(), datestamp.encode(), hashlib.sha256).digest()
            for part in (self.region, self.service, "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, datestamp): k}  # yesterday's key, or a rotated secret's, is dropped
            key = k
        return key

    def headers(self, host: str, path: str, body: bytes, now: float | None = None) -> dict[str, str]:
        """The headers that sign a POST of `body` to `path` (as sent, percent-encoded) on `host`."""
        if self._credentials is None:
            raise RuntimeError("no AWS credentials to sign @connections posts with")
        creds = self._credentials.get_frozen_credentials()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        datestamp = amz_date[:8]
        if creds.token:
            canonical_headers = f"host:{host}\nx-amz-date:{amz_date}\nx-amz-security-token:{creds.token}\n"
            signed = "host;x-amz-date;x-amz-security-token"
        else:
            canonical_headers = f"host:{host}\nx-amz-date:{amz_date}\n"
            signed = "host;x-amz-date"
        # botocore quotes the path once more (safe "/~"), so "%3D" is signed as "%253D"
        canonical = "\n".join(
            ("POST", quote(path, safe="/~"), "", canonical_headers, signed, hashlib.sha256(body).hexdigest())
        )
        scope = f"{datestamp}/{self.region}/{self.service}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(
            self._signing_key(creds.secret_key, datestamp), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers = {
            "Host": host,
            "X-Amz-Date": amz_date,
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
                f"SignedHeaders={signed}, Signature={signature}"
            ),
        }
        if creds.token:
            headers["X-Amz-Security-Token"] = creds.token
        return headers


class SignedPoster:
    """post_to_connection as a SigV4-signed POST over pooled keep-alive http.client connections."""

    RETRYABLE = frozenset({429, 500, 502, 503, 504})
    TIMEOUT = 5.0

    def __init__(self, endpoint: str, region: str, workers: int, max_attempts: int = 5) -> None:
        parts = urlsplit(endpoint.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint!r}")
        self.secure = parts.scheme == "https"
        default_port = 443 if self.secure else 80
        self.address = (parts.hostname, parts.port or default_port)
        # the Host header as http.client would send it: with the port only when not the default
        self.host = parts.netloc if parts.port not in (None, default_port) else parts.hostname
        self.prefix = parts.path
        self.region = region
        self.max_attempts = max_attempts
        self.signer = SigV4Signer(region)
        self._idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue(maxsize=max(workers, 1))
        self._tls = ssl.create_default_context() if self.secure else None

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle keep-alive connection (True: reused) or a new one."""
        try:
            return self._idle.get_nowait(), True
        except queue.Empty:
            pass
        host, port = self.address
        if self._tls is not None:
            return http.client.HTTPSConnection(host, port, timeout=self.TIMEOUT, context=self._tls), False
        return http.client.HTTPConnection(host, port, timeout=self.TIMEOUT), False

    def _release(self, conn: http.client.HTTPConnection) -> None:
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def _send(self, path: str, data: bytes) -> int:
        """One POST; a kept-alive connection the server closed meanwhile is replaced once."""
        while True:
            conn, reused = self._connection()
            try:
                conn.request("POST", path, body=data, headers=self.signer.headers(self.host, path, data))
                response = conn.getresponse()
                response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if reused:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if response.will_close:
                conn.close()
            else:
                self._release(conn)
            return response.status

    def post(self, connection_id: str, data: bytes) -> tuple[str, int]:
        """Returns (outcome, number of 429s retried)."""
        path = f"{self.prefix}/@connections/{quote(connection_id, safe='')}"
        throttled = 0
        for attempt in range(self.max_attempts):
            try:
                status = self._send(path, data)
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
