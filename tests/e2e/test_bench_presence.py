"""bench.presence at a small N on the session's stack: the benchmark runs, and its figures hold."""

from __future__ import annotations

from typing import Any

import pytest

from bench.presence import read_units, run

pytestmark = pytest.mark.e2e


async def test_bench_presence_smoke(stack: Any) -> None:
    result = await run(stack, members=120, present=4)
    assert result["posts"] == 6  # the host and 4 listeners, and the host's reply
    assert result["members_queried_during_broadcast"] == (0, 0)
    assert result["before"]["items"] == 120 and result["after"]["items"] == 5
    assert result["after"]["rcu"] == 1 < result["before"]["rcu"]


def test_read_units_round_each_page_up_to_4_kb() -> None:
    assert read_units([]) == (0, 0)
    assert read_units([100] * 41) == (1, 2)  # 4,100 bytes: one page, 2 units
    assert read_units([600_000, 600_000]) == (2, 2 * 147)  # two pages of 1 MB at most
