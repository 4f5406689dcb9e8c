"""Where a member's audio attendee lives: the space's primary meeting or a replica.

A Chime SDK meeting holds 250 attendees. The stage always sits in the primary
meeting; listeners fill it up to PRIMARY_LISTENER_SEATS (the rest is kept for
people coming on stage), then go to replica meetings (CreateMeeting with
PrimaryMeetingId), which receive the primary's audio. A space has at most
`max_replicas` replicas (a setting): an account's quota is 4 per primary, raised
through AWS Support up to 40 (≈10,000 listeners).
https://docs.aws.amazon.com/chime-sdk/latest/dg/media-replication.html

Listeners take pre-created attendees from the meeting's pool (pool.py); people on
stage get attendees named after them. Chime ends meetings on its own (no audio for
5 minutes, fewer than two connections for 30, or 24 hours): the space then opens
its next generation of meetings (`renew`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pynamodb.exceptions import UpdateError

from chalicelib import clients, media, pool, rules
from chalicelib.config import get_settings
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Space
from chalicelib.observability import logger

MAX_REPLICAS = 40  # Chime's ceiling, whatever the quota
PAST_PRIMARY = 1 << 30  # a listener count that sends `place` straight to the replicas


def primary_listener_seats(max_attendees: int) -> int:
    """Listeners the primary takes before replicas open: 200 of 250, the rest kept for the stage."""
    return max(1, min(200, max_attendees - rules.MAX_STAGE))


def max_replicas() -> int:
    return max(0, min(MAX_REPLICAS, get_settings().max_replicas))


def external_meeting_id(space_id: str, generation: int, replica: int = 0) -> str:
    """ExternalMeetingId of a space's meeting; the first generation keeps the bare space id."""
    base = space_id if generation <= 1 else f"{space_id}-g{generation}"
    return f"{base}-r{replica}" if replica else base


def space_of(external_meeting_id: str) -> str:
    """The space id inside an ExternalMeetingId (space ids are hex, so "-" only separates)."""
    return external_meeting_id.split("-", 1)[0]


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


def refusal(exc: media.MediaError) -> CommandError | None:
    """What a client is told when Chime refuses for a reason that is not a fault.

    Throttling: Chime's ~10 requests/s per account and Region are used up; try again shortly
    (https://docs.aws.amazon.com/chime-sdk/latest/dg/quotas-throttling.html). LimitExceeded on a
    meeting or a replica: there is no room and waiting will not make any.
    """
    if exc.code in ("Throttling", "ThrottledClient"):
        return CommandError(ErrorCode.RATE_LIMITED, "the media service is busy; try again in a moment")
    if _is_full(exc):
        return CommandError(ErrorCode.LIMIT_REACHED, "this space is full")
    return None


def _is_full(exc: media.MediaError) -> bool:
    return exc.code in ("LimitExceeded", "ResourceLimitExceeded")


def _pool_batch() -> int:
    return max(0, min(media.MAX_BATCH, get_settings().attendee_pool_batch))


def open_meeting(space_id: str, generation: int, media_region: str | None) -> media.Meeting:
    """A space's primary meeting, with its first batch of listener attendees."""
    settings = get_settings()
    meeting = clients.media().create_meeting(
        external_meeting_id(space_id, generation),
        max_attendees=settings.meeting_max_attendees,
        media_region=media_region or settings.media_region,
    )
    batch = _pool_batch()
    if batch:
        seats = primary_listener_seats(settings.meeting_max_attendees)
        pool.prefill(meeting.meeting_id, batch, media.RECEIVE, cap=seats)
    return meeting


def place(
    space: Space, user_id: str, role: rules.Role, audio: str, listeners: int
) -> tuple[media.Meeting, media.Attendee]:
    """The user's attendee in the right meeting, opening a replica when all are full.

    `listeners` is the space's current listener count (placement needs no exact count:
    a few extra listeners in the primary are fine, its Chime limit is the backstop)."""
    try:
        return _place(space, user_id, role, audio, listeners)
    except media.MediaError as exc:
        mapped = refusal(exc)
        if mapped is not None:
            raise mapped from None
        raise


def _place(
    space: Space, user_id: str, role: rules.Role, audio: str, listeners: int
) -> tuple[media.Meeting, media.Attendee]:
    assert space.meeting is not None
    primary = meeting_from(space.meeting)
    seats = primary_listener_seats(get_settings().meeting_max_attendees)
    if role in rules.ON_STAGE:
        return primary, clients.media().create_attendee(primary.meeting_id, user_id, audio)
    replicas = [meeting_from(r) for r in (space.replicas or [])]
    capacity = get_settings().meeting_max_attendees

    def open_next() -> None:
        # Half of the newest meeting handed out: open the next replica now, once (the claimer
        # of that one index does it), so a storm finds it ready instead of racing to create it.
        _open_ahead(space, len(replicas))

    if listeners < seats:
        found = _seat(
            primary, user_id, audio, cap=seats, ahead=(seats // 2, open_next) if not replicas else None
        )
        if found is not None:
            return primary, found
    # The free seats are in the newest replica and, since replicas open ahead of need, the one
    # before it: fill that one first.
    for n, replica in list(enumerate(replicas))[-2:]:
        newest = n == len(replicas) - 1
        found = _seat(replica, user_id, audio, ahead=(capacity // 2, open_next) if newest else None)
        if found is not None:
            return replica, found
    replica = open_replica(space, len(replicas))
    found = _seat(replica, user_id, audio)
    if found is None:
        raise CommandError(ErrorCode.LIMIT_REACHED, "this space is full")
    return replica, found


def _seat(
    meeting: media.Meeting,
    user_id: str,
    audio: str,
    cap: int | None = None,
    ahead: tuple[int, Callable[[], None]] | None = None,
) -> media.Attendee | None:
    """A listener's attendee in this meeting, or None when it is full.

    A replica's pool has no cap of its own (Chime's MaxCount refuses past it, and departures free
    seats); the primary's hands out at most its listener seats, then the next listeners go to the
    replicas. `ahead`: (index, action) run by the claimer of that pool index."""
    batch = _pool_batch()
    try:
        if batch and audio == media.RECEIVE:
            try:
                attendee, index = pool.claim(meeting.meeting_id, batch, audio, cap)
            except pool.Exhausted:
                return None
            if ahead is not None and index == ahead[0]:
                ahead[1]()
            return attendee
        return clients.media().create_attendee(meeting.meeting_id, user_id, audio)
    except pool.MeetingFull:
        return None
    except media.MediaError as exc:
        if _is_full(exc):
            return None
        raise


def _open_ahead(space: Space, index: int) -> None:
    try:
        open_replica(space, index)
    except CommandError:
        pass  # the space may not have more replicas: the joins past it will say so
    except media.MediaError as exc:
        logger.info("could not open a replica ahead", extra={"space_id": space.space_id, "code": exc.code})


def open_replica(space: Space, index: int) -> media.Meeting:
    """Replica number `index` of the space; two joins racing to open it agree on one.

    Past the setting, or when Chime refuses for the account's replica quota (LimitExceeded),
    the space is full: `limit_reached`."""
    if index >= max_replicas():
        raise CommandError(ErrorCode.LIMIT_REACHED, "this space is full")
    assert space.meeting_id is not None
    recorded = _recorded_replica(space, index)  # opened meanwhile (ahead, or by another join)
    if recorded is not None:
        return recorded
    settings = get_settings()
    generation = int(space.meeting_generation or 1)
    meeting = clients.media().create_meeting(
        external_meeting_id(space.space_id, generation, index + 1),
        max_attendees=settings.meeting_max_attendees,
        primary_meeting_id=space.meeting_id,
        media_region=space.media_region or settings.media_region,
    )
    record = meeting_record(meeting)
    try:
        space.update(
            actions=[
                Space.replicas.set([*(space.replicas or []), record]),
                Space.replica_count.set(index + 1),
            ],
            condition=(Space.meeting_id == space.meeting_id)
            & (Space.replica_count.does_not_exist() | (Space.replica_count == index)),
        )
    except UpdateError:
        # Someone else recorded replica `index` first. The same ClientRequestToken
        # made Chime return the same meeting, so ours is theirs.
        space.refresh(consistent_read=True)
        logger.info("replica opened concurrently", extra={"space_id": space.space_id, "index": index})
        return meeting
    batch = _pool_batch()
    if batch:
        pool.prefill(meeting.meeting_id, batch, media.RECEIVE)
    return meeting


def _recorded_replica(space: Space, index: int) -> media.Meeting | None:
    """Replica `index` as the space item has it now (a consistent read), or None."""
    try:
        fresh = Space.get(space.space_id, consistent_read=True)
    except Space.DoesNotExist:
        return None
    replicas = fresh.replicas or []
    if fresh.meeting_id != space.meeting_id or len(replicas) <= index:
        return None
    space.replicas, space.replica_count = replicas, fresh.replica_count
    return meeting_from(replicas[index])


def renew(space: Space, ended_meeting_id: str) -> bool:
    """The space's primary meeting ended on its own: open the next generation.

    Idempotent: however many callers notice the same ended meeting (its EventBridge event, a
    join that met NotFound), one new meeting is recorded; False if the space had already moved
    on (or is not live). The space item is refreshed either way.
    """
    if space.meeting_id != ended_meeting_id or space.state != rules.SpaceState.LIVE:
        return False
    generation = int(space.meeting_generation or 1) + 1
    meeting = open_meeting(space.space_id, generation, space.media_region)
    try:
        space.update(
            actions=[
                Space.meeting_id.set(meeting.meeting_id),
                Space.meeting.set(meeting_record(meeting)),
                Space.meeting_generation.set(generation),
                Space.replicas.remove(),
                Space.replica_count.set(0),
            ],
            condition=(Space.meeting_id == ended_meeting_id) & (Space.state == rules.SpaceState.LIVE),
        )
    except UpdateError:
        space.refresh(consistent_read=True)
        return False
    logger.info(
        "meeting renewed",
        extra={"space_id": space.space_id, "generation": generation, "ended": ended_meeting_id},
    )
    return True


def all_meetings(space: Space) -> list[str]:
    ids = [r["meeting_id"] for r in (space.replicas or [])]
    if space.meeting_id:
        ids.append(space.meeting_id)
    return ids
