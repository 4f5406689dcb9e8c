"""Spaces over REST: create and schedule, read, list, search, start/cancel/end, follows."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
from conftest import (
    Clients,
    chime,
    chime_rules,
    create_space,
    get_space,
    http,
    iso,
    local_media,
    token,
    uid,
    until_rest,
)
from conftest import (
    refused as ws_refused,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_scan")]  # no Scan during any test here

X_FIELDS = {
    "id",
    "state",
    "title",
    "creator_id",
    "host_ids",
    "speaker_ids",
    "invited_user_ids",
    "participant_count",
    "scheduled_start",
    "started_at",
    "ended_at",
    "created_at",
    "updated_at",
    "lang",
}


def refused(status: int, body: Any, want_status: int, code: str) -> None:
    assert status == want_status, (status, body)
    assert body["code"] == code and body["message"], body


def walk(stack: Any, path: str, user: str = "viewer") -> list[list[dict[str, Any]]]:
    """Every page of a paginated list, following next_cursor."""
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    sep = "&" if "?" in path else "?"
    while True:
        url = path + (f"{sep}cursor={quote(cursor)}" if cursor else "")
        status, body = http(stack, "GET", url, token=token(stack, user))
        assert status == 200, (url, status, body)
        assert set(body) == {"data", "next_cursor"}, body
        pages.append(body["data"])
        cursor = body["next_cursor"]
        if not cursor:
            return pages
        assert len(pages) < 500, "pagination does not end"


def flat(pages: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [item for page in pages for item in page]


# -- create and read -------------------------------------------------------------


def test_create_a_live_space_and_read_it_back_with_x_api_fields(stack) -> None:
    host = uid("host")
    space = create_space(stack, host, "  Morning   coffee  ", lang="tr", speak_policy="following")
    assert set(space) >= X_FIELDS
    assert space["state"] == "live"
    assert space["title"] == "Morning coffee"  # whitespace collapsed
    assert space["creator_id"] == host and space["host_ids"] == [host]
    assert space["speaker_ids"] == [] and space["invited_user_ids"] == []
    assert space["participant_count"] == 0
    assert space["lang"] == "tr" and space["speak_policy"] == "following"
    assert space["scheduled_start"] is None and space["ended_at"] is None
    assert space["started_at"] and space["created_at"] and space["updated_at"]
    read = get_space(stack, space["id"])
    assert {k: read[k] for k in X_FIELDS} == {k: space[k] for k in X_FIELDS}


@pytest.mark.parametrize("policy", ["everyone", "following", "invited"])
def test_every_speak_policy_is_accepted(stack, policy: str) -> None:
    space = create_space(stack, uid("host"), speak_policy=policy)
    assert get_space(stack, space["id"])["speak_policy"] == policy


@pytest.mark.parametrize("title", ["x", "t" * 70, "ünïcödé 🎙️ title"])
def test_titles_of_1_to_70_characters_are_accepted(stack, title: str) -> None:
    assert create_space(stack, uid("host"), title)["title"] == title


@pytest.mark.parametrize(
    "body",
    [
        {"title": ""},
        {"title": "   "},
        {"title": "t" * 71},
        {},
        {"title": 42},
        {"title": None},
        {"title": "ok", "speak_policy": "friends"},
        {"title": "ok", "lang": "english!"},
        {"title": "ok", "unknown": 1},
        {"title": "ok", "handover": {"a": 1}},
        ["title"],
    ],
    ids=lambda b: json.dumps(b)[:30],
)
def test_invalid_bodies_are_400_bad_request(stack, body: Any) -> None:
    status, answer = http(stack, "POST", "/spaces", body, token=token(stack, uid("host")))
    refused(status, answer, 400, "bad_request")


def test_a_body_that_is_not_json_is_400(stack) -> None:
    status, answer = http(stack, "POST", "/spaces", b"{not json", token=token(stack, uid("host")))
    refused(status, answer, 400, "bad_request")


def test_scheduled_start_up_to_30_days_ahead(stack) -> None:
    host = uid("host")
    when = iso(timedelta(hours=1))
    soon = create_space(stack, host, scheduled_start=when)
    assert soon["state"] == "scheduled" and soon["started_at"] is None
    assert soon["scheduled_start"] == when
    assert get_space(stack, soon["id"])["scheduled_start"] == when
    far = create_space(stack, host, scheduled_start=iso(timedelta(days=29, hours=23)))
    assert far["state"] == "scheduled"


def test_scheduled_start_with_an_offset_is_stored_in_utc(stack) -> None:
    when = (datetime.now(tz=UTC) + timedelta(days=2)).replace(microsecond=0)
    local = when.astimezone(timezone(timedelta(hours=3))).isoformat()
    assert local.endswith("+03:00")
    space = create_space(stack, uid("host"), scheduled_start=local)
    assert space["scheduled_start"] == when.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    "when",
    [
        iso(timedelta(minutes=-5)),  # past
        iso(timedelta(days=30, hours=1)),  # too far
        iso(timedelta(days=1))[:-1],  # naive: no time zone
        "tomorrow",
        12345,
    ],
    ids=["past", "too_far", "no_time_zone", "words", "number"],  # stable: pytest-xdist workers must agree
)
def test_bad_scheduled_start_is_400(stack, when: Any) -> None:
    status, body = http(
        stack, "POST", "/spaces", {"title": "later", "scheduled_start": when}, token=token(stack, uid("h"))
    )
    refused(status, body, 400, "bad_request")


def test_unknown_or_malformed_space_ids_are_404(stack) -> None:
    tok = token(stack, uid("user"))
    for path in ("/spaces/doesnotexist00", "/spaces/bad%20id", "/spaces/" + "a" * 65):
        status, body = http(stack, "GET", path, token=tok)
        refused(status, body, 404, "not_found")
    for action in ("start", "cancel", "end"):
        status, body = http(stack, "POST", f"/spaces/doesnotexist00/{action}", token=tok)
        refused(status, body, 404, "not_found")


def test_spaces_routes_need_a_token(stack) -> None:
    space = create_space(stack, uid("host"))
    for method, path in (
        ("POST", "/spaces"),
        ("GET", "/spaces"),
        ("GET", f"/spaces/{space['id']}"),
        ("POST", f"/spaces/{space['id']}/end"),
        ("GET", "/me/follows"),
    ):
        status, body = http(stack, method, path, {"title": "x"} if method == "POST" else None)
        refused(status, body, 401, "unauthorized")
    assert get_space(stack, space["id"])["state"] == "live"


# -- lifecycle -------------------------------------------------------------------


def test_two_concurrent_starts_keep_the_live_meeting(stack) -> None:
    """Both starts read the scheduled space and ask Chime for the meeting with one ClientRequestToken
    (the same meeting; with CreateMeeting taking 0.3 s the second may get ConflictException and ask
    again). One records it; the other must not delete it, as the loser used to: the space would be
    live with a dead meeting and every join would fail."""
    from concurrent.futures import ThreadPoolExecutor

    host = uid("host")
    sid = create_space(stack, host, scheduled_start=iso(timedelta(days=1)))["id"]
    hosts = token(stack, host)
    with chime_rules(create_meeting_seconds=0.3), ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: http(stack, "POST", f"/spaces/{sid}/start", token=hosts), range(2)))
        deletes = chime().count("DeleteMeeting")
    assert [status for status, _ in answers] == [200, 200], answers
    meeting_id = stored_meeting(sid)
    assert {body["id"] for _, body in answers} == {sid}
    assert local_media().meeting_exists(meeting_id)
    assert deletes == 0


def stored_meeting(space_id: str) -> str:
    from conftest import stored_space

    meeting_id: str = stored_space(space_id).meeting_id
    return meeting_id


def test_start_cancel_and_end_are_for_the_host_and_follow_the_state(stack) -> None:
    host, other = uid("host"), uid("other")
    space = create_space(stack, host, scheduled_start=iso(timedelta(days=1)))
    sid = space["id"]
    hosts, others = token(stack, host), token(stack, other)

    refused(*http(stack, "POST", f"/spaces/{sid}/start", token=others), 403, "not_allowed")
    refused(*http(stack, "POST", f"/spaces/{sid}/end", token=others), 403, "not_allowed")
    refused(*http(stack, "POST", f"/spaces/{sid}/cancel", token=others), 403, "not_allowed")
    assert get_space(stack, sid)["state"] == "scheduled"

    status, started = http(stack, "POST", f"/spaces/{sid}/start", token=hosts)
    assert status == 200 and started["state"] == "live" and started["started_at"], started
    refused(*http(stack, "POST", f"/spaces/{sid}/start", token=hosts), 409, "conflict")
    refused(*http(stack, "POST", f"/spaces/{sid}/cancel", token=hosts), 409, "conflict")

    status, ended = http(stack, "POST", f"/spaces/{sid}/end", token=hosts)
    assert status == 200 and ended["state"] == "ended" and ended["ended_at"], ended
    refused(*http(stack, "POST", f"/spaces/{sid}/end", token=hosts), 409, "space_ended")
    refused(*http(stack, "POST", f"/spaces/{sid}/start", token=hosts), 409, "space_ended")
    refused(*http(stack, "POST", f"/spaces/{sid}/cancel", token=hosts), 409, "conflict")
    assert get_space(stack, sid)["state"] == "ended"


def test_cancel_a_scheduled_space(stack) -> None:
    host = uid("host")
    sid = create_space(stack, host, scheduled_start=iso(timedelta(hours=5)))["id"]
    status, cancelled = http(stack, "POST", f"/spaces/{sid}/cancel", token=token(stack, host))
    assert status == 200 and cancelled["state"] == "ended" and cancelled["ended_at"], cancelled
    refused(*http(stack, "POST", f"/spaces/{sid}/start", token=token(stack, host)), 409, "space_ended")
    scheduled = flat(walk(stack, "/spaces?state=scheduled&limit=100"))
    assert sid not in {s["id"] for s in scheduled}


async def test_a_scheduled_space_cannot_be_joined_until_it_starts(stack, clients: Clients) -> None:
    host = uid("host")
    sid = create_space(stack, host, scheduled_start=iso(timedelta(hours=2)))["id"]
    client = await clients.open(host)
    await ws_refused(client.send("space.join", space_id=sid), "not_allowed")
    status, _ = await asyncio.to_thread(http, stack, "POST", f"/spaces/{sid}/start", None, token(stack, host))
    assert status == 200
    snapshot = await client.send("space.join", space_id=sid)
    assert snapshot["role"] == "host" and snapshot["media"]["Meeting"]["MeetingId"]


# -- lists -----------------------------------------------------------------------


async def test_live_spaces_largest_audience_first_with_a_cursor(stack, clients: Clients) -> None:
    tag = uid("live")
    sizes = {"small": 0, "large": 3, "medium": 1}  # listeners besides the host
    spaces = {name: create_space(stack, uid("host"), f"{name} {tag}") for name in sizes}
    for name, listeners in sizes.items():
        sid = spaces[name]["id"]
        await clients.join(spaces[name]["creator_id"], sid)
        for _ in range(listeners):
            await clients.join(uid("l"), sid)
    for name, listeners in sizes.items():
        want = listeners + 1
        await until_rest(
            stack, spaces[name]["id"], lambda s, w=want: s["participant_count"] == w, f"{name} count"
        )
    pages = walk(stack, "/spaces?state=live&limit=3")
    for page in pages:
        counts = [s["participant_count"] for s in page]
        assert counts == sorted(counts, reverse=True), counts
        assert all(s["state"] == "live" for s in page)
        assert len(page) <= 3
    mine = [s["title"].split()[0] for s in flat(pages) if s["title"].endswith(tag)]
    assert mine == ["large", "medium", "small"]


def test_scheduled_spaces_soonest_first_with_a_cursor(stack) -> None:
    tag = uid("sched")
    for days in (3, 1, 2):
        create_space(stack, uid("host"), f"in {days} days {tag}", scheduled_start=iso(timedelta(days=days)))
    pages = walk(stack, "/spaces?state=scheduled&limit=2")
    assert all(len(page) <= 2 for page in pages)
    everything = flat(pages)
    assert all(s["state"] == "scheduled" for s in everything)
    starts = [s["scheduled_start"] for s in everything]
    assert starts == sorted(starts)
    assert [s["title"] for s in everything if s["title"].endswith(tag)] == [
        f"in {d} days {tag}" for d in (1, 2, 3)
    ]


def test_search_by_title_within_a_state(stack) -> None:
    tag = uid("q")
    host = uid("host")
    create_space(stack, host, f"Jazz {tag} night")
    create_space(stack, host, f"late JAZZ {tag} brunch")
    create_space(stack, host, f"Rock {tag}")
    create_space(stack, host, f"jazz {tag} tomorrow", scheduled_start=iso(timedelta(days=1)))

    live = flat(walk(stack, f"/spaces/search?query={quote('jazz ' + tag)}&state=live&limit=1"))
    assert sorted(s["title"] for s in live) == [f"Jazz {tag} night", f"late JAZZ {tag} brunch"]
    scheduled = flat(walk(stack, f"/spaces/search?query={quote(tag.upper())}&state=scheduled"))
    assert [s["title"] for s in scheduled] == [f"jazz {tag} tomorrow"]
    default_state = flat(walk(stack, f"/spaces/search?query={tag}"))
    assert len(default_state) == 3
    assert flat(walk(stack, f"/spaces/search?query={uid('nothing')}")) == []

    tok = token(stack, "viewer")
    for query in ("", "%20%20", "q" * 71):
        refused(*http(stack, "GET", f"/spaces/search?query={query}", token=tok), 400, "bad_request")
    refused(*http(stack, "GET", f"/spaces/search?query={tag}&state=ended", token=tok), 400, "bad_request")


def test_spaces_by_creator_newest_first(stack) -> None:
    creator, other = uid("creator"), uid("other")
    made = [
        create_space(stack, creator, "first")["id"],
        create_space(stack, creator, "second", scheduled_start=iso(timedelta(days=1)))["id"],
        create_space(stack, creator, "third")["id"],
    ]
    create_space(stack, other, "not mine")
    pages = walk(stack, f"/spaces/by/creator/{creator}?limit=2")
    assert [len(p) for p in pages][:2] == [2, 1]
    assert [s["id"] for s in flat(pages)] == made[::-1]
    assert all(s["creator_id"] == creator for s in flat(pages))
    assert flat(walk(stack, f"/spaces/by/creator/{uid('nobody')}")) == []
    status, body = http(stack, "GET", "/spaces/by/creator/bad%20user", token=token(stack, "v"))
    refused(status, body, 404, "not_found")


def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "path",
    [
        "/spaces?state=live",
        "/spaces?state=scheduled",
        "/spaces/search?query=jazz",
        "/spaces/by/creator/someone",
        "/me/follows",
    ],
)
@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor!",
        "e30",  # {}
        _b64([1, 2]),
        _b64({"space_id": {"S": "x"}}),
        _b64({"space_id": {"S": "x"}, "state": {"BOOL": True}, "participant_count": {"N": "1"}}),
    ],
    ids=["garbage", "empty-object", "array", "wrong-keys", "wrong-types"],
)
def test_bad_cursors_are_400(stack, path: str, cursor: str) -> None:
    sep = "&" if "?" in path else "?"
    status, body = http(stack, "GET", f"{path}{sep}cursor={cursor}", token=token(stack, "v"))
    refused(status, body, 400, "bad_request")


@pytest.mark.parametrize("query", ["state=ended", "state=bogus", "limit=0", "limit=101", "limit=ten"])
def test_bad_list_parameters_are_400(stack, query: str) -> None:
    refused(*http(stack, "GET", f"/spaces?{query}", token=token(stack, "v")), 400, "bad_request")


# -- follows ---------------------------------------------------------------------


def test_follow_list_and_unfollow(stack) -> None:
    me, ann, bob = uid("me"), uid("ann"), uid("bob")
    tok = token(stack, me)
    for other in (ann, bob):
        status, body = http(stack, "PUT", f"/me/follows/{other}", token=tok)
        assert status == 200 and body["user_id"] == other and body["created_at"], body
    status, _ = http(stack, "PUT", f"/me/follows/{ann}", token=tok)  # idempotent
    assert status == 200
    pages = walk(stack, "/me/follows?limit=1", user=me)
    assert sorted(f["user_id"] for f in flat(pages)) == sorted([ann, bob])
    assert len(pages) >= 2

    status, body = http(stack, "DELETE", f"/me/follows/{ann}", token=tok)
    assert status == 204, body
    assert [f["user_id"] for f in flat(walk(stack, "/me/follows", user=me))] == [bob]
    assert flat(walk(stack, "/me/follows", user=ann)) == []  # follows are one-way

    refused(*http(stack, "PUT", f"/me/follows/{me}", token=tok), 400, "bad_request")
    refused(*http(stack, "PUT", "/me/follows/bad%20id", token=tok), 404, "not_found")
