"""`python -m bench.broadcast [-n 200] [--events 10]`: one room event to N listeners, through
API Gateway (one post per member) and through the broadcast tier (one publish to AppSync
Events, the stack's emulator), in one local stack and one run.

Per variant: publishes and @connections posts per event (counted by the emulators), and
the time from the host's command to the last listener's receipt (p50, p99 over the events).
The stack and the N clients share this process and its cores, so absolute times are
pessimistic; the two variants are measured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from devstack.stack import LocalStack, StackOptions
from sohbet_client import SohbetClient


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(stack: LocalStack, listeners: int, events: int, tier: bool) -> dict[str, Any]:
    env = stack.broadcast_env() if tier else {"BROADCAST_HTTP_URL": "", "BROADCAST_REALTIME_URL": ""}
    os.environ.update(env | {"BROADCAST_THRESHOLD": "0"})
    from chalicelib.config import get_settings
    from devstack import seed

    get_settings.cache_clear()
    host_id = f"bench-host-{int(time.time() * 1000)}"
    sid, host = await seed.hosted_space(stack, host_id)
    people = []
    for i in range(listeners):
        client = await SohbetClient(
            stack.ws_url, stack.mint_token(f"bl{i}-{host_id}"), auth="token"
        ).connect()
        await client.join(sid)
        people.append(client)
    if tier:
        await asyncio.gather(*(p.broadcast_ready(sid, timeout=60) for p in people))
    await asyncio.sleep(3)  # the count events of the joins go out first
    published, posted = stack.events.published, stack.gateway.posted  # type: ignore[union-attr]
    latencies = []
    for n in range(events):
        title = f"bench {n}"
        arrived: list[float] = []

        async def watch(client: SohbetClient, want: str = title, arrived: list[float] = arrived) -> None:
            await client.next_event(
                "settings.changed", timeout=60, predicate=lambda e: e["settings"].get("title") == want
            )
            arrived.append(time.perf_counter())

        watchers = [asyncio.create_task(watch(p)) for p in people]
        began = time.perf_counter()
        await host.send("settings.update", space_id=sid, title=title)
        await asyncio.gather(*watchers)
        latencies.append((max(arrived) - began) * 1000)
    result = {
        "publishes per event": (stack.events.published - published) / events,  # type: ignore[union-attr]
        "posts per event": (stack.gateway.posted - posted) / events,  # type: ignore[union-attr]
        "last listener p50 ms": statistics.median(latencies),
        "last listener p99 ms": percentile(latencies, 99),
    }
    await host.end(sid)
    await asyncio.gather(host.close(), *(p.close() for p in people), return_exceptions=True)
    await asyncio.sleep(10)  # the stack handles the disconnects before the next variant
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--listeners", type=int, default=200)
    parser.add_argument("--events", type=int, default=10)
    args = parser.parse_args()
    stack = LocalStack(
        StackOptions(port=0, extra_env={"POWERTOOLS_LOG_LEVEL": "ERROR", "MAX_CONNECTIONS_PER_USER": "100"})
    ).start()
    try:
        results = {
            "API Gateway": asyncio.run(run(stack, args.listeners, args.events, tier=False)),
            "broadcast tier": asyncio.run(run(stack, args.listeners, args.events, tier=True)),
        }
    finally:
        stack.stop()
    names = list(results["API Gateway"])
    print(
        f"\none room event to {args.listeners} listeners, {args.events} events, load {os.getloadavg()[0]:.1f}"
    )
    print(f"| figure | {' | '.join(results)} |")
    print("|---|" + "---|" * len(results))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{r[name]:.1f}" for r in results.values()) + " |")


if __name__ == "__main__":
    main()
