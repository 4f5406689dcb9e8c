"""Spaces: lifecycle, stage and membership, one module per job (see docs/architecture.md).

- stage.py: the stage as a typed value (pure)
- decisions.py: what each stage command changes, given one read (pure)
- store.py: the one read of a space, and a stage change as conditional writes
- transitions.py: a stage change applied: write (retried), media capability, announcement
- membership.py: join, leave, sync, removal, a socket gone, Chime's attendee events, listener counts
- presence.py: what an attendee event (audio joined, left, dropped) does to a member (pure)
- stage_commands.py: hands, invitations, speakers, microphones, co-hosts, settings, reactions
- lifecycle.py: create, start, cancel, end, host grace period and hand-over
- views.py: the public resource, snapshots, lists and search

The names below are the package's public face for the rest of chalicelib.
"""

from __future__ import annotations

from chalicelib.spaces.audio_features import recording_of, set_captions, set_recording
from chalicelib.spaces.lifecycle import (
    cancel,
    create,
    end,
    end_by_host,
    end_rest,
    expire_grace,
    reschedule,
    start,
)
from chalicelib.spaces.membership import (
    attendee_clear_request,
    clear_removed_attendee,
    enforce_block,
    expel,
    expire_away,
    join,
    leave,
    on_chime_event,
    on_connection_gone,
    publish_pending_counts,
    sync,
)
from chalicelib.spaces.stage_commands import (
    accept_invite,
    add_cohost,
    approve_request,
    decline_invite,
    deny_request,
    flush_reactions,
    invite_speaker,
    leave_stage,
    lower_hand,
    mute_self,
    mute_speaker,
    raise_hand,
    react,
    remove_cohost,
    remove_participant,
    remove_speaker,
    unmute_self,
    update_settings,
)
from chalicelib.spaces.store import get_member, get_space
from chalicelib.spaces.views import by_creator, list_page, public_space, public_view, search

__all__ = [
    "accept_invite",
    "add_cohost",
    "approve_request",
    "attendee_clear_request",
    "by_creator",
    "cancel",
    "clear_removed_attendee",
    "create",
    "decline_invite",
    "deny_request",
    "end",
    "end_by_host",
    "end_rest",
    "enforce_block",
    "expel",
    "expire_away",
    "expire_grace",
    "flush_reactions",
    "get_member",
    "get_space",
    "invite_speaker",
    "join",
    "leave",
    "leave_stage",
    "list_page",
    "lower_hand",
    "mute_self",
    "mute_speaker",
    "on_chime_event",
    "on_connection_gone",
    "public_space",
    "public_view",
    "publish_pending_counts",
    "raise_hand",
    "react",
    "recording_of",
    "remove_cohost",
    "remove_participant",
    "remove_speaker",
    "reschedule",
    "search",
    "set_captions",
    "set_recording",
    "start",
    "sync",
    "unmute_self",
    "update_settings",
]
