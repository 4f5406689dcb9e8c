"""`python -m bench.flood`: ping latency of other clients while one socket floods.

Starts a local stack in this process, opens OBSERVERS quiet sockets that ping
one after another, and one socket that sends FLOOD pings as fast as it can
without waiting for answers. Prints p50/p99 of the quiet sockets' pings with
no flood and during it, and how the flooding socket fared (replies,
rate_limited answers, whether and why it was closed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import time
from typing import Any

import websockets

from devstack.stack import LocalStack, StackOptions


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _observer(url: str, pings: int, out: list[float], pace: float) -> None:
    async with websockets.connect(url, open_timeout=10) as ws:
        for i in range(pings):
            await asyncio.sleep(pace)
            began = time.perf_counter()
            await ws.send(json.dumps({"action": "ping", "ref": f"o{i}"}))
            while True:  # skip anything that is not this ping's answer
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if frame.get("ref") == f"o{i}":
                    break
            out.append(time.perf_counter() - began)


async def _flooder(url: str, frames: int, result: dict[str, Any]) -> None:
    counts: dict[str, int] = {}
    async with websockets.connect(url, open_timeout=10, max_queue=None) as ws:

        async def read() -> None:
            try:
                async for raw in ws:
                    frame = json.loads(raw)
                    key = frame.get("code") or frame.get("type") or "other"
                    counts[key] = counts.get(key, 0) + 1
                    if sum(counts.values()) >= frames:
                        return
            except websockets.ConnectionClosed:
                pass

        reader = asyncio.create_task(read())
        sent = 0
        try:
            for i in range(frames):
                await ws.send(json.dumps({"action": "ping", "ref": f"f{i}"}))
                sent += 1
        except websockets.ConnectionClosed:
            pass
        try:
            await asyncio.wait_for(reader, 60)
        except TimeoutError:
            await ws.close()
        result.update(sent=sent, answers=counts, close_code=ws.close_code, close_reason=ws.close_reason)


async def _round(
    stack: LocalStack, observers: int, pings: int, flood: int, pace: float = 0.15
) -> tuple[list[float], dict]:
    latencies: list[float] = []
    flood_result: dict[str, Any] = {}
    urls = [f"{stack.ws_url}?token={stack.mint_token(f'quiet{i}')}" for i in range(observers)]
    tasks = [_observer(url, pings, latencies, pace) for url in urls]
    if flood:
        tasks.append(_flooder(f"{stack.ws_url}?token={stack.mint_token('flood')}", flood, flood_result))
    await asyncio.gather(*tasks)
    return latencies, flood_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observers", type=int, default=3)
    parser.add_argument("--pings", type=int, default=40, help="pings per quiet socket, 0.15 s apart")
    parser.add_argument("--flood", type=int, default=3000, help="frames the flooding socket sends")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("sohbet").setLevel(logging.ERROR)
    stack = LocalStack(StackOptions(port=0, extra_env={"POWERTOOLS_LOG_LEVEL": "ERROR"})).start()
    try:
        asyncio.run(_round(stack, args.observers, 3, 0))  # warm-up: JWKS fetch, first imports
        quiet, _ = asyncio.run(_round(stack, args.observers, args.pings, 0))
        began = time.perf_counter()
        busy, flood = asyncio.run(_round(stack, args.observers, args.pings, args.flood))
        took = time.perf_counter() - began
    finally:
        stack.stop()
    print(f"ping latency of {args.observers} quiet sockets x {args.pings} pings (ms)")
    print(f"  no flood : p50 {_pct(quiet, 0.5):7.1f}  p99 {_pct(quiet, 0.99):7.1f}")
    print(
        f"  flooding : p50 {_pct(busy, 0.5):7.1f}  p99 {_pct(busy, 0.99):7.1f}"
        f"  (mean {statistics.mean(busy) * 1000:.1f}, round took {took:.1f}s)"
    )
    print(
        f"  flooder  : sent {flood['sent']}/{args.flood}, answers {flood['answers']},"
        f" closed {flood['close_code']} {flood['close_reason']!r}"
    )


if __name__ == "__main__":
    main()
