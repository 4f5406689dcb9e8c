"""Legacy: the spaces helpers moved to tests/e2e/conftest.py.

Kept so that tests written against the old helpers still run: the same names, re-exported, plus
`run` and `LoopThread` (new tests are `async def` with the `clients` fixture, and a module-scoped
async fixture instead of a loop thread). Importing `no_scan` from here still turns it on for
every test of the importing module. Delete this module once no test imports it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest
from conftest import (  # noqa: F401  (re-exported under their old names)
    EVENT_TIMEOUT,
    Client,
    Clients,
    alive,
    assert_consecutive,
    audio,
    create_space,
    entry,
    get_space,
    iso,
    listener_count_interval,
    local_media,
    refused,
    roles,
    schedules_paused,
    stored_member,
    token,
    uid,
    until,
    until_rest,
)

T = TypeVar("T")


@pytest.fixture(autouse=True, name="no_scan")
def no_scan(no_scan: None) -> None:
    """conftest's `no_scan`, on for every test of a module that imports this name."""


def run(stack: Any, scenario: Callable[[Clients], Awaitable[T]]) -> T:
    """Run an async scenario with a fresh set of clients (closed and checked afterwards)."""

    async def main() -> T:
        async with Clients(stack) as clients:
            return await scenario(clients)

    return asyncio.run(main())


class LoopThread:
    """An event loop in a thread, for connections that outlive one test (a module's shared room)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="spaces-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()
