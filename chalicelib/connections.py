"""Connection records: who is on which socket, and clean-up when a socket is gone."""

from __future__ import annotations

import time
import zlib

from pynamodb.exceptions import DoesNotExist

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
    return record


def lookup(connection_id: str) -> Connection | None:
    try:
        return Connection.get(connection_id, consistent_read=True)
    except DoesNotExist:
        return None


def forget(connection_id: str) -> Connection | None:
    """Delete the record; returns what it was, so membership can be cleaned up too."""
    try:
        record = Connection.get(connection_id, consistent_read=True)
    except DoesNotExist:
        return None
    record.delete()
    return record


def of_user(user_id: str) -> list[Connection]:
    return list(Connection.by_user.query(user_id))
