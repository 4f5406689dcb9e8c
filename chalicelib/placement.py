"""Where a member's audio attendee lives: the space's primary meeting or a replica.

A Chime SDK meeting holds 250 attendees. The stage always sits in the primary
meeting; listeners fill it up to PRIMARY_LISTENER_SEATS (the rest is kept for
people coming on stage), then go to replica meetings (CreateMeeting with
PrimaryMeetingId), which receive the primary's audio. A space has at most
MAX_REPLICAS replicas: 40 is Chime's ceiling (≈10,000 listeners); an account
starts with a quota of 4 per primary, raised through AWS Support.
"""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import UpdateError

from chalicelib import media, rules
from chalicelib.config import get_settings
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Space
from chalicelib.observability import logger

MAX_REPLICAS = 40
PAST_PRIMARY = 1 << 30  # a listener count that sends `place` straight to the replicas


def primary_listener_seats(max_attendees: int) -> int:
    """Listeners the primary takes before replicas open: 200 of 250, the rest kept for the stage."""
    return max(1, min(200, max_attendees - rules.MAX_STAGE))


def meeting_from(record: dict[str, Any]) -> media.Meeting:
    return media.Meeting(**record)


def meeting_record(meeting: media.Meeting) -> dict[str, Any]:
    return {
        "meeting_id": meeting.meeting_id,
        "external_meeting_id": meeting.external_meeting_id,
        "media_region": meeting.media_region,
        "media_placement": meeting.media_placement,
        "primary_meeting_id": meeting.primary_meeting_id,
        "meeting_arn": meeting.meeting_arn,
    }


def _is_full(exc: media.MediaError) -> bool:
    return exc.code in ("LimitExceeded", "ResourceLimitExceeded")


def place(
    space: Space, user_id: str, role: rules.Role, audio: str, listeners: int
) -> tuple[media.Meeting, media.Attendee]:
    """Create the user's attendee in the right meeting, opening a replica when all are full.

    `listeners` is the space's current listener count (placement needs no exact count:
    a few extra listeners in the primary are fine, its Chime limit is the backstop)."""
    port = media.get_media()
    assert space.meeting is not None
    primary = meeting_from(space.meeting)
    if role in rules.ON_STAGE or listeners < primary_listener_seats(get_settings().meeting_max_attendees):
        try:
            return primary, port.create_attendee(primary.meeting_id, user_id, audio)
        except media.MediaError as exc:
            if not _is_full(exc) or role in rules.ON_STAGE:
                raise
    replicas = [meeting_from(r) for r in (space.replicas or [])]
    for replica in reversed(replicas):  # the newest has the free seats
        try:
            return replica, port.create_attendee(replica.meeting_id, user_id, audio)
        except media.MediaError as exc:
            if not _is_full(exc):
                raise
    replica = open_replica(space, len(replicas))
    return replica, port.create_attendee(replica.meeting_id, user_id, audio)


def open_replica(space: Space, index: int) -> media.Meeting:
    """Replica number `index` of the space; two joins racing to open it agree on one."""
    if index >= MAX_REPLICAS:
        raise CommandError(ErrorCode.LIMIT_REACHED, "this space is full")
    assert space.meeting_id is not None
    meeting = media.get_media().create_meeting(
        f"{space.space_id}-r{index + 1}",
        max_attendees=get_settings().meeting_max_attendees,
        primary_meeting_id=space.meeting_id,
    )
    record = meeting_record(meeting)
    try:
        space.update(
            actions=[
                Space.replicas.set([*(space.replicas or []), record]),
                Space.replica_count.set(index + 1),
            ],
            condition=Space.replica_count.does_not_exist() | (Space.replica_count == index),
        )
    except UpdateError:
        # Someone else recorded replica `index` first. The same ClientRequestToken
        # made Chime return the same meeting, so ours is theirs.
        space.refresh(consistent_read=True)
        logger.info("replica opened concurrently", extra={"space_id": space.space_id, "index": index})
    return meeting


def all_meetings(space: Space) -> list[str]:
    ids = [r["meeting_id"] for r in (space.replicas or [])]
    if space.meeting_id:
        ids.append(space.meeting_id)
    return ids
