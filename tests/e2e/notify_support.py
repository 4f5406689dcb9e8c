"""Helpers of the notification tests: followers in bulk, pushes per device, the notify queue
drained, and faults injected at the consumer's edges (its Lambda boundary, a botocore call)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from conftest import aws_client, http, token

ACCOUNT_TOKEN_PREFIX = "devtoken"


def suspend(user_id: str, seconds: int = 3600) -> None:
    """The user is suspended, as an admin's suspend action leaves the user item."""
    from chalicelib.models import User

    User(user_id).update(actions=[User.suspended_until.set(time.time() + seconds)])


def device_token(user: str, n: int = 0) -> str:
    return hashlib.sha256(f"{ACCOUNT_TOKEN_PREFIX}-{user}-{n}".encode()).hexdigest()


def register_device(stack: Any, user: str, platform: str = "apns", n: int = 0) -> dict[str, Any]:
    status, body = http(
        stack,
        "POST",
        "/me/devices",
        {"platform": platform, "token": device_token(user, n)},
        token(stack, user),
    )
    assert status == 201, body
    return dict(body)


def pushes(stack: Any, user: str) -> list[dict[str, Any]]:
    """Every push any device of `user` received (GET /dev/pushes)."""
    status, body = http(stack, "GET", f"/dev/pushes?user_id={user}")
    assert status == 200, body
    return [p for d in body["devices"] for p in d["pushes"]]


def push_ids(stack: Any, user: str) -> list[str]:
    return [json.loads(json.dumps(p["payload"]))["notification_id"] for p in pushes(stack, user)]


def inbox(stack: Any, user: str, **query: str) -> dict[str, Any]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    status, body = http(
        stack, "GET", "/me/notifications" + (f"?{qs}" if qs else ""), token=token(stack, user)
    )
    assert status == 200, body
    return dict(body)


def queue_depth(stack: Any) -> int:
    attrs = aws_client(stack, "sqs").get_queue_attributes(
        QueueUrl=stack.env["NOTIFY_QUEUE_URL"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def drained(stack: Any, timeout: float = 60.0, settle: float = 0.3) -> float:
    """Wait until the notify queue is empty (twice, `settle` apart); seconds waited."""
    began = time.monotonic()
    while True:
        if queue_depth(stack) == 0:
            time.sleep(settle)
            if queue_depth(stack) == 0:
                return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise AssertionError(f"notify queue not drained after {timeout} s ({queue_depth(stack)} left)")
        time.sleep(0.1)


def notify_pollers(stack: Any) -> list[Any]:
    found = [p for p in stack.pollers if p.name == "sqs-on_notify"]
    assert found, "no poller for on_notify"
    return found


@contextlib.contextmanager
def consumer_failing(stack: Any, every: int, after_work: bool) -> Iterator[dict[str, int]]:
    """One in `every` invocations of the notify consumer raises: before its work (nothing
    done), or after it (all done, but the batch goes back to the queue, as when a Lambda
    times out or crashes before answering). Only batches received for the first time fail,
    so no message is failed into the DLQ by chance."""
    counter = itertools.count(1)
    lock = threading.Lock()
    stats = {"invocations": 0, "failed": 0}
    pollers = notify_pollers(stack)
    originals = [p.handler for p in pollers]

    def wrap(original: Any) -> Any:
        def handler(event: dict[str, Any], context: Any) -> Any:
            first = all(r["attributes"].get("ApproximateReceiveCount") == "1" for r in event["Records"])
            with lock:
                stats["invocations"] += 1
                # the 1st, (every+1)th, ... batch seen for the first time fails
                fail = first and next(counter) % every == 1 % every
                stats["failed"] += fail
            if fail and not after_work:
                raise RuntimeError("injected: consumer failed before its work")
            result = original(event, context)
            if fail:
                raise RuntimeError("injected: consumer failed after its work")
            return result

        return handler

    for poller, original in zip(pollers, originals, strict=True):
        poller.handler = wrap(original)
    try:
        yield stats
    finally:
        for poller, original in zip(pollers, originals, strict=True):
            poller.handler = original


@contextlib.contextmanager
def claims_failing(every: int) -> Iterator[dict[str, int]]:
    """Every `every`-th inbox claim (TransactWriteItems) is written, then its answer is lost:
    the chunk fails after its claim, and runs again (a botocore after-call hook)."""
    from chalicelib.db import dynamo

    client = dynamo().client
    counter = itertools.count(1)
    stats = {"claims": 0, "lost": 0}

    def lose(http_response: Any = None, parsed: Any = None, model: Any = None, **_: Any) -> None:
        n = next(counter)
        stats["claims"] += 1
        if n % every == 0:
            stats["lost"] += 1
            raise ConnectionError("injected: the claim's answer was lost")

    client.meta.events.register("after-call.dynamodb.TransactWriteItems", lose, unique_id="notify-lose")
    try:
        yield stats
    finally:
        client.meta.events.unregister("after-call.dynamodb.TransactWriteItems", unique_id="notify-lose")


def dev_stats(stack: Any) -> dict[str, Any]:
    with urllib.request.urlopen(stack.base_url + "/dev/stats", timeout=10) as response:
        return dict(json.loads(response.read()))


@contextlib.contextmanager
def sqs_failing(operation: str, times: int) -> Iterator[dict[str, int]]:
    """The app's SQS client fails its next `times` calls of `operation` (an SQS outage past
    botocore's retries), through a botocore before-call hook."""
    from chalicelib import clients

    client = clients.sqs()
    state = {"count": 0}

    def fail(**_: Any) -> None:
        if state["count"] < times:
            state["count"] += 1
            raise ConnectionError(f"injected: SQS {operation} unreachable")

    event = f"before-call.sqs.{operation}"
    client.meta.events.register(event, fail, unique_id="notify-sqs-fail")
    try:
        yield state
    finally:
        client.meta.events.unregister(event, unique_id="notify-sqs-fail")
