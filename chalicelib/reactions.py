"""Coalesced reactions: counted as they come, shown to the room at most once per interval.

A reaction is one UpdateItem on one of SHARDS small tally items of its space
(`{space_id}#r{k}`, k from the reacting user, so 5,000 reactions/s spread under
DynamoDB's 1,000 WCU per partition). The writer that opens a tally (its `counts`
did not exist) claims the space's flush (`{space_id}#rx`, a conditional write);
the one claimant per interval queues a flush message on the fan-out queue,
delayed by REACTION_FLUSH_SECONDS. The flush releases the claim first, then takes
every open tally (an UpdateItem that removes it and returns the old values) and
broadcasts one `reactions` event. Posts per interval are the room's size once,
however many react; an interval ends with a flush even when the burst stops.

Races: a reaction that lands on a tally after the flush took it opens the tally
again and claims the (released) flush: it is in the next interval's event.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pynamodb.attributes import MapAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.models import Model

from chalicelib import clients
from chalicelib.config import get_settings
from chalicelib.db import condition_failed
from chalicelib.models import FromSettings
from chalicelib.observability import logger

SHARDS = 8
RECENT = 5  # recent senders shown with an aggregate
FLUSH_KIND = "reactions.flush"


class ReactionTally(Model):
    """A shard of a space's reactions since the last flush, or the space's flush claim."""

    class Meta:
        table_name = FromSettings("spaces_table")
        region = FromSettings("region")

    space_id = UnicodeAttribute(hash_key=True)  # "{space_id}#r{k}" or "{space_id}#rx"
    counts: MapAttribute[str, Any] = MapAttribute(null=True)  # emoji -> count; absent: tally closed
    last_user = UnicodeAttribute(null=True)
    last_emoji = UnicodeAttribute(null=True)
    last_at = NumberAttribute(null=True)
    flush_due = NumberAttribute(null=True)  # on the claim item: when the claimed flush runs


def shard_key(space_id: str, user_id: str) -> str:
    return f"{space_id}#r{zlib.crc32(user_id.encode()) % SHARDS}"


def shard_keys(space_id: str) -> list[str]:
    return [f"{space_id}#r{k}" for k in range(SHARDS)]


def claim_key(space_id: str) -> str:
    return f"{space_id}#rx"


# -- the aggregate (pure) -----------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """One shard's reactions since the last flush."""

    counts: dict[str, int]
    last_user: str | None = None
    last_emoji: str | None = None
    last_at: float = 0.0


@dataclass
class Aggregate:
    counts: Counter[str] = field(default_factory=Counter)
    recent: list[tuple[float, str, str]] = field(default_factory=list)  # (at, user, emoji)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def payload(self) -> dict[str, Any]:
        """The `reactions` event's fields: counts per emoji, the total, the latest senders first."""
        newest = sorted(self.recent, key=lambda r: r[0], reverse=True)[:RECENT]
        return {
            "counts": dict(sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))),
            "total": self.total,
            "recent": [{"user_id": user, "emoji": emoji} for _, user, emoji in newest],
        }


def aggregate(tallies: Iterable[Tally]) -> Aggregate:
    """The shards' tallies as one aggregate (empty shards and non-positive counts drop out)."""
    result = Aggregate()
    for tally in tallies:
        for emoji, n in tally.counts.items():
            if int(n) > 0:
                result.counts[emoji] += int(n)
        if tally.last_user and tally.last_emoji:
            result.recent.append((tally.last_at, tally.last_user, tally.last_emoji))
    return result


def single(user_id: str, emoji: str) -> dict[str, Any]:
    """The event of one reaction alone (the naive baseline broadcasts every reaction)."""
    return aggregate([Tally({emoji: 1}, user_id, emoji, time.time())]).payload()


def flush_request(message: Any) -> str | None:
    """The space a (decoded) fan-out queue message asks to flush the reactions of (None: another kind)."""
    if isinstance(message, dict) and message.get("kind") == FLUSH_KIND:
        space_id = message.get("space_id")
        if not isinstance(space_id, str) or not space_id:
            raise ValueError("a reactions flush needs a space_id")
        return space_id
    return None


def flush_delay(interval: float) -> int:
    """SQS delays are whole seconds (0 to 900): the interval rounded up, at least 1."""
    return max(1, min(900, math.ceil(interval)))


# -- recording and flushing (DynamoDB, SQS) -----------------------------------------------


def record(space_id: str, user_id: str, emoji: str) -> bool:
    """Count one reaction; True when this call opened its tally (and so tried to claim the flush)."""
    tally = ReactionTally(shard_key(space_id, user_id))
    last = [
        ReactionTally.last_user.set(user_id),
        ReactionTally.last_emoji.set(emoji),
        ReactionTally.last_at.set(time.time()),
    ]
    for _ in range(3):
        try:
            tally.update(
                actions=[ReactionTally.counts[emoji].add(1), *last],
                condition=ReactionTally.counts.exists(),
            )
            return False
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
        try:
            tally.update(
                actions=[ReactionTally.counts.set({emoji: 1}), *last],
                condition=ReactionTally.counts.does_not_exist(),
            )
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            continue  # another reaction opened it meanwhile: add to it
        _schedule_flush(space_id, tally)
        return True
    raise RuntimeError("reaction tally kept changing under us")


def _schedule_flush(space_id: str, opened: ReactionTally) -> None:
    interval = get_settings().reaction_flush_seconds
    try:
        ReactionTally(claim_key(space_id)).update(
            actions=[ReactionTally.flush_due.set(time.time() + interval)],
            condition=ReactionTally.flush_due.does_not_exist(),
        )
    except UpdateError as exc:
        if condition_failed(exc):
            return  # a flush is already on its way; it will take this tally too
        raise
    try:
        clients.sqs().send_message(
            QueueUrl=get_settings().fanout_queue_url,
            MessageBody=json.dumps({"kind": FLUSH_KIND, "space_id": space_id}),
            DelaySeconds=flush_delay(interval),
        )
    except Exception:
        # Nobody would flush this tally: close it and release the claim, so the next
        # reaction starts over; the reactions counted in it meanwhile are lost (and logged).
        logger.exception("could not queue the reactions flush", extra={"space_id": space_id})
        opened.update(actions=[ReactionTally.counts.remove()])
        ReactionTally(claim_key(space_id)).delete()
        raise


def take(space_id: str) -> Aggregate:
    """Release the flush claim, then close every open tally and sum what they held."""
    ReactionTally(claim_key(space_id)).delete()
    open_keys = [
        t.space_id
        for t in ReactionTally.batch_get(shard_keys(space_id), consistent_read=True)
        if t.counts is not None
    ]
    tallies = []
    for key in open_keys:
        try:
            # ALL_OLD: what the tally held at the instant it closed (Model.update returns ALL_NEW)
            old = ReactionTally._get_connection().update_item(
                key,
                actions=[
                    ReactionTally.counts.remove(),
                    ReactionTally.last_user.remove(),
                    ReactionTally.last_emoji.remove(),
                    ReactionTally.last_at.remove(),
                ],
                condition=ReactionTally.counts.exists(),
                return_values="ALL_OLD",
            )
        except UpdateError as exc:
            if condition_failed(exc):
                continue  # taken by a duplicate flush message meanwhile
            raise
        attributes = old.get("Attributes", {})
        counts = {k: int(v["N"]) for k, v in attributes.get("counts", {}).get("M", {}).items()}
        tallies.append(
            Tally(
                counts,
                attributes.get("last_user", {}).get("S"),
                attributes.get("last_emoji", {}).get("S"),
                float(attributes.get("last_at", {}).get("N", 0)),
            )
        )
    return aggregate(tallies)
