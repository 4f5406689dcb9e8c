"""Listener attendees pre-created in batches, so a join storm stays within Chime's API rates.

CreateAttendee is limited to about 10 calls per second per account and Region
(https://docs.aws.amazon.com/chime-sdk/latest/dg/quotas-throttling.html), so 1,000 listeners
joining one attendee each would need 100 s at best, while API Gateway admits 500 connections a
second. BatchCreateAttendee creates up to 100 attendees per call
(https://docs.aws.amazon.com/chime-sdk/latest/APIReference/API_meeting-chime_BatchCreateAttendee.html):
listeners take attendees from a per-meeting pool filled 100 at a time, about one Chime call per
100 joins.

The pool of meeting M is a sequence of batches. A joiner claims the next index with one atomic
counter update (`{M}#pool`), then reads its batch (`{M}#pool{b}`, index // size). Batch 0 is filled
when the meeting is opened; the joiner who claims the middle slot of batch b fills batch b+1
ahead of need, so joiners almost never wait. A joiner whose batch is not there yet waits for it
briefly, then fills it itself: pooled ExternalUserIds are deterministic ("p:{b}.{slot}") and
ExternalUserId is Chime's idempotency key, so two fillers get the same attendees. A slot Chime
refused (LimitExceeded: the meeting is full) is a full meeting for the claimer, who goes to the
next meeting. The items share the spaces table, like the counters, and expire with TTL.

Pooled attendees carry no user id at Chime: the member item records which attendee is whose.
Only listeners are pooled; people on stage get attendees named after them (their voices are
shown by ExternalUserId).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, PutError
from pynamodb.models import Model

from chalicelib import clients, media
from chalicelib.models import FromSettings
from chalicelib.observability import logger

POOL_PREFIX = "p:"
# How long a joiner waits for another joiner's fill before filling the batch itself.
_WAIT_FOR_FILL = (0.05, 0.1, 0.2, 0.4, 0.8)
_TTL_SECONDS = 2 * 24 * 3600  # meetings last at most 24 h


class PoolItem(Model):
    class Meta:
        table_name = FromSettings("spaces_table")
        region = FromSettings("region")

    space_id = UnicodeAttribute(hash_key=True)  # "{meeting_id}#pool" (cursor) or "{meeting_id}#pool{b}"
    claimed = NumberAttribute(null=True)  # the cursor: indexes handed out so far
    # a batch: slot -> [attendee_id, join_token, external_user_id], or null for a slot Chime refused
    slots = JSONAttribute(null=True)
    expires_at = NumberAttribute(null=True)


class Holder(Model):
    """Whose attendee this is, for an attendee whose ExternalUserId does not name its user (a
    pooled one, or a hashed over-long user id): Chime's attendee events carry only the meeting,
    the attendee and its ExternalUserId, and are matched to a member by key (spaces/presence.py).
    Written in the join transaction that gives the member the attendee."""

    class Meta:
        table_name = FromSettings("spaces_table")
        region = FromSettings("region")

    space_id = UnicodeAttribute(hash_key=True)  # "{meeting_id}#{external_user_id}" (holder_key)
    space = UnicodeAttribute()
    user_id = UnicodeAttribute()
    expires_at = NumberAttribute()


def holder_key(meeting_id: str, external_user_id: str) -> str:
    return f"{meeting_id}#{external_user_id}"


def holder(space_id: str, user_id: str, attendee: media.Attendee) -> Holder | None:
    """The item that maps the attendee to its member, or None when its ExternalUserId names the user."""
    if media.user_id_from_external(attendee.external_user_id) is not None:
        return None
    return Holder(
        holder_key(attendee.meeting_id, attendee.external_user_id),
        space=space_id,
        user_id=user_id,
        expires_at=int(time.time()) + _TTL_SECONDS,
    )


def holder_of(meeting_id: str, external_user_id: str) -> tuple[str, str] | None:
    """(space id, user id) of the member the attendee was given to, or None: one GetItem."""
    try:
        item = Holder.get(holder_key(meeting_id, external_user_id), consistent_read=True)
    except DoesNotExist:
        return None
    return item.space, item.user_id


class MeetingFull(Exception):
    """The claimed slot was refused by Chime: the meeting holds MaxCount attendees."""


class Exhausted(Exception):
    """The meeting's pool handed out all it may (`cap`): create the attendee one by one."""


def is_pooled(external_user_id: str | None) -> bool:
    return bool(external_user_id) and str(external_user_id).startswith(POOL_PREFIX)


def _external(batch: int, slot: int) -> str:
    return f"{POOL_PREFIX}{batch}.{slot}"


def _batch_key(meeting_id: str, batch: int) -> str:
    return f"{meeting_id}#pool{batch}"


def fill(meeting_id: str, batch: int, size: int, audio: str, cap: int | None = None) -> dict[str, Any]:
    """Create batch `batch` of the meeting's pool (one BatchCreateAttendee) and store it."""
    count = size if cap is None else max(0, min(size, cap - batch * size))
    externals = [_external(batch, slot) for slot in range(count)]
    created = clients.media().create_attendees(meeting_id, externals, audio) if externals else {}
    slots: dict[str, Any] = {}
    for slot, external in enumerate(externals):
        result = created.get(external)
        if isinstance(result, media.Attendee):
            slots[str(slot)] = [result.attendee_id, result.join_token, external]
        else:
            slots[str(slot)] = None  # refused (the meeting is full): the claimer goes elsewhere
    item = PoolItem(_batch_key(meeting_id, batch), slots=slots, expires_at=int(time.time()) + _TTL_SECONDS)
    # Another filler may have stored the same attendees first (ExternalUserId is idempotent).
    with contextlib.suppress(PutError):
        item.save(condition=PoolItem.space_id.does_not_exist())
    return slots


def prefill(meeting_id: str, size: int, audio: str, cap: int | None = None) -> None:
    """Batch 0, when a meeting opens, so the first listeners find attendees waiting."""
    if size <= 0:
        return
    try:
        fill(meeting_id, 0, size, audio, cap)
    except media.MediaError:
        # Not fatal: the first joiner fills it instead.
        logger.warning("could not prefill the attendee pool", extra={"meeting_id": meeting_id})


def claim(meeting_id: str, size: int, audio: str, cap: int | None = None) -> tuple[media.Attendee, int]:
    """The next pooled attendee of the meeting and its index (0 for the meeting's first);
    MeetingFull if Chime refused its slot, Exhausted past `cap` attendees handed out (the
    primary's listener seats: the rest is the stage's)."""
    cursor = PoolItem(f"{meeting_id}#pool")
    cursor.update(actions=[PoolItem.claimed.add(1), PoolItem.expires_at.set(int(time.time()) + _TTL_SECONDS)])
    index = int(cursor.claimed or 1) - 1
    if cap is not None and index >= cap:
        raise Exhausted(meeting_id)
    batch, slot = divmod(index, size)
    if slot == size // 2 and (cap is None or (batch + 1) * size < cap):
        _fill_ahead(meeting_id, batch + 1, size, audio, cap)
    slots = _batch(meeting_id, batch, size, audio, cap)
    entry = slots.get(str(slot))
    if entry is None:
        raise MeetingFull(meeting_id)
    attendee_id, join_token, external = entry
    attendee = media.Attendee(
        attendee_id=attendee_id,
        external_user_id=external,
        join_token=join_token,
        meeting_id=meeting_id,
        audio=audio,
    )
    return attendee, index


def _fill_ahead(meeting_id: str, batch: int, size: int, audio: str, cap: int | None) -> None:
    try:
        if not _exists(meeting_id, batch):
            fill(meeting_id, batch, size, audio, cap)
    except media.MediaError as exc:
        # Throttled or full: the joiners of that batch fill it (or go elsewhere) themselves.
        logger.info("could not fill the next pool batch", extra={"meeting_id": meeting_id, "code": exc.code})


def _exists(meeting_id: str, batch: int) -> bool:
    try:
        PoolItem.get(_batch_key(meeting_id, batch), consistent_read=True, attributes_to_get=["space_id"])
    except DoesNotExist:
        return False
    return True


def _batch(meeting_id: str, batch: int, size: int, audio: str, cap: int | None) -> dict[str, Any]:
    for wait in (*_WAIT_FOR_FILL, None):
        try:
            item = PoolItem.get(_batch_key(meeting_id, batch), consistent_read=True)
            slots: dict[str, Any] = item.slots or {}
            return slots
        except DoesNotExist:
            if wait is None:
                break
            time.sleep(wait)
    return fill(meeting_id, batch, size, audio, cap)
