"""sohbet_client: an asyncio client for sohbet's WebSocket API (see docs/asyncapi.yaml)."""

from sohbet_client.broadcast import BroadcastError, BroadcastLink
from sohbet_client.client import (
    COMMAND_METHODS,
    ConnectionClosed,
    Gap,
    SohbetClient,
    SohbetError,
    describe_reactions,
    get_token,
    http_base_url,
    rest,
    with_ticket,
    with_token,
)

__all__ = [
    "COMMAND_METHODS",
    "BroadcastError",
    "BroadcastLink",
    "ConnectionClosed",
    "Gap",
    "SohbetClient",
    "SohbetError",
    "describe_reactions",
    "get_token",
    "http_base_url",
    "rest",
    "with_ticket",
    "with_token",
]
