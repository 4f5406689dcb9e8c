"""What the local stack did: AWS operations by name, items Queries read, @connections posts, CPU time.

Counted with a botocore event hook on every client the process creates, so
the app's own code is untouched. Served at GET /dev/stats (local stack only)
for the benchmark, and used by the tests.
"""

from __future__ import annotations

import collections
import contextlib
import resource
import threading
from collections.abc import Iterator
from typing import Any


class AwsCallCounter:
    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._local = threading.local()

    def hook(self, model: Any, **_: Any) -> None:
        name = f"{model.service_model.service_name}:{model.name}"
        with self._lock:
            self.calls[name] += 1
        mine = getattr(self._local, "calls", None)
        if mine is not None:
            mine[name] += 1

    @contextlib.contextmanager
    def this_thread(self) -> Iterator[collections.Counter[str]]:
        """The calls made by the current thread inside the block only (not the stack's pollers)."""
        self._local.calls = mine = collections.Counter[str]()
        try:
            yield mine
        finally:
            self._local.calls = None

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.calls)

    def total(self, exclude: tuple[str, ...] = ()) -> int:
        return sum(n for op, n in self.snapshot().items() if not op.startswith(exclude))


AWS_CALLS = AwsCallCounter()


class QueryReads:
    """Items DynamoDB Queries read (their ScannedCount: before any filter, what a Query is billed
    for), by table and index. moto's ConsumedCapacity is a constant per call, so the items are
    counted instead (bench/presence.py turns them into read units)."""

    def __init__(self) -> None:
        self.items: collections.Counter[tuple[str, str | None]] = collections.Counter()
        self.calls: collections.Counter[tuple[str, str | None]] = collections.Counter()
        self._lock = threading.Lock()

    def note(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["query_target"] = (params.get("TableName", ""), params.get("IndexName"))

    def count(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        target = context.get("query_target")
        if target is None:
            return
        with self._lock:
            self.calls[target] += 1
            self.items[target] += int(parsed.get("ScannedCount", 0))

    def reset(self) -> None:
        with self._lock:
            self.items.clear()
            self.calls.clear()

    def of(self, table: str, index: str | None = None) -> tuple[int, int]:
        """(Query calls, items read) on the table (or one of its indexes) since the last reset."""
        with self._lock:
            return self.calls[(table, index)], self.items[(table, index)]


QUERY_READS = QueryReads()


def install_call_counter() -> None:
    """Register the counter on every botocore client created from now on."""
    import botocore.session

    original = botocore.session.Session.create_client
    if getattr(original, "_counted", False):
        return

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        client.meta.events.register("before-call", AWS_CALLS.hook)
        client.meta.events.register("provide-client-params.dynamodb.Query", QUERY_READS.note)
        client.meta.events.register("after-call.dynamodb.Query", QUERY_READS.count)
        return client

    create_client._counted = True  # type: ignore[attr-defined]
    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds of the live threads, by the first word of their name: `push` (the fan-out's
    senders), `lambda` (handlers), `uvicorn` (the gateway's event loop), `sqs`, `MainThread`..."""
    import re
    import time

    groups: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, ProcessLookupError):
            continue  # ended meanwhile
        group = re.split(r"[-_ ]", thread.name, maxsplit=1)[0]
        groups[group] = groups.get(group, 0.0) + seconds
    return groups
