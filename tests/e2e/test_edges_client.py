"""The Python client connects with a single-use ticket by default; the token stays out of the URL."""

from __future__ import annotations

import asyncio

import pytest
from e2e_support import recording

from sohbet_client import SohbetClient, SohbetError

pytestmark = pytest.mark.e2e


def test_the_client_trades_its_token_for_a_ticket(stack) -> None:
    token = stack.mint_token("ada")

    async def scenario() -> dict:
        async with SohbetClient(stack.ws_url, token) as client:
            return await client.ping()

    with recording(stack.gateway._handlers, "$connect") as connects:
        data = asyncio.run(scenario())
    assert data["user_id"] == "ada"
    [event] = connects.events
    assert set(event["queryStringParameters"]) == {"ticket"}
    assert token not in str(event)


def test_the_client_can_still_put_the_token_in_the_url(stack) -> None:
    async def scenario() -> dict:
        async with SohbetClient(stack.ws_url, stack.mint_token("bob"), auth="token") as client:
            return await client.ping()

    with recording(stack.gateway._handlers, "$connect") as connects:
        assert asyncio.run(scenario())["user_id"] == "bob"
    assert set(connects.events[0]["queryStringParameters"]) == {"token"}


def test_a_bad_token_fails_at_the_ticket_with_a_clear_error(stack) -> None:
    async def scenario() -> None:
        async with SohbetClient(stack.ws_url, "not-a-token"):
            pass

    with pytest.raises(SohbetError) as refused:
        asyncio.run(scenario())
    assert refused.value.code == "unauthorized"
