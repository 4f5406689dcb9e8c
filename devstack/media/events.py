"""A local EventBridge bus for the media server's "Chime Meeting State Change" events.

Events are kept (the last `keep`) for tests and delivered, as EventBridge would, to every
app handler whose rule pattern matches (`@app.on_cw_event(pattern)` in Chalice). Patterns
support what rules on Chime events need: exact values in lists, nested objects, and the
`prefix` and `anything-but` filters.
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

log = logging.getLogger("devstack.media")

Handler = Callable[[dict[str, Any], Any], Any]


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """Whether an EventBridge event pattern matches an event."""
    for key, expected in pattern.items():
        if key not in event:
            if isinstance(expected, list) and any(
                isinstance(e, dict) and e.get("exists") is False for e in expected
            ):
                continue
            return False
        value = event[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict) or not matches(expected, value):
                return False
        elif not _any_matches(expected, value):
            return False
    return True


def _any_matches(expected: list[Any], value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    return any(_filter_matches(e, v) for e in expected for v in values)


def _filter_matches(expected: Any, value: Any) -> bool:
    if not isinstance(expected, dict):
        return bool(expected == value)
    if "prefix" in expected:
        return isinstance(value, str) and value.startswith(expected["prefix"])
    if "anything-but" in expected:
        excluded = expected["anything-but"]
        return value not in (excluded if isinstance(excluded, list) else [excluded])
    if "exists" in expected:
        return bool(expected["exists"])
    return False


class EventBus:
    def __init__(self, executor: Executor | None = None, keep: int = 1000) -> None:
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)
        self._rules: list[tuple[str, dict[str, Any], Handler, Callable[[], Any]]] = []
        self._executor = executor
        self._lock = threading.Lock()

    def add_rule(
        self, name: str, pattern: dict[str, Any], handler: Handler, context: Callable[[], Any]
    ) -> None:
        with self._lock:
            self._rules.append((name, pattern, handler, context))

    def put(self, event: dict[str, Any]) -> None:
        """Keep the event and hand it to the matching handlers (in the executor, as Lambda would)."""
        with self._lock:
            self.events.append(event)
            targets = [(n, h, c) for n, p, h, c in self._rules if matches(p, event)]
        for name, handler, context in targets:
            if self._executor is None:
                self._invoke(name, handler, context, event)
            else:
                self._executor.submit(self._invoke, name, handler, context, event)

    @staticmethod
    def _invoke(name: str, handler: Handler, context: Callable[[], Any], event: dict[str, Any]) -> None:
        try:
            handler(event, context())
        except Exception:
            log.exception("event handler %s raised", name)

    def of_type(self, event_type: str, meeting_id: str | None = None) -> list[dict[str, Any]]:
        """Kept events with this detail.eventType (e.g. "chime:MeetingEnded"), optionally for one meeting."""
        with self._lock:
            return [
                e
                for e in self.events
                if e["detail"].get("eventType") == event_type
                and (meeting_id is None or e["detail"].get("meetingId") == meeting_id)
            ]

    def clear(self) -> None:
        with self._lock:
            self.events.clear()
