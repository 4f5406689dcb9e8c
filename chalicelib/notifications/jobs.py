"""The request side of notifications: a space event becomes one or two jobs on the notify queue.

A request never reads followers: it queues one small message per audience (one
SendMessageBatch call), whatever the host's following, and the notify consumer
does the rest (fanout.py). If SQS cannot take them, they are kept in the notifications
table and the one-minute sweep queues them (queue_pending). What is not covered: the
process dying between the space's commit and this call.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from chalicelib import clients, observability
from chalicelib.clock import now_iso
from chalicelib.config import get_settings
from chalicelib.models import PendingJob, Space
from chalicelib.notifications.rules import Event
from chalicelib.observability import logger

FOLLOWERS, REMINDERS = "followers", "reminders"
PENDING = "pending#jobs"
PENDING_FOR_SECONDS = 24 * 60 * 60


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


def _send(bodies: list[str]) -> list[str]:
    """Queue the jobs; the bodies that were not queued."""
    entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)]
    try:
        response = clients.sqs().send_message_batch(QueueUrl=get_settings().notify_queue_url, Entries=entries)
    except Exception:
        logger.exception("could not queue notification jobs")
        return bodies
    return [bodies[int(f["Id"])] for f in response.get("Failed", [])]


def _queue(event: Event, audiences: list[tuple[str, str]]) -> None:
    # The space change is committed already: the request does not fail for this. Jobs that
    # cannot be queued (botocore has retried) are kept for the sweep, which queues them.
    bodies = [job_message(event, audience, source) for audience, source in audiences]
    unsent = _send(bodies)
    observability.count("NotifyJobs", len(bodies) - len(unsent))
    if unsent:
        _keep(unsent, event)


def _keep(bodies: list[str], event: Event) -> None:
    try:
        expires = int(time.time()) + PENDING_FOR_SECONDS
        for body in bodies:
            PendingJob(PENDING, f"{now_iso()}|{uuid.uuid4().hex}", body=body, expires_at=expires).save()
        observability.count("NotifyJobsPending", len(bodies))
    except Exception:
        logger.exception(
            "notification jobs lost: neither queued nor kept",
            extra={"space_id": event.space_id, "kind": event.kind},
        )
        observability.count("NotifyJobsLost", len(bodies))


def queue_pending(limit: int = 50) -> int:
    """The sweep: queue the jobs kept after a failure, oldest first; how many went out.
    A job queued twice (the delete failed) runs once: jobs are idempotent."""
    kept = list(PendingJob.query(PENDING, limit=limit))
    if not kept:
        return 0
    unsent = set(_send([k.body for k in kept]))
    queued = [k for k in kept if k.body not in unsent]
    for job in queued:
        job.delete()
    return len(queued)


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
