"""The stage as a value: who is on it, in which role, present or away, muted by whom.

Pure: no AWS, no clock of its own (callers pass `since`). Every change returns a new
Stage. The store converts to and from the stored attribute (a JSON map on the space
item: user_id -> {role, present, muted, muted_by, since, connection_id, audio_state, audio_at}).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from chalicelib.media import audio_capability
from chalicelib.rules import MODERATORS, Role, StageCount

MutedBy = Literal["self", "host"]
_ORDER = {Role.HOST: 0, Role.COHOST: 1, Role.SPEAKER: 2}


@dataclass(frozen=True)
class StageEntry:
    role: Role
    present: bool = True
    muted: bool = True
    muted_by: MutedBy | None = "self"
    since: str = ""
    connection_id: str | None = None
    # Their audio connection as Chime's attendee events last said (joined, left, dropped; None:
    # not heard yet) and that event's timestamp (epoch ms): a host sees who is really connected.
    audio_state: str | None = None
    audio_at: int | None = None

    @classmethod
    def from_stored(cls, raw: Mapping[str, Any]) -> StageEntry:
        return cls(
            role=Role(raw["role"]),
            present=bool(raw.get("present")),
            muted=bool(raw.get("muted")),
            muted_by=raw.get("muted_by"),
            since=raw.get("since") or "",
            connection_id=raw.get("connection_id"),
            audio_state=raw.get("audio_state"),
            audio_at=int(raw["audio_at"]) if raw.get("audio_at") is not None else None,
        )

    def to_stored(self) -> dict[str, Any]:
        stored: dict[str, Any] = {
            "role": self.role.value,
            "present": self.present,
            "muted": self.muted,
            "muted_by": self.muted_by,
            "since": self.since,
            "connection_id": self.connection_id,
        }
        if self.audio_state is not None:
            stored.update(audio_state=self.audio_state, audio_at=self.audio_at)
        return stored

    @property
    def is_moderator(self) -> bool:
        return self.role in MODERATORS

    @property
    def audio(self) -> str:
        """The media capability this seat gets: a host mute is enforced, a self mute is not."""
        return audio_capability(self.role, self.muted_by == "host")


LISTENER_AUDIO = audio_capability(Role.LISTENER, False)


def audio_of(entry: StageEntry | None) -> str:
    return LISTENER_AUDIO if entry is None else entry.audio


@dataclass(frozen=True)
class Stage:
    entries: Mapping[str, StageEntry]

    # -- conversion at the store edge --

    @classmethod
    def from_stored(cls, raw: Mapping[str, Mapping[str, Any]] | None) -> Stage:
        return cls({uid: StageEntry.from_stored(e) for uid, e in (raw or {}).items()})

    def to_stored(self) -> dict[str, dict[str, Any]]:
        return {uid: e.to_stored() for uid, e in self.entries.items()}

    # -- reading --

    def get(self, user_id: str) -> StageEntry | None:
        return self.entries.get(user_id)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def role_of(self, user_id: str) -> Role | None:
        entry = self.entries.get(user_id)
        return entry.role if entry else None

    def moderators(self) -> list[str]:
        return [uid for uid, e in self.entries.items() if e.is_moderator]

    def speakers(self) -> list[str]:
        return [uid for uid, e in self.entries.items() if e.role == Role.SPEAKER]

    def moderator_connections(self, exclude: set[str] | None = None) -> list[str]:
        skip = exclude or set()
        return [
            e.connection_id
            for uid, e in self.entries.items()
            if e.is_moderator and e.present and e.connection_id and uid not in skip
        ]

    def counts(self) -> StageCount:
        """What the seat limits need."""
        return StageCount(
            on_stage=len(self.entries), cohosts=sum(1 for e in self.entries.values() if e.role == Role.COHOST)
        )

    def present_count(self) -> int:
        return sum(1 for e in self.entries.values() if e.present)

    def next_host(self, leaving_host: str) -> str | None:
        """Who takes over when the host does not come back: the longest-serving present co-host."""
        candidates = [
            (e.since, uid)
            for uid, e in self.entries.items()
            if uid != leaving_host and e.role == Role.COHOST and e.present
        ]
        return min(candidates)[1] if candidates else None

    def public(self) -> list[dict[str, Any]]:
        """The public view: host, co-hosts, speakers, each by seniority."""
        ordered = sorted(self.entries.items(), key=lambda kv: (_ORDER[kv[1].role], kv[1].since))
        return [_public(uid, e) for uid, e in ordered]

    # -- changes (each returns a new Stage) --

    def _with(self, user_id: str, entry: StageEntry | None) -> Stage:
        entries = dict(self.entries)
        if entry is None:
            entries.pop(user_id, None)
        else:
            entries[user_id] = entry
        return Stage(entries)

    def _entry(self, user_id: str) -> StageEntry:
        entry = self.entries.get(user_id)
        if entry is None:
            raise KeyError(f"{user_id} is not on stage")
        return entry

    def promote(
        self,
        user_id: str,
        role: Role,
        connection_id: str | None,
        since: str,
        *,
        audio: tuple[str | None, int | None] = (None, None),
    ) -> Stage:
        """A listener takes a seat: present, muted by themself until they unmute; `audio`: their
        audio state as their member item has it (the same attendee stays)."""
        state, at = audio
        return self._with(
            user_id,
            StageEntry(role, since=since, connection_id=connection_id, audio_state=state, audio_at=at),
        )

    def demote(self, user_id: str) -> Stage:
        """Off the stage (back to the audience, or out of the space)."""
        return self._with(user_id, None)

    def recast(self, user_id: str, role: Role) -> Stage:
        """Another stage role (speaker <-> co-host); the seat and its seniority stay."""
        return self._with(user_id, replace(self._entry(user_id), role=role))

    def mute(self, user_id: str, muted: bool, *, by_host: bool) -> Stage:
        by: MutedBy | None = ("host" if by_host else "self") if muted else None
        return self._with(user_id, replace(self._entry(user_id), muted=muted, muted_by=by))

    def mark_away(self, user_id: str) -> Stage:
        """A host or co-host whose socket went keeps the seat, away."""
        return self._with(user_id, replace(self._entry(user_id), present=False, connection_id=None))

    def mark_back(self, user_id: str, connection_id: str, *, new_attendee: bool = False) -> Stage:
        """Back on a socket; with another attendee, whose audio nobody has heard of yet."""
        entry = replace(self._entry(user_id), present=True, connection_id=connection_id)
        if new_attendee:
            entry = replace(entry, audio_state=None, audio_at=None)
        return self._with(user_id, entry)

    def with_audio(self, user_id: str, state: str, at_ms: int) -> Stage | None:
        """Their audio state from one of Chime's attendee events, or None when that changes
        nothing on the stage (not on it, or the entry has a newer or the same event already)."""
        entry = self.entries.get(user_id)
        if entry is None or (entry.audio_at is not None and entry.audio_at >= at_ms):
            return None
        return self._with(user_id, replace(entry, audio_state=state, audio_at=at_ms))

    def hand_over(self, old_host: str, successor: str) -> Stage:
        """The co-host takes the host's seat; the old host leaves the stage."""
        return self.demote(old_host)._with(successor, replace(self._entry(successor), role=Role.HOST))


def _public(user_id: str, e: StageEntry) -> dict[str, Any]:
    view: dict[str, Any] = {
        "user_id": user_id,
        "role": e.role.value,
        "present": e.present,
        "muted": e.muted,
        "muted_by": e.muted_by,
    }
    if e.audio_state is not None:
        view["audio_state"] = e.audio_state
    return view


def new_space_stage(host_id: str, since: str) -> Stage:
    """A new space: its host on stage, away until they join."""
    return Stage({host_id: StageEntry(Role.HOST, present=False, since=since)})
