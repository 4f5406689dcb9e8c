"""The stage value: conversion at the store edge and every change, without AWS."""

from __future__ import annotations

import pytest

from chalicelib.media import RECEIVE, SEND_RECEIVE
from chalicelib.rules import Role
from chalicelib.spaces.stage import LISTENER_AUDIO, Stage, StageEntry, audio_of, new_space_stage

STORED = {
    "ada": {
        "role": "host",
        "present": True,
        "muted": False,
        "muted_by": None,
        "since": "2026-01-01T00:00:00.000000Z",
        "connection_id": "c-ada",
    },
    "bob": {
        "role": "cohost",
        "present": False,
        "muted": True,
        "muted_by": "self",
        "since": "2026-01-01T00:00:02.000000Z",
        "connection_id": None,
    },
    "cem": {
        "role": "speaker",
        "present": True,
        "muted": True,
        "muted_by": "host",
        "since": "2026-01-01T00:00:01.000000Z",
        "connection_id": "c-cem",
    },
}


def test_the_stored_format_round_trips_unchanged() -> None:
    # GIVEN a stage as DynamoDB stores it
    # WHEN it is read into the typed value and written back
    stored = Stage.from_stored(STORED).to_stored()
    # THEN the attribute is byte for byte what it was
    assert stored == STORED


def test_an_empty_or_missing_stage_reads_as_empty() -> None:
    assert len(Stage.from_stored(None)) == 0
    assert Stage.from_stored({}).to_stored() == {}


def test_public_view_orders_host_cohosts_speakers_by_seniority() -> None:
    # GIVEN a stage with a host, a co-host and a speaker who came before the co-host
    stage = Stage.from_stored(STORED)
    # WHEN its public view is built
    public = stage.public()
    # THEN the order is by role first, then by time on stage; no connection ids leak
    assert [e["user_id"] for e in public] == ["ada", "bob", "cem"]
    assert public[2] == {
        "user_id": "cem",
        "role": "speaker",
        "present": True,
        "muted": True,
        "muted_by": "host",
    }


def test_reading_roles_moderators_and_counts() -> None:
    stage = Stage.from_stored(STORED)
    assert stage.role_of("cem") == Role.SPEAKER
    assert stage.role_of("dan") is None
    assert stage.moderators() == ["ada", "bob"]
    assert stage.speakers() == ["cem"]
    assert stage.counts().on_stage == 3 and stage.counts().cohosts == 1
    assert stage.present_count() == 2
    # only present moderators with a socket are told about hands
    assert stage.moderator_connections() == ["c-ada"]
    assert stage.moderator_connections(exclude={"ada"}) == []


def test_promote_seats_a_listener_muted_by_themself() -> None:
    # GIVEN a stage without dan
    stage = Stage.from_stored(STORED)
    # WHEN dan is promoted to speaker
    after = stage.promote("dan", Role.SPEAKER, "c-dan", since="t")
    # THEN dan sits present, self-muted, with his connection; the old value is untouched
    assert after.get("dan") == StageEntry(Role.SPEAKER, True, True, "self", "t", "c-dan")
    assert "dan" not in stage


def test_demote_removes_the_seat_and_is_safe_for_someone_absent() -> None:
    stage = Stage.from_stored(STORED)
    assert "cem" not in stage.demote("cem")
    assert stage.demote("nobody").to_stored() == STORED


def test_recast_keeps_the_seat_and_its_seniority() -> None:
    stage = Stage.from_stored(STORED)
    after = stage.recast("cem", Role.COHOST)
    entry = after.get("cem")
    assert entry is not None
    assert entry.role == Role.COHOST and entry.since == STORED["cem"]["since"] and entry.muted_by == "host"


def test_a_change_to_someone_not_on_stage_is_a_bug_not_a_silent_no_op() -> None:
    with pytest.raises(KeyError):
        Stage.from_stored(STORED).recast("dan", Role.COHOST)


@pytest.mark.parametrize(
    ("muted", "by_host", "muted_by"),
    [(True, False, "self"), (True, True, "host"), (False, False, None), (False, True, None)],
)
def test_mute_records_who_muted_whom(muted: bool, by_host: bool, muted_by: str | None) -> None:
    after = Stage.from_stored(STORED).mute("ada", muted, by_host=by_host)
    entry = after.get("ada")
    assert entry is not None and entry.muted is muted and entry.muted_by == muted_by


def test_mark_away_and_back() -> None:
    stage = Stage.from_stored(STORED)
    away = stage.mark_away("ada").get("ada")
    assert away is not None and not away.present and away.connection_id is None
    back = stage.mark_away("ada").mark_back("ada", "c-new").get("ada")
    assert back is not None and back.present and back.connection_id == "c-new" and back.role == Role.HOST


def test_hand_over_seats_the_cohost_as_host_and_drops_the_old_host() -> None:
    after = Stage.from_stored(STORED).hand_over("ada", "bob")
    assert "ada" not in after
    assert after.role_of("bob") == Role.HOST


def test_next_host_is_the_longest_serving_present_cohost() -> None:
    # GIVEN two present co-hosts and one away who has served longest
    stage = Stage(
        {
            "ada": StageEntry(Role.HOST, present=False, since="1"),
            "bob": StageEntry(Role.COHOST, since="3"),
            "cem": StageEntry(Role.COHOST, since="2"),
            "dan": StageEntry(Role.COHOST, present=False, since="0"),
            "eve": StageEntry(Role.SPEAKER, since="0"),
        }
    )
    # WHEN the host's successor is chosen
    # THEN it is the present co-host on stage longest; never a speaker, never someone away
    assert stage.next_host("ada") == "cem"
    assert stage.demote("bob").demote("cem").next_host("ada") is None


def test_a_new_space_has_its_host_on_stage_away_until_they_join() -> None:
    entry = new_space_stage("ada", "t").get("ada")
    assert entry == StageEntry(Role.HOST, present=False, muted=True, muted_by="self", since="t")


@pytest.mark.parametrize(
    ("entry", "audio"),
    [
        (None, RECEIVE),
        (StageEntry(Role.SPEAKER), SEND_RECEIVE),  # a self mute is the client's business
        (StageEntry(Role.SPEAKER, muted_by="host"), RECEIVE),  # a host mute is enforced
        (StageEntry(Role.HOST, muted=False, muted_by=None), SEND_RECEIVE),
    ],
)
def test_the_audio_capability_of_a_seat(entry: StageEntry | None, audio: str) -> None:
    assert audio_of(entry) == audio
    assert LISTENER_AUDIO == RECEIVE


# -- the audio state Chime's attendee events report (spaces/presence.py) --------------


def test_an_audio_state_is_shown_newest_first_and_kept_in_the_stored_format() -> None:
    stage = Stage.from_stored(STORED)
    joined = stage.with_audio("cem", "joined", 1_000)
    assert joined is not None
    public = {e["user_id"]: e for e in joined.public()}
    assert public["cem"]["audio_state"] == "joined"
    assert "audio_state" not in public["ada"]  # never reported: absent, as before
    assert Stage.from_stored(joined.to_stored()) == joined  # kept with its time
    dropped = joined.with_audio("cem", "dropped", 2_000)
    assert dropped is not None and dropped.get("cem").audio_state == "dropped"  # type: ignore[union-attr]
    # older, repeated, or not on stage: nothing to write
    assert dropped.with_audio("cem", "joined", 1_500) is None
    assert dropped.with_audio("cem", "dropped", 2_000) is None
    assert stage.with_audio("zoe", "joined", 3_000) is None


def test_a_promotion_carries_the_listeners_audio_and_another_attendee_forgets_it() -> None:
    stage = Stage.from_stored(STORED).promote("dan", Role.SPEAKER, "c-dan", "t", audio=("joined", 5))
    assert stage.get("dan") == StageEntry(
        Role.SPEAKER, since="t", connection_id="c-dan", audio_state="joined", audio_at=5
    )
    same = stage.mark_back("dan", "c-dan2")
    assert same.get("dan").audio_state == "joined"  # type: ignore[union-attr]  # same attendee: unchanged
    fresh = stage.mark_back("dan", "c-dan3", new_attendee=True)
    assert (fresh.get("dan").audio_state, fresh.get("dan").audio_at) == (None, None)  # type: ignore[union-attr]
