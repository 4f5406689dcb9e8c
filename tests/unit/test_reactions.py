"""The reactions aggregate (chalicelib/reactions.py): tallies summed, senders picked, the event's shape."""

from __future__ import annotations

import json

import pytest
from asyncapi_check import validate_server_message

from chalicelib import protocol, reactions
from chalicelib.reactions import RECENT, SHARDS, Tally, aggregate


def test_tallies_sum_per_emoji_most_first_and_empty_shards_drop_out() -> None:
    result = aggregate(
        [
            Tally({"🔥": 3, "👏": 1}, "ada", "🔥", 10.0),
            Tally({}, None, None, 0.0),
            Tally({"👏": 2, "😂": 0}, "bob", "👏", 12.0),
            Tally({"🔥": 1}, "cy", "🔥", 11.0),
        ]
    )
    payload = result.payload()
    assert payload["counts"] == {"🔥": 4, "👏": 3}
    assert list(payload["counts"]) == ["🔥", "👏"]
    assert payload["total"] == 7
    assert payload["recent"] == [
        {"user_id": "bob", "emoji": "👏"},
        {"user_id": "cy", "emoji": "🔥"},
        {"user_id": "ada", "emoji": "🔥"},
    ]


def test_equal_counts_are_ordered_by_emoji_so_the_event_is_stable() -> None:
    first = aggregate([Tally({"👏": 2}, "a", "👏", 1.0), Tally({"🔥": 2}, "b", "🔥", 2.0)]).payload()
    second = aggregate([Tally({"🔥": 2}, "b", "🔥", 2.0), Tally({"👏": 2}, "a", "👏", 1.0)]).payload()
    assert json.dumps(first) == json.dumps(second)


def test_only_the_latest_senders_are_named() -> None:
    tallies = [Tally({"🔥": 1}, f"u{i}", "🔥", float(i)) for i in range(SHARDS)]
    payload = aggregate(tallies).payload()
    assert payload["total"] == SHARDS
    assert [r["user_id"] for r in payload["recent"]] == [
        f"u{i}" for i in range(SHARDS - 1, SHARDS - 1 - RECENT, -1)
    ]


def test_nothing_collected_is_an_empty_aggregate() -> None:
    empty = aggregate([Tally({}), Tally({"🔥": 0})])
    assert empty.total == 0 and empty.payload()["counts"] == {} and empty.payload()["recent"] == []


def test_the_event_of_an_aggregate_and_of_a_single_reaction_follow_the_spec() -> None:
    big = aggregate([Tally({"🔥": 900, "👏": 100}, "ada", "🔥", 1.0)])
    validate_server_message(protocol.event("reactions", "sp-1", 7, **big.payload()))
    one = reactions.single("bob", "🎉")
    assert one == {"counts": {"🎉": 1}, "total": 1, "recent": [{"user_id": "bob", "emoji": "🎉"}]}
    validate_server_message(protocol.event("reactions", "sp-1", 8, **one))


def test_a_user_always_counts_on_the_same_shard_and_shards_spread() -> None:
    assert reactions.shard_key("sp", "ada") == reactions.shard_key("sp", "ada")
    used = {reactions.shard_key("sp", f"user-{i}") for i in range(200)}
    assert used == set(reactions.shard_keys("sp"))
    assert reactions.claim_key("sp") not in used


@pytest.mark.parametrize(("interval", "delay"), [(0.2, 1), (1.0, 1), (1.5, 2), (5, 5), (3600, 900)])
def test_the_flush_delay_is_whole_seconds_within_what_sqs_allows(interval: float, delay: int) -> None:
    assert reactions.flush_delay(interval) == delay


def test_flush_messages_are_told_apart_from_shards_of_posts() -> None:
    assert reactions.flush_request({"kind": "reactions.flush", "space_id": "sp-1"}) == "sp-1"
    assert reactions.flush_request({"connection_ids": ["a"], "data": "{}", "attempt": 1}) is None
    for bad in ({"kind": "reactions.flush"}, {"kind": "reactions.flush", "space_id": 3}):
        with pytest.raises(ValueError):
            reactions.flush_request(bad)
