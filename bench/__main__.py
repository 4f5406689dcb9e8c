"""`make bench`: sohbet against the naive design, side by side, on the local stack.

Two local stacks run as subprocesses: sohbet as configured, and the same app
with NAIVE_FANOUT=1 (sequential boto3 posts; every listener join broadcast to
everyone). Real WebSocket clients (sohbet_client) drive three scenarios on
each, and the table prints the figures and the ratios.

  (a) join storm: N listeners join one space at once.
  (b) stage event: one stage change delivered to every listener (repeated).
  (c) churn: listeners leave and rejoin at a steady rate while the stage changes.

The naive baseline's join storm is quadratic (join k costs k posts): it runs
under a time budget, and the table says how many joins it completed.
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


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

    def start(self) -> None:
        self.port = free_port()
        env = dict(os.environ, **self.env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devstack", "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} stack did not start")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base + "/dev/stats", timeout=5) as resp:
            return json.load(resp)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Delta:
    posts: int
    aws: int
    cpu: float
    aws_ops: dict[str, int] = field(default_factory=dict)


POST_OP = "apigatewaymanagementapi:PostToConnection"


def delta(before: dict[str, Any], after: dict[str, Any]) -> Delta:
    """Between two /dev/stats readings. Every post is an AWS call, whether boto3 or the
    signed fast path sent it; the gateway counts them all, so boto3's own count is left out."""
    ops = {
        k: after["aws_calls"].get(k, 0) - before["aws_calls"].get(k, 0)
        for k in after["aws_calls"]
        if after["aws_calls"].get(k, 0) != before["aws_calls"].get(k, 0)
    }
    return Delta(
        posts=after["posts"] - before["posts"],
        aws=sum(n for op, n in ops.items() if op != POST_OP) + after["posts"] - before["posts"],
        cpu=after["cpu_seconds"] - before["cpu_seconds"],
        aws_ops=ops,
    )


@dataclass
class Results:
    rows: dict[str, float | str] = field(default_factory=dict)


async def connect_all(stack: Stack, users: list[str], concurrency: int = 50) -> list[SohbetClient]:
    sem = asyncio.Semaphore(concurrency)

    async def one(user: str) -> SohbetClient:
        async with sem:
            token = await get_token(stack.base, user)
            client = SohbetClient(
                stack.ws + "?token=" + token, token, timeout=900, auto_resync=False, auth="token"
            )
            await client.connect()
            return client

    return await asyncio.gather(*(one(u) for u in users))


async def timed_join(client: SohbetClient, space_id: str) -> float:
    started = time.perf_counter()
    await client.join(space_id)
    return time.perf_counter() - started


async def wait_stage_event(client: SohbetClient, reason: str, timeout: float) -> float:
    await client.next_event("stage.changed", timeout=timeout, predicate=lambda e: e.get("reason") == reason)
    return time.perf_counter()


async def run_variant(
    stack: Stack, n: int, repeats: int, churn_seconds: float, storm_budget: float
) -> Results:
    res = Results()
    host_token = await get_token(stack.base, "host")
    status, space = await rest(stack.base, "POST", "/spaces", host_token, {"title": "bench"})
    assert status == 201, space
    space_id = space["id"]
    host = SohbetClient(
        stack.ws + "?token=" + host_token, host_token, timeout=300, auto_resync=False, auth="token"
    )
    await host.connect()
    await host.join(space_id)
    listeners = await connect_all(stack, [f"l{i}" for i in range(n)])

    # (a) join storm
    before = stack.stats()
    started = time.perf_counter()
    tasks = [asyncio.ensure_future(timed_join(c, space_id)) for c in listeners]
    done, pending = await asyncio.wait(tasks, timeout=storm_budget)
    storm_seconds = time.perf_counter() - started
    latencies = [t.result() for t in done if t.exception() is None]
    if pending:
        # The naive design may not finish within the budget: let it drain, uncounted.
        await asyncio.wait(pending)
    failed = sum(1 for t in tasks if t.exception() is not None)
    if failed:
        raise RuntimeError(f"{failed} joins failed in the storm")
    d = delta(before, stack.stats())
    joined = len(latencies)
    res.rows.update(
        {
            "storm: listeners joined": joined,
            "storm: seconds": storm_seconds,
            "storm: join p50 ms": percentile(latencies, 50) * 1e3,
            "storm: join p99 ms": percentile(latencies, 99) * 1e3,
            "storm: messages per join": d.posts / max(joined, 1),
            "storm: AWS calls per join": d.aws / max(joined, 1),
        }
    )
    for c in listeners:
        c.pending_events()  # discard what the storm caused

    # (b) stage event to every listener
    speaker = listeners[0]
    await speaker.raise_hand(space_id)
    deliveries: list[float] = []
    before = stack.stats()
    events = 0
    for i in range(repeats):
        reason = "request_approved" if i % 2 == 0 else "moved_to_audience"
        waits = [asyncio.ensure_future(wait_stage_event(c, reason, 120)) for c in listeners]
        await asyncio.sleep(0.05)
        sent = time.perf_counter()
        if i % 2 == 0:
            await host.approve(space_id, "l0")
        else:
            await host.remove_speaker(space_id, "l0")
            await speaker.raise_hand(space_id)
        arrivals = await asyncio.gather(*waits)
        deliveries.append(max(arrivals) - sent)
        events += 1
    d = delta(before, stack.stats())
    res.rows.update(
        {
            "stage event: last listener p50 ms": percentile(deliveries, 50) * 1e3,
            "stage event: last listener p99 ms": percentile(deliveries, 99) * 1e3,
            "stage event: CPU s per 1,000 deliveries": d.cpu / max(d.posts, 1) * 1000,
            "stage event: AWS calls per command": d.aws / max(events, 1),
        }
    )

    # (c) churn
    rng = random.Random(7)
    before = stack.stats()
    churn_latencies: list[float] = []
    ops = 0
    deadline = time.monotonic() + churn_seconds
    stage_toggle = 0
    while time.monotonic() < deadline:
        batch = rng.sample(listeners[1:], k=min(10, len(listeners) - 1))
        await asyncio.gather(*(c.leave(space_id) for c in batch))
        joins = await asyncio.gather(*(timed_join(c, space_id) for c in batch))
        churn_latencies += joins
        ops += 2 * len(batch)
        stage_toggle += 1
        if stage_toggle % 5 == 0:
            with_speaker = stage_toggle % 10 == 0
            try:
                if with_speaker:
                    await host.remove_speaker(space_id, "l0")
                    await speaker.raise_hand(space_id)
                else:
                    await host.approve(space_id, "l0")
            except Exception:
                pass
        await asyncio.sleep(0.1)
    d = delta(before, stack.stats())
    res.rows.update(
        {
            "churn: join/leave ops": ops,
            "churn: join p50 ms": percentile(churn_latencies, 50) * 1e3,
            "churn: join p99 ms": percentile(churn_latencies, 99) * 1e3,
            "churn: messages per join/leave": d.posts / max(ops, 1),
        }
    )
    await asyncio.gather(*(c.close() for c in [host, *listeners]), return_exceptions=True)
    return res


LOWER_IS_BETTER = True


def print_table(n: int, results: dict[str, Results]) -> str:
    ours, naive = results["sohbet"].rows, results["naive"].rows
    lines = [
        f"sohbet benchmark — {n} listeners, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "",
        f"| {'figure':42} | {'sohbet':>12} | {'naive':>12} | {'naive/sohbet':>12} |",
        f"|{'-' * 44}|{'-' * 14}|{'-' * 14}|{'-' * 14}|",
    ]
    for key in ours:
        a, b = ours[key], naive.get(key, float("nan"))
        ratio = f"{b / a:.1f}x" if isinstance(a, int | float) and isinstance(b, int | float) and a else "—"
        fa = f"{a:.2f}" if isinstance(a, float) else str(a)
        fb = f"{b:.2f}" if isinstance(b, float) else str(b)
        lines.append(f"| {key:42} | {fa:>12} | {fb:>12} | {ratio:>12} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # 400 by default: the naive baseline's storm is quadratic (N²/2 sequential boto3 posts),
    # about two minutes here at 400 and a quarter of an hour at 1,000.
    parser.add_argument("--listeners", "-n", type=int, default=int(os.environ.get("BENCH_N", "400")))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--churn-seconds", type=float, default=10.0)
    parser.add_argument("--naive-storm-budget", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()

    common = {"LISTENER_COUNT_INTERVAL_SECONDS": "1", "FANOUT_SHARD_THRESHOLD": "100000"}
    variants = {
        "sohbet": Stack("sohbet", dict(common)),
        "naive": Stack("naive", dict(common, NAIVE_FANOUT="1")),
    }
    results: dict[str, Results] = {}
    for name, stack in variants.items():
        stack.start()
        try:
            budget = 600.0 if name == "sohbet" else args.naive_storm_budget
            print(f"running {name} …", file=sys.stderr, flush=True)
            results[name] = asyncio.run(
                run_variant(stack, args.listeners, args.repeats, args.churn_seconds, budget)
            )
        finally:
            stack.stop()
    table = print_table(args.listeners, results)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
