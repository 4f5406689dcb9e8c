"""The admin API's requests (query strings, action bodies) and its views of cases, reports, audit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from chalicelib import triage as rules
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Audit, Case, Report
from chalicelib.protocol import ID_PATTERN, ReportCategory, SpaceId
from chalicelib.schemas import decode_cursor, limit_value

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
        limit_value(value)
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


def read_cursor(raw: str | None, shapes: list[set[str]], fixed: dict[str, str]) -> dict[str, Any] | None:
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
