"""A space's hot counters, kept off the space item.

A join storm writes the listener count once per join. On the space item
(stage, meeting placement: about 3 KB, so 6 WCU per transactional write) that
would be one hot item far past DynamoDB's 1,000 WCU per partition. Instead
the count is split over SHARDS small items (`{space_id}#n{k}`, a user always
in shard k = crc32(user) % SHARDS), each costing 2 WCU per transactional
write; the event seq and the time of the last count event live on another
small item (`{space_id}#seq`). The items share the spaces table, and have
none of the attributes its indexes are keyed on.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.models import Model

from chalicelib.config import get_settings
from chalicelib.models import FromSettings

SHARDS = 16


class SpaceCounter(Model):
    class Meta:
        table_name = FromSettings("spaces_table")
        region = FromSettings("region")

    space_id = UnicodeAttribute(hash_key=True)  # "{space_id}#n{k}" or "{space_id}#seq"
    listeners = NumberAttribute(null=True)
    space_state = UnicodeAttribute(null=True)  # "ended" once the space has ended
    seq = NumberAttribute(null=True)
    published_at = NumberAttribute(null=True)
    # set once the space reached BROADCAST_THRESHOLD: its room events go through the broadcast tier
    broadcast = BooleanAttribute(null=True)


def shard_key(space_id: str, user_id: str) -> str:
    return f"{space_id}#n{zlib.crc32(user_id.encode()) % SHARDS}"


def shard_keys(space_id: str) -> list[str]:
    return [f"{space_id}#n{k}" for k in range(SHARDS)]


def seq_key(space_id: str) -> str:
    return f"{space_id}#seq"


def shard_cap(max_listeners: int) -> int:
    """Per-shard ceiling: the shards together admit max_listeners, give or take the hash's skew."""
    return -(-max_listeners // SHARDS) + 64


def join_update(space_id: str, user_id: str) -> tuple[SpaceCounter, list[Any], Any]:
    """The counter change of a listener joining (for a TransactWrite): +1, if the space is on and not full."""
    counter = SpaceCounter(shard_key(space_id, user_id))
    cap = shard_cap(get_settings().max_listeners)
    condition = (SpaceCounter.space_state.does_not_exist()) & (
        SpaceCounter.listeners.does_not_exist() | (SpaceCounter.listeners < cap)
    )
    return counter, [SpaceCounter.listeners.add(1)], condition


def change(space_id: str, user_id: str, delta: int) -> tuple[SpaceCounter, list[Any]]:
    return SpaceCounter(shard_key(space_id, user_id)), [SpaceCounter.listeners.add(delta)]


def listeners(space_id: str) -> int:
    """The exact count: one strongly consistent BatchGetItem of the shards."""
    shards = SpaceCounter.batch_get(shard_keys(space_id), consistent_read=True)
    return sum(int(c.listeners or 0) for c in shards)


def next_seq(space_id: str) -> tuple[int, bool]:
    """The next event number, and whether the space's events go through the broadcast tier
    (read from the same UpdateItem's new image: no extra call)."""
    counter = SpaceCounter(seq_key(space_id))
    counter.update(actions=[SpaceCounter.seq.add(1)])
    return int(counter.seq or 0), bool(counter.broadcast)


def current_seq(space_id: str) -> int:
    """The last event number given out (a strongly consistent GetItem)."""
    try:
        return int(SpaceCounter.get(seq_key(space_id), consistent_read=True).seq or 0)
    except SpaceCounter.DoesNotExist:
        return 0


def mark_broadcast(space_id: str) -> bool:
    """Switch the space to the broadcast tier for good; True for the one caller that did it."""
    try:
        SpaceCounter(seq_key(space_id)).update(
            actions=[SpaceCounter.broadcast.set(True)],
            condition=SpaceCounter.broadcast.does_not_exist(),
        )
    except UpdateError:
        return False
    return True


def claim_publication(space_id: str, interval: float) -> bool:
    """True for exactly one caller per interval: the one who publishes the listener count."""
    now = time.time()
    try:
        SpaceCounter(seq_key(space_id)).update(
            actions=[SpaceCounter.published_at.set(now)],
            condition=SpaceCounter.published_at.does_not_exist()
            | (SpaceCounter.published_at <= now - interval),
        )
    except UpdateError:
        return False
    return True


def close_updates(space_id: str) -> list[tuple[SpaceCounter, list[Any]]]:
    """Mark every shard ended, inside the transaction that ends the space: later joins then fail."""
    ended = [SpaceCounter.space_state.set("ended")]
    return [(SpaceCounter(key), ended) for key in shard_keys(space_id)]
