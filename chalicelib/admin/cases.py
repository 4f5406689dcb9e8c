"""Cases: listing them (by status, priority or target) and one case with its reports."""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib import evidence
from chalicelib.admin.queries import CasesQuery, ReportsQuery, case_view, iso, read_cursor, report_view
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Case, Report
from chalicelib.schemas import encode_cursor

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
            last_evaluated_key=read_cursor(q.cursor, [_TARGET_KEYS], {"target_key": key}),
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
        last_evaluated_key=read_cursor(q.cursor, [_STATUS_KEYS], {"status": q.status}),
    )
    items = list(results)
    return _cases_page(items, results.last_evaluated_key)


def _by_priority(q: CasesQuery, seen_range: Any, filter_condition: Any) -> dict[str, Any]:
    """One priority, or all of them: high, then normal, then low, each newest first."""
    buckets = [f"{q.status}#{p}" for p in ([q.priority] if q.priority else ["high", "normal", "low"])]
    key = read_cursor(q.cursor, [_PRIORITY_KEYS, _BUCKET_START], {})
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


def real_case(case_id: str) -> Case:
    case = get_case(case_id)
    if not case.target_key:  # the open-case marker shares the table; it is not a case
        raise CommandError(ErrorCode.NOT_FOUND, "case not found")
    return case


def case_detail(case_id: str, q: ReportsQuery) -> dict[str, Any]:
    """The case with its reports (newest first) and the snapshot each one took."""
    if case_id.startswith("open#"):
        raise CommandError(ErrorCode.NOT_FOUND, "case not found")
    case = real_case(case_id)
    results = Report.by_case.query(
        case_id,
        scan_index_forward=False,
        limit=q.page_size,
        last_evaluated_key=read_cursor(
            q.cursor, [{"report_id", "case_id", "created_at"}], {"case_id": case_id}
        ),
    )
    reports = [report_view(r) for r in results]
    return {
        "case": case_view(case),
        "reports": reports,
        "next_cursor": encode_cursor(results.last_evaluated_key),
        "evidence": evidence.case_status(case),
    }


def case_evidence(case_id: str) -> dict[str, Any]:
    """The case's captured audio as short-lived presigned URLs (admins only; see evidence.py)."""
    if case_id.startswith("open#"):
        raise CommandError(ErrorCode.NOT_FOUND, "case not found")
    return evidence.case_evidence(real_case(case_id))
