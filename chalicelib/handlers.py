"""Entry points that app.py's declarations call: parse, authorise, dispatch, answer."""

from __future__ import annotations

import functools
import json
from typing import Any

from chalice import Response

from chalicelib import (
    admin,
    api,
    auth,
    clients,
    commands,
    connections,
    evidence,
    fanout,
    gate,
    idempotency,
    moderation,
    observability,
    protocol,
    quotas,
    reactions,
    relations,
    schemas,
    shards,
    spaces,
)
from chalicelib.config import get_settings
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.jsonin import load_json
from chalicelib.observability import logger

# A socket that answers 410 to an event is gone: forget it and its membership.
fanout.handle_gone_with(commands.connection_gone)

# -- WebSocket ---------------------------------------------------------------


def ws_connect(event: Any) -> Any:
    raw = event.to_dict()
    try:
        identity = auth.identity_from_query(raw.get("queryStringParameters"))
    except auth.AuthError as exc:
        return _refuse(401, ErrorCode.UNAUTHORIZED, exc.message)
    refusal = commands.connect_refusal(identity)
    if refusal is not None:
        return _refuse(403, refusal.code, refusal.message)
    record = connections.register(event.connection_id, identity, raw["requestContext"]["connectedAt"])
    cap = get_settings().max_connections_per_user
    if connections.over_cap(record, cap, commands.connection_gone):
        connections.forget(event.connection_id)
        return _refuse(429, ErrorCode.LIMIT_REACHED, f"at most {cap} open connections per user")
    logger.info("connected", extra={"connection_id": event.connection_id, "user_id": identity.user_id})
    return None


def _refuse(status: int, code: ErrorCode, message: str) -> Response:
    return Response(body=json.dumps({"code": code.value, "message": message}), status_code=status)


def ws_message(event: Any) -> None:
    connection_id = event.connection_id
    raw = event.to_dict()
    with fanout.held() as events:
        answer, closing = _answer(connection_id, raw, event.body)
    if not clients.pusher().send(connection_id, answer):
        commands.connection_gone(connection_id)
    elif closing:
        # the error frame went first, so the client knows why its socket closes
        clients.pusher().close(connection_id)
    events.flush()


def _answer(connection_id: str, raw: dict[str, Any], body: str | None) -> tuple[dict[str, Any], bool]:
    ref = None
    action = "invalid"  # until the frame parses as a command (bounded metric dimension)
    try:
        if not raw.get("isBase64Encoded"):
            try:
                ref = protocol.read_ref(load_json(body or ""))
            except (TypeError, ValueError):
                ref = None
        caller = connections.lookup(connection_id)
        if caller is None:
            raise CommandError(ErrorCode.UNAUTHORIZED, "connection is not registered; reconnect")
        # admitted before parsing: a flood of garbage costs as much as a flood of commands
        gate.admit(caller, _rate_limit())
        if raw.get("isBase64Encoded"):
            raise CommandError(ErrorCode.BAD_REQUEST, "binary frames are not supported; send JSON text")
        command = protocol.parse_command(body)
        action = command.action
        data = commands.dispatch(caller, command)
        answer = protocol.reply(command.ref, data)
        outcome, closing = "ok", False
    except CommandError as exc:
        answer = protocol.error(ref, exc.code, exc.message, exc.data)
        outcome, closing = exc.code.value, isinstance(exc, gate.ClosingError)
    except Exception:
        logger.exception("command failed", extra={"connection_id": connection_id})
        answer = protocol.error(ref, ErrorCode.INTERNAL, "internal error")
        outcome, closing = ErrorCode.INTERNAL.value, False
    observability.count_by("Commands", action=action, outcome=outcome)
    return answer, closing


@functools.lru_cache(maxsize=1)
def _rate_limit() -> gate.RateLimit:
    settings = get_settings()
    return gate.RateLimit(
        settings.command_rate_per_second, settings.command_burst, settings.command_hard_limit
    )


def ws_disconnect(event: Any) -> None:
    # API Gateway's close code and reason (idle 1001 "Going away", client codes...), logged
    # beside the stage's access log line.
    context = event.to_dict().get("requestContext", {})
    logger.info(
        "disconnected",
        extra={
            "connection_id": event.connection_id,
            "status_code": context.get("disconnectStatusCode"),
            "reason": context.get("disconnectReason"),
        },
    )
    commands.connection_gone(event.connection_id)


def broadcast_authorizer(event: Any) -> dict[str, Any]:
    """AppSync Events asks whether a connect or subscribe may go ahead (chalicelib/broadcast.py)."""
    from chalicelib import broadcast

    decision = broadcast.authorize(event)
    observability.count_by("BroadcastAuth", allowed=str(decision["isAuthorized"]).lower())
    return decision


# -- queues and schedules ----------------------------------------------------


def moderation_batch(event: Any) -> Any:
    """Triage reports: each record alone; a failed one returns to the queue (then the DLQ)."""
    return moderation.moderation_batch(event.to_dict(), event.context)


def fanout_batch(event: Any) -> Any:
    """Post the shards of big broadcasts, flush coalesced reactions and retry the attendee
    deletion of removed members; a record that raises returns to the queue alone."""
    # cold start: Powertools' batch utility loads in the SQS consumers only
    from aws_lambda_powertools.utilities.batch import process_partial_response

    return process_partial_response(
        event=event.to_dict(),
        record_handler=_post_shard,
        processor=clients.batch_processor("fanout"),
        context=event.context,
    )


def notify_batch(event: Any) -> Any:
    """Notification jobs and chunks; a record that raises returns to the queue alone."""
    from chalicelib.notifications import fanout as notify_fanout

    return notify_fanout.notify_batch(event.to_dict(), event.context)


def _post_shard(record: Any) -> None:
    message = json.loads(record.body)  # once: a shard of 250 connection ids is the common record
    if (space_id := reactions.flush_request(message)) is not None:
        spaces.flush_reactions(space_id)
    elif (removed := spaces.attendee_clear_request(message)) is not None:
        spaces.clear_removed_attendee(*removed, strict=True)  # raises: the record comes back
    else:
        shards.post_shard(message, fanout.cleanup_gone)


def sweep(event: Any) -> dict[str, int]:
    """Every minute: hosts whose grace ran out (or never came), listener counts not yet
    published, lost sockets, admin effects and notification jobs still pending."""
    from chalicelib.admin import effects
    from chalicelib.notifications import jobs as notify_jobs

    return {
        "admin_effects_done": effects.carry_out_pending(),
        "notify_jobs_queued": notify_jobs.queue_pending(),
        "away_expired": spaces.expire_away(),
        "grace_expired": spaces.expire_grace(),
        "counts_published": spaces.publish_pending_counts(),
        "stale_connections": connections.sweep_stale(commands.connection_gone),
        "captures": evidence.housekeeping(),
    }


def chime_event(event: Any) -> dict[str, str]:
    """EventBridge: a "Chime Meeting State Change" event (the rule is app.py's on_chime_event)."""
    detail = event.to_dict().get("detail") or {}
    outcome = spaces.on_chime_event(detail)
    logger.info("chime event", extra={"event_type": detail.get("eventType"), "outcome": outcome})
    return {"outcome": outcome}


# -- REST --------------------------------------------------------------------


@api.endpoint
def ws_ticket(request: Any) -> Response:
    from chalicelib import tickets

    user = api.caller(request)  # refuses a suspended account
    return Response(body=tickets.issue(user), status_code=201, headers={"Cache-Control": "no-store"})


@api.endpoint
def whoami(request: Any) -> dict[str, Any]:
    identity = api.caller(request)
    return {"user_id": identity.user_id, "username": identity.username, "groups": sorted(identity.groups)}


# -- REST: spaces ------------------------------------------------------------


def _query(request: Any) -> dict[str, str]:
    return dict(request.query_params or {})


@api.endpoint
def create_space(request: Any) -> Response:
    user = api.caller(request)
    body = api.body_as(request, schemas.CreateSpace)
    quotas.take(quotas.scheduled_spaces() if body.scheduled_start else quotas.live_spaces(), user.user_id)
    space = spaces.create(
        user.user_id,
        body.title,
        scheduled_start=body.scheduled_start.strftime("%Y-%m-%dT%H:%M:%SZ") if body.scheduled_start else None,
        speak_policy=body.speak_policy,
        lang=body.lang,
        handover=body.handover,
        recording=body.recording,
    )
    return Response(body=spaces.public_space(space), status_code=201)


@api.endpoint
def get_space(request: Any, space_id: str) -> dict[str, Any]:
    api.caller(request)
    return spaces.public_view(api.path_id(space_id, "space"))


@api.endpoint
def list_spaces(request: Any) -> dict[str, Any]:
    api.caller(request)
    q = _query(request)
    return spaces.list_page(
        state=q.get("state", "live"),
        limit=schemas.parse_limit(q.get("limit")),
        cursor=q.get("cursor"),
    )


@api.endpoint
def search_spaces(request: Any) -> dict[str, Any]:
    api.caller(request)
    q = _query(request)
    return spaces.search(
        q.get("query", ""),
        state=q.get("state", "live"),
        limit=schemas.parse_limit(q.get("limit")),
        cursor=q.get("cursor"),
    )


@api.endpoint
def spaces_by_creator(request: Any, user_id: str) -> dict[str, Any]:
    api.caller(request)
    q = _query(request)
    return spaces.by_creator(
        api.path_id(user_id, "user"), limit=schemas.parse_limit(q.get("limit")), cursor=q.get("cursor")
    )


@api.endpoint
def reschedule_space(request: Any, space_id: str) -> dict[str, Any]:
    user = api.caller(request)
    body = api.body_as(request, schemas.RescheduleSpace)
    start = body.scheduled_start.strftime("%Y-%m-%dT%H:%M:%SZ")
    return spaces.public_space(spaces.reschedule(user.user_id, api.path_id(space_id, "space"), start))


@api.endpoint
def start_space(request: Any, space_id: str) -> dict[str, Any]:
    user = api.caller(request)
    return spaces.public_space(spaces.start(user.user_id, api.path_id(space_id, "space")))


@api.endpoint
def cancel_space(request: Any, space_id: str) -> dict[str, Any]:
    user = api.caller(request)
    return spaces.public_space(spaces.cancel(user.user_id, api.path_id(space_id, "space")))


@api.endpoint
def end_space(request: Any, space_id: str) -> dict[str, Any]:
    user = api.caller(request)
    return spaces.public_space(spaces.end_rest(user.user_id, api.path_id(space_id, "space")))


# -- REST: follows and blocks ------------------------------------------------


@api.endpoint
def put_relation(request: Any, kind: str, other: str) -> dict[str, Any]:
    user = api.caller(request)
    relation = relations.put(user.user_id, kind, api.path_id(other, "user"))
    if kind == "block":
        spaces.enforce_block(user.user_id, other)
    return relations.view(relation)


@api.endpoint
def delete_relation(request: Any, kind: str, other: str) -> Response:
    user = api.caller(request)
    relations.delete(user.user_id, kind, api.path_id(other, "user"))
    return Response(body="", status_code=204)


@api.endpoint
def list_relations(request: Any, kind: str) -> dict[str, Any]:
    user = api.caller(request)
    q = _query(request)
    return relations.page(user.user_id, kind, schemas.parse_limit(q.get("limit")), q.get("cursor"))


def relation(request: Any, kind: str, other: str) -> Any:
    if request.method == "DELETE":
        return delete_relation(request, kind, other)
    return put_relation(request, kind, other)


# -- REST: reminders, devices, the inbox ----------------------------------------
# cold start: the notifications modules (and SNS's model) load on these routes only


@api.endpoint
def reminder(request: Any, space_id: str) -> Any:
    from chalicelib.notifications import reminders

    user = api.caller(request)
    space_id = api.path_id(space_id, "space")
    if request.method == "DELETE":
        reminders.clear_reminder(user.user_id, space_id)
        return Response(body="", status_code=204)
    return reminders.set_reminder(user.user_id, space_id)


@api.endpoint
def list_reminders(request: Any) -> dict[str, Any]:
    from chalicelib.notifications import reminders

    user = api.caller(request)
    q = api.query_as(request, schemas.PageQuery)
    return reminders.mine(user.user_id, q.limit, q.cursor)


@api.endpoint
def register_device(request: Any) -> Response:
    from chalicelib.notifications import devices

    user = api.caller(request)
    body = api.body_as(request, devices.RegisterDevice)
    return Response(body=devices.register(user.user_id, body), status_code=201)


@api.endpoint
def list_devices(request: Any) -> dict[str, Any]:
    from chalicelib.notifications import devices

    return devices.listing(api.caller(request).user_id)


@api.endpoint
def unregister_device(request: Any, device_id: str) -> Response:
    from chalicelib.notifications import devices

    user = api.caller(request)
    devices.unregister(user.user_id, api.path_id(device_id, "device"))
    return Response(body="", status_code=204)


@api.endpoint
def list_notifications(request: Any) -> dict[str, Any]:
    from chalicelib.notifications import inbox

    user = api.caller(request)
    q = api.query_as(request, schemas.PageQuery)
    return inbox.page(user.user_id, q.limit, q.cursor)


@api.endpoint
def mark_notifications_read(request: Any) -> dict[str, Any]:
    from chalicelib.notifications import inbox

    user = api.caller(request)
    return inbox.mark_read(user.user_id, api.body_as(request, inbox.MarkRead))


@api.endpoint
def quiet_hours(request: Any) -> Any:
    from chalicelib.notifications import inbox
    from chalicelib.notifications.rules import QuietHours

    user = api.caller(request)
    if request.method == "PUT":
        return inbox.set_quiet_hours(user.user_id, api.body_as(request, QuietHours))
    if request.method == "DELETE":
        inbox.clear_quiet_hours(user.user_id)
        return Response(body="", status_code=204)
    return inbox.quiet_hours(user.user_id)


# -- REST: reports and the admin reporting API ---------------------------------


@api.endpoint
def file_report(request: Any) -> Response:
    user = api.caller(request)
    body = api.body_as(request, protocol.ReportFields)
    key = (request.headers or {}).get(idempotency.HEADER)
    result = moderation.file_report_rest(user.user_id, body, key, request.lambda_context)
    return Response(body=result, status_code=202)


@api.endpoint
def admin_list_cases(request: Any) -> dict[str, Any]:
    api.admin(request)
    return admin.list_cases(api.query_as(request, admin.CasesQuery))


@api.endpoint
def admin_get_case(request: Any, case_id: str) -> dict[str, Any]:
    api.admin(request)
    return admin.case_detail(api.path_id(case_id, "case"), api.query_as(request, admin.ReportsQuery))


@api.endpoint
def admin_case_evidence(request: Any, case_id: str) -> Response:
    api.admin(request)
    body = admin.case_evidence(api.path_id(case_id, "case"))
    return Response(body=body, status_code=200, headers={"Cache-Control": "no-store"})


@api.endpoint
def space_recording(request: Any, space_id: str) -> Response:
    user = api.caller(request)
    body = spaces.recording_of(user.user_id, api.path_id(space_id, "space"))
    return Response(body=body, status_code=200, headers={"Cache-Control": "no-store"})


@api.endpoint
def admin_case_action(request: Any, case_id: str) -> dict[str, Any]:
    identity = api.admin(request)
    body = api.body_as(request, admin.CaseAction)
    key = (request.headers or {}).get(idempotency.HEADER)
    return admin.act(identity.user_id, api.path_id(case_id, "case"), body, key, request.lambda_context)


@api.endpoint
def admin_list_audit(request: Any) -> dict[str, Any]:
    api.admin(request)
    return admin.list_audit(api.query_as(request, admin.AuditQuery))
