"""What clients see of a space: the public resource, a joiner's snapshot, lists and search."""

from __future__ import annotations

import heapq
import itertools
from typing import Any

from chalicelib import counters
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Member, Space, list_shards
from chalicelib.rules import MODERATORS, Role, SpaceState
from chalicelib.schemas import cursor_content, decode_cursor, encode_cursor, valid_key
from chalicelib.spaces.stage import Stage
from chalicelib.spaces.store import get_space


def public_space(space: Space, listeners: int | None = None) -> dict[str, Any]:
    """The space resource; field names follow X API v2's Space object where they overlap.

    `listener_count` is the exact count when given (one read of the counter shards),
    else the last published one; `participant_count` is always the published one.
    """
    stage = Stage.from_stored(space.stage)
    return {
        "id": space.space_id,
        "state": space.state,
        "title": space.title,
        "creator_id": space.creator_id,
        "host_ids": stage.moderators(),
        "speaker_ids": stage.speakers(),
        "invited_user_ids": list(space.invited_user_ids or []),
        "participant_count": int(space.participant_count or 0),
        "listener_count": int(space.listener_count or 0) if listeners is None else listeners,
        "subscriber_count": int(space.subscriber_count or 0),
        "scheduled_start": space.scheduled_start,
        "started_at": space.started_at,
        "ended_at": space.ended_at,
        "created_at": space.created_at,
        "updated_at": space.updated_at,
        "lang": space.lang,
        "speak_policy": space.speak_policy,
        "handover": bool(space.handover),
        "recording": bool(space.recording),
        "recording_started_at": space.recording_started_at,
        "captions": bool(space.captions),
        "stage": stage.public(),
    }


def public_view(space_id: str) -> dict[str, Any]:
    """GET /spaces/{id}: the space with its exact listener count."""
    space = get_space(space_id)
    return public_space(space, counters.listeners(space_id) if space.state == SpaceState.LIVE else None)


def hand_queue(space_id: str, limit: int = 100) -> list[dict[str, Any]]:
    return [
        {"user_id": m.user_id, "raised_at": m.hand_raised_at}
        for m in Member.hands.query(space_id, limit=limit)
        if m.present and not m.removed
    ]


def snapshot(
    space: Space, user_id: str, role: Role, seq: int, media_credentials: Any = None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "space": public_space(space),
        "role": role.value,
        "seq": seq,
        "stage": Stage.from_stored(space.stage).public(),
        "listener_count": int(space.listener_count or 0),
    }
    if media_credentials is not None:
        data["media"] = media_credentials
    if role in MODERATORS:
        data["hands"] = hand_queue(space.space_id)
    return data


# -- lists -----------------------------------------------------------------------------
# A state's listed spaces are spread over the index partitions list_shards(state)
# (models.LIST_SHARDS): a page queries each for up to `limit` items and merges them in
# the index's order. Its cursor holds, per partition, the key of the last item shown
# (or DONE): the next page continues each partition from there.

_STATE_INDEX_KEYS = {"space_id", "list_shard", "participant_count"}
_SCHEDULE_INDEX_KEYS = {"space_id", "list_shard", "scheduled_start"}
_CREATOR_INDEX_KEYS = {"space_id", "creator_id", "created_at"}
DONE = "done"


def _listable_state(state: str) -> str:
    if state not in (SpaceState.LIVE, SpaceState.SCHEDULED):
        raise CommandError(ErrorCode.BAD_REQUEST, "state must be live or scheduled")
    return state


def _page(results: Any) -> dict[str, Any]:
    items = [public_space(s) for s in results]
    return {"data": items, "next_cursor": encode_cursor(results.last_evaluated_key)}


def _positions(cursor: str | None, shards: list[str], keys: set[str]) -> dict[str, Any]:
    if cursor is None:
        return {}
    if not cursor:
        raise CommandError(ErrorCode.BAD_REQUEST, "cursor must not be empty; leave it out for the first page")
    positions = cursor_content(cursor)
    if (
        not isinstance(positions, dict)
        or not positions
        or not set(positions) <= set(shards)
        or not all(p == DONE or valid_key(p, keys, {"list_shard": s}) for s, p in positions.items())
    ):
        raise CommandError(ErrorCode.BAD_REQUEST, "cursor is not valid")
    return positions


def _merged_page(state: str, limit: int, cursor: str | None, **query: Any) -> dict[str, Any]:
    live = state == SpaceState.LIVE
    index, order, keys = (
        (Space.by_state, "participant_count", _STATE_INDEX_KEYS)
        if live
        else (Space.by_schedule, "scheduled_start", _SCHEDULE_INDEX_KEYS)
    )
    shards = list_shards(state)
    positions = _positions(cursor, shards, keys)
    fetched: dict[str, tuple[list[Space], bool]] = {}
    for shard in shards:
        if positions.get(shard) == DONE:
            continue
        results = index.query(
            shard, scan_index_forward=not live, limit=limit, last_evaluated_key=positions.get(shard), **query
        )
        items = list(results)
        fetched[shard] = (items, results.last_evaluated_key is None)
    # Each partition's items are in index order: a stable k-way merge keeps every
    # partition's shown items a prefix of it, so its next start key is its last one shown.
    streams = [[(shard, item) for item in items] for shard, (items, _) in fetched.items()]
    merged = heapq.merge(*streams, key=lambda pair: getattr(pair[1], order), reverse=live)
    shown = list(itertools.islice(merged, limit))
    for shard, (items, exhausted) in fetched.items():
        taken = [item for s, item in shown if s == shard]
        if taken:
            last = taken[-1]
            kind = "N" if live else "S"
            positions[shard] = {
                "space_id": {"S": last.space_id},
                "list_shard": {"S": shard},
                order: {kind: str(getattr(last, order))},
            }
        if exhausted and len(taken) == len(items):
            positions[shard] = DONE
    more = any(positions.get(shard) != DONE for shard in shards)
    return {
        "data": [public_space(item) for _, item in shown],
        "next_cursor": encode_cursor(positions) if more else None,
    }


def list_page(state: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """Live spaces, largest audience first; or scheduled spaces, soonest first."""
    return _merged_page(_listable_state(state), limit, cursor)


def search(query: str, state: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """Title search within one state: Queries on the state's index partitions with a filter, never a Scan."""
    needle = " ".join(query.split()).lower()
    if not 1 <= len(needle) <= 70:
        raise CommandError(ErrorCode.BAD_REQUEST, "query must be 1-70 characters")
    return _merged_page(
        _listable_state(state), limit, cursor, filter_condition=Space.title_lc.contains(needle), page_size=100
    )


def by_creator(user_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
    results = Space.by_creator.query(
        user_id,
        scan_index_forward=False,
        limit=limit,
        last_evaluated_key=decode_cursor(cursor, _CREATOR_INDEX_KEYS),
    )
    return _page(results)
