"""Live captions on the local stack: a real speech recognizer (PocketSphinx) on a meeting's mix.

StartMeetingTranscription on the Chime emulator starts a `Transcription` for the primary
meeting: it taps the room's mix (what a listener hears), downsamples it to 16 kHz, cuts it
into utterances with PocketSphinx's voice activity endpointer and decodes each with its
bundled US English model. Results are kept per meeting in the shape of Chime's transcript
events (ResultId, StartTimeMs, EndTimeMs, IsPartial, Alternatives[].Transcript) and served
with the WHIP session (`GET /media/whip/{MeetingId}/{SessionId}` → "Transcripts"), the local
stand-in for Chime's data messages. Only English is recognised: another LanguageCode, or
PocketSphinx missing, answers UnprocessableEntity ("captions are unavailable") — never a
made-up caption. The recognizer is small and often wrong on real speech; it is a local
stand-in for the plumbing, not for Amazon Transcribe's quality.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from devstack.media.registry import ChimeError, Meeting

log = logging.getLogger("devstack.media")

ENGLISH = frozenset({"en-US", "en-GB", "en-AU"})
KEEP = 50  # transcripts kept per meeting
RATE = 16_000


def recognizer_available() -> bool:
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        return False
    return True


def check_language(config: dict[str, Any]) -> str:
    settings = config.get("EngineTranscribeSettings") or {}
    if config.get("EngineTranscribeMedicalSettings"):
        raise ChimeError("UnprocessableEntity", "Medical transcription is not available on the local stack.")
    code = settings.get("LanguageCode")
    if code is None:
        raise ChimeError(
            "UnprocessableEntity",
            "Captions with language identification are unavailable on the local stack: its "
            "recognizer (PocketSphinx) knows English only. Give the space a language (lang: en).",
        )
    if code not in ENGLISH:
        raise ChimeError(
            "UnprocessableEntity",
            f"Captions in {code} are unavailable on the local stack: its recognizer "
            "(PocketSphinx) has an English model only.",
        )
    return str(code)


def to_16k(pcm: np.ndarray) -> np.ndarray:
    """48 kHz → 16 kHz: the mean of each 3 samples (a crude low-pass, enough for speech)."""
    usable = len(pcm) - len(pcm) % 3
    return pcm[:usable].astype(np.int32).reshape(-1, 3).mean(axis=1).astype(np.int16)


def transcript_event(result: dict[str, Any], wall: float) -> dict[str, Any]:
    """A result as the TranscriptEvent a meeting's attendees receive (epoch ms, camelCase), the
    shape of https://docs.aws.amazon.com/chime-sdk/latest/dg/delivery-examples.html. Word items
    and their attendee are left out: the recognizer hears the mix, not who spoke."""
    base = int(wall * 1000)
    return {
        "transcript": {
            "results": [
                {
                    "resultId": result["ResultId"],
                    "isPartial": result["IsPartial"],
                    "startTimeMs": base + result["StartTimeMs"],
                    "endTimeMs": base + result["EndTimeMs"],
                    "languageCode": result["LanguageCode"],
                    "alternatives": [
                        {"transcript": a["Transcript"], "items": []} for a in result["Alternatives"]
                    ],
                }
            ]
        }
    }


class Transcription:
    """One meeting's captions: a tap (media loop) feeding a recognizer thread."""

    def __init__(
        self, meeting_id: str, language: str, on_result: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        from pocketsphinx import Decoder, Endpointer

        self.meeting_id = meeting_id
        self.language = language
        self.results: collections.deque[dict[str, Any]] = collections.deque(maxlen=KEEP)
        self._frames: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=500)  # 10 s of 20 ms frames
        self._endpointer = Endpointer()
        self._decoder = Decoder(samprate=RATE, loglevel="FATAL")
        self._lock = threading.Lock()
        self._started = time.monotonic()
        # Wall clock of the first frame (the recognizer's times are relative to it), for the
        # epoch times of the transcript events a capture pipeline writes. Frames dropped when
        # the recognizer lags make later times early by as much: a local approximation.
        self._wall = time.time()
        self._on_result = on_result
        self._count = 0
        self._thread = threading.Thread(target=self._run, name=f"captions-{meeting_id[:8]}", daemon=True)
        self._thread.start()

    def __call__(self, mix: np.ndarray) -> None:
        """A 20 ms frame of the mix (media loop): hand it over, drop it if the recognizer lags."""
        with contextlib.suppress(queue.Full):
            self._frames.put_nowait(mix.copy())

    def stop(self) -> None:
        self._frames.put(None)
        self._thread.join(timeout=10)

    def transcripts(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.results)

    def _run(self) -> None:
        size = self._endpointer.frame_bytes // 2
        pending = np.zeros(0, dtype=np.int16)
        in_utterance = False
        try:
            while True:
                frame = self._frames.get()
                if frame is None:
                    break
                pending = np.concatenate([pending, to_16k(frame)])
                while len(pending) >= size:
                    chunk, pending = pending[:size], pending[size:]
                    speech = self._endpointer.process(chunk.tobytes())
                    if speech is not None:
                        if not in_utterance:
                            self._decoder.start_utt()
                            in_utterance = True
                            start = self._endpointer.speech_start
                        self._decoder.process_raw(speech)
                        if not self._endpointer.in_speech:
                            self._finish(start, self._endpointer.speech_end)
                            in_utterance = False
            if in_utterance:
                self._finish(start, self._endpointer.speech_end)
        except Exception:
            log.exception("captions of meeting %s stopped", self.meeting_id)

    def _finish(self, start: float, end: float) -> None:
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        text = hyp.hypstr.strip() if hyp is not None else ""
        if not text:
            return
        with self._lock:
            self._count += 1
            result = {
                "ResultId": f"{self.meeting_id[:8]}-{self._count}",
                "StartTimeMs": int(start * 1000),
                "EndTimeMs": int(end * 1000),
                "IsPartial": False,
                "Alternatives": [{"Transcript": text}],
                "LanguageCode": self.language,
            }
            self.results.append(result)
        if self._on_result is not None:
            self._on_result(transcript_event(result, self._wall))


class Captioner:
    """StartMeetingTranscription/StopMeetingTranscription for the Chime emulator."""

    def __init__(self, media_server: Any) -> None:
        self.media_server = media_server
        self._running: dict[str, Transcription] = {}
        self._lock = threading.Lock()
        # who else gets each final result as a TranscriptEvent: (room, event) -> None
        # (the media pipelines emulator, which writes them where a capture pipeline would)
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []

    def start(self, meeting: Meeting, config: dict[str, Any]) -> None:
        if not recognizer_available():
            raise ChimeError(
                "UnprocessableEntity",
                "Captions are unavailable on the local stack: the speech recognizer (pocketsphinx) "
                "is not installed.",
            )
        language = check_language(config)
        room = meeting.primary_meeting_id or meeting.meeting_id
        with self._lock:
            if room in self._running:
                return  # already transcribing: Chime answers the same
            transcription = self._running[room] = Transcription(
                room, language, on_result=lambda event: self._published(room, event)
            )
        self.media_server().add_tap(room, transcription)

    def stop(self, meeting: Meeting) -> bool:
        room = meeting.primary_meeting_id or meeting.meeting_id
        with self._lock:
            transcription = self._running.pop(room, None)
        if transcription is None:
            return False
        self.media_server().remove_tap(room, transcription)
        transcription.stop()
        return True

    def _published(self, room: str, event: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(room, event)
            except Exception:
                log.exception("a transcript listener failed for meeting %s", room)

    def transcripts(self, meeting_id: str) -> list[dict[str, Any]]:
        with self._lock:
            transcription = self._running.get(meeting_id)
        return transcription.transcripts() if transcription else []

    # registry observer: a meeting that ends stops its captions
    def capabilities_changed(self, attendee: Any) -> None:
        pass

    def attendee_deleted(self, attendee: Any) -> None:
        pass

    def meeting_deleted(self, meeting: Meeting) -> None:
        self.stop(meeting)
