"""Live captions on the local stack: the host's `captions.set`, the app's StartMeetingTranscription,
a real recognizer (PocketSphinx) on the room's mix, captions read from the WHIP session.

The speech is made at test time with espeak-ng (Debian; `make test` installs it) and spoken into
the host's microphone over WebRTC. What the recognizer makes of it is checked on a fixed input
(espeak-ng's "hello world" fed straight to it: deterministic), not through WebRTC on a loaded
machine, where "oh world" and "oh wow" both come back.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_support import close_all, until
from spaces_support import Clients, create_space, run, uid

from devstack.media.captions import Transcription
from devstack.media.mixer import FRAME_SAMPLES
from devstack.media.whip_client import ToneTrack, WhipPeer

pytestmark = pytest.mark.e2e

from conftest import get_space, refused  # noqa: E402


def speech(tmp_path: Path, text: str) -> np.ndarray:
    """`text` spoken by espeak-ng, as 48 kHz mono int16 samples."""
    raw, wav = tmp_path / "speech.wav", tmp_path / "speech48.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(raw), text], check=True, timeout=30)
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(wav)], check=True, timeout=30)
    with wave.open(str(wav)) as f:
        return np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)


async def joined(stack: Any, media: dict[str, Any], *, mic: bool = False) -> WhipPeer:
    url = media["Meeting"]["MediaPlacement"]["SignalingUrl"]
    peer = WhipPeer(stack.base_url, url, media["Attendee"]["JoinToken"])
    if mic:
        peer.mic = ToneTrack(None)  # a microphone that is silent until it is given speech
    response = await peer.join()
    assert response.status == 201, (response.status, response.body)
    return peer


def test_the_host_turns_captions_on_and_listeners_read_what_was_said(stack: Any, tmp_path: Path) -> None:
    phrase = speech(tmp_path, "hello world")
    pause = np.zeros(48_000, dtype=np.int16)
    said = np.concatenate([phrase, pause, phrase, pause, phrase, pause])  # three tries, apart

    async def scenario(clients: Clients) -> None:
        host_id = uid("host")
        sid = (await asyncio.to_thread(create_space, stack, host_id, lang="en"))["id"]
        host, host_snapshot = await clients.join(host_id, sid)
        listener, listener_snapshot = await clients.join(uid("l"), sid)
        assert listener_snapshot["space"]["captions"] is False
        await refused(listener.send("captions.set", space_id=sid, on=True), "not_allowed")
        mic = await joined(stack, host_snapshot["media"], mic=True)
        ear = await joined(stack, listener_snapshot["media"])
        try:
            assert await host.send("captions.set", space_id=sid, on=True) == {"captions": True}
            event = await listener.event("captions.changed")
            assert event["captions"] is True and event["lang"] == "en"
            # other tests' spaces may be ending meanwhile: find this space's call among the last ones
            [start] = [c for c in stack.chime.calls[-20:] if c[0] == "StartMeetingTranscription"][-1:]
            assert start[1]["TranscriptionConfiguration"] == {
                "EngineTranscribeSettings": {"LanguageCode": "en-US"}
            }
            await asyncio.sleep(1.5)
            assert await ear.transcripts() == []  # silence says nothing
            assert mic.mic is not None
            mic.mic.play(said)

            async def heard() -> list[str]:
                return [a["Transcript"] for r in await ear.transcripts() for a in r["Alternatives"]]

            # The words themselves are checked on a fixed input below (the recognizer is deterministic;
            # audio through WebRTC on a loaded machine is not): here, that speech becomes captions.
            texts: list[str] = []

            async def captioned() -> bool:
                texts[:] = await heard()
                return any(t.strip() for t in texts)

            deadline = asyncio.get_running_loop().time() + 30
            while not await captioned():
                assert asyncio.get_running_loop().time() < deadline, f"no captions: {texts}"
                await asyncio.sleep(0.3)
            [first] = (await ear.transcripts())[:1]
            assert first["IsPartial"] is False and first["EndTimeMs"] > first["StartTimeMs"]

            assert await host.send("captions.set", space_id=sid, on=False) == {"captions": False}
            await until(lambda: listener.events("captions.changed", captions=False), what="captions off")
            assert await ear.transcripts() == []
            assert stack.chime.count("StopMeetingTranscription") >= 1
        finally:
            await close_all(mic, ear)
        await host.send("space.end", space_id=sid)

    run(stack, scenario)


def test_the_recognizer_hears_the_words_of_a_known_recording(tmp_path: Path) -> None:
    """The local recognizer itself, on espeak-ng's speech fed to it as the mix would be."""
    said = speech(tmp_path, "hello world. the quick brown fox jumps over the lazy dog.")
    pcm = np.concatenate([np.zeros(48_000, np.int16), said, np.zeros(96_000, np.int16)])
    transcription = Transcription("m" * 36, "en-US")
    for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        transcription(pcm[i : i + FRAME_SAMPLES])
        if i % (FRAME_SAMPLES * 100) == 0:
            time.sleep(0.05)  # let the recognizer keep up (its queue holds 10 s)
    transcription.stop()
    [result] = transcription.transcripts()
    words = result["Alternatives"][0]["Transcript"].split()
    assert {"hello", "world"} <= set(words), words  # loosely: the rest is often misheard
    spoken_ms = len(said) * 1000 // 48_000
    assert 900 <= result["StartTimeMs"] < result["EndTimeMs"] <= 1000 + spoken_ms + 500
    assert result["IsPartial"] is False and result["LanguageCode"] == "en-US"


def test_captions_without_a_known_language_are_unavailable_locally_and_say_so(stack: Any) -> None:
    async def scenario(clients: Clients) -> None:
        for lang in (None, "tr"):
            host_id = uid("host")
            fields = {"lang": lang} if lang else {}
            sid = (await asyncio.to_thread(create_space, stack, host_id, **fields))["id"]
            host, _ = await clients.join(host_id, sid)
            error = await refused(host.send("captions.set", space_id=sid, on=True), "limit_reached")
            assert error.message.startswith("captions are unavailable: ")
            assert "English only" in error.message
            space = await asyncio.to_thread(get_space, stack, sid)
            assert space["captions"] is False
            await host.send("space.end", space_id=sid)

    run(stack, scenario)
