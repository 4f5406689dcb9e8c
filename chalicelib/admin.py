"""The admin reporting API: cases, their reports, actions on them, and the audit log.

An action is one DynamoDB transaction: the case update (conditional on its
`version`), the audit record and, where the action has one, the user's
suspension and the release of the target's open-case marker. Two admins acting
at once: one transaction wins, the other finds the case changed and gets a
conflict with the case as it now is. Live effects (events, removals, closing
sockets) follow the commit; what they need was checked before it.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib import connections, fanout, idempotency, spaces, suspensions
from chalicelib import triage as rules
from chalicelib.clock import now_iso
from chalicelib.db import dynamo, is_conflict
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Audit, Case, Member, OpenCase, Report, Space, User
from chalicelib.moderation import open_case_key
from chalicelib.observability import logger
from chalicelib.protocol import ID_PATTERN, ReportCategory, SpaceId
from chalicelib.rules import SpaceState
from chalicelib.schemas import decode_cursor, encode_cursor

ACTION_RETRIES = 5
AUDIT_DAYS_PER_PAGE = 31
AUDIT_DEFAULT_DAYS = 90
DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TargetId = Annotated[str, Field(pattern=ID_PATTERN)]


def iso(dt: datetime) -> str:
    """The timestamp format stored in the tables (sortable as text)."""
    d = dt.astimezone(UTC)
    date = f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
    return f"{date}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}.{d.microsecond:06d}Z"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("time is out of range") from None


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: Annotated[str, Field(pattern=r"^\d{1,3}$")] = "20"
    cursor: Annotated[str, Field(min_length=1, max_length=2048)] | None = None

    @field_validator("limit")
    @classmethod
    def _limit_range(cls, value: str) -> str:
        if not 1 <= int(value) <= 100:
            raise ValueError("limit must be an integer from 1 to 100")
        return value

    @property
    def page_size(self) -> int:
        return int(self.limit)


class CasesQuery(_Query):
    status: Literal["open", "closed"] = "open"
    priority: Literal["low", "normal", "high"] | None = None
    target_type: Literal["user", "space"] | None = None
    target_id: TargetId | None = None
    category: ReportCategory | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    sort: Literal["newest", "priority"] = "newest"

    @field_validator("since", "until")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @model_validator(mode="after")
    def _consistent(self) -> CasesQuery:
        if self.target_id is not None and self.target_type is None:
            raise ValueError("target_id needs target_type")
        if self.since and self.until and self.since > self.until:
            raise ValueError("since must not be after until")
        return self


class AuditQuery(_Query):
    target_type: Literal["user", "space"] | None = None
    target_id: TargetId | None = None
    since: AwareDatetime | None = None

    @field_validator("since")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @model_validator(mode="after")
    def _both_or_neither(self) -> AuditQuery:
        if (self.target_id is None) != (self.target_type is None):
            raise ValueError("target_type and target_id go together")
        return self


class ReportsQuery(_Query):
    pass


class CaseAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["dismiss", "warn", "remove_from_space", "end_space", "suspend", "lift_suspension"]
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    duration_seconds: (
        Annotated[StrictInt, Field(ge=rules.SUSPEND_MIN_SECONDS, le=rules.SUSPEND_MAX_SECONDS)] | None
    ) = None
    space_id: SpaceId | None = None
    expected_version: Annotated[StrictInt, Field(ge=0)] | None = None

    @field_validator("reason")
    @classmethod
    def _has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("reason must not be blank")
        return value.strip()

    @model_validator(mode="after")
    def _fields_fit_the_action(self) -> CaseAction:
        if (self.action == "suspend") != (self.duration_seconds is not None):
            raise ValueError("duration_seconds is required for suspend and only for suspend")
        if self.space_id is not None and self.action not in ("remove_from_space", "end_space"):
            raise ValueError("space_id applies to remove_from_space and end_space only")
        return self

    def request(self) -> dict[str, Any]:
        """What makes two submissions the same request (expected_version does not)."""
        return self.model_dump(include={"action", "reason", "duration_seconds", "space_id"})


# -- views -----------------------------------------------------------------------------


def case_view(case: Case) -> dict[str, Any]:
    return {
        "id": case.case_id,
        "target": {"type": case.target_type, "id": case.target_id},
        "status": case.status,
        "priority": case.priority,
        "report_count": int(case.report_count or 0),
        "reporter_count": len(case.reporters or ()),
        "reporters": sorted(case.reporters or ()),
        "categories": sorted(case.categories or ()),
        "first_seen_at": case.first_seen_at,
        "last_seen_at": case.last_seen_at,
        "opened_at": case.opened_at,
        "closed_at": case.closed_at,
        "resolution": case.resolution,
        "latest_space_id": case.latest_space_id,
        "latest_report_id": case.latest_report_id,
        "version": int(case.version or 0),
        "actions": list(case.actions or []),
    }


def report_view(report: Report) -> dict[str, Any]:
    kind, ident = rules.split_target(report.target_key)
    return {
        "id": report.report_id,
        "case_id": report.case_id,
        "created_at": report.created_at,
        "reporter_id": report.reporter_id,
        "space_id": report.space_id,
        "target": {"type": kind, "id": ident},
        "category": report.category,
        "note": report.note,
        "snapshot": report.snapshot,
    }


def audit_view(audit: Audit) -> dict[str, Any]:
    return {
        "id": audit.audit_id,
        "at": audit.at,
        "admin_id": audit.admin_id,
        "action": audit.action,
        "target": {"type": audit.target_type, "id": audit.target_id},
        "reason": audit.reason,
        "case_id": audit.case_id,
        "details": audit.details or {},
    }


# -- cursors -----------------------------------------------------------------------------


def _cursor(raw: str | None, shapes: list[set[str]], fixed: dict[str, str]) -> dict[str, Any] | None:
    """A cursor from this list's own pages: one of `shapes`, string keys, hash keys as queried."""
    if raw is None:
        return None
    key = None
    for keys in shapes:
        try:
            key = decode_cursor(raw, keys)
            break
        except CommandError:
            continue
    if key is None or not all(isinstance(v.get("S"), str) and v["S"] for v in key.values()):
        raise CommandError(ErrorCode.BAD_REQUEST, "cursor is not valid")
    for name, value in fixed.items():
        if name in key and key[name]["S"] != value:
            raise CommandError(ErrorCode.BAD_REQUEST, "cursor is not valid for these filters")
    return key


# -- cases --------------------------------------------------------------------------------

_STATUS_KEYS = {"case_id", "status", "last_seen_at"}
_PRIORITY_KEYS = {"case_id", "status_priority", "last_seen_at"}
_TARGET_KEYS = {"case_id", "target_key", "opened_at"}
_BUCKET_START = {"status_priority"}


def list_cases(q: CasesQuery) -> dict[str, Any]:
    """Newest first (by last report), or highest priority first; filters as the query says."""
    since = iso(q.since) if q.since else None
    until = iso(q.until) if q.until else None
    seen_range = _range(Case.last_seen_at, since, until)
    filters: list[Any] = []
    if q.target_type and not q.target_id:
        filters.append(Case.target_type == q.target_type)
    if q.category:
        filters.append(Case.categories.contains(q.category))
    if q.target_id:
        key = f"{q.target_type}#{q.target_id}"
        filters.append(Case.status == q.status)
        if q.priority:
            filters.append(Case.priority == q.priority)
        if seen_range is not None:
            filters.append(seen_range)
        results = Case.by_target.query(
            key,
            filter_condition=_all(filters),
            scan_index_forward=False,
            limit=q.page_size,
            page_size=100,
            last_evaluated_key=_cursor(q.cursor, [_TARGET_KEYS], {"target_key": key}),
        )
        items = list(results)
        return _cases_page(items, results.last_evaluated_key)
    if q.priority or q.sort == "priority":
        return _by_priority(q, seen_range, _all(filters))
    results = Case.by_status.query(
        q.status,
        seen_range,
        filter_condition=_all(filters),
        scan_index_forward=False,
        limit=q.page_size,
        page_size=100,
        last_evaluated_key=_cursor(q.cursor, [_STATUS_KEYS], {"status": q.status}),
    )
    items = list(results)
    return _cases_page(items, results.last_evaluated_key)


def _by_priority(q: CasesQuery, seen_range: Any, filter_condition: Any) -> dict[str, Any]:
    """One priority, or all of them: high, then normal, then low, each newest first."""
    buckets = [f"{q.status}#{p}" for p in ([q.priority] if q.priority else ["high", "normal", "low"])]
    key = _cursor(q.cursor, [_PRIORITY_KEYS, _BUCKET_START], {})
    start = 0
    if key is not None:
        bucket = key["status_priority"]["S"]
        if bucket not in buckets:
            raise CommandError(ErrorCode.BAD_REQUEST, "cursor is not valid for these filters")
        start = buckets.index(bucket)
        if set(key) == _BUCKET_START:
            key = None
    items: list[Case] = []
    for i in range(start, len(buckets)):
        results = Case.by_priority.query(
            buckets[i],
            seen_range,
            filter_condition=filter_condition,
            scan_index_forward=False,
            limit=q.page_size - len(items),
            page_size=100,
            last_evaluated_key=key if i == start else None,
        )
        items += list(results)
        if len(items) >= q.page_size:
            last = results.last_evaluated_key
            if last:
                return _cases_page(items, last)
            if i + 1 < len(buckets):
                return _cases_page(items, {"status_priority": {"S": buckets[i + 1]}})
            return _cases_page(items, None)
    return _cases_page(items, None)


def _cases_page(items: list[Case], last_key: dict[str, Any] | None) -> dict[str, Any]:
    return {"data": [case_view(c) for c in items], "next_cursor": encode_cursor(last_key)}


def _range(attribute: Any, low: str | None, high: str | None) -> Any:
    if low and high:
        return attribute.between(low, high)
    if low:
        return attribute >= low
    if high:
        return attribute <= high
    return None


def _all(conditions: list[Any]) -> Any:
    combined = None
    for c in conditions:
        combined = c if combined is None else combined & c
    return combined


def get_case(case_id: str) -> Case:
    try:
        return Case.get(case_id, consistent_read=True)
    except DoesNotExist:
        raise CommandError(ErrorCode.NOT_FOUND, "case not found") from None


def _real_case(case_id: str) -> Case:
    case = get_case(case_id)
    if not case.target_key:  # the open-case marker shares the table; it is not a case
        raise CommandError(ErrorCode.NOT_FOUND, "case not found")
    return case


def case_detail(case_id: str, q: ReportsQuery) -> dict[str, Any]:
    """The case with its reports (newest first) and the snapshot each one took."""
    if case_id.startswith("open#"):
        raise CommandError(ErrorCode.NOT_FOUND, "case not found")
    case = _real_case(case_id)
    results = Report.by_case.query(
        case_id,
        scan_index_forward=False,
        limit=q.page_size,
        last_evaluated_key=_cursor(q.cursor, [{"report_id", "case_id", "created_at"}], {"case_id": case_id}),
    )
    reports = [report_view(r) for r in results]
    return {
        "case": case_view(case),
        "reports": reports,
        "next_cursor": encode_cursor(results.last_evaluated_key),
    }


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
        case = _real_case(case_id)
        earlier = rules.find_repeat(case.actions or [], admin_id, request)
        if earlier is not None:
            return {"case": case_view(case), "action": dict(earlier), "replayed": True}
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
        _carry_out(case, body, plan, admin_id)
        return {"case": case_view(get_case(case_id)), "action": entry, "replayed": False}
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
        if body.action == "suspend":
            tx.update(
                User(case.target_id), actions=suspensions.suspend_actions(plan.suspended_until, body.reason)
            )
        elif body.action == "lift_suspension":
            tx.update(User(case.target_id), actions=suspensions.lift_actions())


def _carry_out(case: Case, body: CaseAction, plan: _Plan, admin_id: str) -> None:
    """The action's live effects, after the commit (each is safe to repeat)."""
    user_id = case.target_id
    if body.action == "warn":
        ids = [c.connection_id for c in connections.of_user(user_id)]
        fanout.send_private(ids, "user.warned", None, reason=body.reason)
    elif body.action == "remove_from_space":
        assert plan.space is not None and plan.member is not None
        spaces.expel(plan.space, plan.member, "removed_by_admin", by=admin_id)
    elif body.action == "end_space":
        assert plan.space is not None
        spaces.end(plan.space, "ended_by_admin")
    elif body.action == "suspend":
        suspensions.take_effect(user_id, admin_id)


# -- audit --------------------------------------------------------------------------------

_AUDIT_KEYS = {"audit_day", "audit_sk"}
_AUDIT_TARGET_KEYS = {"audit_day", "audit_sk", "target_key"}
_DAY_START = {"audit_day"}


def list_audit(q: AuditQuery, now: float | None = None) -> dict[str, Any]:
    """Newest first, back to `since` (default: 90 days).

    By target it is one Query on the by_target index. The whole log is read one UTC
    day (one partition) at a time, at most AUDIT_DAYS_PER_PAGE days per page, so a
    page can come back short with a cursor to go on from; the last page has none.
    """
    now_dt = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    floor = iso(q.since or (now_dt - timedelta(days=AUDIT_DEFAULT_DAYS)))
    if q.target_type and q.target_id:
        target = f"{q.target_type}#{q.target_id}"
        results = Audit.by_target.query(
            target,
            Audit.audit_sk >= floor,
            scan_index_forward=False,
            limit=q.page_size,
            last_evaluated_key=_cursor(q.cursor, [_AUDIT_TARGET_KEYS], {"target_key": target}),
        )
        found = list(results)
        return _audit_page(found, results.last_evaluated_key)
    key = _cursor(q.cursor, [_AUDIT_KEYS, _DAY_START], {})
    day = key["audit_day"]["S"] if key else now_dt.strftime("%Y-%m-%d")
    if not _is_day(day):
        raise CommandError(ErrorCode.BAD_REQUEST, "cursor is not valid")
    start = key if key is not None and set(key) == _AUDIT_KEYS else None
    items: list[Audit] = []
    for _ in range(AUDIT_DAYS_PER_PAGE):
        if day < floor[:10]:
            return _audit_page(items, None)
        results = Audit.query(
            day,
            Audit.audit_sk >= floor,
            scan_index_forward=False,
            limit=q.page_size - len(items),
            last_evaluated_key=start,
        )
        items += list(results)
        if len(items) >= q.page_size and results.last_evaluated_key:
            return _audit_page(items, results.last_evaluated_key)
        day, start = _previous_day(day), None
        if len(items) >= q.page_size:
            break
    return _audit_page(items, {"audit_day": {"S": day}} if day >= floor[:10] else None)


def _is_day(day: str) -> bool:
    if not DAY_RE.fullmatch(day):
        return False
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        return False
    return day > "0001-01-01"


def _previous_day(day: str) -> str:
    return (datetime.strptime(day, "%Y-%m-%d") - timedelta(days=1)).strftime("%Y-%m-%d")


def _audit_page(items: list[Audit], last_key: dict[str, Any] | None) -> dict[str, Any]:
    return {"data": [audit_view(a) for a in items], "next_cursor": encode_cursor(last_key)}
