"""The request side of notifications: a space event becomes one or two jobs on the notify queue.

A request never reads followers: it queues one small message per audience (one
SendMessageBatch call), whatever the host's following, and the notify consumer
does the rest (fanout.py).
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib import clients, observability
from chalicelib.clock import now_iso
from chalicelib.config import get_settings
from chalicelib.models import Space
from chalicelib.notifications.rules import Event
from chalicelib.observability import logger

FOLLOWERS, REMINDERS = "followers", "reminders"


def job_message(event: Event, audience: str, source: str, start: dict[str, Any] | None = None) -> str:
    return json.dumps(
        {
            "v": 1,
            "type": "job",
            "event": event.to_dict(),
            "audience": audience,
            "source": source,
            "start": start,
        },
        separators=(",", ":"),
    )


def _event(space: Space, kind: str, actor_id: str) -> Event:
    return Event(
        kind=kind,
        space_id=space.space_id,
        title=space.title,
        actor_id=actor_id,
        host_id=space.host_id,
        created_at=now_iso(),
        scheduled_start=space.scheduled_start,
    )


def _queue(event: Event, audiences: list[tuple[str, str]]) -> None:
    # The space change is committed already: a failure here is logged and counted,
    # not turned into a failed request (the inbox of those users misses this one).
    try:
        entries = [
            {"Id": str(i), "MessageBody": job_message(event, audience, source)}
            for i, (audience, source) in enumerate(audiences)
        ]
        response = clients.sqs().send_message_batch(QueueUrl=get_settings().notify_queue_url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"{len(response['Failed'])} notification jobs not queued")
        observability.count("NotifyJobs", len(entries))
    except Exception:
        logger.exception(
            "could not queue notifications", extra={"space_id": event.space_id, "kind": event.kind}
        )
        observability.count("NotifyJobsFailed", len(audiences))


def space_started(space: Space) -> None:
    """Live now: the host's followers and everyone with a reminder (told once, whichever reaches them)."""
    _queue(_event(space, "live", space.host_id), [(REMINDERS, space.space_id), (FOLLOWERS, space.host_id)])


def space_created_live(space: Space) -> None:
    _queue(_event(space, "live", space.host_id), [(FOLLOWERS, space.host_id)])


def cohost_joined(space: Space, cohost_id: str) -> None:
    """A new co-host's followers hear of the space too (not again, if they heard already)."""
    _queue(_event(space, "live", cohost_id), [(FOLLOWERS, cohost_id)])


def space_cancelled(space: Space) -> None:
    _queue(_event(space, "cancelled", space.host_id), [(REMINDERS, space.space_id)])


def space_rescheduled(space: Space) -> None:
    _queue(_event(space, "rescheduled", space.host_id), [(REMINDERS, space.space_id)])
