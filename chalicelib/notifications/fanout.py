"""The notify consumer: jobs become pages of people, pages become chunks, chunks are told.

- a job (one per space event and audience) reads one page of the audience (followers
  of a user from the relations `inverse` index, or a space's reminders), drops who must
  not hear (blocked by the host or the actor, muting the actor), and queues the rest as
  chunks of NOTIFY_CHUNK_SIZE (100) users, ten chunks per SendMessageBatch, plus a job
  for the next page: no invocation grows with the audience.
- a chunk is told by delivery.tell (one BatchGetItem, one TransactWriteItems, then the
  sockets and devices of those it claimed).

A record that raises is retried alone (partial batch response), then goes to the DLQ.
Retries and SQS's duplicate deliveries are safe two ways: a job runs once (Powertools
idempotency, keyed by what the job is: a second run would queue its chunks and the rest of
the chain again); a chunk needs no such record, since its inbox claims already tell each
user once (two DynamoDB calls saved per hundred users).
"""

from __future__ import annotations

import json
from typing import Any

from pynamodb.expressions.condition import Condition

from chalicelib import clients, idempotency, observability
from chalicelib.config import get_settings
from chalicelib.models import Relation
from chalicelib.notifications import delivery, reminders
from chalicelib.notifications.jobs import FOLLOWERS, REMINDERS, job_message
from chalicelib.notifications.rules import Event, audience, chunks
from chalicelib.observability import logger

# Long enough to cover SQS's redeliveries (visibility timeout x maxReceiveCount: 30 min);
# past it, the inbox claims still keep anyone from being told twice.
DONE_FOR_SECONDS = 3600


def notify_batch(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    # cold start: Powertools' batch utility loads in the SQS consumers only
    from aws_lambda_powertools.utilities.batch import process_partial_response

    response = process_partial_response(
        event=event, record_handler=_record, processor=clients.batch_processor("notify"), context=context
    )
    return dict(response)


def _record(record: Any, lambda_context: Any = None) -> dict[str, Any]:
    body = json.loads(record.body)
    if not isinstance(body, dict) or body.get("v") != 1 or body.get("type") not in ("job", "chunk"):
        raise ValueError("not a notification job or chunk")
    if body["type"] == "chunk":
        return delivery.tell(Event.from_dict(body["event"]), list(body["users"]))
    return _once(lambda_context)(message={"key": record_key(body), "body": body})


def record_key(body: dict[str, Any]) -> str:
    """What a job is, whichever copy of it SQS delivers."""
    event = Event.from_dict(body["event"])
    start = json.dumps(body.get("start"), sort_keys=True)
    return f"job|{event.notification_id}|{event.actor_id}|{body['audience']}|{body['source']}|{start}"


def _run(*, message: dict[str, Any]) -> dict[str, Any]:
    return run_job(message["body"])


def _once(lambda_context: Any) -> Any:
    # cold start: Powertools' idempotency utility loads in this consumer and keyed REST requests only
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

    config = IdempotencyConfig(
        event_key_jmespath="key",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=DONE_FOR_SECONDS,
        # the invocation's deadline bounds how long a crashed run blocks its record
        lambda_context=lambda_context,
    )
    return idempotent_function(
        _run,
        data_keyword_argument="message",
        persistence_store=idempotency.persistence("notify"),
        config=config,
        key_prefix="sohbet#notify",
    )


def run_job(body: dict[str, Any]) -> dict[str, Any]:
    settings = get_settings()
    event = Event.from_dict(body["event"])
    kind, source, start = body["audience"], body["source"], body.get("start")
    if kind == FOLLOWERS:
        people, next_start = _followers(source, settings.notify_page_size, start)
    elif kind == REMINDERS:
        people, next_start = reminders.holders(source, settings.notify_page_size, start)
    else:
        raise ValueError(f"unknown audience {kind!r}")
    excluded = _excluded(event, muting=kind == FOLLOWERS) if people else set()
    told = audience(people, excluded)
    bodies = [
        json.dumps({"v": 1, "type": "chunk", "event": event.to_dict(), "users": chunk}, separators=(",", ":"))
        for chunk in chunks(told, settings.notify_chunk_size)
    ]
    if next_start is not None:
        bodies.append(job_message(event, kind, source, next_start))
    _send(bodies)
    observability.count("NotificationsSkipped", len(people) - len(told))
    logger.info(
        "notification page queued",
        extra={"space_id": event.space_id, "audience": kind, "people": len(people), "chunks": len(bodies)},
    )
    return {"people": len(people), "told": len(told), "more": next_start is not None}


def _followers(user_id: str, page_size: int, start: dict[str, Any] | None) -> tuple[list[str], Any]:
    results = Relation.inverse.query(
        user_id,
        Relation.inverse_rel.startswith("follow#"),
        limit=page_size,
        last_evaluated_key=start,
        attributes_to_get=["user_id"],
    )
    people = [r.user_id for r in results]
    return people, results.last_evaluated_key


def _excluded(event: Event, muting: bool) -> set[str]:
    """Who must not hear about this space: blocked by the host or the actor, and (told as a
    follower) muting the actor; the host and the actor themselves."""
    out = {event.host_id, event.actor_id}
    for blocker in {event.host_id, event.actor_id}:
        out |= {r.other_id for r in Relation.query(blocker, Relation.rel.startswith("block#"))}
    if muting:
        out |= {r.user_id for r in Relation.inverse.query(event.actor_id, _starts("mute#"))}
    return out


def _starts(prefix: str) -> Condition:
    return Relation.inverse_rel.startswith(prefix)


def _send(bodies: list[str]) -> None:
    url = get_settings().notify_queue_url
    for first in range(0, len(bodies), 10):
        batch = bodies[first : first + 10]
        response = clients.sqs().send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(batch)]
        )
        if response.get("Failed"):
            # the record fails and runs again; chunks queued twice are told once (inbox claims)
            raise RuntimeError(f"could not queue {len(response['Failed'])} notification chunks")
