"""Events to the people in a space: broadcasts with a per-space seq, and private messages.

A broadcast of a space on the broadcast tier is ONE publish to its channel
(chalicelib/broadcast.py); otherwise, or if that publish fails, its recipients
come from a Query on the space's members (never a Scan) and are posted to in
parallel; a connection that answers 410 is cleaned up, not retried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from chalicelib import broadcast as tier
from chalicelib import clients, counters, observability, protocol, shards
from chalicelib.config import get_settings
from chalicelib.models import Presence
from chalicelib.observability import logger
from chalicelib.push import Delivery, encode

OnGone = Callable[[str], None]


def _ignore(connection_id: str) -> None:
    return None


# What to do with a connection that turned out gone (410). Fan-out sits below the spaces
# service that knows (a gone socket leaves its space, which sends events), so the
# composition root hands it down once: handlers.py calls handle_gone_with().
_on_gone: OnGone = _ignore


def handle_gone_with(callback: OnGone) -> None:
    global _on_gone
    _on_gone = callback


_held: ContextVar[list[Callable[[], Any]] | None] = ContextVar("held_events", default=None)


class Outbox:
    def __init__(self) -> None:
        self.pending: list[Callable[[], Any]] = []

    def flush(self) -> None:
        for send in self.pending:
            try:
                send()
            except Exception:
                logger.exception("event delivery failed")
        self.pending.clear()


@contextmanager
def held() -> Iterator[Outbox]:
    """Hold the events a command causes until its reply has gone out, so the caller
    gets the reply (with the state it produced) before the events about it."""
    outbox = Outbox()
    token = _held.set(outbox.pending)
    try:
        yield outbox
    finally:
        _held.reset(token)


def _later(send: Callable[[], Any]) -> bool:
    pending = _held.get()
    if pending is None:
        return False
    pending.append(send)
    return True


def recipients(space_id: str) -> list[str]:
    """Connection ids of everyone present in the space: one (paginated) Query of its presence
    rows, which hold exactly the members whose socket is open, so a space where thousands came
    and went reads only those still there (docs/data-model.md).

    Strongly consistent: an eventually consistent Query may miss a member whose join committed
    just before this event was numbered, and the join's reply promises that member every later
    event. https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.ReadConsistency.html
    """
    rows = Presence.query(space_id, consistent_read=True, attributes_to_get=["connection_id"])
    return [row.connection_id for row in rows]


def cleanup_gone(connection_id: str) -> None:
    try:
        _on_gone(connection_id)
    except Exception:
        logger.exception("cleanup of a gone connection failed", extra={"connection_id": connection_id})


def deliver(connection_ids: Iterable[str], message: dict[str, Any]) -> Delivery:
    """Post now, or past the shard threshold hand the posting to the fan-out queue."""
    settings = get_settings()
    ids = list(dict.fromkeys(connection_ids))
    if len(ids) > settings.fanout_shard_threshold and not settings.naive_fanout:
        shards.enqueue(ids, encode(message))
        return Delivery(queued=len(ids))
    result = clients.pusher().send_many(ids, message)
    observability.record_delivery(result)
    for connection_id in result.gone:
        cleanup_gone(connection_id)
    if result.failed:
        logger.warning("posts failed", extra={"failed": len(result.failed), "event": message.get("event")})
    return result


def broadcast(space_id: str, name: str, **payload: Any) -> Delivery | None:
    """An event everyone in the space receives, numbered by the space's seq."""
    if _later(lambda: broadcast(space_id, name, **payload)):
        return None
    seq, flagged = counters.next_seq(space_id)
    message = protocol.event(name, space_id, seq, **payload)
    if tier.carries(flagged):
        try:
            clients.publisher().publish(tier.channel(space_id), [message])
        except Exception:
            # Never lost: the members get it through API Gateway instead.
            logger.exception("broadcast publish failed; posting instead", extra={"event": name})
            observability.count("BroadcastFallbacks")
        else:
            observability.count("BroadcastPublishes")
            return Delivery(published=1)
    return deliver(recipients(space_id), message)


def send_private(
    connection_ids: Iterable[str], name: str, space_id: str | None, **payload: Any
) -> Delivery | None:
    """An event for a few people (hosts, one user); it carries no seq."""
    ids = list(connection_ids)
    if _later(lambda: send_private(ids, name, space_id, **payload)):
        return None
    connection_ids = ids
    return deliver([c for c in connection_ids if c], protocol.event(name, space_id, None, **payload))


def disconnect(connection_id: str) -> None:
    """Close a client's socket (after any events held for it)."""
    if _later(lambda: disconnect(connection_id)):
        return
    clients.pusher().close(connection_id)
