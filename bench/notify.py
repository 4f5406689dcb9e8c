"""`python -m bench.notify`: a host with N followers starts a space; how fast and at what cost are they told.

Starts a local stack in this process; writes N follow relations (set-up, not measured);
registers D of the followers' devices (REST, as an app would); opens W of them as
WebSocket clients. Then the host starts a scheduled space (POST /spaces/{id}/start) and
the benchmark measures:

- the start request's latency (what the host waits; the fan-out is queued, not done),
  beside the same request by a host nobody follows;
- delivery: until the notify queue is drained and every follower has the inbox entry,
  and until the last open socket got its `notification` event;
- AWS calls per follower, by operation (botocore's own counter; the pollers' receive and
  delete, which Lambda's event source mapping makes in AWS, are shown apart), SNS
  publishes, and @connections posts.

The inbox entries are counted at the end with one Scan of the notifications table: the
benchmark's own check, not the app's (which never scans).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import websockets

from devstack.seed import follow_all
from devstack.stack import LocalStack, StackOptions
from devstack.stats import AWS_CALLS

# The event source mapping's calls in AWS (not the function's), and the benchmark's polling.
NOT_THE_APPS = ("sqs:ReceiveMessage", "sqs:DeleteMessageBatch", "sqs:GetQueueAttributes")


def _http(stack: LocalStack, method: str, path: str, user: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(stack.base_url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {stack.mint_token(user)}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def _register(stack: LocalStack, user: str) -> None:
    token = f"{user}-{'0' * 40}"
    status, body = _http(stack, "POST", "/me/devices", user, {"platform": "fcm", "token": token})
    if status != 201:
        raise RuntimeError(f"device registration failed: {status} {body}")


def _queue_depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def _inbox_count(stack: LocalStack, notification_id: str) -> int:
    dynamodb = stack.aws.client("dynamodb")
    total, start = 0, None
    while True:
        kwargs: dict[str, Any] = {
            "TableName": stack.env["NOTIFICATIONS_TABLE"],
            "Select": "COUNT",
            "FilterExpression": "notification_id = :n",
            "ExpressionAttributeValues": {":n": {"S": notification_id}},
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = dynamodb.scan(**kwargs)
        total += page["Count"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return total


def _held(handler: Any, gate: threading.Event) -> Any:
    def held(event: Any, context: Any) -> Any:
        gate.wait()
        return handler(event, context)

    return held


async def _listen(url: str, arrivals: list[float], ready: asyncio.Event, done: asyncio.Event) -> None:
    async with websockets.connect(url, open_timeout=30, max_queue=None) as ws:
        ready.set()
        while not done.is_set():
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                continue
            if frame.get("event") == "notification":
                arrivals.append(time.perf_counter())


async def run(stack: LocalStack, followers: int, devices: int, online: int, timeout: float) -> dict[str, Any]:
    host = "bench-host"
    users = [f"bench-f{i:06d}" for i in range(followers)]
    began = time.perf_counter()
    await asyncio.to_thread(follow_all, users, host)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda u: _register(stack, u), users[:devices]))
    arrivals: list[float] = []
    done = asyncio.Event()
    readies = [asyncio.Event() for _ in range(online)]
    listeners = [
        asyncio.create_task(_listen(f"{stack.ws_url}?token={stack.mint_token(u)}", arrivals, r, done))
        for u, r in zip(users[:online], readies, strict=False)
    ]
    for ready in readies:
        await asyncio.wait_for(ready.wait(), 60)
    start_at = (datetime.now(tz=UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, space = _http(stack, "POST", "/spaces", host, {"title": "bench", "scheduled_start": start_at})
    assert status == 201, space
    # the same request by a host nobody follows: what starting costs without any audience
    lonely = "bench-lonely-host"
    baseline = []
    for _ in range(3):
        _, other = _http(stack, "POST", "/spaces", lonely, {"title": "alone", "scheduled_start": start_at})
        t = time.perf_counter()
        status, _ = await asyncio.to_thread(_http, stack, "POST", f"/spaces/{other['id']}/start", lonely)
        baseline.append((time.perf_counter() - t) * 1000)
        assert status == 200
        _http(stack, "POST", f"/spaces/{other['id']}/end", lonely)
    setup = time.perf_counter() - began

    sqs = stack.aws.client("sqs")
    url = stack.env["NOTIFY_QUEUE_URL"]
    scheduler = stack.scheduler
    jobs = scheduler.jobs if scheduler else []
    if scheduler:
        scheduler.jobs = []  # the sweep's own queries are not the fan-out's
    await asyncio.sleep(0.5)
    AWS_CALLS.reset()
    posts_before = stack.gateway.posted if stack.gateway else 0

    # The consumers wait until the request has returned: in AWS they run in other Lambda
    # invocations, here they would share this process's two cores with the request.
    gate = threading.Event()
    pollers = [p for p in stack.pollers if p.name == "sqs-on_notify"]
    handlers = [p.handler for p in pollers]
    for poller, handler in zip(pollers, handlers, strict=True):
        poller.handler = _held(handler, gate)
    t0 = time.perf_counter()
    status, body = await asyncio.to_thread(_http, stack, "POST", f"/spaces/{space['id']}/start", host)
    request_ms = (time.perf_counter() - t0) * 1000
    request_calls = {op: n for op, n in AWS_CALLS.snapshot().items() if op not in NOT_THE_APPS}
    gate.set()
    assert status == 200, body
    while True:
        if await asyncio.to_thread(_queue_depth, sqs, url) == 0:
            await asyncio.sleep(0.2)
            if await asyncio.to_thread(_queue_depth, sqs, url) == 0:
                break
        if time.perf_counter() - t0 > timeout:
            break
        await asyncio.sleep(0.1)
    drained = time.perf_counter() - t0
    calls = AWS_CALLS.snapshot()
    posts = (stack.gateway.posted if stack.gateway else 0) - posts_before
    done.set()
    await asyncio.gather(*listeners, return_exceptions=True)
    if scheduler:
        scheduler.jobs = jobs
    for poller, handler in zip(pollers, handlers, strict=True):
        poller.handler = handler
    told = await asyncio.to_thread(_inbox_count, stack, f"{space['id']}:live")

    app_calls = {op: n for op, n in calls.items() if op not in NOT_THE_APPS}
    sns = sum(n for op, n in app_calls.items() if op.startswith("sns:"))
    store_and_queue = sum(n for op, n in app_calls.items() if not op.startswith(("sns:", "chime")))
    return {
        "followers": followers,
        "devices": devices,
        "online sockets": online,
        "set-up s": round(setup, 1),
        "start request ms": round(request_ms, 1),
        "start request ms, host with no followers (median of 3)": round(sorted(baseline)[1], 1),
        "start request AWS calls": request_calls,
        "delivered (queue drained) s": round(drained, 1),
        "last socket event s": round(max(arrivals) - t0, 1) if arrivals else None,
        "socket events": len(arrivals),
        "inbox entries": told,
        "AWS calls per follower (DynamoDB+SQS)": round(store_and_queue / followers, 4),
        "SNS publishes": sns,
        "@connections posts": posts,
        "calls by operation": dict(sorted(app_calls.items())),
        "event source mapping calls": {op: n for op, n in calls.items() if op in NOT_THE_APPS[:2]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--followers", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=None, help="followers with a device (default 5%%)")
    parser.add_argument("--online", type=int, default=50, help="followers with an open socket")
    parser.add_argument("--consumers", type=int, default=4, help="notify queue pollers (Lambda concurrency)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--visibility",
        type=int,
        default=60,
        help="SQS visibility timeout, s (AWS: 360); shorter than a batch takes redelivers it mid-run",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    devices = args.devices if args.devices is not None else args.followers // 20
    stack = LocalStack(
        StackOptions(
            port=0,
            sqs_concurrency={"on_notify": args.consumers},
            sqs_visibility_timeout=args.visibility,
            extra_env={"POWERTOOLS_LOG_LEVEL": "ERROR", "LOG_LEVEL": "ERROR"},
        )
    ).start()
    try:
        result = asyncio.run(run(stack, args.followers, devices, args.online, args.timeout))
    finally:
        stack.stop()
    print(f"sohbet notification fan-out — {platform.machine()}, {platform.python_version()}")
    for key, value in result.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
