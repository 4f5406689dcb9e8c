"""A space's life: create, start, cancel, end, and the host's grace period (hand-over or end)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.transactions import TransactWrite

from chalicelib import clients, counters, evidence, fanout, media, placement, rules
from chalicelib.clock import now_iso
from chalicelib.config import get_settings
from chalicelib.db import dynamo
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Connection, Member, Space, list_shard
from chalicelib.notifications import jobs
from chalicelib.observability import logger
from chalicelib.rules import Role, SpaceState
from chalicelib.spaces import audio_features, decisions, store, transitions
from chalicelib.spaces.stage import Stage, new_space_stage


def create(
    creator: str,
    title: str,
    *,
    scheduled_start: str | None,
    speak_policy: str,
    lang: str | None,
    handover: bool,
    recording: bool = False,
) -> Space:
    now = now_iso()
    space_id = uuid.uuid4().hex[:16]
    state = SpaceState.SCHEDULED.value if scheduled_start else SpaceState.LIVE.value
    space = Space(
        space_id,
        state=state,
        list_shard=list_shard(state, space_id),
        title=title,
        title_lc=title.lower(),
        creator_id=creator,
        host_id=creator,
        lang=lang,
        speak_policy=speak_policy,
        handover=handover,
        created_at=now,
        updated_at=now,
        scheduled_start=scheduled_start,
        stage=new_space_stage(creator, now).to_stored(),
        stage_version=0,
        participant_count=0,
        listener_count=0,
        recording=recording,
        recording_started_at=now if recording and not scheduled_start else None,
        media_region=get_settings().media_region,
    )
    if not scheduled_start:
        _open_meeting(space)
        _await_host(space)
    space.save(condition=Space.space_id.does_not_exist())
    if not scheduled_start and (recording or get_settings().capture_all_spaces):
        audio_features.start_recording_at_creation(space)
    if not scheduled_start:
        jobs.space_created_live(space)
    return space


def _await_host(space: Space) -> None:
    """A live space whose host never joins ends after HOST_NO_SHOW_SECONDS: the grace period
    machinery (expire_grace, run by the sweep) ends it; the host's first join clears it."""
    space.grace_shard = store.GRACE_SHARD
    space.grace_deadline = time.time() + get_settings().host_no_show_seconds
    space.host_no_show = True


def _open_meeting(space: Space) -> None:
    meeting = placement.open_meeting(space.space_id, 1, space.media_region)
    space.meeting_id = meeting.meeting_id
    space.meeting = placement.meeting_record(meeting)
    space.started_at = now_iso()


def _require_creator_host(space: Space, user_id: str, doing: str) -> None:
    if space.host_id != user_id:
        raise CommandError(ErrorCode.NOT_ALLOWED, f"only the host can {doing} the space")


def start(user_id: str, space_id: str) -> Space:
    space = store.get_space(space_id)
    _require_creator_host(space, user_id, "start")
    if space.state == SpaceState.ENDED:
        raise CommandError(ErrorCode.SPACE_ENDED, "the space has ended")
    if space.state == SpaceState.LIVE:
        raise CommandError(ErrorCode.CONFLICT, "the space is already live")
    _open_meeting(space)
    _await_host(space)
    try:
        space.update(
            actions=[
                Space.grace_shard.set(space.grace_shard),
                Space.grace_deadline.set(space.grace_deadline),
                Space.host_no_show.set(True),
                Space.state.set(SpaceState.LIVE.value),
                Space.list_shard.set(list_shard(SpaceState.LIVE.value, space.space_id)),
                Space.meeting_id.set(space.meeting_id),
                Space.meeting.set(space.meeting),
                Space.started_at.set(space.started_at),
                Space.updated_at.set(now_iso()),
            ],
            condition=Space.state == SpaceState.SCHEDULED,
        )
    except UpdateError:
        # A concurrent start won: the same ClientRequestToken gave it the same meeting, which
        # must stay (deleting "ours" would end the live space's meeting). Only a meeting nobody
        # recorded (the space was cancelled meanwhile) is ours to delete.
        ours = space.meeting_id
        space = store.get_space(space_id)
        if space.state == SpaceState.LIVE and space.meeting_id == ours:
            return space
        if ours and space.meeting_id != ours:
            clients.media().delete_meeting(ours)
        raise CommandError(ErrorCode.CONFLICT, "the space changed; try again") from None
    space.state = SpaceState.LIVE.value
    if space.recording or get_settings().capture_all_spaces:
        if space.recording:
            space.update(actions=[Space.recording_started_at.set(now_iso())])
        audio_features.start_recording_at_creation(space)
    jobs.space_started(space)
    return space


def reschedule(user_id: str, space_id: str, scheduled_start: str) -> Space:
    """PATCH /spaces/{id}: the host moves a scheduled space; reminder holders are told."""
    space = store.get_space(space_id)
    _require_creator_host(space, user_id, "reschedule")
    if space.state == SpaceState.ENDED:
        raise CommandError(ErrorCode.SPACE_ENDED, "the space has ended")
    if space.state != SpaceState.SCHEDULED:
        raise CommandError(ErrorCode.CONFLICT, "only a scheduled space can be rescheduled")
    if space.scheduled_start == scheduled_start:
        return space  # the same time again: nothing changes, nobody is told
    try:
        space.update(
            actions=[Space.scheduled_start.set(scheduled_start), Space.updated_at.set(now_iso())],
            condition=Space.state == SpaceState.SCHEDULED,
        )
    except UpdateError:
        raise CommandError(ErrorCode.CONFLICT, "the space changed; try again") from None
    jobs.space_rescheduled(space)
    return space


def cancel(user_id: str, space_id: str) -> Space:
    space = store.get_space(space_id)
    _require_creator_host(space, user_id, "cancel")
    if space.state != SpaceState.SCHEDULED:
        raise CommandError(ErrorCode.CONFLICT, "only a scheduled space can be cancelled")
    if not end(space, "cancelled"):
        raise CommandError(ErrorCode.CONFLICT, "the space changed; try again")
    jobs.space_cancelled(space)
    return store.get_space(space_id)


def end_rest(user_id: str, space_id: str) -> Space:
    """POST /spaces/{id}/end: the host ends a live or scheduled space."""
    space = store.get_space(space_id)
    _require_creator_host(space, user_id, "end")
    if space.state == SpaceState.ENDED:
        raise CommandError(ErrorCode.SPACE_ENDED, "the space has already ended")
    end(space, "ended_by_host")
    return store.get_space(space_id)


def end_by_host(conn: Connection, space_id: str) -> dict[str, Any]:
    """The `space.end` command: the host, present in the live space, ends it."""
    ctx = store.load(conn.user_id, conn.connection_id, space_id)
    rules.require_host(ctx.require_present())
    end(ctx.space, "ended_by_host")
    return {"state": SpaceState.ENDED.value}


def end(space: Space, reason: str, only_if: Condition | None = None) -> bool:
    """The one way a space ends: state first, then tell everyone, then the meetings.

    `only_if` is a further condition on the space item (False, nothing done, if it does not hold).
    """
    now = now_iso()
    condition = Space.state != SpaceState.ENDED
    if only_if is not None:
        condition &= only_if
    try:
        # One transaction with the counter shards, so no listener join lands after the end.
        with TransactWrite(connection=dynamo()) as tx:
            tx.update(
                space,
                actions=[
                    Space.state.set(SpaceState.ENDED.value),
                    Space.list_shard.remove(),
                    Space.ended_at.set(now),
                    Space.updated_at.set(now),
                    Space.ended_reason.set(reason),
                    Space.grace_deadline.remove(),
                    Space.grace_shard.remove(),
                    Space.host_no_show.remove(),
                ],
                condition=condition,
            )
            for counter, actions in counters.close_updates(space.space_id):
                tx.update(counter, actions=actions)
    except TransactWriteError:
        return False
    space.state = SpaceState.ENDED.value
    fanout.broadcast(space.space_id, "space.ended", reason=reason)
    # Before the meetings go: a live capture pipeline keeps its meeting from ending.
    try:
        evidence.on_space_ended(space.space_id)
    except Exception:
        logger.exception("could not finish the space's capture", extra={"space_id": space.space_id})
        evidence.retry_soon(space.space_id)
    if space.captions and space.meeting_id:
        try:
            clients.media().stop_transcription(space.meeting_id)
        except media.MediaError:
            logger.exception("could not stop the captions", extra={"space_id": space.space_id})
    # The primary only: its replicas end with it (one call, not one per replica).
    # https://docs.aws.amazon.com/chime-sdk/latest/dg/media-replication.html
    if space.meeting_id:
        try:
            clients.media().delete_meeting(space.meeting_id)
        except media.MediaError:
            logger.exception("could not delete meeting", extra={"meeting_id": space.meeting_id})
    return True


# -- host grace period and hand-over ---------------------------------------------------


def expire_grace(now: float | None = None) -> int:
    """Spaces whose host did not come back in time: hand over to a co-host, or end.

    The host can rejoin at any moment (their join clears grace_deadline in the same
    write that marks them present), so both outcomes are conditional on the grace
    period still running out: a host who came back keeps the space.
    """
    now = time.time() if now is None else now
    handled = 0
    still_expired = Space.grace_deadline <= now
    for space in Space.by_grace.query(store.GRACE_SHARD, Space.grace_deadline <= now):
        handled += 1
        stage = Stage.from_stored(space.stage)
        host = stage.get(space.host_id)
        if host is not None and host.present:
            space.update(actions=[Space.grace_deadline.remove(), Space.grace_shard.remove()])
            continue
        reason = "host_no_show" if space.host_no_show else "host_left"
        if not space.handover or stage.next_host(space.host_id) is None:
            end(space, reason, only_if=still_expired)
            continue
        try:
            _hand_over(space, now)
        except decisions.HostReturned:
            continue
        except CommandError:
            end(space, reason, only_if=still_expired)
    return handled


def _hand_over(space: Space, now: float) -> None:
    old_host = space.host_id
    _, change = transitions.run(
        old_host, None, space.space_id, lambda ctx: decisions.hand_over(ctx, old_host, now)
    )
    Member(space.space_id, old_host).update(actions=[Member.role.set(Role.LISTENER.value)])
    transitions.announce(space.space_id, change.stage, change.reason, change.target)
