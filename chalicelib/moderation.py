"""Safety: filing reports (snapshot, queue) and triaging them into cases (the consumer)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib import clients, evidence, idempotency, observability, quotas, suspensions
from chalicelib import triage as triage_rules
from chalicelib.clock import now_iso
from chalicelib.config import get_settings
from chalicelib.db import dynamo, is_conflict
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Case, Member, OpenCase, Report, Space
from chalicelib.observability import logger
from chalicelib.protocol import NOTE_MAX, ReportCategory, ReportFields, SpaceId, UserId
from chalicelib.spaces.stage import Stage
from chalicelib.spaces.store import get_member, get_space

# -- filing a report -------------------------------------------------------------

CATEGORIES: tuple[str, ...] = get_args(ReportCategory)


def file_report(reporter: str, fields: ReportFields, connection_id: str | None = None) -> dict[str, Any]:
    """Take the snapshot, queue the report for triage and give the reporter its id."""
    refusal = suspensions.refusal(reporter)  # a socket not closed yet cannot report either
    if refusal is not None:
        raise refusal
    via = "ws" if connection_id else "rest"
    report = build_report(reporter, fields.space_id, fields.user_id, fields.category, fields.note, via=via)
    quotas.take(quotas.reports(), reporter)
    enqueue(report)
    return {"report_id": report["report_id"]}


def file_report_rest(
    reporter: str, body: ReportFields, idempotency_key: str | None, lambda_context: Any = None
) -> dict[str, Any]:
    """POST /reports. Everything is checked (and the snapshot taken) before the idempotency
    record is written, so a refused report leaves nothing behind; a retry with the same
    key returns the first report's id and its fresh snapshot is dropped."""
    refusal = suspensions.refusal(reporter)
    if refusal is not None:
        raise refusal
    idempotency.check_key(idempotency_key)
    report = build_report(reporter, body.space_id, body.user_id, body.category, body.note, via="rest")

    def send() -> dict[str, Any]:
        quotas.take(quotas.reports(), reporter)  # a replay (same key) is not charged again
        enqueue(report)
        return {"report_id": report["report_id"]}

    return idempotency.once("report", reporter, idempotency_key, body.model_dump(), send, lambda_context)


def _check_report_input(reporter: str, user_id: str | None, category: str, note: str | None) -> None:
    if category not in CATEGORIES:
        raise CommandError(ErrorCode.BAD_REQUEST, "unknown category", {"allowed": list(CATEGORIES)})
    if note is not None and len(note) > NOTE_MAX:
        raise CommandError(ErrorCode.BAD_REQUEST, f"note must be at most {NOTE_MAX} characters")
    if user_id is not None and user_id == reporter:
        raise CommandError(ErrorCode.BAD_REQUEST, "you cannot report yourself")


def build_report(
    reporter: str, space_id: str, user_id: str | None, category: str, note: str | None, via: str = "rest"
) -> dict[str, Any]:
    """The report as it goes to the queue: who, what, and what the space looked like right now."""
    _check_report_input(reporter, user_id, category, note)
    space = get_space(space_id)
    stage = Stage.from_stored(space.stage)
    reporter_member = get_member(space_id, reporter)
    if reporter not in stage and reporter_member is None:
        raise CommandError(ErrorCode.NOT_ALLOWED, "only people who joined the space can report it")
    target = None
    if user_id is not None:
        target_member = get_member(space_id, user_id)
        if user_id not in stage and target_member is None:
            raise CommandError(ErrorCode.NOT_FOUND, "that person is not in this space")
        target = _person(stage, user_id, target_member)
    now = time.time()
    report_id = uuid.uuid4().hex
    created_at = now_iso(now)
    return {
        "v": 1,
        "report_id": report_id,
        "created_at": created_at,
        "reporter_id": reporter,
        "space_id": space_id,
        "user_id": user_id,
        "category": category,
        "note": note or None,
        "via": via,
        "snapshot": {
            "taken_at": created_at,
            "space": {
                "space_id": space.space_id,
                "title": space.title,
                "host_id": space.host_id,
                "state": space.state,
                "started_at": space.started_at,
                "listener_count": int(space.listener_count or 0),
                "speak_policy": space.speak_policy,
            },
            "stage": [dict(entry, since=_since(stage, entry["user_id"])) for entry in stage.public()],
            "reporter": _person(stage, reporter, reporter_member),
            "target": target,
        },
    }


def _since(stage: Stage, user_id: str) -> str | None:
    entry = stage.get(user_id)
    return (entry.since or None) if entry else None


def _person(stage: Stage, user_id: str, member: Member | None) -> dict[str, Any]:
    """A participant as the snapshot shows them: role, presence, and time on stage."""
    entry = stage.get(user_id)
    if entry is not None:
        since = entry.since or None
        return {
            "user_id": user_id,
            "role": entry.role.value,
            "present": entry.present,
            "removed": False,
            "muted": entry.muted,
            "on_stage_since": since,
            "on_stage_seconds": _seconds_since(since),
        }
    return {
        "user_id": user_id,
        "role": "listener",
        "present": bool(member is not None and member.present and not member.removed),
        "removed": bool(member is not None and member.removed),
        "muted": None,
        "on_stage_since": None,
        "on_stage_seconds": None,
    }


def _seconds_since(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        then = datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None
    return round(max(time.time() - then, 0.0), 3)


def enqueue(report: dict[str, Any]) -> None:
    clients.sqs().send_message(
        QueueUrl=get_settings().moderation_queue_url,
        MessageBody=json.dumps(report, separators=(",", ":")),
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "report"}},
    )
    observability.count("Reports")


# -- triage (the moderation queue's consumer) ----------------------------------------

TRIAGE_RETRIES = 5


class ReportMessage(BaseModel):
    """A report as it arrives from the queue; anything else is a malformed message."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    report_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    created_at: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")]
    reporter_id: UserId
    space_id: SpaceId
    user_id: UserId | None = None
    category: ReportCategory
    note: Annotated[str, Field(max_length=NOTE_MAX)] | None = None
    snapshot: dict[str, Any]

    @property
    def created_ts(self) -> float:
        return datetime.fromisoformat(self.created_at).timestamp()


class UnresolvableReport(Exception):
    """The report names something triage cannot find: retrying will not help (it ends in the DLQ)."""


def triage_record(body: str) -> str:
    """Store one report and count it into its target's open case. Returns what happened."""
    report = ReportMessage.model_validate_json(body)
    return triage(report)


def triage(report: ReportMessage) -> str:
    if _report_exists(report.report_id):
        return "duplicate"
    try:
        Space.get(report.space_id, consistent_read=True, attributes_to_get=["space_id"])
    except DoesNotExist:
        raise UnresolvableReport(f"space {report.space_id} does not exist") from None
    key = triage_rules.target_key(report.space_id, report.user_id)
    # The space's audio from now on (idempotent: a redelivered report finds it running).
    held = _capture_for(report.space_id)
    for _ in range(TRIAGE_RETRIES):
        case = _open_case(key)
        try:
            with TransactWrite(connection=dynamo()) as tx:
                if case is None:
                    case_id = _new_case(tx, key, report, held)
                else:
                    case_id = case.case_id
                    _count_into(tx, case, report, held)
                if held.status != "unavailable":
                    tx.update(Space(report.space_id), actions=[evidence.hold_actions(case_id)])
                tx.save(_report_item(report, case_id, key), condition=Report.report_id.does_not_exist())
        except TransactWriteError as exc:
            if _report_exists(report.report_id):
                return "duplicate"  # a redelivery raced us; it was counted once
            if not is_conflict(exc):
                raise
            continue  # the case changed (or was opened or closed) under us: read again
        waited = _seconds_since(report.created_at)
        if waited is not None:
            observability.milliseconds("TriageLatency", waited * 1000)  # filed -> stored in its case
        return "new_case" if case is None else "counted"
    raise RuntimeError("the case kept changing; the report goes back to the queue")


def _capture_for(space_id: str) -> evidence.Outcome:
    """Capture the space's audio for the case: "capturing", "captured" (audio from an earlier
    capture exists, e.g. a host recording of a space that has ended), or "unavailable"."""
    outcome = evidence.sync(space_id, add="report")
    if outcome.status == "unavailable":
        space = Space.get(space_id, consistent_read=True, attributes_to_get=["space_id", "captures"])
        if space.captures:
            return evidence.Outcome("captured")
    return outcome


def _evidence_actions(held: evidence.Outcome, space_id: str) -> list[Any]:
    if held.status == "unavailable":
        return [Case.evidence_reason.set(held.reason or "unavailable")]
    return [Case.evidence_spaces.add({space_id})]


def _report_exists(report_id: str) -> bool:
    try:
        Report.get(report_id, consistent_read=True, attributes_to_get=["report_id"])
    except DoesNotExist:
        return False
    return True


def open_case_key(target: str) -> str:
    return f"open#{target}"


def _open_case(target: str) -> Case | None:
    try:
        pointer = OpenCase.get(open_case_key(target), consistent_read=True)
    except DoesNotExist:
        return None
    try:
        return Case.get(pointer.open_case_id, consistent_read=True)
    except DoesNotExist:
        raise RuntimeError(f"open case {pointer.open_case_id} of {target} is missing") from None


def _new_case(tx: TransactWrite, key: str, report: ReportMessage, held: evidence.Outcome) -> str:
    target_type, target_id = triage_rules.split_target(key)
    recent = triage_rules.add_recent([], report.created_ts, report.reporter_id)
    priority = triage_rules.priority_for([report.category], recent)
    case_id = uuid.uuid4().hex
    case = Case(
        case_id,
        target_key=key,
        target_type=target_type,
        target_id=target_id,
        status=triage_rules.OPEN,
        priority=priority,
        status_priority=f"{triage_rules.OPEN}#{priority}",
        report_count=1,
        reporters={report.reporter_id},
        categories={report.category},
        recent=recent,
        first_seen_at=report.created_at,
        last_seen_at=report.created_at,
        opened_at=now_iso(),
        latest_space_id=report.space_id,
        latest_report_id=report.report_id,
        actions=[],
        version=1,
        evidence_spaces={report.space_id} if held.status != "unavailable" else None,
        evidence_reason=held.reason if held.status == "unavailable" else None,
    )
    tx.save(case, condition=Case.case_id.does_not_exist())
    tx.save(OpenCase(open_case_key(key), open_case_id=case_id), condition=OpenCase.case_id.does_not_exist())
    return case_id


def _count_into(tx: TransactWrite, case: Case, report: ReportMessage, held: evidence.Outcome) -> None:
    recent = triage_rules.add_recent(case.recent or [], report.created_ts, report.reporter_id)
    categories = set(case.categories or ()) | {report.category}
    priority = triage_rules.priority_for(categories, recent, current=case.priority)
    actions: list[Any] = [
        Case.report_count.add(1),
        Case.reporters.add({report.reporter_id}),
        Case.categories.add({report.category}),
        Case.recent.set(recent),
        Case.priority.set(priority),
        Case.status_priority.set(f"{triage_rules.OPEN}#{priority}"),
        Case.version.add(1),
        *_evidence_actions(held, report.space_id),
    ]
    if report.created_at >= case.last_seen_at:
        actions += [
            Case.last_seen_at.set(report.created_at),
            Case.latest_space_id.set(report.space_id),
            Case.latest_report_id.set(report.report_id),
        ]
    if report.created_at < case.first_seen_at:
        actions.append(Case.first_seen_at.set(report.created_at))
    tx.update(
        case,
        actions=actions,
        condition=(Case.version == case.version) & (Case.status == triage_rules.OPEN),
    )


def _report_item(report: ReportMessage, case_id: str, key: str) -> Report:
    return Report(
        report.report_id,
        case_id=case_id,
        created_at=report.created_at,
        reporter_id=report.reporter_id,
        space_id=report.space_id,
        target_key=key,
        target_user_id=report.user_id,
        category=report.category,
        note=report.note,
        snapshot=report.snapshot,
        stored_at=now_iso(),
    )


def moderation_batch(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The SQS consumer: each record alone; failed ones are reported back (partial batch response)."""
    # cold start: Powertools' batch utility loads in the SQS consumer only
    from aws_lambda_powertools.utilities.batch import process_partial_response

    response = process_partial_response(
        event=event,
        record_handler=_record_handler,
        processor=clients.batch_processor("moderation"),
        context=context,
    )
    return dict(response)


def _record_handler(record: Any) -> str:
    try:
        outcome = triage_record(record.body)
    except (ValidationError, UnresolvableReport) as exc:
        logger.warning(
            "report cannot be triaged; it goes to the DLQ after its retries",
            extra={"message_id": record.message_id, "error": str(exc)[:300]},
        )
        raise
    logger.info("report triaged", extra={"message_id": record.message_id, "outcome": outcome})
    return outcome
