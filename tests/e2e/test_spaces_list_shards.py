"""Lists over the sharded state indexes: every listed space once, in order, across pages.

Listed spaces are spread over models.LIST_SHARDS index partitions per state
(docs/data-model.md); a page merges them. These walks put many spaces with equal sort
keys (ties) across partitions and small pages, where a wrong merge shows as a space
missing or shown twice.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from conftest import create_space, http, iso, token, uid

from chalicelib.models import LIST_SHARDS, Space, list_shard

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_scan")]


def _walk(stack: Any, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(500):
        url = path + (f"&cursor={quote(cursor)}" if cursor else "")
        status, body = http(stack, "GET", url, token=token(stack, "viewer"))
        assert status == 200, (url, body)
        items += body["data"]
        cursor = body["next_cursor"]
        if not cursor:
            return items
    raise AssertionError("pagination does not end")


def test_live_and_scheduled_lists_show_each_space_once_in_order(stack) -> None:
    tag = uid("shard")
    live = {create_space(stack, uid("h"), f"live {tag} {i}")["id"] for i in range(12)}
    start = iso(timedelta(days=1))  # the same start for all: ties across partitions
    scheduled = {
        create_space(stack, uid("h"), f"later {tag} {i}", scheduled_start=start)["id"] for i in range(12)
    }
    assert len({list_shard("live", sid) for sid in live}) > 1  # spread, so the merge is exercised

    listed = _walk(stack, "/spaces?state=live&limit=5")
    ids = [s["id"] for s in listed]
    assert len(ids) == len(set(ids)), "a space was listed twice"
    assert live <= set(ids)
    counts = [s["participant_count"] for s in listed]
    assert counts == sorted(counts, reverse=True)

    listed = _walk(stack, "/spaces?state=scheduled&limit=4")
    ids = [s["id"] for s in listed]
    assert len(ids) == len(set(ids)) and scheduled <= set(ids)
    starts = [s["scheduled_start"] for s in listed]
    assert starts == sorted(starts)

    found = _walk(stack, f"/spaces/search?query={quote(tag)}&state=live&limit=2")
    assert sorted(s["id"] for s in found) == sorted(live)


def test_an_ended_space_leaves_the_list_indexes(stack) -> None:
    host = uid("h")
    space = create_space(stack, host, f"ending {uid('t')}")
    sid = space["id"]
    assert Space.get(sid).list_shard == list_shard("live", sid)
    status, body = http(stack, "POST", f"/spaces/{sid}/end", token=token(stack, host))
    assert status == 200, body
    assert Space.get(sid).list_shard is None
    assert sid not in {s["id"] for s in _walk(stack, "/spaces?state=live&limit=100")}


def test_a_started_space_moves_to_the_live_partitions(stack) -> None:
    host = uid("h")
    sid = create_space(stack, host, f"starting {uid('t')}", scheduled_start=iso(timedelta(hours=1)))["id"]
    assert Space.get(sid).list_shard == list_shard("scheduled", sid)
    status, body = http(stack, "POST", f"/spaces/{sid}/start", token=token(stack, host))
    assert status == 200, body
    assert Space.get(sid).list_shard == list_shard("live", sid)
    assert list_shard("live", sid).startswith("live#") and int(list_shard("live", sid)[5:]) < LIST_SHARDS


@pytest.mark.parametrize(
    "positions",
    [
        {"live#0": "finished"},  # neither a key nor DONE
        {"live#99": "done"},  # no such partition
        {"scheduled#0": "done"},  # another state's partition
        {"live#1": {"space_id": {"S": "x"}, "list_shard": {"S": "live#2"}, "participant_count": {"N": "1"}}},
    ],
    ids=["bad-marker", "unknown-shard", "other-state", "key-of-another-shard"],
)
def test_a_cursor_of_another_shape_is_400(stack, positions: dict[str, Any]) -> None:
    cursor = base64.urlsafe_b64encode(json.dumps(positions).encode()).decode().rstrip("=")
    status, body = http(stack, "GET", f"/spaces?state=live&cursor={cursor}", token=token(stack, "v"))
    assert status == 400 and body["code"] == "bad_request", body
