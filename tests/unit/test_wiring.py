"""The composition root wires what the lower layers cannot import."""

from __future__ import annotations


def test_a_socket_that_fanout_finds_gone_is_handed_to_the_command_layer() -> None:
    # GIVEN the app's entry points are loaded (handlers.py is the composition root)
    from chalicelib import commands, fanout, handlers

    # WHEN fan-out meets a 410, THEN the connection is forgotten and leaves its space
    assert handlers.fanout is fanout
    assert fanout._on_gone is commands.connection_gone


def test_cleanup_of_a_gone_connection_never_raises_into_the_sender() -> None:
    from chalicelib import fanout

    seen: list[str] = []

    def failing(connection_id: str) -> None:
        seen.append(connection_id)
        raise RuntimeError("boom")

    saved = fanout._on_gone
    fanout.handle_gone_with(failing)
    try:
        fanout.cleanup_gone("c1")
    finally:
        fanout.handle_gone_with(saved)
    assert seen == ["c1"]
