"""Admin actions on a case.

An action is one DynamoDB transaction: the case update (conditional on its
`version`), the audit record and, where the action has one, the user's
suspension and the release of the target's open-case marker. Two admins acting
at once: one transaction wins, the other finds the case changed and gets a
conflict with the case as it now is. Live effects (events, removals, closing
sockets) follow the commit; what they need was checked before it. The ones that must
happen (remove, end, suspend) are recorded as a PendingEffect in the same transaction
and carried out until done (admin/effects.py): right away, by a retry that answers
`replayed`, and by the sweep.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib import connections, evidence, fanout, idempotency, observability, spaces, suspensions
from chalicelib import triage as rules
from chalicelib.admin import effects
from chalicelib.admin.cases import get_case, real_case
from chalicelib.admin.queries import CaseAction, case_view
from chalicelib.clock import now_iso
from chalicelib.db import dynamo, is_conflict
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Audit, Case, Member, OpenCase, Space, User
from chalicelib.moderation import open_case_key
from chalicelib.observability import logger
from chalicelib.rules import SpaceState

ACTION_RETRIES = 5

# -- actions ------------------------------------------------------------------------------


def act(
    admin_id: str, case_id: str, body: CaseAction, idempotency_key: str | None, lambda_context: Any = None
) -> dict[str, Any]:
    if case_id.startswith("open#"):
        raise CommandError(ErrorCode.NOT_FOUND, "case not found")
    return idempotency.once(
        "case_action",
        admin_id,
        idempotency_key,
        {"case_id": case_id, "body": body.model_dump()},
        lambda: _act(admin_id, case_id, body),
        lambda_context,
    )


def _conflict(case: Case, message: str) -> CommandError:
    return CommandError(ErrorCode.CONFLICT, message, {"case": case_view(case)})


def _act(admin_id: str, case_id: str, body: CaseAction) -> dict[str, Any]:
    request = body.request()
    for _ in range(ACTION_RETRIES):
        case = real_case(case_id)
        earlier = rules.find_repeat(case.actions or [], admin_id, request)
        if earlier is not None:
            # the first request's effect may have failed after its commit: finish it now
            pending = effects.find(earlier["action_id"])
            effect = "none" if pending is None and earlier["action"] not in effects.DURABLE else "done"
            if pending is not None and not effects.carry_out(pending):
                effect = "pending"
            return {"case": case_view(case), "action": dict(earlier), "replayed": True, "effect": effect}
        if body.expected_version is not None and body.expected_version != case.version:
            raise _conflict(case, "the case changed since you read it")
        try:
            rules.check_action(body.action, case.target_type, case.status)
        except CommandError as exc:
            if exc.code == ErrorCode.CONFLICT:
                raise _conflict(case, exc.message) from None
            raise
        plan = _plan(case, body)
        entry = _entry(admin_id, body, request, plan)
        try:
            _commit(case, body, entry, plan)
        except TransactWriteError as exc:
            if not is_conflict(exc):
                raise
            if body.expected_version is not None:
                raise _conflict(get_case(case_id), "another admin acted on the case first") from None
            continue  # re-read: a new report (still open, act again) or another admin (closed: 409)
        logger.info("admin action", extra={"case_id": case_id, "action": body.action, "admin_id": admin_id})
        observability.count_by("AdminActions", action=str(body.action))
        effect = _carry_out(case, body, entry)
        return {"case": case_view(get_case(case_id)), "action": entry, "replayed": False, "effect": effect}
    raise _conflict(get_case(case_id), "the case kept changing; try again")


class _Plan:
    """What an action will touch, resolved and checked before anything is written."""

    def __init__(self) -> None:
        self.space: Space | None = None
        self.member: Member | None = None
        self.suspended_until: float = 0.0


def _plan(case: Case, body: CaseAction) -> _Plan:
    plan = _Plan()
    if body.action in ("remove_from_space", "end_space"):
        if case.target_type == "space":
            if body.space_id is not None and body.space_id != case.target_id:
                raise CommandError(ErrorCode.BAD_REQUEST, "space_id must be the case's space")
            space_id = case.target_id
        else:
            space_id = body.space_id or case.latest_space_id or ""
        if not space_id:
            raise CommandError(ErrorCode.BAD_REQUEST, "space_id is required")
        space = spaces.get_space(space_id)
        if space.state == SpaceState.ENDED:
            raise CommandError(ErrorCode.SPACE_ENDED, "the space has already ended")
        plan.space = space
        if body.action == "remove_from_space":
            member = spaces.get_member(space_id, case.target_id)
            if member is None:
                raise CommandError(ErrorCode.NOT_FOUND, "that user is not in that space")
            if member.removed:
                raise CommandError(ErrorCode.CONFLICT, "that user was already removed from that space")
            if space.host_id == case.target_id:
                raise CommandError(
                    ErrorCode.CONFLICT, "the host cannot be removed from their own space; end it instead"
                )
            plan.member = member
    elif body.action == "suspend":
        assert body.duration_seconds is not None
        plan.suspended_until = float(int(time.time()) + body.duration_seconds)
    elif body.action == "lift_suspension" and suspensions.suspended_until(case.target_id) is None:
        raise CommandError(ErrorCode.CONFLICT, "that user is not suspended")
    return plan


def _entry(admin_id: str, body: CaseAction, request: dict[str, Any], plan: _Plan) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if plan.space is not None:
        details["space_id"] = plan.space.space_id
    if body.action == "suspend":
        details["duration_seconds"] = body.duration_seconds
        details["suspended_until"] = plan.suspended_until
    return {
        "action_id": uuid.uuid4().hex,
        "action": body.action,
        "admin_id": admin_id,
        "reason": body.reason,
        "at": now_iso(),
        "details": details,
        "request": request,
    }


def _commit(case: Case, body: CaseAction, entry: dict[str, Any], plan: _Plan) -> None:
    at = entry["at"]
    closing = body.action in rules.CLOSING_ACTIONS
    actions: list[Any] = [Case.version.add(1), Case.actions.set([*(case.actions or []), entry])]
    if closing:
        actions += [
            Case.status.set(rules.CLOSED),
            Case.status_priority.set(f"{rules.CLOSED}#{case.priority}"),
            Case.closed_at.set(at),
            Case.resolution.set(body.action),
        ]
    audit = Audit(
        at[:10],
        f"{at}#{entry['action_id']}",
        audit_id=entry["action_id"],
        at=at,
        admin_id=entry["admin_id"],
        action=body.action,
        target_key=case.target_key,
        target_type=case.target_type,
        target_id=case.target_id,
        case_id=case.case_id,
        reason=body.reason,
        details=entry["details"],
    )
    with TransactWrite(connection=dynamo()) as tx:
        tx.update(case, actions=actions, condition=Case.version == case.version)
        tx.save(audit, condition=Audit.audit_sk.does_not_exist())
        if closing:
            tx.delete(
                OpenCase(open_case_key(case.target_key)),
                condition=OpenCase.open_case_id == case.case_id,
            )
            for space_id in sorted(case.evidence_spaces or ()):
                tx.update(Space(space_id), actions=[Space.held_by.delete({case.case_id})])
        if body.action == "suspend":
            tx.update(
                User(case.target_id), actions=suspensions.suspend_actions(plan.suspended_until, body.reason)
            )
        elif body.action == "lift_suspension":
            tx.update(User(case.target_id), actions=suspensions.lift_actions())
        effect = effects.pending_for(body.action, case.target_id, entry)
        if effect is not None:
            tx.save(effect, condition=effects.PendingEffect.case_id.does_not_exist())


def _carry_out(case: Case, body: CaseAction, entry: dict[str, Any]) -> str:
    """The action's live effects, after the commit: "done", "pending" (the sweep finishes
    it) or "none" (the action has no effect that must happen)."""
    effect = effects.pending_for(body.action, case.target_id, entry)
    outcome = "none" if effect is None else "done" if effects.carry_out(effect) else "pending"
    if body.action in rules.CLOSING_ACTIONS and case.evidence_spaces:
        evidence.release_cases(case)  # its audio now expires like any other, unless another case holds it
    if body.action == "warn":
        ids = [c.connection_id for c in connections.of_user(case.target_id)]
        fanout.send_private(ids, "user.warned", None, reason=body.reason)
    return outcome
