"""The embedded media server's mixer over WHIP, with meetings made straight in its registry.

Chime's semantics on the audio itself: mix-minus, capabilities, deletes, replicas.
Peers are aiortc clients in this process on loopback; tones are checked by FFT.
"""

from __future__ import annotations

import asyncio
from typing import Any

from audio_support import attendee, close_all, connect, meeting, until


def test_a_speakers_tone_reaches_a_listener_and_not_the_speaker(stack: Any) -> None:
    async def scenario() -> None:
        room = meeting(stack)
        speaker = await connect(stack, attendee(stack, room), tone=440)
        listener = await connect(stack, attendee(stack, room, "Receive"))
        try:
            await until(lambda: listener.hears(440), what="the listener hearing 440 Hz")
            assert speaker.silent(), "the speaker hears their own voice"
        finally:
            await close_all(speaker, listener)

    asyncio.run(scenario())
