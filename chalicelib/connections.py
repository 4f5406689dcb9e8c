"""Connection records: who is on which socket, and clean-up when a socket is gone."""

from __future__ import annotations

import time
import zlib
from collections import OrderedDict
from collections.abc import Callable

from pynamodb.constants import ALL_OLD
from pynamodb.exceptions import DoesNotExist

from chalicelib import clients, gate
from chalicelib.auth import Identity
from chalicelib.config import get_settings
from chalicelib.models import Connection, User

SWEEP_SHARDS = 8


def sweep_shard(connection_id: str) -> str:
    return str(zlib.crc32(connection_id.encode()) % SWEEP_SHARDS)


def register(connection_id: str, identity: Identity, connected_at_ms: int) -> Connection:
    now = int(time.time())
    record = Connection(
        connection_id=connection_id,
        user_id=identity.user_id,
        groups=set(identity.groups) or None,
        connected_at=connected_at_ms,
        last_seen=now,
        sweep_shard=sweep_shard(connection_id),
        # TTL: past API Gateway's 2-hour maximum the socket cannot exist.
        expires_at=now + get_settings().connection_ttl_seconds,
        token_exp=identity.expires_at,
    )
    record.save()
    # the notify consumer finds a user's open sockets on the user item (one BatchGetItem
    # per hundred followers), not with a Query per follower
    User(identity.user_id).update(actions=[User.connection_ids.add({connection_id})])
    _remember(record)
    return record


# A connection's user never changes, so a warm Lambda container can keep the
# answer: commands then skip the GetItem. Closed connections are evicted.
_CACHE: OrderedDict[str, Connection] = OrderedDict()
_CACHE_SIZE = 10_000


def lookup(connection_id: str) -> Connection | None:
    cached = _CACHE.get(connection_id)
    if cached is not None:
        return cached
    try:
        record = Connection.get(connection_id, consistent_read=True)
    except DoesNotExist:
        return None
    _remember(record)
    return record


def _remember(record: Connection) -> None:
    _CACHE[record.connection_id] = record
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)


def forget(connection_id: str) -> Connection | None:
    """Delete the record; returns what it was, so membership can be cleaned up too.

    One DeleteItem returning the old item: of two clean-ups racing for the same
    socket ($disconnect and a 410), only one gets the record back.
    """
    _CACHE.pop(connection_id, None)
    gate.forget(connection_id)
    response = Connection._get_connection().delete_item(connection_id, return_values=ALL_OLD)
    old = response.get("Attributes")
    if not old:
        return None
    record = Connection.from_raw_data(old)
    User(record.user_id).update(actions=[User.connection_ids.delete({connection_id})])
    return record


def of_user(user_id: str) -> list[Connection]:
    return list(Connection.by_user.query(user_id))


# $connect can take up to API Gateway's 29 s integration timeout; younger sockets may
# still be in theirs (and answer 410 until it returns), so they are never pruned.
CONNECT_WINDOW_MS = 30_000


def over_cap(record: Connection, cap: int, on_gone: Callable[[str], None]) -> bool:
    """Whether `record`, just registered, makes its user hold more than `cap` open sockets.

    Register, then count (a Query on by_user): of racing connects, the last to count
    sees all the others, so more than `cap` can never all pass (a race may refuse one
    that would have fit; the client retries). Records whose $disconnect never came
    would count too, so over the cap the older ones are checked with API Gateway and
    the gone ones cleaned up first. GSIs are eventually consistent: in AWS a connect
    racing another by milliseconds may briefly exceed the cap by one.
    """

    def others() -> list[Connection]:
        found = Connection.by_user.query(record.user_id, limit=cap + 50)
        return [c for c in found if c.connection_id != record.connection_id]

    if len(others()) < cap:
        return False
    settled = record.connected_at - CONNECT_WINDOW_MS
    for other in others():
        if other.connected_at < settled and clients.pusher().info(other.connection_id) is None:
            on_gone(other.connection_id)
    return len(others()) >= cap


def sweep_stale(on_gone: Callable[[str], None], older_than_seconds: int = 300) -> int:
    """Find connections whose $disconnect never came ($disconnect is best effort),
    and close the ones whose identity has ended (token expired, account suspended).

    Each shard is a Query for records not checked for a while, so every socket is
    visited about every `older_than_seconds`: an idle socket outlives its token by
    at most that plus the sweep's period (an active one not at all: chalicelib.gate).
    """
    from chalicelib.suspensions import suspended_until

    now = int(time.time())
    cutoff = now - older_than_seconds
    gone = 0
    suspended: dict[str, bool] = {}
    for shard in range(SWEEP_SHARDS):
        for record in Connection.by_last_seen.query(str(shard), Connection.last_seen < cutoff, limit=200):
            if record.user_id not in suspended:
                suspended[record.user_id] = suspended_until(record.user_id) is not None
            ended = gate.token_expired(record.token_exp, now) or suspended[record.user_id]
            if ended:
                clients.pusher().close(record.connection_id)
            if ended or clients.pusher().info(record.connection_id) is None:
                on_gone(record.connection_id)
                gone += 1
            else:
                record.update(actions=[Connection.last_seen.set(now)])
    return gone
