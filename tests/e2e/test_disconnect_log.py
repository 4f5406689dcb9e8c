"""A closed socket's close code and reason reach the app's log (the access log has them too)."""

from __future__ import annotations

import pytest
from conftest import Clients, await_until

pytestmark = pytest.mark.e2e


async def test_disconnect_logs_the_close_code_and_reason(
    clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    client = await clients.open("closer")
    connection_id = (await client.ping_raw("who"))["data"]["connection_id"]
    await client.close(4000, "bye for now")

    def logged() -> list[dict]:
        return [
            r.__dict__
            for r in caplog.records
            if r.getMessage() == "disconnected" and getattr(r, "connection_id", None) == connection_id
        ]

    records = await await_until(logged, timeout=5)
    assert records, "no 'disconnected' log record for the connection"
    assert (records[0]["status_code"], records[0]["reason"]) == (4000, "bye for now")
