"""The audit log: every admin action, newest first, by day or by target."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.admin.queries import AuditQuery, audit_view, iso, read_cursor
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Audit
from chalicelib.schemas import encode_cursor

AUDIT_DAYS_PER_PAGE = 31
AUDIT_DEFAULT_DAYS = 90
DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

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
            last_evaluated_key=read_cursor(q.cursor, [_AUDIT_TARGET_KEYS], {"target_key": target}),
        )
        found = list(results)
        return _audit_page(found, results.last_evaluated_key)
    key = read_cursor(q.cursor, [_AUDIT_KEYS, _DAY_START], {})
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
