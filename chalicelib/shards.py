"""Big broadcasts: split the recipients into shards on the fan-out queue.

One invocation posting to 10,000 connections would near API Gateway's 29 s
integration limit; shards of a few hundred are posted by the fan-out
consumer, many invocations at once. A shard's connections that fail for a
reason other than 410 are re-queued (with a delay) as a smaller shard, a few
times; what still fails is logged and counted, never dropped in silence.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from chalicelib import clients, observability
from chalicelib.config import get_settings
from chalicelib.observability import logger
from chalicelib.push import Delivery

MAX_ATTEMPTS = 3


def split(connection_ids: Sequence[str], size: int) -> list[list[str]]:
    return [list(connection_ids[i : i + size]) for i in range(0, len(connection_ids), size)]


def enqueue(connection_ids: Sequence[str], data: bytes, attempt: int = 1, delay_seconds: int = 0) -> int:
    """Queue the broadcast as shards; returns how many shards."""
    settings = get_settings()
    shards = split(connection_ids, settings.fanout_shard_size)
    body_data = data.decode()
    entries = [
        {
            "Id": str(i),
            "MessageBody": json.dumps({"connection_ids": shard, "data": body_data, "attempt": attempt}),
            "DelaySeconds": delay_seconds,
        }
        for i, shard in enumerate(shards)
    ]
    for start in range(0, len(entries), 10):
        response = clients.sqs().send_message_batch(
            QueueUrl=settings.fanout_queue_url, Entries=entries[start : start + 10]
        )
        if response.get("Failed"):
            # A shard that cannot even be queued is an error the caller must see.
            raise RuntimeError(f"could not queue {len(response['Failed'])} fan-out shards")
    observability.count("FanoutShards", len(shards))
    return len(shards)


def post_shard(shard: Any, on_gone: Callable[[str], None]) -> Delivery:
    """Post one (decoded) shard: the fan-out consumer's record handler."""
    connection_ids = shard["connection_ids"]
    data = shard["data"].encode()
    attempt = int(shard.get("attempt", 1))
    if not isinstance(connection_ids, list) or not all(isinstance(c, str) for c in connection_ids):
        raise ValueError("connection_ids must be a list of strings")
    result = clients.pusher().send_many(connection_ids, data)
    observability.record_delivery(result)
    for connection_id in result.gone:
        on_gone(connection_id)
    if result.failed:
        if attempt < MAX_ATTEMPTS:
            enqueue(result.failed, data, attempt=attempt + 1, delay_seconds=2**attempt)
        else:
            logger.error("fan-out gave up on connections", extra={"failed": len(result.failed)})
    return result
