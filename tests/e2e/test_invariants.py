"""The state of a space holds whatever clients do: a Hypothesis stateful test over real sockets.

Several users drive two live spaces on the local stack with random sequences of commands,
joins from many sockets at once, joins of the other space, blocks and socket closes. After
every step the test waits for the stack to settle (the $disconnect of a closed socket runs
in the background) and checks, from the stored state and the media service:

- one host; at most 2 co-hosts; at most 13 on stage;
- nobody removed is present;
- the presence rows (what a broadcast reads) are exactly the members' open sockets;
- the listener count (its counter shards) is the number of listeners actually present;
- every present member has a live socket whose record holds the space, and a media
  attendee; every attendee of the space's meeting belongs to a present member (but the
  pooled listener attendees not handed out yet, chalicelib/pool.py);
- each `seq` of a space numbers one event (no two events share it) and no client got one twice;
- no command was answered `internal`.

The seed is fixed, so the suite always runs the same sequences (the numbers below, well under
a minute). INVARIANT_EXAMPLES / INVARIANT_STEPS run more, e.g.
`INVARIANT_EXAMPLES=40 INVARIANT_STEPS=40 pytest tests/e2e/test_invariants.py`, and
INVARIANT_SEED another seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Coroutine
from typing import Any

import pytest
from conftest import Client, Clients, gateway, http, local_media, token, uid
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("INVARIANT_EXAMPLES", "5"))
STEPS = int(os.environ.get("INVARIANT_STEPS", "12"))
SEED = int(os.environ.get("INVARIANT_SEED", "20261202"))
SETTLE_SECONDS = 6.0

USERS = 4  # besides the two hosts
ACTIONS = [
    "hand.raise",
    "hand.lower",
    "invite.accept",
    "stage.leave",
    "mic.mute",
    "mic.unmute",
    "space.leave",
    "space.sync",
]
TARGETED = [
    "speaker.invite",
    "request.approve",
    "speaker.remove",
    "speaker.mute",
    "participant.remove",
    "cohost.add",
    "cohost.remove",
]


class Loop:
    """An event loop of its own on a thread: the clients' readers keep running between steps."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="invariants-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def violations(space_id: str) -> list[str]:
    """What is wrong with the space's stored state now (empty: every invariant holds)."""
    from chalicelib import counters
    from chalicelib.models import Connection, Member, Presence, Space
    from chalicelib.rules import Role
    from chalicelib.spaces.stage import Stage

    found: list[str] = []
    space = Space.get(space_id, consistent_read=True)
    stage = Stage.from_stored(space.stage)
    entries = dict(stage.entries)
    hosts = [u for u, e in entries.items() if e.role == Role.HOST]
    cohosts = [u for u, e in entries.items() if e.role == Role.COHOST]
    if space.state != "ended" and len(hosts) != 1:
        found.append(f"hosts: {hosts}")
    if len(cohosts) > 2:
        found.append(f"co-hosts: {cohosts}")
    if len(entries) > 13:
        found.append(f"stage of {len(entries)}")
    members = list(Member.query(space_id, consistent_read=True))
    for m in members:
        if m.removed and m.present:
            found.append(f"{m.user_id} removed but present")
    # what a broadcast reads (fanout.recipients) is exactly the members' open sockets
    rows = {r.user_id: r.connection_id for r in Presence.query(space_id, consistent_read=True)}
    sockets = {m.user_id: m.connection_id for m in members if m.connection_id}
    if rows != sockets:
        found.append(f"presence rows {rows} but members' sockets {sockets}")
    if space.state != "live":
        return found

    present = {m.user_id: m for m in members if m.present and not m.removed}
    listeners = [u for u in present if u not in entries]
    counted = counters.listeners(space_id)
    if counted != len(listeners):
        found.append(f"listener count {counted}, listeners present {sorted(listeners)}")
    for user, entry in entries.items():
        if entry.present != (user in present):
            found.append(f"{user} on stage present={entry.present}, member present={user in present}")
    open_sockets = {cid for cid, c in gateway().connections.items() if c.closing is None}
    attendees = local_media().attendees(space.meeting_id or "")
    for user, m in present.items():
        if m.connection_id not in open_sockets:
            found.append(f"{user} present on a closed socket {m.connection_id}")
        else:
            try:
                record = Connection.get(m.connection_id, consistent_read=True)
                if record.space_id != space_id:
                    found.append(f"{user}'s socket holds {record.space_id}, not this space")
            except Connection.DoesNotExist:
                found.append(f"{user}'s socket {m.connection_id} has no record")
        if m.attendee_id not in attendees:
            found.append(f"{user} present without an attendee")
    held = {m.attendee_id for m in present.values()}
    claimed = _pool_claimed(space.meeting_id or "")
    for attendee_id, attendee in attendees.items():
        if attendee_id not in held and _claimed(attendee.external_user_id, claimed):
            found.append(f"attendee {attendee.external_user_id} of nobody present")
    return found


def _pool_claimed(meeting_id: str) -> int:
    """How many of the meeting's pooled listener attendees were handed out (chalicelib/pool.py)."""
    from chalicelib.pool import PoolItem

    try:
        return int(PoolItem.get(f"{meeting_id}#pool", consistent_read=True).claimed or 0)
    except PoolItem.DoesNotExist:
        return 0


def _claimed(external_user_id: str, claimed: int) -> bool:
    """Whether an attendee belongs to someone: named after a user, or a pooled one handed out
    (a pooled attendee waiting in the pool belongs to nobody yet)."""
    from chalicelib.config import get_settings
    from chalicelib.pool import is_pooled

    if not is_pooled(external_user_id):
        return True
    batch, _, slot = external_user_id.removeprefix("p:").partition(".")
    return int(batch) * get_settings().attendee_pool_batch + int(slot) < claimed


def frame_violations(clients: list[Client], space_ids: list[str]) -> list[str]:
    found: list[str] = []
    by_seq: dict[tuple[str, int], tuple[Any, ...]] = {}
    for client in clients:
        for frame in client.received:
            if frame.get("type") == "error" and frame.get("code") == "internal":
                found.append(f"{client.user}: internal error {frame}")
        for space_id in space_ids:
            seqs = client.broadcast_seqs(space_id)
            if len(seqs) != len(set(seqs)):
                found.append(f"{client.user} got a seq twice in {space_id}: {seqs}")
            for f in client.events(space_id=space_id):
                if "seq" not in f:
                    continue
                what = (f["event"], f.get("reason"), f.get("user_id"))
                earlier = by_seq.setdefault((space_id, f["seq"]), what)
                if earlier != what:
                    found.append(f"seq {f['seq']} of {space_id} numbers {earlier} and {what}")
    return found


def test_space_invariants_hold_under_random_clients(stack) -> None:
    loop = Loop()
    started = time.monotonic()
    runs = {"steps": 0, "examples": 0}

    class Spaces(RuleBasedStateMachine):
        @initialize()
        def open_spaces(self) -> None:
            runs["examples"] += 1
            self.clients = Clients(stack)
            self.hosts = [uid("hx"), uid("hy")]
            self.users = [uid(f"u{i}") for i in range(USERS)]
            self.spaces = []
            for host in self.hosts:
                status, body = http(
                    stack, "POST", "/spaces", {"title": "inv", "handover": True}, token=token(stack, host)
                )
                assert status == 201, body
                self.spaces.append(body["id"])
            self.sockets: dict[str, list[Client]] = {u: [] for u in self.hosts + self.users}
            for host, space_id in zip(self.hosts, self.spaces, strict=True):
                sock = self._open(host)
                loop.run(sock.send("space.join", space_id=space_id))

        def _open(self, user: str) -> Client:
            return loop.run(self.clients.open(user))

        def _live(self, user: str) -> list[Client]:
            return [s for s in self.sockets[user] if s.closed_code is None]

        def _call(self, sock: Client, action: str, **fields: Any) -> None:
            async def go() -> None:
                # the socket may close meanwhile (replaced, suspended): that is not an answer
                with contextlib.suppress(Exception):
                    await sock.call(action, **fields)

            loop.run(go())

        def teardown(self) -> None:
            loop.run(self.clients.close())
            for space_id, host in zip(self.spaces, self.hosts, strict=True):
                http(stack, "POST", f"/spaces/{space_id}/end", token=token(stack, host))
            self.clients.check_frames()

        # -- rules

        @rule(user=st.integers(0, USERS - 1))
        def open_socket(self, user: int) -> None:
            name = self.users[user]
            if len(self._live(name)) < 3:
                self.sockets[name].append(self._open(name))

        @rule(user=st.integers(0, USERS - 1), which=st.integers(0, 2), other=st.booleans())
        def join(self, user: int, which: int, other: bool) -> None:
            socks = self._live(self.users[user])
            if socks:
                self._call(socks[which % len(socks)], "space.join", space_id=self.spaces[1 if other else 0])

        @rule(user=st.integers(0, USERS - 1))
        def join_from_every_socket_at_once(self, user: int) -> None:
            name = self.users[user]
            while len(self._live(name)) < 3:
                self.sockets[name].append(self._open(name))
            socks = self._live(name)

            async def together() -> None:
                await asyncio.gather(
                    *(s.call("space.join", space_id=self.spaces[0]) for s in socks), return_exceptions=True
                )

            loop.run(together())

        @rule(user=st.integers(0, USERS - 1), which=st.integers(0, 2))
        def close_socket(self, user: int, which: int) -> None:
            socks = self._live(self.users[user])
            if socks:
                loop.run(socks[which % len(socks)].close())

        @rule(user=st.integers(0, USERS + 1), action=st.sampled_from(ACTIONS))
        def command(self, user: int, action: str) -> None:
            name = (self.users + self.hosts)[user]
            socks = self._live(name)
            if socks:
                self._call(socks[-1], action, space_id=self.spaces[0])

        @rule(
            actor=st.integers(0, USERS + 1),
            whom=st.integers(0, USERS + 1),
            action=st.sampled_from(TARGETED),
        )
        def moderate(self, actor: int, whom: int, action: str) -> None:
            everyone = self.users + self.hosts
            socks = self._live(everyone[actor])
            if socks:
                self._call(socks[-1], action, space_id=self.spaces[0], user_id=everyone[whom])

        @rule(blocker=st.integers(0, USERS), blocked=st.integers(0, USERS))
        def block(self, blocker: int, blocked: int) -> None:
            everyone = self.users + self.hosts
            if blocker != blocked:
                http(stack, "PUT", f"/me/blocks/{everyone[blocked]}", token=token(stack, everyone[blocker]))

        @precondition(lambda self: len(self._live(self.hosts[0])) > 1)
        @rule()
        def host_closes_one_of_two_sockets(self) -> None:
            loop.run(self._live(self.hosts[0])[0].close())

        @rule()
        def host_opens_another_socket_and_joins(self) -> None:
            if len(self._live(self.hosts[0])) < 3:
                sock = self._open(self.hosts[0])
                self.sockets[self.hosts[0]].append(sock)
                self._call(sock, "space.join", space_id=self.spaces[0])

        # -- after every step

        @invariant()
        def state_holds(self) -> None:
            runs["steps"] += 1
            deadline = time.monotonic() + SETTLE_SECONDS
            while True:
                found = [v for space_id in self.spaces for v in violations(space_id)]
                found += frame_violations(self.clients.all, self.spaces)
                if not found or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert not found, found

    try:
        run_state_machine_as_test(
            seed(SEED)(Spaces),
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                database=None,  # no example database: the fixed seed is the whole story
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        loop.stop()
    print(
        f"invariants: {runs['examples']} examples, {runs['steps']} checks after steps, seed {SEED}, "
        f"{time.monotonic() - started:.1f} s"
    )
