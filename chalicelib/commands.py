"""WebSocket commands: who the caller is comes from the connection record, never from the message."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chalicelib import connections, fanout, protocol, spaces
from chalicelib.auth import Identity
from chalicelib.models import Connection
from chalicelib.protocol import CommandError


def connect_refusal(identity: Identity) -> CommandError | None:
    """Why this identity may not open a connection, if it may not."""
    from chalicelib import moderation

    return moderation.suspension_refusal(identity.user_id)


def connection_gone(connection_id: str) -> None:
    """A socket closed or answered 410: forget it and the membership that hung on it."""
    record = connections.forget(connection_id)
    spaces.on_connection_gone(connection_id, record)


fanout.on_gone = connection_gone


def ping(caller: Connection, command: protocol.Ping) -> dict[str, Any]:
    return {"user_id": caller.user_id, "connection_id": caller.connection_id, "server_time": time.time()}


def _report(caller: Connection, c: protocol.ReportSend) -> dict[str, Any]:
    from chalicelib import moderation

    return moderation.file_report(
        caller.user_id, c.space_id, c.user_id, c.category, c.note, connection_id=caller.connection_id
    )


HANDLERS: dict[str, Callable[[Connection, Any], dict[str, Any]]] = {
    "ping": ping,
    "space.join": lambda caller, c: spaces.join(caller, c.space_id),
    "space.leave": lambda caller, c: {"left": spaces.leave(caller.user_id, c.space_id, caller.connection_id)},
    "space.sync": lambda caller, c: spaces.sync(caller, c.space_id),
    "space.end": lambda caller, c: spaces.end_by_host(caller, c.space_id),
    "hand.raise": lambda caller, c: spaces.raise_hand(caller, c.space_id),
    "hand.lower": lambda caller, c: spaces.lower_hand(caller, c.space_id),
    "speaker.invite": lambda caller, c: spaces.invite_speaker(caller, c.space_id, c.user_id),
    "invite.accept": lambda caller, c: spaces.accept_invite(caller, c.space_id),
    "invite.decline": lambda caller, c: spaces.decline_invite(caller, c.space_id),
    "request.approve": lambda caller, c: spaces.approve_request(caller, c.space_id, c.user_id),
    "request.deny": lambda caller, c: spaces.deny_request(caller, c.space_id, c.user_id),
    "stage.leave": lambda caller, c: spaces.leave_stage(caller, c.space_id),
    "speaker.remove": lambda caller, c: spaces.remove_speaker(caller, c.space_id, c.user_id),
    "mic.mute": lambda caller, c: spaces.mute_self(caller, c.space_id),
    "mic.unmute": lambda caller, c: spaces.unmute_self(caller, c.space_id),
    "speaker.mute": lambda caller, c: spaces.mute_speaker(caller, c.space_id, c.user_id),
    "participant.remove": lambda caller, c: spaces.remove_participant(caller, c.space_id, c.user_id),
    "cohost.add": lambda caller, c: spaces.add_cohost(caller, c.space_id, c.user_id),
    "cohost.remove": lambda caller, c: spaces.remove_cohost(caller, c.space_id, c.user_id),
    "settings.update": lambda caller, c: spaces.update_settings(
        caller, c.space_id, c.model_dump(include={"speak_policy", "handover", "title"}, exclude_none=True)
    ),
    "reaction.send": lambda caller, c: spaces.react(caller, c.space_id, c.emoji),
    "report.send": _report,
}


def dispatch(caller: Connection, command: Any) -> dict[str, Any]:
    return HANDLERS[command.action](caller, command)
