"""The app's CloudWatch metrics, as EMF records printed by real invocations on the local stack.

The local stack runs with POWERTOOLS_METRICS_DISABLED (quiet logs); these tests switch
it off and read the records the handlers print: joins, leaves, commands by action and
outcome, fan-out posts, 410s and shards, reports, triage latency, admin actions.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import pytest
from conftest import Clients, Room, admin_token, http, refused, uid, wait_for_case

from chalicelib import fanout, protocol
from chalicelib.config import get_settings
from chalicelib.observability import flush

pytestmark = pytest.mark.e2e


def _records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def _totals(records: list[dict[str, Any]]) -> Counter[tuple[str, tuple[tuple[str, str], ...]]]:
    """Sum of each metric by (name, its own dimensions besides service and stage)."""
    totals: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for record in records:
        directive = record["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "sohbet"
        dims = [d for d in directive["Dimensions"][0] if d not in ("service", "stage")]
        for metric in directive["Metrics"]:
            value = record[metric["Name"]]
            total = sum(value) if isinstance(value, list) else value
            totals[(metric["Name"], tuple((d, record[d]) for d in sorted(dims)))] += total
        assert record["service"] == "sohbet" and record["stage"] == get_settings().stage
    return totals


@pytest.fixture
def metrics_on(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    flush()  # nothing left over from earlier tests
    capsys.readouterr()
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")

    def read() -> Counter[tuple[str, tuple[tuple[str, str], ...]]]:
        return _totals(_records(capsys.readouterr().out))

    return read


async def test_commands_joins_leaves_reports_triage_and_admin_actions_are_counted(
    clients: Clients, metrics_on: Any
) -> None:
    room = await Room.open(clients)
    ann = await room.listener()
    await ann.send("hand.raise", space_id=room.sid)
    await ann.report(room.sid, "spam", user_id=room.host.user)
    await refused(ann.send("no.such.action"), "bad_request")
    await ann.leave(room.sid)

    case = await asyncio.to_thread(wait_for_case, clients.stack, "user", room.host.user, 1)
    status, body = await asyncio.to_thread(
        http,
        clients.stack,
        "POST",
        f"/admin/cases/{case['id']}/actions",
        {"action": "dismiss", "reason": "metrics test"},
        token=admin_token(clients.stack),
    )
    assert status == 200, body

    totals = metrics_on()
    assert totals[("Joins", ())] >= 2
    assert totals[("Leaves", ())] >= 1
    ok = (("action", "space.join"), ("outcome", "ok"))
    assert totals[("Commands", ok)] >= 2
    assert totals[("Commands", (("action", "hand.raise"), ("outcome", "ok")))] == 1
    assert totals[("Commands", (("action", "invalid"), ("outcome", "bad_request")))] == 1
    assert totals[("Reports", ())] == 1
    assert totals[("TriageLatency", ())] > 0  # milliseconds from filing to its case
    assert totals[("AdminActions", (("action", "dismiss"),))] == 1
    assert totals[("FanoutPosts", ())] >= 1  # the join and hand events reached the host


async def test_fan_out_posts_gone_connections_and_shards_are_counted(stack: Any, metrics_on: Any) -> None:
    message = protocol.event("space.ended", "metrics", None, reason="test")
    gone = [f"gone{uid('c')}"]
    await asyncio.to_thread(fanout.deliver, gone, message)  # a connection API Gateway no longer knows: 410
    many = [f"gone{i}{uid('c')}" for i in range(get_settings().fanout_shard_threshold + 1)]
    # past the threshold: queued as shards, posted by the stack's fan-out consumer
    await asyncio.to_thread(fanout.deliver, many, message)

    def shard_posts_counted(totals: Counter[Any]) -> bool:
        return totals[("FanoutPosts", ())] >= 1 + len(many)

    totals: Counter[Any] = Counter()
    deadline = time.monotonic() + 60  # the fan-out consumer is shared with the run's other tests
    while time.monotonic() < deadline:
        totals += metrics_on()
        if shard_posts_counted(totals):
            break
        await asyncio.sleep(0.1)
    shards = -(-len(many) // get_settings().fanout_shard_size)
    assert totals[("FanoutShards", ())] == shards
    assert totals[("FanoutPosts", ())] == 1 + len(many)
    assert totals[("Gone", ())] == 1 + len(many)
