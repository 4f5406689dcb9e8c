"""The live effects of admin actions, made durable (principle 10).

An action that removes someone, ends a space or suspends a user writes a PendingEffect in
the same transaction as the case and the audit record (actions._commit). The effect is
carried out right after the commit; if that fails (an outage of Chime or of API Gateway's
@connections), the effect stays pending and the sweep (every minute) carries it out until
it is done, as does a retried request that answers `replayed`. Every effect is safe to
repeat: it looks at what is left to do each time.

PendingEffects live in the cases table (`case_id = "effect#{action_id}"`) and are listed
through its by_status index under the status `effect#pending`, so the sweep finds them
with a Query; admin case lists ask for `open` or `closed` and never see them.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib import clients, observability, placement, spaces, suspensions
from chalicelib.models import FromSettings
from chalicelib.observability import logger
from chalicelib.rules import SpaceState

PENDING = "effect#pending"
DURABLE = frozenset({"remove_from_space", "end_space", "suspend"})


class EffectsByStatus(GlobalSecondaryIndex["PendingEffect"]):
    class Meta:
        index_name = "by_status"
        projection = AllProjection()

    status = UnicodeAttribute(hash_key=True)
    last_seen_at = UnicodeAttribute(range_key=True)


class PendingEffect(Model):
    class Meta:
        table_name = FromSettings("cases_table")
        region = FromSettings("region")

    case_id = UnicodeAttribute(hash_key=True)  # "effect#{action_id}"
    status = UnicodeAttribute()  # PENDING (the by_status index key)
    last_seen_at = UnicodeAttribute()  # when the action was taken (the index's sort key)
    action = UnicodeAttribute()
    target_id = UnicodeAttribute()
    space_id = UnicodeAttribute(null=True)
    admin_id = UnicodeAttribute()
    attempts = NumberAttribute(default=0)

    by_status = EffectsByStatus()


def key(action_id: str) -> str:
    return f"effect#{action_id}"


def pending_for(action: str, target_id: str, entry: dict[str, Any]) -> PendingEffect | None:
    """The effect an action leaves to carry out (saved in the action's transaction), if any."""
    if action not in DURABLE:
        return None
    return PendingEffect(
        key(entry["action_id"]),
        status=PENDING,
        last_seen_at=entry["at"],
        action=action,
        target_id=target_id,
        space_id=entry["details"].get("space_id"),
        admin_id=entry["admin_id"],
        attempts=0,
    )


def find(action_id: str) -> PendingEffect | None:
    try:
        return PendingEffect.get(key(action_id), consistent_read=True)
    except DoesNotExist:
        return None


def carry_out(effect: PendingEffect) -> bool:
    """Do what is left of the effect; True once it is done (and its record deleted).

    A failure is logged and counted, and the effect stays pending for the next try."""
    try:
        _do(effect)
    except Exception:
        logger.exception(
            "admin effect not carried out; it stays pending",
            extra={
                "effect": effect.case_id,
                "action": effect.action,
                "attempts": int(effect.attempts or 0) + 1,
            },
        )
        observability.count_by("AdminEffects", action=effect.action, outcome="pending")
        try:
            effect.update(actions=[PendingEffect.attempts.add(1)], condition=PendingEffect.case_id.exists())
        except Exception:
            logger.exception("could not count the attempt", extra={"effect": effect.case_id})
        return False
    effect.delete()
    observability.count_by("AdminEffects", action=effect.action, outcome="done")
    return True


def carry_out_pending(limit: int = 50) -> int:
    """The sweep's part: every effect still pending, oldest first. Returns how many got done."""
    done = 0
    for effect in PendingEffect.by_status.query(PENDING, limit=limit):
        done += carry_out(effect)
    return done


def _do(effect: PendingEffect) -> None:
    if effect.action == "remove_from_space":
        _remove(effect.space_id or "", effect.target_id, effect.admin_id)
    elif effect.action == "end_space":
        _end(effect.space_id or "")
    elif effect.action == "suspend":
        suspensions.take_effect(effect.target_id, effect.admin_id, strict=True)


def _remove(space_id: str, user_id: str, admin_id: str) -> None:
    space = spaces.get_space(space_id)
    member = spaces.get_member(space_id, user_id)
    if member is None:
        return
    if not member.removed:
        if space.state == SpaceState.ENDED:
            return  # the space is over: nothing to remove them from (its meetings went with it)
        spaces.expel(space, member, "removed_by_admin", by=admin_id)
        member = spaces.get_member(space_id, user_id)
        assert member is not None
    spaces.clear_removed_attendee(space_id, user_id, strict=True)


def _end(space_id: str) -> None:
    space = spaces.get_space(space_id)
    if space.state != SpaceState.ENDED:
        spaces.end(space, "ended_by_admin")
    for meeting_id in placement.all_meetings(space):
        clients.media().delete_meeting(meeting_id)  # NotFound counts as done (media adapter)
