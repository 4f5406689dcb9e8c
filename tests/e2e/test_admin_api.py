"""The admin reporting API: who may use it, listing cases, acting on them, the audit log."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from typing import Any

import pytest
from conftest import (
    Clients,
    admin_token,
    has_attendee,
    http,
    join_all,
    live_space,
    report_message,
    send_reports,
    uid,
    wait_for_case,
)
from websockets.exceptions import InvalidStatus

pytestmark = pytest.mark.e2e

ADMIN_ROUTES = [
    ("GET", "/admin/cases", None),
    ("GET", "/admin/cases/abc", None),
    ("POST", "/admin/cases/abc/actions", {"action": "dismiss", "reason": "r"}),
    ("GET", "/admin/audit", None),
]


def _get(stack: Any, path: str, admin: str = "root") -> dict[str, Any]:
    status, body = http(stack, "GET", path, token=admin_token(stack, admin))
    assert status == 200, (path, body)
    return body


def _act(stack: Any, case_id: str, body: dict[str, Any], admin: str = "root", **headers: str) -> Any:
    return http(
        stack,
        "POST",
        f"/admin/cases/{case_id}/actions",
        body,
        token=admin_token(stack, admin),
        headers={k.replace("_", "-"): v for k, v in headers.items()},
    )


def _new_case(stack: Any, space: str, target: str | None = None, category: str = "spam", n: int = 1) -> dict:
    """A case about `target` (a user) or about `space`, from n reports fed to the queue."""
    messages = [report_message(space, uid(f"rep{i}"), target, category) for i in range(n)]
    send_reports(stack, [json.dumps(m) for m in messages])
    return wait_for_case(stack, "user" if target else "space", target or space, n)


@pytest.fixture(scope="module")
def space(stack) -> str:
    return live_space(stack, uid("hana"))


# -- who may -----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_routes_refuse_non_admins_and_strangers(stack, method: str, path: str, body: Any) -> None:
    status, answer = http(stack, method, path, body, token=stack.mint_token(uid("ada"), ["moderators"]))
    assert (status, answer["code"]) == (403, "not_allowed")
    status, answer = http(stack, method, path, body)
    assert (status, answer["code"]) == (401, "unauthorized")


# -- listing -----------------------------------------------------------------------------


def _all_pages(stack: Any, path: str, limit: int = 2) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    sep = "&" if "?" in path else "?"
    for _ in range(500):
        page = _get(stack, f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert len(page["data"]) <= limit
        items += page["data"]
        cursor = page["next_cursor"]
        if not cursor:
            return items
    raise AssertionError("pagination did not end")


def test_cases_are_filtered_sorted_and_paginated(stack, space) -> None:
    before = time.time()
    low = _new_case(stack, space, uid("spammer"), "spam")
    high = _new_case(stack, space, uid("violent"), "violence")
    normal = _new_case(stack, space, uid("rude"), "harassment")
    about_space = _new_case(stack, live_space(stack, uid("h")), None, "sexual_content")
    ours = {c["id"] for c in (low, high, normal, about_space)}
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before - 1))

    newest = [c for c in _all_pages(stack, f"/admin/cases?since={since}") if c["id"] in ours]
    assert [c["id"] for c in newest] == [about_space["id"], normal["id"], high["id"], low["id"]]
    every = _all_pages(stack, "/admin/cases?status=open", limit=3)
    assert len({c["id"] for c in every}) == len(every) and ours <= {c["id"] for c in every}
    times = [c["last_seen_at"] for c in every]
    assert times == sorted(times, reverse=True)

    by_priority = [
        c for c in _all_pages(stack, f"/admin/cases?sort=priority&since={since}") if c["id"] in ours
    ]
    assert [c["priority"] for c in by_priority] == ["high", "normal", "normal", "low"]
    ranks = [
        {"high": 0, "normal": 1, "low": 2}[c["priority"]]
        for c in _all_pages(stack, "/admin/cases?sort=priority")
    ]
    assert ranks == sorted(ranks)

    only_high = _all_pages(stack, f"/admin/cases?priority=high&since={since}")
    assert high["id"] in {c["id"] for c in only_high} and {c["priority"] for c in only_high} == {"high"}
    spaces_only = _all_pages(stack, f"/admin/cases?target_type=space&since={since}")
    assert {c["target"]["type"] for c in spaces_only} == {"space"} and about_space["id"] in {
        c["id"] for c in spaces_only
    }
    violence = _all_pages(stack, "/admin/cases?category=violence")
    assert high["id"] in {c["id"] for c in violence} and all("violence" in c["categories"] for c in violence)
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before - 3600))
    assert not ours & {c["id"] for c in _all_pages(stack, f"/admin/cases?until={until}")}
    one = _get(stack, f"/admin/cases?target_type=user&target_id={normal['target']['id']}")
    assert [c["id"] for c in one["data"]] == [normal["id"]]


@pytest.mark.parametrize(
    "query",
    [
        "status=pending",
        "priority=urgent",
        "target_type=group",
        "target_id=bob",
        "category=rudeness",
        "since=yesterday",
        "since=2026-01-01T00:00:00",
        "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
        "sort=oldest",
        "limit=0",
        "limit=101",
        "limit=%C2%B2",
        "cursor=%%%",
        "cursor=" + base64.urlsafe_b64encode(b'{"case_id":{"S":"x"}}').decode(),
        "foo=bar",
    ],
)
def test_bad_list_queries_are_400(stack, query: str) -> None:
    status, body = http(stack, "GET", f"/admin/cases?{query}", token=admin_token(stack))
    assert (status, body["code"]) == (400, "bad_request"), body


def test_a_cursor_only_continues_its_own_list(stack, space) -> None:
    for _ in range(2):
        _new_case(stack, space, uid("t"))
    page = _get(stack, "/admin/cases?limit=1")
    assert page["next_cursor"]
    status, body = http(
        stack,
        "GET",
        f"/admin/cases?status=closed&limit=1&cursor={page['next_cursor']}",
        token=admin_token(stack),
    )
    assert (status, body["code"]) == (400, "bad_request")


def test_a_case_comes_with_its_reports_page_by_page(stack, space) -> None:
    case = _new_case(stack, space, uid("troll"), "hate", n=3)
    detail = _get(stack, f"/admin/cases/{case['id']}?limit=2")
    assert detail["case"]["id"] == case["id"] and len(detail["reports"]) == 2
    rest = _get(stack, f"/admin/cases/{case['id']}?limit=2&cursor={detail['next_cursor']}")
    reports = detail["reports"] + rest["reports"]
    assert rest["next_cursor"] is None and len({r["id"] for r in reports}) == 3
    assert [r["created_at"] for r in reports] == sorted((r["created_at"] for r in reports), reverse=True)
    assert all(r["case_id"] == case["id"] and r["snapshot"] for r in reports)
    status, body = http(stack, "GET", "/admin/cases/no-such-case", token=admin_token(stack))
    assert (status, body["code"]) == (404, "not_found")
    marker = f"open%23user%23{case['target']['id']}"  # the open-case marker is not a case
    status, body = http(stack, "GET", f"/admin/cases/{marker}", token=admin_token(stack))
    assert status == 404


# -- actions -----------------------------------------------------------------------------


def _audit_of(stack: Any, target_type: str, target_id: str) -> list[dict[str, Any]]:
    return _get(stack, f"/admin/audit?target_type={target_type}&target_id={target_id}")["data"]


def test_dismiss_closes_the_case_with_an_audit_record_and_a_new_report_opens_another(stack, space) -> None:
    target = uid("troll")
    case = _new_case(stack, space, target)
    status, body = _act(stack, case["id"], {"action": "dismiss", "reason": "not a violation"})
    assert status == 200 and body["replayed"] is False
    closed = body["case"]
    assert (closed["status"], closed["resolution"], closed["version"]) == (
        "closed",
        "dismiss",
        case["version"] + 1,
    )
    assert closed["closed_at"] and closed["actions"][-1]["action"] == "dismiss"
    [audit] = _audit_of(stack, "user", target)
    assert audit["id"] == body["action"]["action_id"]
    assert (audit["admin_id"], audit["action"], audit["reason"], audit["case_id"]) == (
        "root",
        "dismiss",
        "not a violation",
        case["id"],
    )
    assert audit["target"] == {"type": "user", "id": target} and audit["at"] == closed["closed_at"]
    reopened = _new_case(stack, space, target)
    assert reopened["id"] != case["id"] and reopened["report_count"] == 1


async def test_warn_reaches_the_users_live_connections(clients: Clients, stack, space) -> None:
    target = uid("troll")
    case = await asyncio.to_thread(_new_case, stack, space, target)
    phone, laptop = await clients.people(target, target)
    status, body = await asyncio.to_thread(
        _act, stack, case["id"], {"action": "warn", "reason": "keep it civil"}
    )
    assert status == 200 and body["case"]["resolution"] == "warn"
    for device in (phone, laptop):
        warned = await device.event("user.warned")
        assert warned["reason"] == "keep it civil" and "seq" not in warned


async def test_remove_from_space_defaults_to_the_latest_reports_space(clients: Clients, stack) -> None:
    host, target = uid("hana"), uid("troll")
    space = live_space(stack, host)
    h, t = await clients.people(host, target)
    await join_all(space, h, t)
    case = await asyncio.to_thread(_new_case, stack, space, target)
    assert has_attendee(space, target)
    status, body = await asyncio.to_thread(
        _act, stack, case["id"], {"action": "remove_from_space", "reason": "disruptive"}
    )
    assert status == 200 and body["action"]["details"] == {"space_id": space}
    await t.event("participant.removed", space_id=space)
    assert not has_attendee(space, target)
    again = await t.call("space.join", space_id=space)
    assert again["type"] == "error" and again["code"] == "not_allowed"


async def test_end_space_ends_a_reported_space_for_everyone(clients: Clients, stack) -> None:
    host, guest = uid("hana"), uid("gus")
    space = live_space(stack, host)
    h, g = await clients.people(host, guest)
    await join_all(space, h, g)
    case = await asyncio.to_thread(_new_case, stack, space, None, "violence")
    status, _ = await asyncio.to_thread(
        _act, stack, case["id"], {"action": "end_space", "reason": "violent content"}
    )
    assert status == 200
    for person in (h, g):
        ended = await person.event("space.ended", space_id=space)
        assert ended["reason"] == "ended_by_admin"
    await clients.close()
    status, got = http(stack, "GET", f"/spaces/{space}", token=stack.mint_token(host))
    assert got["state"] == "ended"


async def test_suspend_then_lift(clients: Clients, stack, space) -> None:
    target = uid("troll")
    case = await asyncio.to_thread(_new_case, stack, space, target)
    status, body = await asyncio.to_thread(
        _act, stack, case["id"], {"action": "suspend", "reason": "spam waves", "duration_seconds": 3600}
    )
    assert status == 200
    until = body["action"]["details"]["suspended_until"]
    assert 3590 < until - time.time() <= 3600
    status, refused = http(stack, "POST", "/spaces", {"title": "mine"}, token=stack.mint_token(target))
    assert (status, refused["code"]) == (403, "not_allowed")
    with pytest.raises(InvalidStatus) as err:
        await clients.open(target)
    assert err.value.response.status_code == 403

    status, body = await asyncio.to_thread(
        _act, stack, case["id"], {"action": "lift_suspension", "reason": "appeal"}
    )
    assert status == 200 and body["case"]["status"] == "closed"  # lifting does not reopen
    [t] = await clients.people(target)
    await t.send("ping")
    await clients.close()
    status, _ = http(stack, "POST", "/spaces", {"title": "mine"}, token=stack.mint_token(target))
    assert status == 201
    status, body = _act(stack, case["id"], {"action": "lift_suspension", "reason": "again, other words"})
    assert (status, body["code"]) == (409, "conflict")  # not suspended any more
    assert [a["action"] for a in _audit_of(stack, "user", target)] == ["lift_suspension", "suspend"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"action": "suspend", "reason": "r", "duration_seconds": 59}, 400, "bad_request"),
        ({"action": "suspend", "reason": "r", "duration_seconds": 31536001}, 400, "bad_request"),
        ({"action": "suspend", "reason": "r"}, 400, "bad_request"),
        ({"action": "suspend", "reason": "r", "duration_seconds": "600"}, 400, "bad_request"),
        ({"action": "dismiss", "reason": "r", "duration_seconds": 600}, 400, "bad_request"),
        ({"action": "dismiss", "reason": "r", "space_id": "abc"}, 400, "bad_request"),
        ({"action": "dismiss", "reason": "   "}, 400, "bad_request"),
        ({"action": "dismiss"}, 400, "bad_request"),
        ({"action": "ban", "reason": "r"}, 400, "bad_request"),
        ({"action": "dismiss", "reason": "r", "extra": 1}, 400, "bad_request"),
        ({"action": "remove_from_space", "reason": "r", "space_id": "no-such-space"}, 404, "not_found"),
        ({"action": "lift_suspension", "reason": "r"}, 409, "conflict"),
        ({"action": "dismiss", "reason": "r", "expected_version": 99}, 409, "conflict"),
    ],
)
def test_bad_actions_get_stable_codes_and_change_nothing(
    stack, space, body: dict, status: int, code: str
) -> None:
    target = uid("troll")
    case = _new_case(stack, space, target)
    got = _act(stack, case["id"], body)
    assert (got[0], got[1]["code"]) == (status, code), got
    after = _get(stack, f"/admin/cases/{case['id']}")["case"]
    assert after == case
    assert _audit_of(stack, "user", target) == []


def test_user_actions_do_not_apply_to_a_space_case(stack) -> None:
    space = live_space(stack, uid("hana"))
    case = _new_case(stack, space, None)
    for action in ("warn", "remove_from_space", "lift_suspension"):
        status, body = _act(stack, case["id"], {"action": action, "reason": "r"})
        assert (status, body["code"]) == (400, "bad_request"), action
    assert _act(stack, "no-such-case", {"action": "dismiss", "reason": "r"})[0] == 404
    status, body = http(
        stack, "POST", f"/admin/cases/{case['id']}/actions", b"{not json", token=admin_token(stack)
    )
    assert (status, body["code"]) == (400, "bad_request")


def _act_at_once(
    stack: Any, start: threading.Barrier, results: dict[str, Any], case_id: str, admin: str, action: dict
) -> None:
    start.wait()
    results[admin] = _act(stack, case_id, action, admin=admin)


def test_two_admins_at_once_one_wins_the_other_gets_409_with_the_case(stack, space) -> None:
    for _ in range(3):
        target = uid("troll")
        case = _new_case(stack, space, target)
        start = threading.Barrier(2)
        results: dict[str, Any] = {}
        threads = [
            threading.Thread(target=_act_at_once, args=(stack, start, results, case["id"], admin, action))
            for admin, action in (
                ("alice", {"action": "dismiss", "reason": "fine"}),
                ("bora", {"action": "suspend", "reason": "no", "duration_seconds": 600}),
            )
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        statuses = sorted(r[0] for r in results.values())
        assert statuses == [200, 409], results
        [(winner, (_, won))] = [(a, r) for a, r in results.items() if r[0] == 200]
        [(_, (_, lost))] = [(a, r) for a, r in results.items() if r[0] == 409]
        assert lost["code"] == "conflict"
        assert lost["data"]["case"]["status"] == "closed"
        assert lost["data"]["case"]["version"] == won["case"]["version"]
        assert [a["admin_id"] for a in lost["data"]["case"]["actions"]] == [winner]
        assert len(_audit_of(stack, "user", target)) == 1


def test_expected_version_guards_against_acting_on_a_stale_view(stack, space) -> None:
    target = uid("troll")
    case = _new_case(stack, space, target)
    send_reports(stack, [json.dumps(report_message(space, uid("late"), target))])  # the case moves on
    wait_for_case(stack, "user", target, 2)
    status, body = _act(
        stack, case["id"], {"action": "dismiss", "reason": "r", "expected_version": case["version"]}
    )
    assert (status, body["code"]) == (409, "conflict")
    fresh = body["data"]["case"]
    assert fresh["report_count"] == 2 and fresh["status"] == "open"
    status, body = _act(
        stack, case["id"], {"action": "dismiss", "reason": "r", "expected_version": fresh["version"]}
    )
    assert status == 200


def test_the_same_admin_repeating_an_action_gets_the_first_result(stack, space) -> None:
    target = uid("troll")
    case = _new_case(stack, space, target)
    action = {"action": "suspend", "reason": "raid", "duration_seconds": 600}
    first = _act(stack, case["id"], action)
    time.sleep(1.1)
    again = _act(stack, case["id"], dict(action, expected_version=case["version"]))
    assert first[0] == again[0] == 200
    assert again[1]["replayed"] is True and again[1]["action"] == first[1]["action"]
    assert again[1]["case"]["version"] == first[1]["case"]["version"]
    other_admin = _act(stack, case["id"], action, admin="bora")
    assert other_admin[0] == 409
    assert len(_audit_of(stack, "user", target)) == 1


def test_an_idempotency_key_returns_the_exact_first_response(stack, space) -> None:
    target = uid("troll")
    case = _new_case(stack, space, target)
    key = f"k-{uuid.uuid4()}"
    first = _act(stack, case["id"], {"action": "warn", "reason": "once"}, Idempotency_Key=key)
    again = _act(stack, case["id"], {"action": "warn", "reason": "once"}, Idempotency_Key=key)
    assert first == again and first[0] == 200 and again[1]["replayed"] is False
    different = _act(stack, case["id"], {"action": "warn", "reason": "twice"}, Idempotency_Key=key)
    assert (different[0], different[1]["code"]) == (400, "bad_request")
    assert len(_audit_of(stack, "user", target)) == 1


# -- audit -------------------------------------------------------------------------------


def test_the_audit_log_is_newest_first_and_paginated(stack, space) -> None:
    targets = [uid("troll") for _ in range(3)]
    ids = []
    for target in targets:
        case = _new_case(stack, space, target)
        ids.append(
            _act(stack, case["id"], {"action": "dismiss", "reason": f"r {target}"})[1]["action"]["action_id"]
        )
    log = _all_pages(stack, "/admin/audit", limit=2)
    assert len({a["id"] for a in log}) == len(log)
    mine = [a["id"] for a in log if a["id"] in ids]
    assert mine == list(reversed(ids))
    times = [a["at"] for a in log]
    assert times == sorted(times, reverse=True)
    by_target = _all_pages(stack, f"/admin/audit?target_type=user&target_id={targets[1]}", limit=1)
    assert [a["id"] for a in by_target] == [ids[1]]
    future = _get(stack, "/admin/audit?since=2999-01-01T00:00:00Z")
    assert future == {"data": [], "next_cursor": None}
    for query in ("target_type=user", "target_id=x", "since=soon", "cursor=abc", "limit=0"):
        status, body = http(stack, "GET", f"/admin/audit?{query}", token=admin_token(stack))
        assert (status, body["code"]) == (400, "bad_request"), query
