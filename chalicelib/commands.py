"""WebSocket commands: who the caller is comes from the connection record, never from the message."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chalicelib import connections, moderation, protocol, spaces, suspensions
from chalicelib.auth import Identity
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Connection

Reply = dict[str, Any]
OnSpace = Callable[[Connection, str], Reply]  # (caller, space_id)
OnTarget = Callable[[Connection, str, str], Reply]  # (caller, space_id, user_id)


def connect_refusal(identity: Identity) -> CommandError | None:
    """Why this identity may not open a connection, if it may not."""
    return suspensions.refusal(identity.user_id)


def connection_gone(connection_id: str) -> None:
    """A socket closed or answered 410: forget it and the membership that hung on it."""
    record = connections.forget(connection_id)
    spaces.on_connection_gone(connection_id, record)


def ping(caller: Connection) -> Reply:
    return {"user_id": caller.user_id, "connection_id": caller.connection_id, "server_time": time.time()}


def _join(caller: Connection, space_id: str) -> Reply:
    # A socket opened before its user was suspended (and not closed yet) cannot come back in.
    refusal = suspensions.refusal(caller.user_id)
    if refusal is not None:
        raise refusal
    return spaces.join(caller, space_id)


def _leave(caller: Connection, space_id: str) -> Reply:
    return {"left": spaces.leave(caller.user_id, space_id, caller.connection_id)}


ON_SPACE: dict[str, OnSpace] = {
    "space.join": _join,
    "space.leave": _leave,
    "space.sync": spaces.sync,
    "space.end": spaces.end_by_host,
    "hand.raise": spaces.raise_hand,
    "hand.lower": spaces.lower_hand,
    "invite.accept": spaces.accept_invite,
    "invite.decline": spaces.decline_invite,
    "stage.leave": spaces.leave_stage,
    "mic.mute": spaces.mute_self,
    "mic.unmute": spaces.unmute_self,
}

ON_TARGET: dict[str, OnTarget] = {
    "speaker.invite": spaces.invite_speaker,
    "request.approve": spaces.approve_request,
    "request.deny": spaces.deny_request,
    "speaker.remove": spaces.remove_speaker,
    "speaker.mute": spaces.mute_speaker,
    "participant.remove": spaces.remove_participant,
    "cohost.add": spaces.add_cohost,
    "cohost.remove": spaces.remove_cohost,
}


def dispatch(caller: Connection, command: protocol.Command) -> Reply:
    match command:
        case protocol.Ping():
            return ping(caller)
        case protocol.SettingsUpdate():
            changes = command.model_dump(include={"speak_policy", "handover", "title"}, exclude_none=True)
            return spaces.update_settings(caller, command.space_id, changes)
        case protocol.RecordingSet():
            return spaces.set_recording(caller, command.space_id, command.on)
        case protocol.CaptionsSet():
            return spaces.set_captions(caller, command.space_id, command.on)
        case protocol.ReactionSend():
            return spaces.react(caller, command.space_id, command.emoji)
        case protocol.ReportSend():
            return moderation.file_report(caller.user_id, command, connection_id=caller.connection_id)
        case protocol.TargetCommand():
            return ON_TARGET[command.action](caller, command.space_id, command.user_id)  # type: ignore[attr-defined]
        case protocol.SpaceCommand():
            return ON_SPACE[command.action](caller, command.space_id)  # type: ignore[attr-defined]
    raise CommandError(ErrorCode.BAD_REQUEST, "unknown command")
