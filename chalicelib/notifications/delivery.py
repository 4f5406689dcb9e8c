"""Telling one chunk of users (up to 100) about one event.

1. One BatchGetItem of their user items: suspension, open sockets, devices, quiet hours.
2. One TransactWriteItems putting each one's inbox entry with attribute_not_exists: the
   claim. Whoever already has it (told by another job, or by an earlier try of this
   chunk) is left out, so nobody is told twice, even when a chunk runs again after a
   crash. (The price: a crash between the claim and the sending loses those sockets'
   events and pushes; the inbox still has the notification.)
3. The `notification` event to every open socket of the claimed, in parallel (one message,
   the same for all), and an SNS Publish to each of their devices outside quiet hours.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib import clients, fanout, observability, protocol
from chalicelib.db import dynamo, is_conflict
from chalicelib.models import Notification, Space, User
from chalicelib.notifications import devices
from chalicelib.notifications.rules import INBOX_DAYS, Event, in_quiet_hours, public, push_message
from chalicelib.observability import logger
from chalicelib.rules import SpaceState

CLAIM_ATTEMPTS = 4
_USER_FIELDS = ["user_id", "suspended_until", "connection_ids", "devices", "quiet_hours"]
# SNS has no batch Publish to endpoints: one call per device, in parallel.
_publishers = ThreadPoolExecutor(max_workers=16, thread_name_prefix="sns-push")
# SNS says the endpoint is disabled (the platform reported the token invalid) or gone.
DEAD_ENDPOINT = frozenset({"EndpointDisabled", "NotFound"})


def tell(event: Event, user_ids: list[str]) -> dict[str, Any]:
    users = list(dict.fromkeys(user_ids))
    if event.kind == "live" and not _still_live(event.space_id):
        observability.count("NotificationsSkipped", len(users))
        return {"told": 0, "skipped": len(users), "reason": "space not live"}
    records = {u.user_id: u for u in User.batch_get(users, attributes_to_get=_USER_FIELDS)} if users else {}
    now = time.time()
    eligible = [u for u in users if not _suspended(records.get(u), now)]
    claimed = claim(event, eligible)
    told = [records[u] for u in claimed if u in records]
    sockets = _post(event, told)
    pushed = _push(event, told)
    observability.count("NotificationsTold", len(claimed))
    observability.count("NotificationsSkipped", len(users) - len(claimed))
    return {"told": len(claimed), "skipped": len(users) - len(claimed), "sockets": sockets, "pushes": pushed}


def _still_live(space_id: str) -> bool:
    space = Space.get(space_id, attributes_to_get=["space_id", "state"])
    return bool(space.state == SpaceState.LIVE)


def _suspended(user: User | None, now: float) -> bool:
    return user is not None and user.suspended_until is not None and user.suspended_until > now


def _entry(event: Event, user_id: str) -> Notification:
    return Notification(
        user_id,
        event.notification_id,
        created_sk=f"{event.created_at}#{event.notification_id}",
        created_at=event.created_at,
        kind=event.kind,
        space_id=event.space_id,
        title=event.title,
        actor_id=event.actor_id,
        scheduled_start=event.scheduled_start,
        expires_at=int(time.time()) + INBOX_DAYS * 86400,
    )


def claim(event: Event, user_ids: Iterable[str]) -> list[str]:
    """Put the inbox entries of those who do not have this one yet; the users put."""
    pending = list(dict.fromkeys(user_ids))
    for _ in range(CLAIM_ATTEMPTS):
        if not pending:
            return []
        try:
            with TransactWrite(connection=dynamo()) as tx:
                for user_id in pending:
                    tx.save(_entry(event, user_id), condition=Notification.notification_id.does_not_exist())
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons or []
            taken = {
                pending[i]
                for i, reason in enumerate(reasons)
                if reason is not None and reason.code == "ConditionalCheckFailed"
            }
            if not taken and not is_conflict(exc):
                raise
            # the transaction wrote nothing: try again without those told already
            pending = [u for u in pending if u not in taken]
            continue
        return pending
    raise RuntimeError("could not claim the inbox entries of a chunk")


def _post(event: Event, users: list[User]) -> int:
    connection_ids = [c for user in users for c in sorted(user.connection_ids or ())]
    if not connection_ids:
        return 0
    message = protocol.event("notification", event.space_id, None, notification=public(event))
    result = clients.pusher().send_many(connection_ids, message)
    observability.record_delivery(result)
    for connection_id in result.gone:
        fanout.cleanup_gone(connection_id)
    return result.delivered


def _push(event: Event, users: list[User]) -> int:
    targets = [
        (user.user_id, device, entry["endpoint_arn"])
        for user in users
        if user.devices and not in_quiet_hours(user.quiet_hours)
        for device, entry in user.devices.as_dict().items()
    ]
    if not targets:
        return 0
    message = push_message(event)
    outcomes = list(_publishers.map(lambda target: _publish(message, *target), targets))
    sent = sum(1 for o in outcomes if o == "sent")
    observability.count("PushesSent", sent)
    observability.count("PushEndpointsRemoved", sum(1 for o in outcomes if o == "removed"))
    observability.count("PushesFailed", sum(1 for o in outcomes if o == "failed"))
    return sent


def _publish(message: str, user_id: str, device: str, arn: str) -> str:
    try:
        clients.sns().publish(TargetArn=arn, Message=message, MessageStructure="json")
        return "sent"
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in DEAD_ENDPOINT:
            try:
                devices.remove_dead(user_id, device, arn)
            except Exception:
                logger.exception("could not remove a dead device", extra={"user_id": user_id})
            return "removed"
        logger.warning("push failed", extra={"user_id": user_id, "error": str(exc)[:200]})
        return "failed"
    except Exception:
        # never raised past here: the claim is written, a retry would not push again
        logger.exception("push failed", extra={"user_id": user_id})
        return "failed"
