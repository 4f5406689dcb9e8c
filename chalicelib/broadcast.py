"""The broadcast tier: a space's room events published ONCE to its channel on AWS AppSync Events.

The service fans each publish out to every subscriber of `/spaces/{space_id}`, so a stage
change in a 10,000-listener space costs one signed HTTP POST from our functions instead of
10,000 posts to API Gateway. API Gateway keeps commands, replies and private events.

- Publishing: `POST https://{http domain}/event` with `{"channel", "events": [JSON strings]}`
  (at most 5 events), SigV4-signed for the service `appsync` (IAM: `appsync:EventPublish` on
  the namespace). https://docs.aws.amazon.com/appsync/latest/eventapi/publish-http.html
- Subscribing: the client's own WebSocket to the realtime endpoint (`aws-appsync-event-ws`),
  authorised by the Lambda authorizer below, which lets only a present, not removed member of
  the space subscribe to its channel, checked at every subscribe (never cached).
  https://docs.aws.amazon.com/appsync/latest/eventapi/configure-event-api-auth.html
- AppSync Events has no call that ends one client's subscription. A removed member is told
  (`participant.removed`) and a well-behaved client unsubscribes; one that does not keeps
  receiving the room's public events (stage, counts, reactions, the end) until its socket
  closes, and can never subscribe again (docs/limits.md, "Broadcast tier").

Events keep their per-space `seq` (chalicelib/counters.py), so a client that missed one
(subscribed late, lost its socket) sees the gap and sends `space.sync`, as on API Gateway.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from chalicelib.config import get_settings

log = logging.getLogger(__name__)

NAMESPACE = "spaces"
SERVICE = "appsync"  # SigV4 signing name of the Event API's HTTP endpoint
MAX_EVENTS_PER_PUBLISH = 5
_CHANNEL_RE = re.compile(rf"^/{NAMESPACE}/(?P<space_id>[A-Za-z0-9-]{{1,50}})$")


def channel(space_id: str) -> str:
    return f"/{NAMESPACE}/{space_id}"


def space_of(channel_path: Any) -> str | None:
    """The space a channel path belongs to; None for anything but exactly /spaces/{id}."""
    match = _CHANNEL_RE.fullmatch(channel_path) if isinstance(channel_path, str) else None
    return match["space_id"] if match else None


def enabled() -> bool:
    return bool(get_settings().broadcast_http_url)


def carries(flagged: bool) -> bool:
    """Whether a space's room events go through the tier: every space when the threshold is 0,
    else those that once reached it (the flag on the seq counter, sticky for the space's life)."""
    settings = get_settings()
    if not settings.broadcast_http_url or settings.naive_fanout:
        return False
    return settings.broadcast_threshold <= 0 or flagged


def client_info(space_id: str) -> dict[str, Any] | None:
    """What a joiner needs to subscribe (docs/asyncapi.yaml, SpaceJoinReply.broadcast)."""
    settings = get_settings()
    if not settings.broadcast_http_url:
        return None
    return {
        "channel": channel(space_id),
        "realtime_url": settings.broadcast_realtime_url,
        "http_host": urlsplit(settings.broadcast_http_url).netloc,
        "auth": "AWS_LAMBDA",
    }


# -- publishing ----------------------------------------------------------------------


class PublishError(Exception):
    pass


class Publisher:
    """Signed HTTP publishes to the Event API over a pooled keep-alive connection.

    Signed as push.SignedPoster signs @connections posts (push.SigV4Signer, for the
    service `appsync`), sent with urllib3. 429 and 5xx are retried with full jitter.
    """

    RETRYABLE = frozenset({429, 500, 502, 503, 504})

    def __init__(self, url: str, region: str, max_attempts: int = 4, credentials: Any = None) -> None:
        import urllib3

        from chalicelib.push import SigV4Signer

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.host, self.path = parts.netloc, parts.path or "/"
        self.region = region
        self.max_attempts = max_attempts
        self.published = 0
        self._signer = SigV4Signer(region, SERVICE, credentials)
        self._pool = urllib3.PoolManager(
            num_pools=2, maxsize=8, retries=False, timeout=urllib3.Timeout(connect=2.0, read=5.0)
        )

    def _headers(self, body: bytes) -> dict[str, str]:
        headers = self._signer.headers(self.host, self.path, body)
        headers["Content-Type"] = "application/json"
        return headers

    def publish(self, channel_path: str, events: list[dict[str, Any]]) -> None:
        """One POST with up to 5 events; PublishError unless the service took every one."""
        if not 1 <= len(events) <= MAX_EVENTS_PER_PUBLISH:
            raise ValueError(f"a publish carries 1 to {MAX_EVENTS_PER_PUBLISH} events")
        encoded = [json.dumps(e, separators=(",", ":"), default=str) for e in events]
        body = json.dumps({"channel": channel_path, "events": encoded}, separators=(",", ":")).encode()
        for attempt in range(self.max_attempts):
            try:
                response = self._pool.request("POST", self.url, body=body, headers=self._headers(body))
                status, data = response.status, response.data
            except Exception as exc:
                log.warning("publish did not reach the Event API: %s", exc)
                status, data = 503, b""
            if status == 200:
                failed = _failed(data)
                if failed:
                    raise PublishError(f"the Event API refused {len(failed)} events: {failed[:2]}")
                self.published += 1
                return
            if status not in self.RETRYABLE or attempt == self.max_attempts - 1:
                raise PublishError(f"the Event API answered {status}: {data[:200]!r}")
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))


def _failed(data: bytes) -> list[Any]:
    try:
        answer = json.loads(data)
    except ValueError:
        raise PublishError("the Event API answered 200 with a body that is not JSON") from None
    failed = answer.get("failed") if isinstance(answer, dict) else None
    return list(failed or [])


def get_publisher() -> Publisher:
    settings = get_settings()
    return _publisher(settings.broadcast_http_url, settings.region)


@lru_cache(maxsize=2)
def _publisher(url: str, region: str) -> Publisher:
    return Publisher(url, region)


def reset_publishers() -> None:
    _publisher.cache_clear()


# -- the Lambda authorizer -------------------------------------------------------------
# AppSync sends {"authorizationToken", "requestContext": {"operation": "EVENT_CONNECT" |
# "EVENT_SUBSCRIBE" | "EVENT_PUBLISH", "channelNamespaceName", "channel", ...}, "requestHeaders"}
# and expects {"isAuthorized", "ttlOverride", "handlerContext"}. The local stack's emulator
# calls this same function (devstack/eventapi.py).


def authorize(event: Any) -> dict[str, Any]:
    """Connect: any valid sohbet token. Subscribe: a present, not removed member of the channel's
    space. Publish: never (only our functions publish, with IAM)."""
    from chalicelib import auth

    denied: dict[str, Any] = {"isAuthorized": False, "ttlOverride": 0}
    if not isinstance(event, dict):
        return denied
    context = event.get("requestContext")
    operation = context.get("operation") if isinstance(context, dict) else None
    token = event.get("authorizationToken")
    if not isinstance(token, str) or operation not in ("EVENT_CONNECT", "EVENT_SUBSCRIBE"):
        return denied
    try:
        identity = auth.identity_from_token(token)
    except auth.AuthError:
        return denied
    allowed = {"isAuthorized": True, "ttlOverride": 0, "handlerContext": {"user_id": identity.user_id}}
    if operation == "EVENT_CONNECT":
        return allowed
    assert isinstance(context, dict)
    space_id = space_of(context.get("channel"))
    if space_id is None or not is_present_member(space_id, identity.user_id):
        return denied
    return allowed


def is_present_member(space_id: str, user_id: str) -> bool:
    from chalicelib.models import Member

    try:
        member = Member.get(space_id, user_id, consistent_read=True)
    except Member.DoesNotExist:
        return False
    return bool(member.present) and not bool(member.removed)
