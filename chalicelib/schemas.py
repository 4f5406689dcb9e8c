"""Request bodies and query parameters of the REST API (pydantic)."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator

from chalicelib.errors import CommandError, ErrorCode
from chalicelib.rules import TITLE_MAX, SpeakPolicyName, title_problem

MAX_SCHEDULE_AHEAD = timedelta(days=30)
# RFC 3339 date-time, as docs/openapi.yaml says: no epoch numbers, no bare dates
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")


class CreateSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[StrictStr, Field(min_length=1, max_length=TITLE_MAX)]
    scheduled_start: datetime | None = None
    speak_policy: SpeakPolicyName = "everyone"
    lang: Annotated[StrictStr, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")] | None = None
    handover: StrictBool = False
    recording: StrictBool = False  # record for replay from the start (everyone is told)

    @field_validator("title")
    @classmethod
    def _title_has_text(cls, value: str) -> str:
        cleaned = " ".join(value.split())
        if not cleaned:
            raise ValueError("title must not be blank")
        problem = title_problem(cleaned)  # the rule settings.update applies
        if problem is not None:
            raise ValueError(problem)
        return cleaned

    @field_validator("scheduled_start", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or not RFC3339.fullmatch(value)):
            raise ValueError("scheduled_start must be an RFC 3339 date-time, e.g. 2026-12-01T18:00:00Z")
        return value

    @field_validator("scheduled_start")
    @classmethod
    def _within_30_days(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("scheduled_start needs a time zone, e.g. 2026-12-01T18:00:00Z")
        now = datetime.now(tz=UTC)
        if value <= now:
            raise ValueError("scheduled_start must be in the future")
        if value > now + MAX_SCHEDULE_AHEAD:
            raise ValueError("scheduled_start can be at most 30 days ahead")
        return value.astimezone(UTC)


class RescheduleSpace(BaseModel):
    """PATCH /spaces/{id}: a scheduled space's new start (the same rules as at creation)."""

    model_config = ConfigDict(extra="forbid")

    scheduled_start: datetime

    @field_validator("scheduled_start", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        return CreateSpace._rfc3339(value)

    @field_validator("scheduled_start")
    @classmethod
    def _within_30_days(cls, value: datetime) -> datetime | None:
        return CreateSpace._within_30_days(value)


LIMIT_DEFAULT = 20
LIMIT_MAX = 100


def limit_value(raw: str, maximum: int = LIMIT_MAX) -> int:
    """A page size from a query string: ASCII digits, 1..maximum; ValueError otherwise."""
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ValueError(f"limit must be an integer from 1 to {maximum}")
    return int(raw)


def parse_limit(raw: str | None, default: int = LIMIT_DEFAULT, maximum: int = LIMIT_MAX) -> int:
    if raw is None:
        return default
    try:
        return limit_value(raw, maximum)
    except ValueError as exc:
        raise CommandError(ErrorCode.BAD_REQUEST, str(exc)) from None


def encode_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(
    raw: str | None, keys: set[str], fixed: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """A cursor from encode_cursor; `keys` are the attribute names its index's keys must have.

    DynamoDB refuses (ValidationException, a 500 here) a start key with an empty or
    non-numeric value, or whose partition key is not the one queried: `fixed` names
    the attributes whose string value must be what this query uses.
    """
    if raw is None:
        return None
    if not raw:
        raise CommandError(ErrorCode.BAD_REQUEST, "cursor must not be empty; leave it out for the first page")
    key = cursor_content(raw)
    if not valid_key(key, keys, fixed):
        raise CommandError(ErrorCode.BAD_REQUEST, "cursor is not valid")
    return key


def cursor_content(raw: str) -> Any:
    """What encode_cursor encoded (bad_request when it is not a cursor at all)."""
    try:
        padded = raw + "=" * (-len(raw) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError):
        raise CommandError(ErrorCode.BAD_REQUEST, "cursor is not valid") from None


def valid_key(key: Any, keys: set[str], fixed: dict[str, str] | None = None) -> bool:
    """An index start key DynamoDB will accept, with the attributes `keys` (see decode_cursor)."""
    if (
        not isinstance(key, dict)
        or set(key) != keys
        or not all(isinstance(v, dict) and len(v) == 1 and set(v) <= {"S", "N"} for v in key.values())
    ):
        return False
    return all(_key_value_ok(v) for v in key.values()) and all(
        key.get(name) == {"S": value} for name, value in (fixed or {}).items()
    )


def _key_value_ok(value: dict[str, Any]) -> bool:
    ((kind, text),) = value.items()
    if not isinstance(text, str) or not text:
        return False
    if kind == "N":
        try:
            number = Decimal(text)
        except InvalidOperation:
            return False
        # DynamoDB's number range
        return number.is_finite() and (number == 0 or Decimal("1e-130") <= abs(number) < Decimal("1e126"))
    return True


class PageQuery(BaseModel):
    """?limit=&cursor= of a plain list (unknown parameters are refused)."""

    model_config = ConfigDict(extra="forbid")

    limit: int = LIMIT_DEFAULT
    cursor: Annotated[str, Field(min_length=1, max_length=2048)] | None = None

    @field_validator("limit", mode="before")
    @classmethod
    def _limit_range(cls, value: Any) -> int:
        if not isinstance(value, str):
            raise ValueError(f"limit must be an integer from 1 to {LIMIT_MAX}")
        return limit_value(value)
