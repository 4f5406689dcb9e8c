"""The host's audio features: recording for replay, and live captions."""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import UpdateError

from chalicelib import clients, evidence, fanout, media, rules
from chalicelib.clock import now_iso
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Connection, Space
from chalicelib.observability import logger
from chalicelib.rules import SpaceState
from chalicelib.spaces import store


def set_recording(conn: Connection, space_id: str, on: bool) -> dict[str, Any]:
    """`recording.set`: the host starts or stops recording; everyone is told at once."""
    ctx = store.load(conn.user_id, conn.connection_id, space_id)
    rules.require_host(ctx.require_present())
    if bool(ctx.space.recording) == on:
        return {"recording": on, "started_at": ctx.space.recording_started_at}
    started_at = now_iso() if on else None
    _flag(ctx.space, Space.recording, on, Space.recording_started_at, started_at)
    outcome = evidence.sync(space_id)
    if on and outcome.status != "capturing":
        _flag(ctx.space, Space.recording, False, Space.recording_started_at, None)
        raise CommandError(ErrorCode.LIMIT_REACHED, f"recording is unavailable: {outcome.reason}")
    fanout.broadcast(space_id, "recording.changed", recording=on, started_at=started_at)
    return {"recording": on, "started_at": started_at}


def start_recording_at_creation(space: Space) -> None:
    """A space created live with recording on, or started so: the capture starts with it."""
    outcome = evidence.sync(space.space_id)
    if space.recording and outcome.status != "capturing":
        space.update(actions=[Space.recording.set(False), Space.recording_started_at.remove()])
        space.recording = False
        space.recording_started_at = None
        logger.warning("recording could not start", extra={"space_id": space.space_id, "why": outcome.reason})


def set_captions(conn: Connection, space_id: str, on: bool) -> dict[str, Any]:
    """`captions.set`: live transcription of the space's primary meeting, on or off."""
    ctx = store.load(conn.user_id, conn.connection_id, space_id)
    rules.require_host(ctx.require_present())
    space = ctx.space
    if bool(space.captions) == on:
        return {"captions": on}
    assert space.meeting_id is not None
    try:
        if on:
            clients.media().start_transcription(space.meeting_id, space.lang)
        else:
            clients.media().stop_transcription(space.meeting_id)
    except media.MediaError as exc:
        raise CommandError(
            ErrorCode.LIMIT_REACHED
            if exc.code in ("LimitExceeded", "UnprocessableEntity")
            else ErrorCode.INTERNAL,
            f"captions are unavailable: {exc}",
        ) from None
    _flag(space, Space.captions, on)
    fanout.broadcast(space_id, "captions.changed", captions=on, lang=space.lang)
    return {"captions": on}


def _flag(space: Space, attr: Any, value: bool, at_attr: Any = None, at: str | None = None) -> None:
    actions = [attr.set(value), Space.updated_at.set(now_iso())]
    if at_attr is not None:
        actions.append(at_attr.set(at) if at else at_attr.remove())
    try:
        space.update(actions=actions, condition=Space.state == SpaceState.LIVE)
    except UpdateError:
        raise CommandError(ErrorCode.SPACE_ENDED, "the space has ended") from None


def recording_of(user_id: str, space_id: str) -> dict[str, Any]:
    """GET /spaces/{id}/recording: the replay, for anyone the host has not blocked."""
    space = store.get_space(space_id)
    if store.blockers_among([space.host_id, space.creator_id], user_id):
        raise CommandError(ErrorCode.NOT_ALLOWED, "the host has blocked you")
    return evidence.replay(space)
