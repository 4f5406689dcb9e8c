"""`python -m bench.audio_events`: what Chime's attendee events cost when N listeners connect audio.

A local stack runs in this process; N listeners join one space over the WebSocket API, then
their audio connects all at once: the Chime emulator reports each connection as Chime does, a
"Chime Meeting State Change" event `chime:AttendeeJoined` on EventBridge, delivered to the app's
rule (app.py on_chime_event) as one Lambda invocation each. (The audio connections are reported
through the emulator's registry, as its WHIP server does for real sessions: 1,000 WebRTC peers
do not fit on a 2-core machine.) Then every listener's socket drops (API Gateway's 2 h cut, all
at once) while the audio stays, and finally the audio leaves (AttendeeLeft: each leaves at once).

The table: invocations, DynamoDB calls by kind and the time until every event was applied.
https://docs.aws.amazon.com/chime-sdk/latest/dg/using-events.html
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.__main__ import Stack, close_room, open_room


def _isolate() -> None:
    from devstack.netns import NetworkIsolationError, enter_private_network

    try:
        enter_private_network()
    except NetworkIsolationError as err:
        sys.exit(f"cannot isolate the benchmark's network: {err}")


def _members(space_id: str) -> list[Any]:
    from chalicelib.models import Member

    return list(Member.query(space_id, consistent_read=True))


async def _until(check: Callable[[], bool], budget: float) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > budget:
            raise RuntimeError("budget ran out")
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


async def run(n: int, budget: float, rate: float) -> list[tuple[str, dict[str, Any]]]:
    from devstack.stack import LocalStack, StackOptions
    from devstack.stats import AWS_CALLS, install_call_counter

    install_call_counter()
    local = LocalStack(
        StackOptions(port=0, schedule_seconds=60, extra_env={"RECONNECT_GRACE_SECONDS": "60"})
    ).start()
    try:
        stack = Stack("presence", {}, port=local.port)
        room = await open_room(stack, n)
        sem = asyncio.Semaphore(50)
        attendees: list[str] = []

        async def join(client: Any) -> None:
            async with sem:
                reply = await client.join(room.space_id)
                attendees.append(reply["media"]["Attendee"]["AttendeeId"])

        await asyncio.gather(*(join(c) for c in room.listeners))
        # Every event the rule's pattern matches is one invocation of on_chime_event.
        from devstack.media.events import matches

        (rule,) = [s for s in local.app.event_sources if s.name == "on_chime_event"]
        invoked: list[str] = []
        deliver = local.media.event_sink
        assert deliver is not None

        def counted(event: dict[str, Any]) -> None:
            if matches(rule.event_pattern, event):
                invoked.append(event["detail"]["eventType"])
            deliver(event)

        local.media.event_sink = counted
        phases: list[tuple[str, dict[str, Any]]] = []

        async def phase(name: str, act: Callable[[], None], done: Callable[[list[Any]], bool]) -> None:
            AWS_CALLS.reset()
            invoked.clear()
            started = time.perf_counter()
            nonlocal started_at
            started_at = started
            await asyncio.to_thread(act)
            calls_at_done: dict[str, int] = {}
            own = 0  # the benchmark's own polling Queries (pages of the member list) are not the app's

            def finished() -> bool:
                nonlocal calls_at_done, own
                calls_at_done = AWS_CALLS.snapshot()
                calls_at_done["dynamodb:Query"] = calls_at_done.get("dynamodb:Query", 0) - own
                members = _members(room.space_id)
                own += AWS_CALLS.snapshot().get("dynamodb:Query", 0) - calls_at_done["dynamodb:Query"] - own
                return done(members)

            await _until(finished, budget)
            phases.append(
                (
                    name,
                    {
                        "seconds": time.perf_counter() - started,
                        "invocations": len(invoked),
                        "calls": {k: v for k, v in calls_at_done.items() if k.startswith("dynamodb:") and v},
                    },
                )
            )

        listeners = {f"l{i}" for i in range(n)}  # open_room's names
        started_at = 0.0

        def audio_all(fn: Callable[[str], None]) -> Callable[[], None]:
            def paced() -> None:
                # Connections come at `rate` a second (API Gateway admits 500 sockets a second; the
                # stack's single moto process, not Lambda's scaling, is what limits this machine).
                for i, attendee in enumerate(attendees):
                    fn(attendee)
                    time.sleep(max(0.0, started_at + (i + 1) / rate - time.perf_counter()))

            return paced

        await phase(
            "audio joined",
            audio_all(local.media.audio_connected),
            lambda ms: sum(1 for m in ms if m.user_id in listeners and m.audio == "joined") == n,
        )
        await phase(
            "sockets dropped (held)",
            lambda: [c.abort() for c in room.listeners] and None,
            lambda ms: sum(1 for m in ms if m.user_id in listeners and m.connection_id is None) == n,
        )
        await phase(
            "audio left (leave now)",
            audio_all(local.media.audio_disconnected),
            lambda ms: not any(m.present for m in ms if m.user_id in listeners),
        )
        await close_room(room)
        return phases
    finally:
        local.stop()


def table(n: int, phases: list[tuple[str, dict[str, Any]]]) -> str:
    def row(label: str, values: list[str]) -> str:
        return f"| {label} | " + " | ".join(values) + " |"

    ops = sorted({op for _, p in phases for op in p["calls"]})
    lines = [row(f"{n} listeners", [name for name, _ in phases]), "|---|" + "---|" * len(phases)]
    lines.append(row("on_chime_event invocations", [str(p["invocations"]) for _, p in phases]))
    lines += [row(op, [str(p["calls"].get(op, 0)) for _, p in phases]) for op in ops]
    lines.append(row("seconds until all applied", [f"{p['seconds']:.1f}" for _, p in phases]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--listeners", type=int, default=1000)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds a phase may take")
    parser.add_argument("--rate", type=float, default=100.0, help="audio connections (and leaves) a second")
    args = parser.parse_args(argv)
    _isolate()
    print(table(args.listeners, asyncio.run(run(args.listeners, args.budget, args.rate))))


if __name__ == "__main__":
    main()
