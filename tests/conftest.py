"""Shared fixtures: one local stack per test session, started on free loopback ports."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.stack import LocalStack, StackOptions
from devstack.stats import AWS_CALLS, AwsCallCounter, install_call_counter


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    install_call_counter()
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
    """Every AWS operation any botocore client in this process makes, counted by a botocore event hook."""
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
