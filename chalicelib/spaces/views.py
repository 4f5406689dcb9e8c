"""What clients see of a space: the public resource, a joiner's snapshot, lists and search."""

from __future__ import annotations

from typing import Any

from chalicelib import counters
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Member, Space
from chalicelib.rules import MODERATORS, Role, SpaceState
from chalicelib.schemas import decode_cursor, encode_cursor
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
        "scheduled_start": space.scheduled_start,
        "started_at": space.started_at,
        "ended_at": space.ended_at,
        "created_at": space.created_at,
        "updated_at": space.updated_at,
        "lang": space.lang,
        "speak_policy": space.speak_policy,
        "handover": bool(space.handover),
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

_STATE_INDEX_KEYS = {"space_id", "state", "participant_count"}
_SCHEDULE_INDEX_KEYS = {"space_id", "state", "scheduled_start"}
_CREATOR_INDEX_KEYS = {"space_id", "creator_id", "created_at"}


def _listable_state(state: str) -> str:
    if state not in (SpaceState.LIVE, SpaceState.SCHEDULED):
        raise CommandError(ErrorCode.BAD_REQUEST, "state must be live or scheduled")
    return state


def _page(results: Any) -> dict[str, Any]:
    items = [public_space(s) for s in results]
    return {"data": items, "next_cursor": encode_cursor(results.last_evaluated_key)}


def list_page(state: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """Live spaces, largest audience first; or scheduled spaces, soonest first."""
    if _listable_state(state) == SpaceState.LIVE:
        results = Space.by_state.query(
            state,
            scan_index_forward=False,
            limit=limit,
            last_evaluated_key=decode_cursor(cursor, _STATE_INDEX_KEYS),
        )
    else:
        results = Space.by_schedule.query(
            state,
            scan_index_forward=True,
            limit=limit,
            last_evaluated_key=decode_cursor(cursor, _SCHEDULE_INDEX_KEYS),
        )
    return _page(results)


def search(query: str, state: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """Title search within one state: a Query on the state index with a filter, never a Scan."""
    needle = " ".join(query.split()).lower()
    if not 1 <= len(needle) <= 70:
        raise CommandError(ErrorCode.BAD_REQUEST, "query must be 1-70 characters")
    index = Space.by_state if _listable_state(state) == SpaceState.LIVE else Space.by_schedule
    keys = _STATE_INDEX_KEYS if index is Space.by_state else _SCHEDULE_INDEX_KEYS
    results = index.query(
        state,
        filter_condition=Space.title_lc.contains(needle),
        scan_index_forward=index is not Space.by_state,
        limit=limit,
        page_size=100,
        last_evaluated_key=decode_cursor(cursor, keys),
    )
    return _page(results)


def by_creator(user_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
    results = Space.by_creator.query(
        user_id,
        scan_index_forward=False,
        limit=limit,
        last_evaluated_key=decode_cursor(cursor, _CREATOR_INDEX_KEYS),
    )
    return _page(results)
