"""Who may do what in a space. Pure functions over plain data: no AWS, no I/O.

X Spaces is the reference: one host, up to two co-hosts, at most 13 people on
stage including them, listeners without a fixed limit. A moderator acts only
on people below them; only the host manages co-hosts, settings and the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, get_args

from chalicelib.errors import CommandError, ErrorCode

MAX_COHOSTS = 2
MAX_STAGE = 13
TITLE_MAX = 70
REACTIONS = frozenset({"👏", "❤️", "😂", "😮", "😢", "🔥", "💯", "👍", "👎", "🙏", "🎉", "✋"})


class Role(StrEnum):
    HOST = "host"
    COHOST = "cohost"
    SPEAKER = "speaker"
    LISTENER = "listener"


class SpaceState(StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


class SpeakPolicy(StrEnum):
    EVERYONE = "everyone"
    FOLLOWING = "following"  # people the host follows
    INVITED = "invited"  # only people a moderator invites


# The same values for pydantic models (a Literal keeps the JSON schemas of the API documents as they are).
SpeakPolicyName = Literal["everyone", "following", "invited"]
assert set(get_args(SpeakPolicyName)) == set(SpeakPolicy)


RANK = {Role.HOST: 3, Role.COHOST: 2, Role.SPEAKER: 1, Role.LISTENER: 0}
MODERATORS = frozenset({Role.HOST, Role.COHOST})  # the one place that says who moderates
ON_STAGE = frozenset({Role.HOST, Role.COHOST, Role.SPEAKER})


@dataclass(frozen=True)
class StageCount:
    on_stage: int  # host + co-hosts + speakers
    cohosts: int


def refuse(code: ErrorCode, message: str) -> CommandError:
    return CommandError(code, message)


def require_live(state: str) -> None:
    if state == SpaceState.ENDED:
        raise refuse(ErrorCode.SPACE_ENDED, "the space has ended")
    if state != SpaceState.LIVE:
        raise refuse(ErrorCode.NOT_ALLOWED, "the space has not started")


def require_moderator(actor: Role) -> None:
    if actor not in MODERATORS:
        raise refuse(ErrorCode.NOT_ALLOWED, "only the host or a co-host can do that")


def require_host(actor: Role) -> None:
    if actor != Role.HOST:
        raise refuse(ErrorCode.NOT_ALLOWED, "only the host can do that")


def require_above(actor: Role, target: Role) -> None:
    """Moderators act only on people below them (a co-host cannot touch the host or a co-host)."""
    if RANK[actor] <= RANK[target]:
        raise refuse(ErrorCode.NOT_ALLOWED, "you can only do that to someone below you")


def require_seat(count: StageCount, *, adding_cohost: bool = False, from_listener: bool = True) -> None:
    if from_listener and count.on_stage >= MAX_STAGE:
        raise refuse(ErrorCode.LIMIT_REACHED, f"the stage is full ({MAX_STAGE} including hosts)")
    if adding_cohost and count.cohosts >= MAX_COHOSTS:
        raise refuse(ErrorCode.LIMIT_REACHED, f"a space has at most {MAX_COHOSTS} co-hosts")


def may_request_to_speak(policy: SpeakPolicy, *, host_follows_caller: bool) -> bool:
    if policy == SpeakPolicy.EVERYONE:
        return True
    if policy == SpeakPolicy.FOLLOWING:
        return host_follows_caller
    return False


def check_hand_raise(role: Role, policy: SpeakPolicy, *, host_follows_caller: bool) -> None:
    if role != Role.LISTENER:
        raise refuse(ErrorCode.CONFLICT, "you are already on stage")
    if not may_request_to_speak(policy, host_follows_caller=host_follows_caller):
        raise refuse(ErrorCode.NOT_ALLOWED, "in this space only invited people can speak")


def check_join(*, removed: bool, blocked_by_moderator: bool, seat: Role | None = None) -> None:
    """`seat`: the stage role the joiner comes back to. A block never keeps out the host or a
    co-host (as it never removes one): a co-host must not lock the host out of their own space."""
    if removed:
        raise refuse(ErrorCode.NOT_ALLOWED, "you were removed from this space")
    if blocked_by_moderator and seat not in MODERATORS:
        # Deliberately the same refusal as any other: a block is not revealed.
        raise refuse(ErrorCode.NOT_ALLOWED, "you cannot join this space")


def check_room(listeners: int, limit: int) -> None:
    """Refuse a listener past the space's listener limit (the counter shards' own cap backs this up)."""
    if listeners >= limit:
        raise refuse(ErrorCode.LIMIT_REACHED, f"this space is full ({limit} listeners)")


def require_hand_raised(hand_raised: bool) -> None:
    if not hand_raised:
        raise refuse(ErrorCode.CONFLICT, "your hand is not raised")


def require_asked_to_speak(hand_raised: bool) -> None:
    if not hand_raised:
        raise refuse(ErrorCode.CONFLICT, "that person has not asked to speak")


def require_invitation(invited: bool) -> None:
    if not invited:
        raise refuse(ErrorCode.CONFLICT, "you have no invitation to speak")


def check_invite(actor: Role, target: Role, count: StageCount) -> None:
    """A moderator invites a listener to speak (the seat is taken when they accept)."""
    require_moderator(actor)
    if target != Role.LISTENER:
        raise refuse(ErrorCode.CONFLICT, "that person is already on stage")
    require_seat(count)


def check_accept_invite(role: Role, *, invited: bool, count: StageCount) -> None:
    require_invitation(invited)
    if role != Role.LISTENER:
        raise refuse(ErrorCode.CONFLICT, "you are already on stage")
    require_seat(count)


def check_approve(actor: Role, target: Role, *, hand_raised: bool, count: StageCount) -> None:
    """A moderator brings a listener who asked to speak on stage."""
    require_moderator(actor)
    if target == Role.LISTENER:
        require_asked_to_speak(hand_raised)
    check_promote(actor, target, count)


def check_promote(actor: Role, target: Role, count: StageCount) -> None:
    """A moderator brings a listener on stage (approving a request, or an accepted invite)."""
    require_moderator(actor)
    if target != Role.LISTENER:
        raise refuse(ErrorCode.CONFLICT, "that person is already on stage")
    require_seat(count)


def check_demote(actor: Role, target: Role) -> None:
    """A moderator moves a speaker back to the audience."""
    require_moderator(actor)
    if target != Role.SPEAKER:
        raise refuse(ErrorCode.CONFLICT, "that person is not a speaker")
    require_above(actor, target)


def check_stage_leave(role: Role) -> None:
    if role == Role.HOST:
        raise refuse(ErrorCode.NOT_ALLOWED, "the host cannot leave the stage; end the space instead")
    if role not in ON_STAGE:
        raise refuse(ErrorCode.CONFLICT, "you are not on stage")


def check_mute_other(actor: Role, target: Role) -> None:
    require_moderator(actor)
    if target not in ON_STAGE:
        raise refuse(ErrorCode.CONFLICT, "that person is not on stage")
    require_above(actor, target)


def check_self_mic(role: Role) -> None:
    if role not in ON_STAGE:
        raise refuse(ErrorCode.NOT_ALLOWED, "only people on stage have a microphone")


def check_remove(actor: Role, target: Role) -> None:
    require_moderator(actor)
    require_above(actor, target)


def check_cohost_add(actor: Role, target: Role, count: StageCount) -> None:
    require_host(actor)
    if target in MODERATORS:
        raise refuse(ErrorCode.CONFLICT, "that person is already a host or co-host")
    require_seat(count, adding_cohost=True, from_listener=target == Role.LISTENER)


def check_cohost_remove(actor: Role, target: Role) -> None:
    require_host(actor)
    if target != Role.COHOST:
        raise refuse(ErrorCode.CONFLICT, "that person is not a co-host")


def gives_up_seat_on_leave(role: Role) -> bool:
    """Whether someone on stage who leaves the space gives up their seat (speakers do;
    the host and co-hosts keep theirs, away, so they can come back to it)."""
    return role == Role.SPEAKER


# Bidi embeddings, overrides, isolates and marks: they reorder what follows them, so a
# title could display as something else (CVE-2021-42574, "Trojan Source").
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Letters and symbols that render as blank space.
_BLANK_LOOKALIKES = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Format characters, marks and separators: nothing a reader can see on their own.
_UNSEEN_CATEGORIES = frozenset({"Cf", "Mn", "Me", "Zs", "Zl", "Zp"})


def title_problem(title: str) -> str | None:
    """Why `title` (whitespace already collapsed) is not acceptable, or None."""
    import unicodedata

    if not 1 <= len(title) <= TITLE_MAX:
        return f"title must be 1-{TITLE_MAX} characters"
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") for ch in title):
        return "title must not contain control, private-use or unassigned characters"
    if any(ch in _BIDI_CONTROLS for ch in title):
        return "title must not contain bidirectional control characters"
    if all(ch in _BLANK_LOOKALIKES or unicodedata.category(ch) in _UNSEEN_CATEGORIES for ch in title):
        return "title must contain visible text"
    return None


def validate_title(title: str) -> str:
    """The title with whitespace collapsed; the same rule for REST (POST /spaces) and settings.update."""
    cleaned = " ".join(title.split())
    problem = title_problem(cleaned)
    if problem is not None:
        raise refuse(ErrorCode.BAD_REQUEST, problem)
    return cleaned


SETTINGS = ("title", "speak_policy", "handover")


def settings_change(changes: dict[str, Any]) -> dict[str, Any]:
    """The host's settings change, title cleaned; refused when it changes nothing."""
    cleaned = {k: v for k, v in changes.items() if k in SETTINGS}
    if "title" in cleaned:
        cleaned["title"] = validate_title(cleaned["title"])
    if not cleaned:
        raise refuse(ErrorCode.BAD_REQUEST, "nothing to change")
    return cleaned


def check_reaction(emoji: str) -> None:
    if emoji not in REACTIONS:
        raise CommandError(ErrorCode.BAD_REQUEST, "unknown reaction", {"allowed": sorted(REACTIONS)})
