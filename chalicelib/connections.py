"""Connection records: who is on which socket, and clean-up when a socket is gone."""

from __future__ import annotations

import time
import zlib
from collections import OrderedDict
from collections.abc import Callable

from pynamodb.constants import ALL_OLD
from pynamodb.exceptions import DoesNotExist

from chalicelib import clients
from chalicelib.auth import Identity
from chalicelib.config import get_settings
from chalicelib.models import Connection

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
    )
    record.save()
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
    response = Connection._get_connection().delete_item(connection_id, return_values=ALL_OLD)
    old = response.get("Attributes")
    return Connection.from_raw_data(old) if old else None


def of_user(user_id: str) -> list[Connection]:
    return list(Connection.by_user.query(user_id))


def sweep_stale(on_gone: Callable[[str], None], older_than_seconds: int = 300) -> int:
    """Find connections whose $disconnect never came ($disconnect is best effort).

    Each shard is a Query for records not checked for a while; API Gateway is
    asked about each, and the ones it no longer knows are cleaned up.
    """

    now = int(time.time())
    cutoff = now - older_than_seconds
    gone = 0
    for shard in range(SWEEP_SHARDS):
        for record in Connection.by_last_seen.query(str(shard), Connection.last_seen < cutoff, limit=200):
            if clients.pusher().info(record.connection_id) is None:
                on_gone(record.connection_id)
                gone += 1
            else:
                record.update(actions=[Connection.last_seen.set(now)])
    return gone
