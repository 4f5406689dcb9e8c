"""Suspensions: whether an account is suspended, what suspending or lifting writes, and
the immediate effect (out of every space, sockets closed). Admins decide (admin.py);
connecting and reporting ask here."""

from __future__ import annotations

import time
from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib import connections, fanout, spaces
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Member, User
from chalicelib.observability import logger
from chalicelib.rules import Role, SpaceState


def suspended_until(user_id: str) -> float | None:
    try:
        user = User.get(user_id)
    except DoesNotExist:
        return None
    until = user.suspended_until
    return float(until) if until and until > time.time() else None


def refusal(user_id: str) -> CommandError | None:
    """Why a suspended user may not act (connect, report), if they are suspended."""
    until = suspended_until(user_id)
    if until is None:
        return None
    return CommandError(ErrorCode.NOT_ALLOWED, "this account is suspended", {"suspended_until": until})


def suspend_actions(until: float, reason: str) -> list[Any]:
    return [User.suspended_until.set(until), User.suspension_reason.set(reason)]


def lift_actions() -> list[Any]:
    return [User.suspended_until.remove(), User.suspension_reason.remove()]


def take_effect(user_id: str, by: str, *, strict: bool = False) -> None:
    """A suspension takes effect at once: out of every space (attendees deleted), sockets closed.

    The spaces are the ones the user's connections are in plus the memberships the
    by_user index shows as present or hosting (the index may lag a join by a moment;
    the connection record does not). Spaces first, so the $disconnect that closing
    the sockets causes finds nothing left to do. A host's space ends with them.
    The socket closes without an event; a reconnect is refused with 403 and the reason.

    `strict` (a durable admin effect, admin/effects.py): everything is tried, then the first
    failure is raised, so the effect stays pending until every attendee is deleted and every
    socket closed; a retry finds what is left (memberships still holding an attendee too).
    """
    conns = connections.of_user(user_id)
    space_ids = {c.space_id for c in conns if c.space_id}
    holding = (Member.present == True) | (Member.role == Role.HOST.value)  # noqa: E712
    if strict:
        holding |= Member.attendee_id.exists() | Member.primary_attendee_id.exists()
    space_ids |= {m.space_id for m in Member.by_user.query(user_id, filter_condition=holding)}
    failures: list[Exception] = []
    for space_id in sorted(space_ids):
        try:
            _remove_from(space_id, user_id, by)
            if strict:
                spaces.clear_removed_attendee(space_id, user_id, strict=True)
        except Exception as exc:
            logger.exception("could not remove a suspended user", extra={"space_id": space_id})
            failures.append(exc)
    for conn in conns:
        try:
            fanout.disconnect(conn.connection_id)
        except Exception as exc:
            if not strict:
                raise
            logger.exception(
                "could not close a suspended user's socket", extra={"connection_id": conn.connection_id}
            )
            failures.append(exc)
    if strict and failures:
        raise failures[0]


def _remove_from(space_id: str, user_id: str, by: str) -> None:
    member = spaces.get_member(space_id, user_id)
    if member is None or member.removed:
        return
    space = spaces.get_space(space_id)
    if space.state != SpaceState.LIVE:
        return
    if space.host_id == user_id:
        spaces.end(space, "host_suspended")
    elif member.present or member.attendee_id or member.primary_attendee_id:
        spaces.expel(space, member, "suspended", by=by)
