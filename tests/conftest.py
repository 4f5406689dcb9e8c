"""Shared fixtures: one local stack per test session, started on free loopback ports."""

from __future__ import annotations

import collections
import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.stack import LocalStack, StackOptions


class AwsCallCounter:
    """Counts every AWS operation any botocore client in this process makes (a botocore event hook)."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self.enabled = True

    def hook(self, model: Any, **_: Any) -> None:
        if self.enabled:
            with self._lock:
                self.calls[f"{model.service_model.service_name}:{model.name}"] += 1

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def total(self, exclude: tuple[str, ...] = ()) -> int:
        return sum(n for op, n in self.calls.items() if not op.startswith(exclude))


AWS_CALLS = AwsCallCounter()


def _install_call_counter() -> None:
    import botocore.session

    original = botocore.session.Session.create_client
    if getattr(original, "_counted", False):
        return

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        client.meta.events.register("before-call", AWS_CALLS.hook)
        return client

    create_client._counted = True  # type: ignore[attr-defined]
    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    _install_call_counter()
    local = LocalStack(
        StackOptions(
            port=0,
            sqs_visibility_timeout=1,
            schedule_seconds=0.5,
            extra_env={
                "HOST_GRACE_SECONDS": "2",
                "LISTENER_COUNT_INTERVAL_SECONDS": "0.5",
            },
        )
    ).start()
    yield local
    local.stop()


@pytest.fixture
def aws_calls() -> AwsCallCounter:
    AWS_CALLS.reset()
    return AWS_CALLS


def http(
    stack: LocalStack,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    headers: dict | None = None,
) -> tuple[int, Any]:
    """A plain HTTP call to the stack; returns (status, parsed JSON body or text)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(stack.base_url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")
