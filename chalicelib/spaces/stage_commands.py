"""Commands about the stage: hands, invitations, requests, speakers, microphones,
co-hosts, settings and reactions. Each reads once, asks decisions.py/rules.py, writes."""

from __future__ import annotations

import time
from typing import Any

from pynamodb.exceptions import UpdateError

from chalicelib import fanout, quotas, reactions, rules
from chalicelib.clock import now_iso
from chalicelib.config import get_settings
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Connection, Member, Space
from chalicelib.notifications import jobs
from chalicelib.relations import blocked_by
from chalicelib.rules import Role, SpaceState
from chalicelib.spaces import decisions, store, transitions
from chalicelib.spaces.membership import expel, expel_if_blocked


def raise_hand(conn: Connection, space_id: str) -> dict[str, Any]:
    ctx = store.load(conn.user_id, conn.connection_id, space_id)
    role = ctx.require_present()
    policy = rules.SpeakPolicy(ctx.space.speak_policy)
    follows_caller = policy == rules.SpeakPolicy.FOLLOWING and store.follows(ctx.space.host_id, conn.user_id)
    rules.check_hand_raise(role, policy, host_follows_caller=follows_caller)
    assert ctx.member is not None
    if ctx.member.hand_raised_at:
        return {"hand_raised_at": ctx.member.hand_raised_at}
    quotas.take(quotas.hand_toggles(), conn.user_id)
    raised_at = now_iso()
    ctx.member.update(
        actions=[Member.hand_raised_at.set(raised_at)],
        condition=(Member.present == True) & (Member.connection_id == conn.connection_id),  # noqa: E712
    )
    hidden_from = store.blockers_among(ctx.stage.moderators(), conn.user_id)
    fanout.send_private(
        ctx.stage.moderator_connections(exclude=hidden_from), "hand.raised", space_id, user_id=conn.user_id
    )
    return {"hand_raised_at": raised_at}


def lower_hand(conn: Connection, space_id: str) -> dict[str, Any]:
    ctx = store.load(conn.user_id, conn.connection_id, space_id)
    ctx.require_present()
    assert ctx.member is not None
    rules.require_hand_raised(bool(ctx.member.hand_raised_at))
    quotas.take(quotas.hand_toggles(), conn.user_id)
    ctx.member.update(actions=[Member.hand_raised_at.remove()])
    fanout.send_private(ctx.stage.moderator_connections(), "hand.lowered", space_id, user_id=conn.user_id)
    return {}


def invite_speaker(conn: Connection, space_id: str, user_id: str) -> dict[str, Any]:
    ctx = store.load(conn.user_id, conn.connection_id, space_id, target=user_id)
    actor = ctx.require_present()
    rules.require_moderator(actor)
    target, role = ctx.require_target(user_id)
    rules.check_invite(actor, role, ctx.stage.counts())
    target.update(
        actions=[Member.invited_at.set(now_iso()), Member.invited_by.set(conn.user_id)],
        condition=Member.present == True,  # noqa: E712
    )
    invited: list[Any] = list(ctx.space.invited_user_ids or [])
    if user_id not in invited:
        ctx.space.update(actions=[Space.invited_user_ids.set([*invited, user_id][-100:])])
    fanout.send_private([target.connection_id or ""], "speaker.invited", space_id, by=conn.user_id)
    return {}


def accept_invite(conn: Connection, space_id: str) -> dict[str, Any]:
    since = now_iso()
    transitions.run_and_announce(
        conn.user_id, conn.connection_id, space_id, lambda ctx: decisions.accept_invite(ctx, since)
    )
    return {"role": Role.SPEAKER.value}


def decline_invite(conn: Connection, space_id: str) -> dict[str, Any]:
    ctx = store.load(conn.user_id, conn.connection_id, space_id)
    ctx.require_present()
    assert ctx.member is not None
    rules.require_invitation(bool(ctx.member.invited_at))
    ctx.member.update(actions=[Member.invited_at.remove(), Member.invited_by.remove()])
    fanout.send_private(ctx.stage.moderator_connections(), "invite.declined", space_id, user_id=conn.user_id)
    return {}


def approve_request(conn: Connection, space_id: str, user_id: str) -> dict[str, Any]:
    since = now_iso()
    transitions.run_and_announce(
        conn.user_id,
        conn.connection_id,
        space_id,
        lambda ctx: decisions.approve_request(ctx, user_id, since),
        target=user_id,
    )
    return {}


def deny_request(conn: Connection, space_id: str, user_id: str) -> dict[str, Any]:
    ctx = store.load(conn.user_id, conn.connection_id, space_id, target=user_id)
    rules.require_moderator(ctx.require_present())
    target, _ = ctx.require_target(user_id)
    rules.require_asked_to_speak(bool(target.hand_raised_at))
    target.update(actions=[Member.hand_raised_at.remove()])
    fanout.send_private([target.connection_id or ""], "hand.denied", space_id, by=conn.user_id)
    fanout.send_private(ctx.stage.moderator_connections(), "hand.lowered", space_id, user_id=user_id)
    return {}


def leave_stage(conn: Connection, space_id: str) -> dict[str, Any]:
    transitions.run_and_announce(conn.user_id, conn.connection_id, space_id, decisions.leave_stage)
    return {"role": Role.LISTENER.value}


def remove_speaker(conn: Connection, space_id: str, user_id: str) -> dict[str, Any]:
    transitions.run_and_announce(
        conn.user_id,
        conn.connection_id,
        space_id,
        lambda ctx: decisions.remove_speaker(ctx, user_id),
        target=user_id,
    )
    return {}


def _mic(conn: Connection, space_id: str, target_id: str, *, mute: bool, by_host: bool) -> dict[str, Any]:
    transitions.run_and_announce(
        conn.user_id,
        conn.connection_id,
        space_id,
        lambda ctx: decisions.mic(ctx, target_id, mute=mute, by_host=by_host),
        target=target_id,
    )
    return {"muted": mute}


def mute_self(conn: Connection, space_id: str) -> dict[str, Any]:
    return _mic(conn, space_id, conn.user_id, mute=True, by_host=False)


def unmute_self(conn: Connection, space_id: str) -> dict[str, Any]:
    return _mic(conn, space_id, conn.user_id, mute=False, by_host=False)


def mute_speaker(conn: Connection, space_id: str, user_id: str) -> dict[str, Any]:
    return _mic(conn, space_id, user_id, mute=True, by_host=True)


def remove_participant(
    conn: Connection, space_id: str, user_id: str, reason: str = "removed"
) -> dict[str, Any]:
    ctx = store.load(conn.user_id, conn.connection_id, space_id, target=user_id)
    member = decisions.participant_to_remove(ctx, user_id)
    expel(ctx.space, member, reason, by=conn.user_id)
    return {}


def add_cohost(conn: Connection, space_id: str, user_id: str) -> dict[str, Any]:
    since = now_iso()
    transitions.run_and_announce(
        conn.user_id,
        conn.connection_id,
        space_id,
        lambda ctx: decisions.add_cohost(ctx, user_id, since),
        target=user_id,
    )
    # A new co-host's blocks take effect at once: people they block leave the space.
    space = store.get_space(space_id)
    for blocked in blocked_by(user_id):
        expel_if_blocked(space, user_id, blocked)
    jobs.cohost_joined(space, user_id)
    return {}


def remove_cohost(conn: Connection, space_id: str, user_id: str) -> dict[str, Any]:
    transitions.run_and_announce(
        conn.user_id, conn.connection_id, space_id, lambda ctx: decisions.remove_cohost(ctx, user_id)
    )
    return {}


def update_settings(conn: Connection, space_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    ctx = store.load(conn.user_id, conn.connection_id, space_id)
    rules.require_host(ctx.require_present())
    changes = rules.settings_change(changes)
    actions: list[Any] = [Space.updated_at.set(now_iso())]
    if "title" in changes:
        actions += [Space.title.set(changes["title"]), Space.title_lc.set(changes["title"].lower())]
    if "speak_policy" in changes:
        actions.append(Space.speak_policy.set(changes["speak_policy"]))
    if "handover" in changes:
        actions.append(Space.handover.set(bool(changes["handover"])))
    ctx.space.update(actions=actions, condition=Space.state == SpaceState.LIVE)
    fanout.broadcast(space_id, "settings.changed", settings=changes)
    return {"settings": changes}


def react(conn: Connection, space_id: str, emoji: str) -> dict[str, Any]:
    rules.check_reaction(emoji)
    ctx = store.load(conn.user_id, conn.connection_id, space_id)
    ctx.require_present()
    settings = get_settings()
    window = int(time.time() // settings.reaction_window_seconds)
    member = Member(space_id, conn.user_id)
    # Two tries: a concurrent reaction of the same member may open the window between ours.
    for _ in range(2):
        try:
            member.update(
                actions=[Member.reaction_count.add(1)],
                condition=(Member.reaction_window == window)
                & (Member.reaction_count < settings.reaction_limit),
            )
            break
        except UpdateError:
            pass
        try:
            member.update(
                actions=[Member.reaction_window.set(window), Member.reaction_count.set(1)],
                condition=Member.reaction_window.does_not_exist() | (Member.reaction_window != window),
            )
            break
        except UpdateError:
            continue
    else:
        raise CommandError(
            ErrorCode.RATE_LIMITED,
            f"at most {settings.reaction_limit} reactions per {settings.reaction_window_seconds} s",
        )
    if settings.naive_fanout:
        # the naive baseline (benchmark only): every reaction to everyone, at once
        fanout.broadcast(space_id, "reactions", **reactions.single(conn.user_id, emoji))
    else:
        reactions.record(space_id, conn.user_id, emoji)
    return {}


def flush_reactions(space_id: str) -> int:
    """The fan-out consumer's flush: one `reactions` event with what the interval collected."""
    collected = reactions.take(space_id)
    if not collected.total:
        return 0  # a duplicate flush message, or the tally was closed after a failed schedule
    try:
        live = store.get_space(space_id).state == SpaceState.LIVE
    except CommandError:
        live = False
    if live:  # after space.ended (the last event of a space) nothing more is sent
        fanout.broadcast(space_id, "reactions", **collected.payload())
    return collected.total
