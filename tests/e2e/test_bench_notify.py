"""bench.notify at a small N on the session's stack: the benchmark runs, and its figures hold."""

from __future__ import annotations

from typing import Any

import pytest

from bench.notify import run

pytestmark = pytest.mark.e2e


async def test_bench_notify_smoke(stack: Any) -> None:
    result = await run(stack, followers=150, devices=5, online=3, timeout=60)
    assert result["inbox entries"] == 150
    assert result["socket events"] == 3
    assert result["SNS publishes"] == 5
    # At 150 followers the shared stack's sweep weighs in (the bench does not pause it): one call
    # per follower would be >= 2 (a read and a write each); the figure is the 10,000-follower run's.
    assert result["AWS calls per follower (DynamoDB+SQS)"] < 0.5, result
    assert result["calls by operation"]["dynamodb:TransactWriteItems"] == 2  # chunks of 100
