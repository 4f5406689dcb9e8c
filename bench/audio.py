"""`python -m bench.audio`: the embedded media server's figures, on this machine, in under two minutes.

A local stack runs as a subprocess (so its CPU is measured apart from the clients); this
process drives a real space over the WebSocket API and connects aiortc WHIP peers:

  join → first audio   from the `space.join` reply to the first received frame, and to the
                       first frame of the host's tone (WHIP POST, ICE, DTLS, mixer, jitter buffers)
  one-way latency      the host's microphone switches from silence to 440 Hz; when does the tone
                       arrive at the listeners (after decoding, before any playout device)?
  CPU                  the stack process's CPU per added listener and per added speaker
  capacity             listeners added in steps until one misses frames (or the budget ends)

Everything stays on loopback: the process enters a private network namespace when it can
(root), the server and the peers gather 127.0.0.1 candidates only, with no ICE servers.
Clients and server share the machine's cores: the capacity found is that of the pair, a
lower bound for the server alone (the table says which side was busier).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FPS = 50  # 20 ms frames


def _isolate() -> str:
    from devstack.netns import NetworkIsolationError, enter_private_network

    try:
        return enter_private_network()
    except NetworkIsolationError as err:
        sys.exit(f"cannot isolate the benchmark's network: {err}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class StackProcess:
    def __init__(self) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devstack", "--port", str(self.port)],
            cwd=REPO,
            env=dict(os.environ, LISTENER_COUNT_INTERVAL_SECONDS="2"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("the local stack did not start")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base + "/dev/stats", timeout=5) as resp:
            return dict(json.load(resp))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _mixer_counters(stats: dict[str, Any]) -> dict[str, int]:
    rooms = stats["media"]["rooms"].values()
    return {k: sum(r[k] for r in rooms) for k in ("late_ticks", "outbound_dropped", "underruns")}


def clean(w: dict[str, Any]) -> bool:
    """No underrun: every listener got >= 97% of its frames, no mixer stall, nothing dropped."""
    return bool(w["worst_fraction"] >= 0.97 and w["late_ticks"] == 0 and w["dropped"] == 0)


def summary(w: dict[str, Any]) -> str:
    return (
        f"worst {w['worst_fraction']:.1%} of frames, late ticks {w['late_ticks']}, dropped {w['dropped']}, "
        f"server {w['server_cpu']:.0%}, clients {w['client_cpu']:.0%}"
    )


class Bench:
    def __init__(self, stack: StackProcess) -> None:
        self.stack = stack
        self.rows: list[tuple[str, str]] = []
        self.peers: list[Any] = []
        self.clients: list[Any] = []
        self.space_id = ""
        self.host: Any = None
        self.host_audio: Any = None
        self.users = 0
        self.retried = 0
        self.points: list[tuple[int, float]] = []  # (listeners, server CPU share) with 3 speakers

    def row(self, name: str, value: str) -> None:
        self.rows.append((name, value))
        print(f"  {name}: {value}", file=sys.stderr, flush=True)

    async def client(self, prefix: str) -> Any:
        from sohbet_client import SohbetClient, get_token

        self.users += 1
        user = f"{prefix}{self.users}"
        token = await get_token(self.stack.base, user)
        client = SohbetClient(self.stack.ws + "?token=" + token, token, timeout=60, auto_resync=False)
        client.user_id = user  # type: ignore[attr-defined]
        await client.connect()
        self.clients.append(client)
        return client

    async def peer(self, media: dict[str, Any], tone: float | None = None, decode: bool = True) -> Any:
        from devstack.media.whip_client import WhipPeer

        url, token = media["Meeting"]["MediaPlacement"]["SignalingUrl"], media["Attendee"]["JoinToken"]
        peer = WhipPeer(self.stack.base, url, token, tone, decode=decode)
        response = await peer.join()
        if response.status != 201:
            raise RuntimeError(f"WHIP join failed: {response.status} {response.body}")
        self.peers.append(peer)
        return peer

    async def listener(self, decode: bool = True) -> tuple[Any, float]:
        """A listener joined over the API and over WHIP; returns (peer, time of the join reply)."""
        client = await self.client("l")
        snapshot = await client.join(self.space_id)
        replied = time.monotonic()
        return await self.peer(snapshot["media"], decode=decode), replied

    async def open(self) -> None:
        from sohbet_client import rest

        self.host = await self.client("host")
        status, space = await rest(
            self.stack.base, "POST", "/spaces", self.host.token, {"title": "audio bench"}
        )
        if status != 201:
            raise RuntimeError(f"create space: {status} {space}")
        self.space_id = space["id"]
        snapshot = await self.host.join(self.space_id)
        self.host_audio = await self.peer(snapshot["media"], tone=440)

    async def until(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ figures

    async def first_audio(self, n: int) -> list[Any]:
        frames, tones = [], []
        listeners = []
        for _ in range(n):
            peer, replied = await self.listener()
            await self.until(lambda p=peer: p.onset(440, after=0) is not None, 10, "the host's tone")
            frames.append(peer.first_audio_at - replied)
            tones.append(peer.onset(440, after=0) - replied)
            listeners.append(peer)
        self.row(
            f"join reply → first audio frame (median of {n})", f"{statistics.median(frames) * 1e3:.0f} ms"
        )
        self.row("join reply → first frame of the tone (median)", f"{statistics.median(tones) * 1e3:.0f} ms")
        return listeners

    async def latency(self, listeners: list[Any], rounds: int) -> None:
        mic = self.host_audio.mic
        samples = []
        for _ in range(rounds):
            mic.set(None)
            await self.until(lambda: all(p.silent(0.1) for p in listeners), 5, "silence")
            await asyncio.sleep(0.2)
            mic.set(440)
            switched = mic.switched_at
            await self.until(
                lambda s=switched: all(p.onset(440, after=s) is not None for p in listeners),
                5,
                "the tone onset",
            )
            samples += [p.onset(440, after=switched) - switched for p in listeners]
        samples.sort()
        median, p90 = statistics.median(samples), samples[int(0.9 * (len(samples) - 1))]
        self.row(
            f"one-way latency, tone onset ({len(samples)} samples)",
            f"median {median * 1e3:.0f} ms, p90 {p90 * 1e3:.0f} ms",
        )

    async def window(self, seconds: float) -> dict[str, Any]:
        """Server CPU share, client CPU share, frames each listener missed, mixer counters, over `seconds`."""
        listeners = [p for p in self.peers if p.mic is None]
        before_stats, before_self = self.stack.stats(), _cpu_self()
        before_frames = [p.frames_received for p in listeners]
        started = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        after_stats, after_self = self.stack.stats(), _cpu_self()
        expected = elapsed * FPS
        received = [p.frames_received - b for p, b in zip(listeners, before_frames, strict=True)]
        counters_before, counters_after = _mixer_counters(before_stats), _mixer_counters(after_stats)
        return {
            "server_cpu": (after_stats["cpu_seconds"] - before_stats["cpu_seconds"]) / elapsed,
            "client_cpu": (after_self - before_self) / elapsed,
            "worst_fraction": min(received) / expected if received else 1.0,
            "late_ticks": counters_after["late_ticks"] - counters_before["late_ticks"],
            "dropped": counters_after["outbound_dropped"] - counters_before["outbound_dropped"],
            "listeners": len(listeners),
        }

    async def add_listeners(self, n: int, decode: bool = True) -> None:
        sem = asyncio.Semaphore(8)

        async def one() -> None:
            async with sem:
                await self.listener(decode)

        await asyncio.gather(*(one() for _ in range(n)))
        await self.settle()

    async def settle(self) -> None:
        """Every peer connected and receiving, then a second for the jitter buffers."""
        await self.until(lambda: all(p.first_audio_at is not None for p in self.peers), 30, "all peers")
        await asyncio.sleep(1.0)

    async def cpu(self, window: float) -> None:
        b = await self.window(window)
        for tone in (550, 660):
            client = await self.client("s")
            snapshot = await client.join(self.space_id)
            await client.raise_hand(self.space_id)
            await self.host.approve(self.space_id, client.user_id)
            await self.peer(snapshot["media"], tone=tone)
        await self.settle()
        c = await self.window(window)
        self.points.append((c["listeners"], c["server_cpu"]))
        per_speaker = (c["server_cpu"] - b["server_cpu"]) / 2
        self.row(
            "server CPU per speaker (slope, 2 added; uplink + own mix)", f"{per_speaker * 100:.1f}% of a core"
        )
        self.row(
            f"server CPU with 3 speakers + {c['listeners']} listeners",
            f"{c['server_cpu'] * 100:.0f}% of a core (bench clients: {c['client_cpu'] * 100:.0f}%)",
        )

    async def capacity(self, step: int, window: float, budget: float) -> None:
        started = time.monotonic()
        good: dict[str, Any] | None = None
        bad: dict[str, Any] | None = None
        while time.monotonic() - started < budget:
            await self.add_listeners(step, decode=False)
            w = await self.window(window)
            ok = clean(w)
            if not ok:  # a second window tells a saturated server from a passing disturbance
                print(f"    {w['listeners']} listeners: {summary(w)}; measuring again", file=sys.stderr)
                self.retried += 1
                w = await self.window(window)
                ok = clean(w)
            print(f"    {w['listeners']} listeners: {summary(w)}", file=sys.stderr, flush=True)
            if not ok:
                bad = w
                break
            good = w
            self.points.append((w["listeners"], w["server_cpu"]))
        if good is not None:
            self.row(
                "listeners carried without underruns",
                f"{good['listeners']} (server {good['server_cpu']:.0%} of a core, bench clients "
                f"{good['client_cpu']:.0%})" + ("" if bad else "; budget ended before any underrun"),
            )
        if bad is not None:
            self.row(
                "first step with underruns",
                f"{bad['listeners']} listeners: the worst got {bad['worst_fraction']:.0%} of its frames, "
                f"{bad['late_ticks']} late mixer ticks, {bad['dropped']} packets dropped in queues "
                f"(server {bad['server_cpu']:.0%}, clients {bad['client_cpu']:.0%})",
            )

    def listener_cost(self) -> None:
        """Server CPU per listener: the least-squares slope over every clean window with 3 speakers."""
        import numpy as np

        if len(self.points) >= 2:
            xs, ys = zip(*self.points, strict=True)
            slope = float(np.polyfit(xs, ys, 1)[0])
            self.row(
                f"server CPU per listener (slope over {len(xs)} windows, {min(xs)} to {max(xs)} listeners)",
                f"{slope * 100:.2f}% of a core",
            )

    def capacity_note(self) -> None:
        if self.retried:
            self.row("capacity windows measured twice after a disturbance", str(self.retried))

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.peers), return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)


async def run(args: argparse.Namespace, stack: StackProcess) -> list[tuple[str, str]]:
    from devstack.media.server import restrict_host_candidates

    restrict_host_candidates(["127.0.0.1"])
    bench = Bench(stack)
    try:
        await bench.open()
        listeners = await bench.first_audio(args.first)
        await bench.latency(listeners, args.rounds)
        await bench.cpu(args.window)
        await bench.capacity(args.step, args.window, args.budget)
        bench.listener_cost()
        bench.capacity_note()
    finally:
        await bench.close()
    return bench.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--first", type=int, default=5, help="listeners timed from join to first audio")
    parser.add_argument("--rounds", type=int, default=5, help="tone onsets for the latency")
    parser.add_argument("--window", type=float, default=3.0, help="seconds per CPU/underrun window")
    parser.add_argument("--step", type=int, default=25, help="listeners added per capacity step")
    parser.add_argument("--budget", type=float, default=45.0, help="seconds for the capacity ramp")
    args = parser.parse_args()
    network = _isolate()
    began = time.monotonic()
    load = os.getloadavg()
    stack = StackProcess()
    stack.start()
    try:
        rows = asyncio.run(run(args, stack))
    finally:
        stack.stop()
    print(f"\nEmbedded media server figures ({os.cpu_count()} cores; network: {network})")
    print(f"load average before the run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print("| figure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(f"\n(run took {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
