"""`make bench`: sohbet against the naive design, side by side, on the local stack.

Local stacks run as subprocesses: sohbet as deployed (every space's room events on the
publish-once broadcast tier, BroadcastThreshold 0), sohbet's previous path (the same app
with every event posted through API Gateway: `api-gateway-only`), and the same app with
NAIVE_FANOUT=1 (sequential boto3 posts; every listener join and every reaction
broadcast to everyone at once). Real WebSocket clients (sohbet_client) drive:

  (a) join storm: N listeners join one space at once (messages per join);
  (b) stage events: one stage change delivered to every listener, repeated
      (delivery p50/p99 over every listener, posts and app CPU per event);
  (c) reaction storm: every listener reacts once at a random moment within 10 s
      (posts, CPU, ack and delivery latency);
  (d) the sender's CPU per post, apart from any gateway's (bench/sender.py).

The naive design is quadratic where sohbet is not: its join storm and reaction
storm run under time budgets, and what did not finish is counted and printed
(joins that failed or were still waiting, deliveries still owed), not raised.
Its room for (b) and (c) is built on a second naive stack with NAIVE_JOINS=0
(joins not broadcast), so those scenarios start from N listeners too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sohbet_client import SohbetClient, get_token, rest

REPO = Path(__file__).resolve().parent.parent
REACTIONS = ["👏", "❤️", "😂", "😮", "🔥", "💯", "👍", "🙏", "🎉"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def why(reasons: list[str]) -> str:
    """Failure reasons as "code x count", most first ("—" when none)."""
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    return ", ".join(f"{k} x {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "—"


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


@dataclass
class Stack:
    name: str
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def start(self) -> Stack:
        self.port = free_port()
        env = dict(os.environ, **self.env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devstack", "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                self.stats()
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} stack did not start")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base + "/dev/stats", timeout=30) as resp:
            return dict(json.load(resp))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # nothing to keep: a naive stack may still be posting its backlog
            self.proc.wait(timeout=30)
            self.proc = None


POST_OP = "apigatewaymanagementapi:PostToConnection"


@dataclass
class Delta:
    posts: int
    aws: int
    cpu: float
    threads: dict[str, float]
    publishes: int = 0  # HTTP publishes to the broadcast tier (one per room event)
    tier_deliveries: int = 0  # messages the tier delivered to subscribers

    @property
    def app_cpu(self) -> float:
        """The functions' CPU: handlers, SQS consumers, fan-out senders (not the gateway's)."""
        return sum(v for k, v in self.threads.items() if k in ("lambda", "push", "sqs", "schedule"))

    @property
    def gateway_cpu(self) -> float:
        return self.threads.get("uvicorn", 0.0)


def delta(before: dict[str, Any], after: dict[str, Any]) -> Delta:
    """Between two /dev/stats readings. Every post is an AWS call, whether boto3 or the signed
    fast path sent it; the gateway counts them all, so boto3's own count is left out."""
    ops = {
        k: after["aws_calls"].get(k, 0) - before["aws_calls"].get(k, 0)
        for k in after["aws_calls"]
        if k != POST_OP
    }
    threads = {
        k: v - before.get("thread_cpu_seconds", {}).get(k, 0.0)
        for k, v in after.get("thread_cpu_seconds", {}).items()
    }
    posts = after["posts"] - before["posts"]
    tier_before, tier_after = before.get("broadcast") or {}, after.get("broadcast") or {}
    publishes = tier_after.get("published", 0) - tier_before.get("published", 0)
    return Delta(
        posts,
        sum(ops.values()) + posts + publishes,
        after["cpu_seconds"] - before["cpu_seconds"],
        threads,
        publishes,
        tier_after.get("delivered", 0) - tier_before.get("delivered", 0),
    )


class TimedClient(SohbetClient):
    """Notes when each event frame arrived, before the client's seq bookkeeping sees it (posts may
    overtake each other; an overtaken broadcast must still count as delivered)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: list[tuple[float, dict[str, Any]]] = []

    def _dispatch(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "event" and frame.get("event") in ("stage.changed", "reactions"):
            self.arrivals.append((time.perf_counter(), frame))
        super()._dispatch(frame)
        self.pending_events()  # the bench reads arrivals, not the queue


@dataclass
class Room:
    stack: Stack
    space_id: str
    host: TimedClient
    listeners: list[TimedClient] = field(default_factory=list)


async def open_client(stack: Stack, user: str, timeout: float) -> TimedClient:
    token = await get_token(stack.base, user)
    url = stack.ws + "?token=" + token
    # open_timeout also bounds the broadcast tier's realtime handshake: 1,000 at once on a loaded machine
    client = TimedClient(url, token, timeout=timeout, open_timeout=120, auto_resync=False, auth="token")
    await client.connect()
    return client


async def open_room(stack: Stack, n: int) -> Room:
    host_token = await get_token(stack.base, "host")
    status, space = await rest(stack.base, "POST", "/spaces", host_token, {"title": "bench"})
    if status != 201:
        raise RuntimeError(f"could not create the space: {status} {space}")
    host = await open_client(stack, "host", 300)
    await host.join(space["id"])
    sem = asyncio.Semaphore(50)

    async def one(i: int) -> TimedClient:
        async with sem:
            return await open_client(stack, f"l{i}", 900)

    room = Room(stack, space["id"], host)
    room.listeners = list(await asyncio.gather(*(one(i) for i in range(n))))
    return room


async def close_room(room: Room) -> None:
    for c in [room.host, *room.listeners]:
        c.abort()


# -- (a) join storm --------------------------------------------------------------------------


async def join_storm(room: Room, budget: float) -> dict[str, Any]:
    """Everyone joins at once; joins still waiting when the budget runs out are counted, not awaited."""

    async def timed(client: SohbetClient) -> float:
        started = time.perf_counter()
        await client.join(room.space_id)
        return time.perf_counter() - started

    before = room.stack.stats()
    started = time.perf_counter()
    tasks = [asyncio.ensure_future(timed(c)) for c in room.listeners]
    done, pending = await asyncio.wait(tasks, timeout=budget)
    seconds = time.perf_counter() - started
    after = room.stack.stats()
    for t in pending:
        t.cancel()
    latencies = [t.result() for t in done if t.exception() is None]
    failed = [t.exception() for t in done if t.exception() is not None]
    d = delta(before, after)
    joined = len(latencies)
    rows: dict[str, Any] = {
        "join storm: listeners joined": joined,
        "join storm: joins failed": len(failed),
        "join storm: joins unfinished at the budget": len(pending),
        "join storm: seconds": seconds,
        "join storm: join p50 ms": percentile(latencies, 50) * 1e3,
        "join storm: join p99 ms": percentile(latencies, 99) * 1e3,
        "join storm: messages per join": d.posts / max(joined, 1),
        "join storm: AWS calls per join": d.aws / max(joined, 1),
        "join storm: tier publishes + deliveries per join": (d.publishes + d.tier_deliveries)
        / max(joined, 1),
    }
    rows["join storm: why failed (code x count)"] = why(
        [getattr(e, "code", None) or type(e).__name__ for e in failed]
    )
    return rows


async def quiet_joins(room: Room) -> None:
    """Fill the room (not measured)."""
    sem = asyncio.Semaphore(100)

    async def one(c: SohbetClient) -> None:
        async with sem:
            await c.join(room.space_id)

    await asyncio.gather(*(one(c) for c in room.listeners))


# -- (b) stage events ------------------------------------------------------------------------


async def stage_events(room: Room, repeats: int, timeout: float) -> dict[str, Any]:
    """The host brings l0 on stage and back, `repeats` times; each stage.changed goes to everyone."""
    speaker = room.listeners[0]
    audience = room.listeners[1:]
    unsubscribed = 0
    if getattr(room.host, "broadcast_channels", None):  # the broadcast tier: wait for the subscriptions
        ready = await asyncio.gather(
            *(c.broadcast_ready(room.space_id, timeout=120) for c in room.listeners), return_exceptions=True
        )
        unsubscribed = sum(1 for r in ready if isinstance(r, BaseException))
    await speaker.raise_hand(room.space_id)
    await asyncio.sleep(2)
    every: list[float] = []
    last: list[float] = []
    missing = 0
    before = room.stack.stats()
    for i in range(repeats):
        reason = "request_approved" if i % 2 == 0 else "moved_to_audience"
        marks = [len(c.arrivals) for c in audience]
        sent = time.perf_counter()
        if i % 2 == 0:
            await room.host.approve(room.space_id, "l0")
        else:
            await room.host.remove_speaker(room.space_id, "l0")

        def arrival(c: TimedClient, mark: int, reason: str = reason) -> float | None:
            for t, frame in c.arrivals[mark:]:
                if frame.get("event") == "stage.changed" and frame.get("reason") == reason:
                    return t
            return None

        deadline = time.monotonic() + timeout
        while True:
            times = [arrival(c, m) for c, m in zip(audience, marks, strict=True)]
            if all(t is not None for t in times) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        got = [t - sent for t in times if t is not None]
        missing += len(times) - len(got)
        every += got
        if got:
            last.append(max(got))
        if i % 2 == 1:
            await speaker.raise_hand(room.space_id)
        await asyncio.sleep(0.5)
    d = delta(before, room.stack.stats())
    return {
        "stage event: delivery p50 ms (every listener)": percentile(every, 50) * 1e3,
        "stage event: delivery p99 ms (every listener)": percentile(every, 99) * 1e3,
        "stage event: last listener p50 ms": percentile(last, 50) * 1e3,
        "stage event: deliveries missing": missing,
        "stage event: listeners not subscribed to the tier": unsubscribed,
        "stage event: posts per event": d.posts / repeats,
        "stage event: tier publishes per event": d.publishes / repeats,
        "stage event: tier deliveries per event": d.tier_deliveries / repeats,
        "stage event: app CPU ms per event": d.app_cpu / repeats * 1e3,
        "stage event: app CPU ms per delivery": d.app_cpu / max(d.posts + d.tier_deliveries, 1) * 1e3,
        "stage event: gateway CPU ms per delivery": d.gateway_cpu / max(d.posts + d.tier_deliveries, 1) * 1e3,
        "stage event: AWS calls per event": d.aws / repeats,
    }


# -- (c) reaction storm ----------------------------------------------------------------------


async def reaction_storm(room: Room, spread: float, budget: float) -> dict[str, Any]:
    """Every listener reacts once at a random moment within `spread` seconds. Delivery of the
    k-th reaction (in send order) to a listener: when the reactions that listener has seen
    counted add up to k (aggregates carry counts, not ids)."""
    rng = random.Random(13)
    clients = room.listeners
    marks = [len(c.arrivals) for c in clients]
    sends: list[float] = []
    acks: list[float] = []
    refused: list[str] = []

    async def react(c: TimedClient, at: float, emoji: str) -> None:
        await asyncio.sleep(at)
        sent = time.perf_counter()
        try:
            await c.react(room.space_id, emoji)
        except Exception as exc:
            refused.append(getattr(exc, "code", None) or type(exc).__name__)
            return
        sends.append(sent)
        acks.append(time.perf_counter() - sent)

    before = room.stack.stats()
    started = time.perf_counter()
    await asyncio.gather(*(react(c, rng.uniform(0, spread), rng.choice(REACTIONS)) for c in clients))
    sent_all = time.perf_counter() - started
    expected = len(sends)

    def seen(c: TimedClient, mark: int) -> list[tuple[float, int]]:
        total, out = 0, []
        for t, frame in c.arrivals[mark:]:
            if frame.get("event") == "reactions":
                total += int(frame.get("total", 0))
                out.append((t, total))
        return out

    deadline = time.perf_counter() + budget
    while time.perf_counter() < deadline:
        if all((s := seen(c, m)) and s[-1][1] >= expected for c, m in zip(clients, marks, strict=True)):
            break
        await asyncio.sleep(0.25)
    elapsed = time.perf_counter() - started
    after = room.stack.stats()
    d = delta(before, after)
    sends.sort()
    sample = [sends[i] for i in range(0, expected, max(1, expected // 50))]
    ranks = list(range(1, expected + 1, max(1, expected // 50)))
    latencies: list[float] = []
    delivered = 0
    events = 0
    for c, m in zip(clients, marks, strict=True):
        s = seen(c, m)
        events = max(events, len(s))
        delivered += s[-1][1] if s else 0
        j = 0
        for rank, sent in zip(ranks, sample, strict=True):
            while j < len(s) and s[j][1] < rank:
                j += 1
            if j < len(s):
                latencies.append(s[j][0] - sent)
    owed = max(0, expected * len(clients) - delivered)
    # what the design needs in all: the posts made, plus one post per delivery still owed
    # (each naive reaction is one post per listener; sohbet's aggregates are counted whole)
    return {
        "reactions: reactions acknowledged": expected,
        "reactions: refused or failed": len(refused),
        "reactions: why (code x count)": why(refused),
        "reactions: seconds to send them all": sent_all,
        "reactions: ack p50 ms": percentile(acks, 50) * 1e3,
        "reactions: ack p99 ms": percentile(acks, 99) * 1e3,
        "reactions: reactions events seen by a listener": events,
        "reactions: delivery p50 ms": percentile(latencies, 50) * 1e3,
        "reactions: delivery p99 ms": percentile(latencies, 99) * 1e3,
        "reactions: seconds until all seen (or budget)": elapsed,
        "reactions: deliveries owed at the end": owed,
        "reactions: posts made": d.posts,
        "reactions: posts needed (made + owed)": d.posts + owed,
        "reactions: posts per reaction": (d.posts + owed) / max(expected, 1),
        "reactions: tier publishes": d.publishes,
        "reactions: tier deliveries": d.tier_deliveries,
        "reactions: app CPU s": d.app_cpu,
        "reactions: app CPU ms per reaction": d.app_cpu / max(expected, 1) * 1e3,
        "reactions: gateway CPU s": d.gateway_cpu,
    }


# -- the run ----------------------------------------------------------------------------------

COMMON = {"LISTENER_COUNT_INTERVAL_SECONDS": "1", "FANOUT_SHARD_THRESHOLD": "100000"}


async def run_sohbet(n: int, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    stack = Stack("sohbet", dict(COMMON, **env)).start()
    try:
        room = await open_room(stack, n)
        rows = await join_storm(room, args.storm_budget)
        rows.update(await stage_events(room, args.repeats, 120))
        rows.update(await reaction_storm(room, args.reaction_spread, args.reaction_budget))
        await close_room(room)
        return rows
    finally:
        stack.stop()


async def run_naive(n: int, args: argparse.Namespace) -> dict[str, Any]:
    stack = Stack("naive", dict(COMMON, NAIVE_FANOUT="1")).start()
    try:
        room = await open_room(stack, n)
        rows = await join_storm(room, args.naive_storm_budget)
        await close_room(room)
    finally:
        stack.stop()
    # A fresh naive stack whose joins are not broadcast: the room of N the naive storm could
    # not build in its budget, for the stage events and the reaction storm.
    stack = Stack("naive", dict(COMMON, NAIVE_FANOUT="1", NAIVE_JOINS="0")).start()
    try:
        room = await open_room(stack, n)
        await quiet_joins(room)
        rows.update(await stage_events(room, args.repeats, 120))
        rows.update(await reaction_storm(room, args.reaction_spread, args.naive_reaction_budget))
        await close_room(room)
    finally:
        stack.stop()
    return rows


def sender_rows(posts: int) -> tuple[dict[str, Any], dict[str, Any]]:
    from bench.sender import measure

    m = measure(posts)
    key = "sender: CPU ms per post (no gateway)"
    return (
        {key: m["sohbet SignedPoster (hmac SigV4, http.client)"]},
        {key: m["boto3 post_to_connection (naive)"], "previous": m},
    )


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(a: Any, b: Any) -> str:
    if isinstance(a, int | float) and isinstance(b, int | float) and a and b == b:
        return f"{b / a:,.1f}x"
    return "—"


def table(n: int, results: dict[str, dict[str, Any]], notes: list[str]) -> str:
    names = list(results)
    ours = [name for name in names if name != "naive"]
    keys: list[str] = []
    for rows in results.values():
        keys += [k for k in rows if k not in keys and k != "previous"]
    ratios = [f"naive/{name}" for name in ours] if "naive" in results else []
    header = (
        f"| {'figure':52} | "
        + " | ".join(f"{name:>14}" for name in names)
        + "".join(f" | {r:>14}" for r in ratios)
        + " |"
    )
    lines = [
        f"sohbet benchmark — {n:,} listeners, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        *notes,
        "",
        header,
        "|" + "-" * 54 + "|" + "|".join("-" * 16 for _ in [*names, *ratios]) + "|",
    ]
    for key in keys:
        values = [results[name].get(key, "") for name in names]
        naive = results.get("naive", {}).get(key)
        cells = [ratio(results[name].get(key), naive) for name in ours] if ratios else []
        lines.append(
            f"| {key:52} | "
            + " | ".join(f"{fmt(v):>14}" for v in values)
            + "".join(f" | {c:>14}" for c in cells)
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--listeners", "-n", type=int, default=int(os.environ.get("BENCH_N", "1000")))
    parser.add_argument("--repeats", type=int, default=10, help="stage events")
    parser.add_argument("--reaction-spread", type=float, default=10.0)
    parser.add_argument("--storm-budget", type=float, default=600.0, help="sohbet's join storm")
    parser.add_argument("--naive-storm-budget", type=float, default=180.0)
    parser.add_argument("--reaction-budget", type=float, default=120.0, help="after the last reaction")
    parser.add_argument("--naive-reaction-budget", type=float, default=90.0)
    parser.add_argument("--sender-posts", type=int, default=2000)
    parser.add_argument(
        "--variant",
        action="append",
        default=None,
        metavar="NAME:VAR=VALUE,...",
        help="sohbet variants with these settings besides the deployed one (broadcast tier on) "
        "(default: api-gateway-only:SOHBET_BROADCAST=0, every event posted to each socket; 'none' for none)",
    )
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()

    started = time.monotonic()
    notes = [f"load average at the start: {load_average()}"]
    results: dict[str, dict[str, Any]] = {}
    print("sohbet …", file=sys.stderr, flush=True)
    results["sohbet"] = asyncio.run(run_sohbet(args.listeners, args, {"SOHBET_BROADCAST": "1"}))
    variants = args.variant if args.variant is not None else ["api-gateway-only:SOHBET_BROADCAST=0"]
    for spec in variants:
        if spec == "none":
            continue
        name, _, settings = spec.partition(":")
        env = dict(item.split("=", 1) for item in settings.split(",") if item)
        print(f"{name} …", file=sys.stderr, flush=True)
        results[name] = asyncio.run(run_sohbet(args.listeners, args, env))
    if not args.skip_naive:
        print(f"naive … (load {load_average()})", file=sys.stderr, flush=True)
        results["naive"] = asyncio.run(run_naive(args.listeners, args))
    ours, theirs = sender_rows(args.sender_posts)
    for name in results:
        if name != "naive":
            results[name].update(ours)
    if "naive" in results:
        results["naive"].update({k: v for k, v in theirs.items() if k != "previous"})
    notes.append(f"load average at the end: {load_average()}; {time.monotonic() - started:.0f} s in all")
    notes.append(
        "sender CPU per post (bench.sender, trivial server): "
        + "; ".join(f"{k} {v:.3f} ms" for k, v in theirs["previous"].items())
    )
    text = table(args.listeners, results, notes)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
