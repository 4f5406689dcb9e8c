"""The notifications inbox (newest first, paged, read state) and quiet hours, over REST."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, model_validator
from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.clock import now_iso
from chalicelib.db import condition_failed
from chalicelib.models import Notification, User
from chalicelib.notifications.rules import Event, QuietHours, public
from chalicelib.schemas import decode_cursor, encode_cursor

_BY_TIME_KEYS = {"user_id", "notification_id", "created_sk"}
NOTIFICATION_ID = r"^[A-Za-z0-9_-]{1,64}:(live|cancelled|rescheduled(:[0-9T:.Z+-]{1,40})?)$"


class MarkRead(BaseModel):
    """`ids` marks those read; `all` marks everything received so far read."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[StrictStr, Field(pattern=NOTIFICATION_ID)]] | None = Field(
        default=None, min_length=1, max_length=25
    )
    all: StrictBool | None = None

    @model_validator(mode="after")
    def _one_of(self) -> MarkRead:
        if (self.ids is None) == (self.all is not True):
            raise ValueError("give either ids (1-25 notification ids) or all: true")
        return self


def _user(user_id: str) -> User | None:
    try:
        return User.get(user_id, attributes_to_get=["user_id", "read_until", "quiet_hours"])
    except DoesNotExist:
        return None


def _event(n: Notification) -> Event:
    return Event(
        kind=n.kind,
        space_id=n.space_id,
        title=n.title,
        actor_id=n.actor_id,
        host_id=n.actor_id,
        created_at=n.created_at,
        scheduled_start=n.scheduled_start,
    )


def page(user_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
    user = _user(user_id)
    read_until = user.read_until if user else None
    results = Notification.by_time.query(
        user_id,
        scan_index_forward=False,
        limit=limit,
        last_evaluated_key=decode_cursor(cursor, _BY_TIME_KEYS, {"user_id": user_id}),
    )
    data = [
        public(_event(n), read=bool(n.read_at) or (read_until is not None and n.created_at <= read_until))
        for n in results
    ]
    return {"data": data, "next_cursor": encode_cursor(results.last_evaluated_key)}


def mark_read(user_id: str, body: MarkRead) -> dict[str, Any]:
    now = now_iso()
    if body.all:
        User(user_id).update(actions=[User.read_until.set(now)])
        return {"read_until": now}
    marked = 0
    for notification_id in dict.fromkeys(body.ids or []):
        try:
            Notification(user_id, notification_id).update(
                actions=[Notification.read_at.set(now)],
                condition=Notification.notification_id.exists() & Notification.read_at.does_not_exist(),
            )
            marked += 1
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
    return {"marked": marked}


def quiet_hours(user_id: str) -> dict[str, Any]:
    user = _user(user_id)
    return {"quiet_hours": user.quiet_hours if user else None}


def set_quiet_hours(user_id: str, body: QuietHours) -> dict[str, Any]:
    value = body.model_dump()
    User(user_id).update(actions=[User.quiet_hours.set(value)])
    return {"quiet_hours": value}


def clear_quiet_hours(user_id: str) -> None:
    User(user_id).update(actions=[User.quiet_hours.remove()])
