"""Being in a space: join, leave, sync, removal, a socket gone, and the listener count.

Listeners never write the space item (their counter shard says whether the space is
still on and has room, counters.py); the at most 13 people on stage do, through
the stage.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from chalicelib import broadcast, clients, counters, fanout, media, observability, placement, pool, rules
from chalicelib.clock import now_iso
from chalicelib.config import get_settings
from chalicelib.db import condition_failed, dynamo, held_by_another, is_conflict
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Connection, Member, Space, list_shards
from chalicelib.observability import logger
from chalicelib.rules import MODERATORS, ON_STAGE, Role, SpaceState
from chalicelib.spaces import decisions, presence, store, transitions
from chalicelib.spaces.stage import Stage, StageEntry, audio_of
from chalicelib.spaces.views import snapshot

JOIN_RETRIES = 5


def join(conn: Connection, space_id: str) -> dict[str, Any]:
    """A media attendee first, then one DynamoDB transaction conditional on everything the
    decision read (the member, the stage, the socket's space); a lost race reads and decides
    again. An attendee no committed join holds is deleted again."""
    made: list[media.Attendee] = []  # attendees created by attempts that did not commit
    try:
        for _ in range(JOIN_RETRIES):
            ctx = store.load(
                conn.user_id, conn.connection_id, space_id, with_counts=True, with_connection=True
            )
            if ctx.connection is None:
                raise CommandError(ErrorCode.UNAUTHORIZED, "connection is not registered; reconnect")
            elsewhere = ctx.connection.space_id
            if elsewhere and elsewhere != space_id:
                # One space per socket: joining another leaves the one it is in, as space.leave would.
                leave(conn.user_id, elsewhere, conn.connection_id)
            joined = _join_once(conn, ctx, made)
            if joined is not None:
                return joined
        raise CommandError(ErrorCode.CONFLICT, "the space changed while you joined; try again")
    finally:
        if made:
            _drop_unclaimed(space_id, conn.user_id, made)


def _member_unchanged(member: Member | None) -> Any:
    """The member item is as the join read it (two joins of one user cannot both count)."""
    not_removed = Member.removed.does_not_exist() | (Member.removed == False)  # noqa: E712
    if member is None:
        return Member.user_id.does_not_exist()
    if not member.present:
        return not_removed & (Member.present.does_not_exist() | (Member.present == False))  # noqa: E712
    # The attendee too: a rejoin on the same socket takes a new (pooled) attendee, and the
    # join that replaces the member deletes the one it read. Away (the socket dropped, the
    # reconnect grace running): no connection.
    present = Member.present == True  # noqa: E712
    return not_removed & present & _connection_unchanged(member) & _attendee_unchanged(member)


def _connection_unchanged(member: Member) -> Any:
    if member.connection_id is None:
        return Member.connection_id.does_not_exist()
    return Member.connection_id == member.connection_id


def _attendee_unchanged(member: Member) -> Any:
    if member.attendee_id is None:
        return Member.attendee_id.does_not_exist()
    return Member.attendee_id == member.attendee_id


def _socket_unchanged(connection: Connection) -> Any:
    """The socket is still open and no other join on it committed since it was read."""
    condition = Connection.connection_id.exists()
    if connection.space_version is None:
        return condition & Connection.space_version.does_not_exist()
    return condition & (Connection.space_version == connection.space_version)


def _join_once(conn: Connection, ctx: decisions.Ctx, made: list[media.Attendee]) -> dict[str, Any] | None:
    """One attempt: the snapshot, or None when another writer changed what was read."""
    assert ctx.connection is not None
    space_id = ctx.space.space_id
    space, listeners = ctx.space, ctx.listeners or 0
    blocked = bool(store.blockers_among(ctx.stage.moderators(), conn.user_id))
    join = decisions.joining(ctx, blocked_by_moderator=blocked, max_listeners=get_settings().max_listeners)
    entry, role, already_present, new_listener = join.seat, join.role, join.already_present, join.new_listener
    kept = _kept_attendee(ctx, entry)
    meeting, attendee = kept or _place(space, conn.user_id, role, audio_of(entry), listeners)
    if attendee.attendee_id not in {a.attendee_id for a in made}:
        made.append(attendee)
    now = now_iso()
    new_attendee = ctx.member is None or ctx.member.attendee_id != attendee.attendee_id
    stage = (
        ctx.stage.mark_back(conn.user_id, conn.connection_id, new_attendee=new_attendee)
        if entry is not None
        else ctx.stage
    )
    # A member promoted out of a replica resumes with both attendees: the client connects with the
    # replica one and promotes it again (Chime demotes on any disconnection).
    primary = (
        transitions.primary_credentials(space, ctx.member, audio_of(entry))
        if kept is not None and entry is not None and ctx.member is not None
        else None
    )
    keep_primary: list[Any] = (
        []
        if primary is not None
        else [
            Member.primary_attendee_id.remove(),
            Member.primary_meeting_id.remove(),
            Member.primary_join_token.remove(),
        ]
    )
    # Another attendee: its audio state starts unknown (Chime's events for it will say).
    audio_reset = [Member.audio.remove(), Member.audio_at.remove()] if new_attendee else []
    holder = pool.holder(space_id, conn.user_id, attendee) if new_attendee else None
    try:
        with TransactWrite(connection=dynamo()) as tx:
            tx.update(
                Member(space_id, conn.user_id),
                actions=[
                    *keep_primary,
                    *audio_reset,
                    Member.role.set(role.value),
                    Member.present.set(True),
                    Member.removed.set(False),
                    Member.connection_id.set(conn.connection_id),
                    Member.attendee_id.set(attendee.attendee_id),
                    Member.meeting_id.set(attendee.meeting_id),
                    Member.pooled.set(pool.is_pooled(attendee.external_user_id)),
                    Member.join_token.set(attendee.join_token),
                    Member.attendee_external.set(attendee.external_user_id),
                    Member.away_until.remove(),
                    Member.away_shard.remove(),
                    Member.joined_at.set(now),
                ],
                condition=_member_unchanged(ctx.member),
            )
            if entry is not None:
                # Stage members rejoin through the space item (rare: at most 13 of them).
                space_actions: list[Any] = [
                    Space.updated_at.set(now),
                    Space.stage.set(stage.to_stored()),
                    Space.stage_version.add(1),
                ]
                if role == Role.HOST:
                    space_actions += [
                        Space.grace_deadline.remove(),
                        Space.grace_shard.remove(),
                        Space.host_no_show.remove(),
                    ]
                tx.update(
                    space,
                    actions=space_actions,
                    condition=(Space.state == SpaceState.LIVE) & (Space.stage_version == space.stage_version),
                )
            elif new_listener:
                tx.update(*counters.join_update(space_id, conn.user_id))
            else:
                tx.condition_check(Space, space_id, condition=Space.state == SpaceState.LIVE)
            tx.update(
                Connection(conn.connection_id),
                actions=[Connection.space_id.set(space_id), Connection.space_version.add(1)],
                condition=_socket_unchanged(ctx.connection),
            )
            if holder is not None:
                tx.save(holder)  # whose attendee this is, for Chime's attendee events
            store.open_socket(tx, space_id, conn.user_id, conn.connection_id)
    except TransactWriteError as exc:
        if is_conflict(exc):
            if new_listener:
                rules.check_room(counters.listeners(space_id), get_settings().max_listeners)
            return None  # read again: removed, ended, replaced or gone is decided there
        raise
    made[:] = [a for a in made if a.attendee_id != attendee.attendee_id]
    old = ctx.member
    if already_present and old is not None and old.attendee_id not in (None, attendee.attendee_id):
        transitions.safe_delete_attendee(old.meeting_id, old.attendee_id)  # the older device's seat
    if primary is None and old is not None and old.primary_attendee_id not in (None, attendee.attendee_id):
        transitions.safe_delete_attendee(old.primary_meeting_id, old.primary_attendee_id)

    if join.replaced:
        fanout.send_private([join.replaced], "session.replaced", space_id)
        fanout.disconnect(join.replaced)
    space.stage = stage.to_stored()
    if entry is not None and not entry.present:  # a resume within the grace changes nothing public
        transitions.announce(space_id, stage, "rejoined", conn.user_id)
        if role == Role.HOST and space.grace_deadline and not space.host_no_show:
            fanout.broadcast(space_id, "host.back", user_id=conn.user_id)
    elif new_listener:
        publish_listener_count(space, last_published=ctx.count_published_at)
    # The joiner's snapshot: the exact count as read with the counters, the joiner included.
    space.listener_count = listeners + (1 if new_listener else 0)
    seq = ctx.seq
    # A broadcast numbered between the read above and the commit went only to those already
    # in: the reply's seq must be one after which every broadcast reaches the joiner. If the
    # seq moved, the snapshot is taken again, now that the membership is committed.
    if counters.current_seq(space_id) != seq:
        fresh = store.load(conn.user_id, conn.connection_id, space_id, with_counts=True)
        space, seq = fresh.space, fresh.seq
        space.listener_count = fresh.listeners or 0
    observability.count("Joins")
    data = snapshot(space, conn.user_id, role, seq, media.credentials(meeting, attendee))
    if primary is not None:
        data["primary_media"] = primary
    channel = broadcast.client_info(space_id)
    if channel is not None:
        data["broadcast"] = channel
    return data


def _drop_unclaimed(space_id: str, user_id: str, made: list[media.Attendee]) -> None:
    """Delete the attendees a failed join created, unless the member (another device's join,
    CreateAttendee being idempotent per user) holds one of them now."""
    member = store.get_member(space_id, user_id)
    held = member.attendee_id if member is not None and member.present and not member.removed else None
    for attendee in made:
        if attendee.attendee_id != held:
            transitions.safe_delete_attendee(attendee.meeting_id, attendee.attendee_id)


def _kept_attendee(
    ctx: decisions.Ctx, entry: StageEntry | None
) -> tuple[media.Meeting, media.Attendee] | None:
    """The attendee a present member holds, if it is in one of the space's current meetings and
    the member is away (a reconnect within the grace) or holds a pooled one (another device: what
    Chime's ExternalUserId idempotency gives a named attendee, one attendee per user): the client
    resumes with it, no Chime call."""
    member, space = ctx.member, ctx.space
    if member is None or not member.present or member.removed:
        return None
    if member.connection_id is not None and not member.pooled:
        return None
    if not (member.attendee_id and member.join_token and member.meeting_id):
        return None
    records = [space.meeting, *(space.replicas or [])] if space.meeting else []
    record = next((r for r in records if r["meeting_id"] == member.meeting_id), None)
    if record is None:
        return None  # an older generation's meeting: place anew
    attendee = media.Attendee(
        attendee_id=member.attendee_id,
        external_user_id=member.attendee_external or media.external_user_id(member.user_id),
        join_token=member.join_token,
        meeting_id=member.meeting_id,
        audio=audio_of(entry),
    )
    return placement.meeting_from(record), attendee


def _place(
    space: Space, user_id: str, role: Role, audio: str, listeners: int
) -> tuple[media.Meeting, media.Attendee]:
    """placement.place, renewing the space's meeting if Chime ended it on its own (NotFound)."""
    try:
        return placement.place(space, user_id, role, audio, listeners)
    except media.MediaError as exc:
        if exc.code != "NotFound" or not space.meeting_id:
            raise
    meeting_ended(space, space.meeting_id)
    return placement.place(space, user_id, role, audio, listeners)


def meeting_ended(space: Space, meeting_id: str) -> bool:
    """Chime ended the space's meeting (no audio for 5 minutes, fewer than two connections for 30,
    or 24 hours: https://docs.aws.amazon.com/chime-sdk/latest/dg/create-mtgs.html). A live space
    opens its next meeting and tells whoever is present to join again for new credentials
    (`media.renewed`); True if this call renewed it."""
    if not placement.renew(space, meeting_id):
        return False
    fanout.broadcast(space.space_id, "media.renewed", generation=int(space.meeting_generation or 1))
    return True


def on_chime_event(detail: dict[str, Any]) -> str:
    """A "Chime Meeting State Change" event from EventBridge; returns what was done (for logs).

    chime:MeetingEnded of a live space's current meeting renews it. Events of meetings that are
    not a space's current one (our own DeleteMeeting at the end, an older generation) change nothing.
    chime:AttendeeJoined/Left/Dropped are presence (on_attendee_event).
    https://docs.aws.amazon.com/chime-sdk/latest/dg/using-events.html
    """
    event_type = str(detail.get("eventType", ""))
    meeting_id = str(detail.get("meetingId", ""))
    external = str(detail.get("externalMeetingId", ""))
    if not meeting_id or not external:
        return "ignored"
    try:
        space = store.get_space(placement.space_of(external))
    except CommandError:
        return "unknown space"
    if event_type == "chime:MeetingEnded" and not detail.get("primaryMeetingId"):
        return "renewed" if meeting_ended(space, meeting_id) else "stale"
    event = presence.parse(detail)
    if event is not None:
        return on_attendee_event(space, event, str(detail.get("externalUserId", "")))
    return "ignored"


PRESENCE_RETRIES = 3


def on_attendee_event(space: Space, event: presence.AudioEvent, external_user_id: str) -> str:
    """chime:AttendeeJoined/Left/Dropped for one of the space's meetings: matched to the member
    whose current attendee it is by key lookups only (the user from the ExternalUserId, or the
    Holder item the join wrote for a pooled attendee), decided in spaces/presence.py, written
    conditionally on the member as read. Returns what was done (for logs)."""
    try:
        user_id = media.user_id_from_external(external_user_id) if external_user_id else None
    except ValueError:  # not one of ours ("b:" and not base64 of UTF-8)
        return "unknown attendee"
    if user_id == "":
        return "unknown attendee"  # not one of ours either: no user is named ""
    if user_id is None:
        held = pool.holder_of(event.meeting_id, external_user_id) if external_user_id else None
        if held is None or held[0] != space.space_id:
            return "unknown attendee"
        user_id = held[1]
    records = [space.meeting, *(space.replicas or [])] if space.meeting else []
    current = {str(r["meeting_id"]) for r in records}
    settings = get_settings()
    for _ in range(PRESENCE_RETRIES):
        member = store.get_member(space.space_id, user_id)
        action = presence.decide(
            event,
            member,
            current,
            now=time.time(),
            grace=settings.reconnect_grace_seconds,
            hold=settings.audio_hold_seconds,
        )
        if action.kind == "ignore":
            return action.why
        assert member is not None
        if not _record_audio(member, event, action.away_until):
            continue  # the member changed since read (socket, attendee, a newer event): decide again
        if action.kind == "leave":
            # Audio left on purpose with the socket gone: the member has gone, no grace.
            left = leave(user_id, space.space_id, None, reason="left", only_away=True)
            return "left" if left else "came back"
        observability.count("AudioEvents")
        # The role as written (the record is conditional on it): a promotion committed after the
        # member was read makes the record read again, and one that read the member before the
        # record is decided again by its own condition (store._member_writes).
        shown = Role(member.role) in ON_STAGE and _show_on_stage(space.space_id, user_id, event)
        return (
            f"audio {event.audio}"
            + (" (away)" if action.away_until is not None else "")
            + (", on stage" if shown else "")
        )
    return "busy"


def _show_on_stage(space_id: str, user_id: str, event: presence.AudioEvent) -> bool:
    """Someone on stage: their audio state on their stage entry too, announced with stage.changed
    (at most 13 people, so a host sees who is really connected; a listener's never is)."""
    for _ in range(PRESENCE_RETRIES):
        space = store.get_space(space_id)
        before = Stage.from_stored(space.stage)
        stage = before.with_audio(user_id, event.audio, event.at_ms)
        if stage is None or space.state != SpaceState.LIVE:
            return False
        try:
            space.update(
                actions=[Space.stage.set(stage.to_stored()), Space.stage_version.add(1)],
                condition=(Space.state == SpaceState.LIVE) & (Space.stage_version == space.stage_version),
            )
        except UpdateError as exc:
            if condition_failed(exc):
                continue  # the stage changed meanwhile: read again
            raise
        entry = before.get(user_id)
        if entry is not None and entry.audio_state != event.audio:
            transitions.announce(space_id, stage, "audio", user_id)
        return True
    return False


def _record_audio(member: Member, event: presence.AudioEvent, away_until: float | None) -> bool:
    """The audio state (and a new end of the away time), if the member is still as read."""
    actions: list[Any] = [Member.audio.set(event.audio), Member.audio_at.set(event.at_ms)]
    if away_until is not None:
        actions.append(Member.away_until.set(away_until))
    newer = Member.audio_at.does_not_exist() | (Member.audio_at < event.at_ms)
    if member.away_until is None:
        away = Member.away_until.does_not_exist()
    else:
        away = Member.away_until == member.away_until
    try:
        member.update(
            actions=actions,
            condition=(Member.present == True)  # noqa: E712
            & (Member.role == member.role)
            & _connection_unchanged(member)
            & _attendee_unchanged(member)
            & away
            & newer,
        )
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise  # an outage: the Lambda fails and EventBridge's async invocation tries again
    return True


def sync(conn: Connection, space_id: str) -> dict[str, Any]:
    ctx = store.load(conn.user_id, conn.connection_id, space_id)
    role = ctx.require_present()
    ctx.space.listener_count = counters.listeners(space_id)
    return snapshot(ctx.space, conn.user_id, role, ctx.seq)


def leave(
    user_id: str, space_id: str, connection_id: str | None, reason: str = "left", *, only_away: bool = False
) -> bool:
    """The user leaves (or their socket dropped). Only the connection that joined can leave;
    `only_away`: only a member still away (the end of a reconnect grace)."""
    try:
        ctx = store.load(user_id, connection_id, space_id)
    except CommandError:
        return False
    member = ctx.member
    if member is None or not member.present:
        return False
    if connection_id is not None and member.connection_id != connection_id:
        return False  # replaced by a newer device
    if only_away and (member.connection_id is not None or member.away_until is None):
        return False  # came back
    space = ctx.space
    entry = ctx.stage.get(user_id)
    if entry is None or space.state != SpaceState.LIVE:
        try:
            with TransactWrite(connection=dynamo()) as tx:
                tx.update(
                    member,
                    actions=store.exit_actions(False),
                    # the attendee deleted below is the one the member still holds
                    condition=_connection_unchanged(member) & _attendee_unchanged(member),
                )
                store.socket_gone(tx, space_id, user_id)
                if entry is None:
                    tx.update(*counters.change(space_id, user_id, -1))
        except TransactWriteError:
            return False
        _delete_attendees(member)
        if entry is None and space.state == SpaceState.LIVE:
            publish_listener_count(space)
        observability.count("Leaves")
        return True

    grace_until = time.time() + get_settings().host_grace_seconds
    try:
        transitions.run_and_announce(
            user_id, connection_id, space_id, lambda c: decisions.leave_seat(c, user_id, reason, grace_until)
        )
    except CommandError:
        return False
    _delete_attendees(member)
    if entry.role == Role.HOST:
        fresh = store.get_space(space_id)
        fanout.broadcast(space_id, "host.away", user_id=user_id, grace_deadline=fresh.grace_deadline)
    observability.count("Leaves")
    return True


def _delete_attendees(member: Member) -> bool:
    """The member's attendee and, if they were promoted out of a replica, their primary one."""
    deleted = transitions.safe_delete_attendee(member.meeting_id, member.attendee_id)
    return transitions.safe_delete_attendee(member.primary_meeting_id, member.primary_attendee_id) and deleted


AWAY_SHARD = "away"


def on_connection_gone(connection_id: str, record: Connection | None) -> None:
    if record is not None and record.space_id:
        step_away(record.user_id, record.space_id, connection_id)


def step_away(user_id: str, space_id: str, connection_id: str) -> bool:
    """A socket dropped (API Gateway closes every one after 2 hours, and after 10 minutes idle:
    https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html). Whatever the role,
    the member keeps their seat, their place in the count and their attendee (audio goes on) for
    RECONNECT_GRACE_SECONDS; a `space.join` from a new socket meanwhile resumes without anyone
    being told. Only when the grace runs out does the sweep make them leave (`expire_away`)."""
    settings = get_settings()
    grace = settings.reconnect_grace_seconds
    if grace <= 0:
        return leave(user_id, space_id, connection_id, reason="disconnected")
    base = (
        (Member.present == True)  # noqa: E712
        & (Member.connection_id == connection_id)
        & (Member.removed.does_not_exist() | (Member.removed == False))  # noqa: E712
    )
    # Audio still up (Chime's last attendee event said joined): the member is still listening,
    # held for AUDIO_HOLD_SECONDS; else the grace. Conditional on the audio state, so an
    # AttendeeLeft/Dropped applied meanwhile gives the plain grace (spaces/presence.py).
    joined = Member.audio == presence.JOINED
    for condition, audio in ((base & joined, presence.JOINED), (base & ~joined, None)):
        away = presence.away_for(audio, grace=grace, hold=settings.audio_hold_seconds)
        for _ in range(JOIN_RETRIES):
            try:
                # The presence row goes with the connection id: broadcasts stop reaching the socket.
                with TransactWrite(connection=dynamo()) as tx:
                    tx.update(
                        Member(space_id, user_id),
                        actions=[
                            Member.connection_id.remove(),
                            Member.away_until.set(time.time() + away),
                            Member.away_shard.set(AWAY_SHARD),
                        ],
                        condition=condition,
                    )
                    store.socket_gone(tx, space_id, user_id)
            except TransactWriteError as exc:
                if held_by_another(exc):
                    continue  # a stage change held the member item for a moment
                break  # this condition does not hold: the next one may
            observability.count("Away")
            return True
    return False  # replaced by a newer socket, left, or removed meanwhile


def expire_away(now: float | None = None) -> int:
    """Members whose reconnect grace ran out leave as a dropped socket did before the grace:
    the listener leaves the count, a speaker the stage, the host starts the host grace period."""
    now = time.time() if now is None else now
    done = 0
    for member in Member.by_away.query(AWAY_SHARD, Member.away_until <= now):
        if leave(member.user_id, member.space_id, None, reason="disconnected", only_away=True):
            done += 1
        else:
            # Not away any more (back, left, removed) or the space is gone: forget the mark.
            with contextlib.suppress(UpdateError):
                Member(member.space_id, member.user_id).update(
                    actions=[Member.away_until.remove(), Member.away_shard.remove()],
                    condition=Member.away_until == member.away_until,
                )
    return done


def expel(space: Space, member: Member, reason: str, by: str) -> None:
    """Remove a member for the rest of the space: attendee deleted first (its join token dies
    with it), then the membership is marked removed; then whatever attendee a join racing
    the removal wrote meanwhile is deleted too (no join succeeds once removed is written)."""
    deleted = transitions.safe_delete_attendee(member.meeting_id, member.attendee_id)
    primary_deleted = transitions.safe_delete_attendee(member.primary_meeting_id, member.primary_attendee_id)
    _expel(space, member, reason, by)
    cleared = clear_removed_attendee(
        space.space_id,
        member.user_id,
        done={
            a
            for a, ok in ((member.attendee_id, deleted), (member.primary_attendee_id, primary_deleted))
            if a and ok
        },
    )
    if not cleared:
        queue_attendee_clear(space.space_id, member.user_id)


# A removed member whose attendee Chime would not delete could still talk and listen: the
# fan-out queue tries again after ATTENDEE_CLEAR_DELAY_SECONDS, then on every redelivery
# (its visibility timeout), and its DLQ alarm tells an operator if Chime never answers.
ATTENDEE_CLEAR_KIND = "attendee.clear"
ATTENDEE_CLEAR_DELAY_SECONDS = 5


def queue_attendee_clear(space_id: str, user_id: str) -> None:
    try:
        clients.sqs().send_message(
            QueueUrl=get_settings().fanout_queue_url,
            MessageBody=json.dumps({"kind": ATTENDEE_CLEAR_KIND, "space_id": space_id, "user_id": user_id}),
            DelaySeconds=ATTENDEE_CLEAR_DELAY_SECONDS,
        )
    except Exception:
        # The attendee ids stay on the removed member: an admin removal or suspension clears them.
        logger.exception(
            "could not queue the attendee clean-up", extra={"space_id": space_id, "user_id": user_id}
        )
        observability.count("AttendeeClearsLost")
        return
    observability.count("AttendeeClearsQueued")


def attendee_clear_request(message: Any) -> tuple[str, str] | None:
    """(space_id, user_id) when a (decoded) fan-out queue message asks to clear a removed member's
    attendees (None: another kind)."""
    if not isinstance(message, dict) or message.get("kind") != ATTENDEE_CLEAR_KIND:
        return None
    space_id, user_id = message.get("space_id"), message.get("user_id")
    if not isinstance(space_id, str) or not space_id or not isinstance(user_id, str) or not user_id:
        raise ValueError("an attendee clean-up needs a space_id and a user_id")
    return space_id, user_id


def clear_removed_attendee(
    space_id: str, user_id: str, *, done: set[str] | None = None, strict: bool = False
) -> bool:
    """Delete the attendees a removed member still holds (its own and, if promoted out of a
    replica, the primary one; `done`: ids already deleted), then forget them. True when none is
    left; `strict` raises the media service's error instead."""
    after = store.get_member(space_id, user_id)
    if after is None or not after.removed:
        return True
    held = [
        (Member.attendee_id, after.meeting_id, after.attendee_id),
        (Member.primary_attendee_id, after.primary_meeting_id, after.primary_attendee_id),
    ]
    for attribute, meeting_id, attendee_id in held:
        if not attendee_id:
            continue
        if attendee_id not in (done or set()):
            if strict:
                clients.media().delete_attendee(meeting_id or "", attendee_id)
            elif not transitions.safe_delete_attendee(meeting_id, attendee_id):
                return False  # kept on the item: an admin effect or a later removal tries again
        with contextlib.suppress(UpdateError):  # someone else cleared it
            after.update(
                actions=[attribute.remove()],
                condition=(Member.removed == True) & (attribute == attendee_id),  # noqa: E712
            )
    return True


def _expel(space: Space, member: Member, reason: str, by: str) -> None:
    user_id = member.user_id
    for _ in range(JOIN_RETRIES):
        on_stage = user_id in Stage.from_stored(space.stage)
        if on_stage:
            _, change = transitions.run(
                by, None, space.space_id, lambda c: decisions.expel(c, user_id, reason)
            )
            break
        try:
            # Conditional on the member as read: a listener who left or joined meanwhile
            # must not be counted out twice, or not at all.
            with TransactWrite(connection=dynamo()) as tx:
                tx.update(
                    Member(space.space_id, user_id),
                    actions=[*store.exit_actions(True), Member.role.set("listener")],
                    condition=_member_unchanged(member) & (Member.role == member.role),
                )
                store.socket_gone(tx, space.space_id, user_id)
                if member.present:
                    tx.update(*counters.change(space.space_id, user_id, -1))
            break
        except TransactWriteError as exc:
            if not is_conflict(exc):
                raise
            fresh = store.get_member(space.space_id, user_id)
            if fresh is None or fresh.removed:
                return
            member, space = fresh, store.get_space(space.space_id)
    else:
        raise CommandError(ErrorCode.CONFLICT, "the space changed while removing; try again")
    fanout.send_private([member.connection_id or ""], "participant.removed", space.space_id, reason=reason)
    if on_stage:
        transitions.announce(space.space_id, change.stage, change.reason, change.target)
    elif member.present:
        publish_listener_count(space)


def expel_if_blocked(space: Space, blocker: str, blocked: str) -> bool:
    """A moderator's block takes effect at once: the blocked person leaves the space,
    unless they moderate it too (a block does not demote a moderator)."""
    target = store.get_member(space.space_id, blocked)
    if target is None or not target.present or target.removed:
        return False
    if Stage.from_stored(space.stage).role_of(blocked) in MODERATORS:
        return False
    expel(space, target, "removed", by=blocker)
    return True


def enforce_block(blocker: str, blocked: str) -> int:
    """Remove `blocked` from every live space where `blocker` is host or co-host. Returns how many."""
    removed = 0
    for mine in Member.by_user.query(blocker):
        if mine.role not in MODERATORS:
            continue
        space = store.get_space(mine.space_id)
        if (
            space.state != SpaceState.LIVE
            or Stage.from_stored(space.stage).role_of(blocker) not in MODERATORS
        ):
            continue
        removed += expel_if_blocked(space, blocker, blocked)
    return removed


# -- the listener count ------------------------------------------------------------


def participants(listeners: int, stage: Stage) -> int:
    return listeners + stage.present_count()


def publish_listener_count(space: Space, force: bool = False, last_published: float | None = None) -> bool:
    """At most one listeners.count event per space per interval; the sweep publishes what is left.

    `last_published`, when the caller read it already, spares the conditional write while
    the interval is still running (most joins of a storm).
    """
    settings = get_settings()
    # Big rooms get fewer count events (a count event is one post per person present):
    # at most ~25 posts a second per space up to 1,500 listeners, then one event a minute;
    # a longer configured interval stands.
    interval = max(settings.listener_count_interval_seconds, min(60.0, int(space.listener_count or 0) / 25))
    # The naive baseline (benchmark only) tells everyone about every join and leave.
    if not force and not settings.naive_join_broadcast:
        if last_published is not None and time.time() - last_published < interval:
            return False
        if not counters.claim_publication(space.space_id, interval):
            return False
    listeners = counters.listeners(space.space_id)
    count = participants(listeners, Stage.from_stored(space.stage))
    try:
        space.update(
            actions=[Space.participant_count.set(count), Space.listener_count.set(listeners)],
            condition=Space.state == SpaceState.LIVE,
        )
    except UpdateError:
        return False
    threshold = settings.broadcast_threshold
    if broadcast.enabled() and 0 < threshold <= listeners and counters.mark_broadcast(space.space_id):
        logger.info("space moves to the broadcast tier", extra={"space_id": space.space_id})
    fanout.broadcast(space.space_id, "listeners.count", listener_count=listeners, participant_count=count)
    return True


def publish_pending_counts() -> int:
    """Listener counts that changed since their last event (the coalescing's tail)."""
    published = 0
    for shard in list_shards(SpaceState.LIVE.value):
        for space in Space.by_state.query(shard):
            count = participants(counters.listeners(space.space_id), Stage.from_stored(space.stage))
            if count != int(space.participant_count or 0) and publish_listener_count(space):
                published += 1
    return published
