"""Reminders on scheduled spaces: set and clear (both idempotent), mine, and the space's count.

Setting one is one transaction: the reminder (only if it is not there yet) and +1 on the
space's `subscriber_count` (only while the space is scheduled), so the count never drifts
from the reminders, however often a client repeats the call.
"""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.clock import now_iso
from chalicelib.db import dynamo
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Reminder, Space
from chalicelib.rules import SpaceState
from chalicelib.schemas import decode_cursor, encode_cursor
from chalicelib.spaces import get_space, public_space

_BY_USER_KEYS = {"space_id", "user_id", "created_at"}


def _view(reminder: Reminder, subscribers: int) -> dict[str, Any]:
    return {"space_id": reminder.space_id, "created_at": reminder.created_at, "subscriber_count": subscribers}


def set_reminder(user_id: str, space_id: str) -> dict[str, Any]:
    space = get_space(space_id)
    if space.state == SpaceState.ENDED:
        raise CommandError(ErrorCode.SPACE_ENDED, "the space has ended")
    if space.state != SpaceState.SCHEDULED:
        raise CommandError(ErrorCode.CONFLICT, "reminders are for scheduled spaces; this one is live")
    reminder = Reminder(space_id, user_id, created_at=now_iso())
    try:
        with TransactWrite(connection=dynamo()) as tx:
            tx.save(reminder, condition=Reminder.user_id.does_not_exist())
            tx.update(
                space,
                actions=[Space.subscriber_count.add(1)],
                condition=Space.state == SpaceState.SCHEDULED,
            )
    except TransactWriteError as exc:
        reasons = [r.code if r else None for r in (exc.cancellation_reasons or [])]
        if reasons and reasons[0] == "ConditionalCheckFailed":
            return _view(Reminder.get(space_id, user_id, consistent_read=True), _count(space_id))
        if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
            raise CommandError(ErrorCode.CONFLICT, "the space is no longer scheduled") from None
        raise
    return _view(reminder, int(space.subscriber_count or 0) + 1)


def clear_reminder(user_id: str, space_id: str) -> None:
    space = get_space(space_id)
    try:
        with TransactWrite(connection=dynamo()) as tx:
            tx.delete(Reminder(space_id, user_id), condition=Reminder.user_id.exists())
            tx.update(space, actions=[Space.subscriber_count.add(-1)], condition=Space.subscriber_count > 0)
    except TransactWriteError as exc:
        reasons = [r.code if r else None for r in (exc.cancellation_reasons or [])]
        if reasons and reasons[0] == "ConditionalCheckFailed":
            return  # not set: nothing to clear
        raise


def _count(space_id: str) -> int:
    try:
        return int(Space.get(space_id, attributes_to_get=["subscriber_count"]).subscriber_count or 0)
    except DoesNotExist:
        return 0


def mine(user_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """My reminders, newest first, each with its space (one BatchGetItem per page)."""
    results = Reminder.by_user.query(
        user_id,
        scan_index_forward=False,
        limit=limit,
        last_evaluated_key=decode_cursor(cursor, _BY_USER_KEYS, {"user_id": user_id}),
    )
    reminders = list(results)
    spaces = {s.space_id: s for s in Space.batch_get([r.space_id for r in reminders])} if reminders else {}
    data = [
        {
            "space_id": r.space_id,
            "created_at": r.created_at,
            "space": public_space(spaces[r.space_id]) if r.space_id in spaces else None,
        }
        for r in reminders
    ]
    return {"data": data, "next_cursor": encode_cursor(results.last_evaluated_key)}


def holders(space_id: str, page_size: int, start: dict[str, Any] | None) -> tuple[list[str], Any]:
    """One page of the users with a reminder on the space, and where the next page starts."""
    results = Reminder.query(
        space_id, limit=page_size, last_evaluated_key=start, attributes_to_get=["space_id", "user_id"]
    )
    users = [r.user_id for r in results]
    return users, results.last_evaluated_key
