"""Reports, end to end: filed over WebSocket and REST, queued, triaged into cases by the
real consumer behind the local stack's SQS poller (partial batch responses, DLQ)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from conftest import (
    Clients,
    admin_token,
    bring_on_stage,
    case_of,
    http,
    join_all,
    live_space,
    report_message,
    send_reports,
    stored_reports,
    uid,
    wait_for_case,
)

pytestmark = pytest.mark.e2e


def _case_detail(stack: Any, case_id: str) -> dict[str, Any]:
    status, body = http(stack, "GET", f"/admin/cases/{case_id}", token=admin_token(stack))
    assert status == 200, body
    return body


def _report(stack: Any, reporter: str, body: dict[str, Any], key: str | None = None) -> tuple[int, Any]:
    headers = {"Idempotency-Key": key} if key else None
    return http(stack, "POST", "/reports", body, token=stack.mint_token(reporter), headers=headers)


# -- filing -----------------------------------------------------------------------------


async def test_a_listener_reports_a_speaker_over_websocket_with_a_snapshot(clients: Clients, stack) -> None:
    host, speaker, listener = uid("hana"), uid("sam"), uid("lale")
    space = live_space(stack, host, "Snapshot room")
    h, s, li = await clients.people(host, speaker, listener)
    await join_all(space, h, s, li)
    await bring_on_stage(h, s, space)
    await h.send("speaker.mute", space_id=space, user_id=speaker)
    await asyncio.sleep(0.3)
    reply = await li.call(
        "report.send", space_id=space, user_id=speaker, category="harassment", note="shouting slurs"
    )
    assert reply["type"] == "reply" and set(reply["data"]) == {"report_id"}
    report_id = reply["data"]["report_id"]
    await clients.close()

    case = await asyncio.to_thread(wait_for_case, stack, "user", speaker, 1)
    assert case["target"] == {"type": "user", "id": speaker}
    assert (case["status"], case["priority"], case["categories"]) == ("open", "normal", ["harassment"])
    assert case["reporters"] == [listener] and case["latest_space_id"] == space
    [report] = _case_detail(stack, case["id"])["reports"]
    assert report["id"] == report_id and report["note"] == "shouting slurs"
    snap = report["snapshot"]
    assert snap["space"]["title"] == "Snapshot room"
    assert snap["space"]["host_id"] == host and snap["space"]["state"] == "live"
    stage = {e["user_id"]: e for e in snap["stage"]}
    assert stage[host]["role"] == "host" and stage[speaker]["role"] == "speaker"
    assert stage[speaker]["muted"] is True and stage[speaker]["muted_by"] == "host"
    assert all(e["since"] for e in snap["stage"])
    assert snap["reporter"]["user_id"] == listener and snap["reporter"]["role"] == "listener"
    target = snap["target"]
    assert target["role"] == "speaker" and target["present"] is True
    assert target["on_stage_since"] == stage[speaker]["since"]
    assert 0.3 <= target["on_stage_seconds"] < 30


async def test_a_space_can_be_reported_over_rest(clients: Clients, stack) -> None:
    host, listener = uid("hana"), uid("lale")
    space = live_space(stack, host)
    h, li = await clients.people(host, listener)
    await join_all(space, h, li)
    await clients.close()
    status, body = _report(stack, listener, {"space_id": space, "category": "spam"})
    assert status == 202 and set(body) == {"report_id"}
    case = wait_for_case(stack, "space", space, 1)
    assert case["priority"] == "low"
    [report] = _case_detail(stack, case["id"])["reports"]
    assert report["snapshot"]["target"] is None
    assert report["snapshot"]["reporter"]["role"] == "listener"  # joined earlier, may have left since


async def test_a_retried_rest_report_with_the_same_key_is_one_report(clients: Clients, stack) -> None:
    host, bob, lale = uid("hana"), uid("bob"), uid("lale")
    space = live_space(stack, host)
    h, b, li = await clients.people(host, bob, lale)
    await join_all(space, h, b, li)
    report = {"space_id": space, "user_id": bob, "category": "hate"}
    key = f"retry-{uuid.uuid4()}"
    first = await asyncio.to_thread(_report, stack, lale, report, key)
    again = await asyncio.to_thread(_report, stack, lale, report, key)
    assert first[0] == again[0] == 202
    assert first[1]["report_id"] == again[1]["report_id"]
    # the same key for another request is refused, not answered with the wrong report
    other = await asyncio.to_thread(_report, stack, lale, dict(report, category="spam"), key)
    assert other[0] == 400 and other[1]["code"] == "bad_request"
    # keys belong to their caller: the host's identical key files the host's own report
    hosts = await asyncio.to_thread(_report, stack, host, report, key)
    assert hosts[0] == 202 and hosts[1]["report_id"] != first[1]["report_id"]
    await clients.close()
    case = wait_for_case(stack, "user", bob, 2)
    time.sleep(1.0)
    case = case_of(stack, "user", bob)
    assert case is not None and case["report_count"] == 2
    assert case["reporters"] == sorted([lale, host])


BAD_REPORTS = [
    ("unknown category", {"category": "rudeness"}, "bad_request", 400),
    ("oversized note", {"note": "x" * 501}, "bad_request", 400),
    ("target not in the space", {"user_id": "nobody-here"}, "not_found", 404),
    ("space that does not exist", {"space_id": "no-such-space"}, "not_found", 404),
    ("reporting yourself", {"user_id": "$me"}, "bad_request", 400),
    ("unknown field", {"severity": "max"}, "bad_request", 400),
    ("bad user id", {"user_id": "a b"}, "bad_request", 400),
]


@pytest.fixture(scope="module")
async def room(stack) -> dict[str, str]:
    """A live space with a host and a listener who joined it, and an outsider who did not."""
    host, listener, outsider = uid("hana"), uid("lale"), uid("olga")
    space = live_space(stack, host)
    async with Clients(stack) as clients:
        h, li = await clients.people(host, listener)
        await join_all(space, h, li)
    return {"space": space, "host": host, "listener": listener, "outsider": outsider}


def _bad(room: dict[str, str], change: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"space_id": room["space"], "user_id": room["host"], "category": "spam"}
    body.update(change)
    if body.get("user_id") == "$me":
        body["user_id"] = room["listener"]
    return body


@pytest.mark.parametrize(("what", "change", "code", "status"), BAD_REPORTS, ids=[b[0] for b in BAD_REPORTS])
def test_bad_rest_reports_get_stable_codes_and_nothing_is_written_or_sent(
    stack, room, aws_calls, what: str, change: dict[str, Any], code: str, status: int
) -> None:
    key = f"bad-{uuid.uuid4()}"
    got = _report(stack, room["listener"], _bad(room, change), key)
    assert got[0] == status and got[1]["code"] == code, got
    assert aws_calls.calls["sqs:SendMessage"] == 0
    assert aws_calls.calls["dynamodb:PutItem"] == 0
    # the key was not used up: a good request with it goes through
    good = _report(stack, room["listener"], _bad(room, {}), key)
    assert good[0] == 202


@pytest.mark.parametrize(("what", "change", "code", "status"), BAD_REPORTS, ids=[b[0] for b in BAD_REPORTS])
async def test_bad_websocket_reports_get_the_same_codes(
    clients: Clients, stack, room, aws_calls, what: str, change: dict[str, Any], code: str, status: int
) -> None:
    [li] = await clients.people(room["listener"])
    frame = await li.call("report.send", **_bad(room, change))
    await clients.close()
    assert frame["type"] == "error" and frame["code"] == code, frame
    assert aws_calls.calls["sqs:SendMessage"] == 0


def test_only_people_who_joined_can_report_a_space(stack, room, aws_calls) -> None:
    status, body = _report(stack, room["outsider"], {"space_id": room["space"], "category": "spam"})
    assert (status, body["code"]) == (403, "not_allowed")
    assert aws_calls.calls["sqs:SendMessage"] == 0


def test_reporting_needs_a_token(stack, room) -> None:
    status, body = http(stack, "POST", "/reports", {"space_id": room["space"], "category": "spam"})
    assert (status, body["code"]) == (401, "unauthorized")


def test_a_malformed_idempotency_key_is_refused(stack, room) -> None:
    status, body = _report(stack, room["listener"], _bad(room, {}), key="x" * 300)
    assert (status, body["code"]) == (400, "bad_request")


# -- triage -----------------------------------------------------------------------------


def test_reports_about_one_user_from_different_spaces_group_into_one_case(stack, room) -> None:
    target = uid("troll")
    other_space = live_space(stack, uid("host2"))
    messages = [
        report_message(room["space"], uid("a"), target, "spam"),
        report_message(other_space, uid("b"), target, "harassment"),
    ]
    send_reports(stack, [json.dumps(m) for m in messages])
    case = wait_for_case(stack, "user", target, 2)
    assert case["report_count"] == 2 and case["reporter_count"] == 2
    assert case["categories"] == ["harassment", "spam"] and case["priority"] == "normal"
    assert case["latest_space_id"] in (room["space"], other_space)
    reports = _case_detail(stack, case["id"])["reports"]
    assert {r["space_id"] for r in reports} == {room["space"], other_space}
    # a third distinct reporter within ten minutes: high
    send_reports(stack, [json.dumps(report_message(room["space"], uid("c"), target))])
    case = wait_for_case(stack, "user", target, 3)
    assert case["priority"] == "high" and case["version"] == 3


def test_a_redelivered_report_is_counted_once(stack, room) -> None:
    target = uid("troll")
    message = json.dumps(report_message(room["space"], uid("a"), target, "violence"))
    send_reports(stack, [message, message])  # one batch, the same report twice
    case = wait_for_case(stack, "user", target, 1)
    send_reports(stack, [message])  # and once more, later
    time.sleep(1.5)
    case = case_of(stack, "user", target)
    assert case is not None and case["report_count"] == 1 and case["priority"] == "high"


def test_a_burst_about_a_new_target_opens_exactly_one_case(stack, room) -> None:
    target = uid("troll")
    messages = [report_message(room["space"], uid(f"r{i}"), target) for i in range(10)]
    send_reports(stack, [json.dumps(m) for m in messages])
    case = wait_for_case(stack, "user", target, 10)
    assert case["report_count"] == 10
    path = f"/admin/cases?target_type=user&target_id={target}&status=open"
    status, body = http(stack, "GET", path, token=admin_token(stack))
    assert status == 200 and len(body["data"]) == 1
    assert stored_reports([m["report_id"] for m in messages]) == {m["report_id"] for m in messages}


def _recreate_table(stack: Any, logical_id: str) -> None:
    from devstack.aws import load_template

    props = load_template()["Resources"][logical_id]["Properties"]
    ddb = stack.aws.client("dynamodb")
    ddb.create_table(
        TableName=stack.env[_ENV[logical_id]],
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        GlobalSecondaryIndexes=props.get("GlobalSecondaryIndexes", []),
        BillingMode="PAY_PER_REQUEST",
    )


_ENV = {"ReportsTable": "REPORTS_TABLE"}


def _dlq_bodies(stack: Any, marker: str, want: int, timeout: float) -> list[str]:
    sqs = stack.aws.client("sqs")
    url = sqs.get_queue_url(QueueName=f"sohbet-{stack.options.stage}-moderation-dlq")["QueueUrl"]
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(found) < want and time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            if marker in m["Body"]:
                found[m["MessageId"]] = m["Body"]
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return list(found.values())


def test_nothing_is_lost_under_failures_sent_equals_stored_plus_dead_lettered(stack, room) -> None:
    """Good reports mixed with poison messages, while the reports table is down for a while.

    Poison fails alone and reaches the DLQ after maxReceiveCount (5) receives; the good
    ones fail while the table is gone (a real ResourceNotFound from DynamoDB, not a mock),
    come back after the visibility timeout, and are stored once each."""
    marker = f"m{uuid.uuid4().hex}"
    target = uid("troll")
    good = [report_message(room["space"], uid(f"g{i}"), target, marker=marker) for i in range(12)]
    poison = [
        f"not json at all {marker}",
        json.dumps(report_message(f"gone-{marker[:20]}", uid("p"), target, marker=marker)),  # unknown space
        json.dumps({"report_id": "nope", "marker": marker}),  # valid JSON, not a report
    ]
    bodies = [json.dumps(m) for m in good[:6]] + poison + [json.dumps(m) for m in good[6:]]
    ddb = stack.aws.client("dynamodb")
    table = stack.env["REPORTS_TABLE"]
    started = time.monotonic()
    ddb.delete_table(TableName=table)
    try:
        send_reports(stack, bodies)
        time.sleep(1.5)  # every message is received (and fails) at least once meanwhile
    finally:
        _recreate_table(stack, "ReportsTable")

    dead = _dlq_bodies(stack, marker, want=len(poison), timeout=14)
    case = wait_for_case(stack, "user", target, len(good), timeout=5)
    elapsed = time.monotonic() - started
    stored = stored_reports([m["report_id"] for m in good])

    assert len(bodies) == len(stored) + len(dead)
    assert stored == {m["report_id"] for m in good}
    assert sorted(dead) == sorted(poison)
    assert case["report_count"] == len(good)  # each counted exactly once
    assert elapsed < 20
