"""`python -m bench.joinstorm`: N listeners join one space at once, with Chime's API rates enforced.

Two local stacks run as subprocesses, each with the Chime emulator enforcing the documented
default rates (LOCAL_CHIME_RATE_LIMITS=1: ~10 requests/s per operation, 429 ThrottlingException
past them; https://docs.aws.amazon.com/chime-sdk/latest/dg/quotas-throttling.html):

  before  one CreateAttendee per join, 5 attempts per throttled call (ATTENDEE_POOL_BATCH=0,
          CHIME_MAX_ATTEMPTS=5: the app as it was)
  after   listener attendees from the pool, BatchCreateAttendee 100 at a time, 2 attempts

Each listener sends `space.join` at once and, like a real client, tries again after a second
(with jitter) whenever the answer is an error (`internal` before, `rate_limited` after), until
it is in or the budget runs out. The table gives the time until everyone is in, join latency,
the errors clients saw, and the Chime calls: what the app asked for (boto3 calls) and the HTTP
requests Chime served (retries included), of which how many it throttled.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.__main__ import Stack, close_room, open_room, percentile
from sohbet_client import SohbetClient, SohbetError

VARIANTS: dict[str, dict[str, str]] = {
    "before": {"LOCAL_CHIME_RATE_LIMITS": "1", "ATTENDEE_POOL_BATCH": "0", "CHIME_MAX_ATTEMPTS": "5"},
    "after": {"LOCAL_CHIME_RATE_LIMITS": "1"},
}
CHIME = "chime-sdk-meetings:"


@dataclass
class Storm:
    listeners: int
    joined: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    app_calls: dict[str, int] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)
    throttled: int = 0


async def _join_until_in(client: SohbetClient, space_id: str, deadline: float, storm: Storm) -> None:
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        try:
            await client.join(space_id)
        except SohbetError as err:
            storm.errors[err.code] += 1
            await asyncio.sleep(1.0 + random.random())
            continue
        storm.latencies.append(time.perf_counter() - started)
        storm.joined += 1
        return


async def run_storm(stack: Stack, n: int, budget: float) -> Storm:
    room = await open_room(stack, n)  # the space, its host joined, n listeners connected
    await asyncio.sleep(1.5)  # a second of Chime's rate refilled after the host's calls
    storm = Storm(listeners=n)
    before = stack.stats()
    started = time.perf_counter()
    await asyncio.gather(*(_join_until_in(c, room.space_id, started + budget, storm) for c in room.listeners))
    storm.seconds = time.perf_counter() - started
    after = stack.stats()
    storm.app_calls = _diff(before["aws_calls"], after["aws_calls"], CHIME)
    storm.served = _diff(before["chime"]["requests"], after["chime"]["requests"])
    storm.throttled = after["chime"]["throttled"] - before["chime"]["throttled"]
    await close_room(room)
    return storm


def _diff(before: dict[str, int], after: dict[str, int], prefix: str = "") -> dict[str, int]:
    out = {}
    for key, value in after.items():
        if key.startswith(prefix) and value != before.get(key, 0):
            out[key.removeprefix(prefix)] = value - before.get(key, 0)
    return out


def table(results: dict[str, Storm]) -> str:
    ops = sorted({op for s in results.values() for op in (*s.app_calls, *s.served)})
    rows: list[tuple[str, list[str]]] = [
        ("listeners in", [f"{s.joined} / {s.listeners}" for s in results.values()]),
        ("seconds until all in (or budget)", [f"{s.seconds:.1f}" for s in results.values()]),
        ("join p50 s", [f"{percentile(s.latencies, 50):.1f}" for s in results.values()]),
        ("join p99 s", [f"{percentile(s.latencies, 99):.1f}" for s in results.values()]),
        (
            "errors clients saw",
            [", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) or "none" for s in results.values()],
        ),
    ]
    for op in ops:
        rows.append((f"app's {op} calls", [str(s.app_calls.get(op, 0)) for s in results.values()]))
    for op in ops:
        rows.append((f"Chime {op} requests served", [str(s.served.get(op, 0)) for s in results.values()]))
    rows.append(("Chime requests throttled (429)", [str(s.throttled) for s in results.values()]))
    width = max(len(r[0]) for r in rows)
    lines = [f"| {'':<{width}} | " + " | ".join(f"{name:>16}" for name in results) + " |"]
    lines.append(f"|{'-' * (width + 2)}|" + "|".join("-" * 18 for _ in results) + "|")
    for label, values in rows:
        lines.append(f"| {label:<{width}} | " + " | ".join(f"{v:>16}" for v in values) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--listeners", type=int, default=1000)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds a storm may take")
    parser.add_argument("--only", choices=sorted(VARIANTS), action="append", help="run only these variants")
    args = parser.parse_args(argv)
    results: dict[str, Storm] = {}
    for name in args.only or list(VARIANTS):
        stack = Stack(name, VARIANTS[name])
        stack.start()
        try:
            print(f"running {name} ({args.listeners} listeners) …", file=sys.stderr, flush=True)
            results[name] = asyncio.run(run_storm(stack, args.listeners, args.budget))
        finally:
            stack.stop()
    print(table(results))


if __name__ == "__main__":
    main()
