"""A small WHIP client on aiortc that plays a tone and analyses what it hears (tests, benchmarks).

`WhipPeer.join()` POSTs an SDP offer with the attendee's JoinToken, as a browser would;
the microphone is a generated sine (`ToneTrack`, switchable on/off and retunable), and
every received frame is kept with its arrival time, so tests can ask "what is the
dominant frequency of the last 0.4 s?" or "when did the 440 Hz tone start?".
Uses the same loopback-only ICE setup as the server (no ICE servers at all).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from devstack.media.mixer import FRAME_SAMPLES, SAMPLE_RATE, Mono48k
from devstack.media.server import rtc_configuration, shorten_jitter_buffer

TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
KEEP_SECONDS = 3.0


class ToneTrack(MediaStreamTrack):
    """A microphone that plays a sine at `frequency` (None: silence), paced in real time."""

    kind = "audio"

    def __init__(self, frequency: float | None = 440.0, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._phase = 0.0
        self._pts = 0
        self._start: float | None = None
        self.switched_at: float | None = None  # monotonic time of the last set()
        self._script = np.zeros(0, dtype=np.int16)  # samples to play before the tone (speech)

    def play(self, pcm: np.ndarray) -> None:
        """Say these 48 kHz mono samples next (e.g. speech from espeak-ng), then go back to the tone."""
        self._script = np.concatenate([self._script, pcm.astype(np.int16)])

    def set(self, frequency: float | None) -> None:
        self.frequency = frequency
        self.switched_at = time.monotonic()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if len(self._script):
            pcm = self._script[:FRAME_SAMPLES]
            self._script = self._script[FRAME_SAMPLES:]
            if len(pcm) < FRAME_SAMPLES:
                pcm = np.concatenate([pcm, np.zeros(FRAME_SAMPLES - len(pcm), dtype=np.int16)])
        elif self.frequency is None:
            pcm = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        else:
            step = 2 * np.pi * self.frequency / SAMPLE_RATE
            phases = self._phase + step * np.arange(FRAME_SAMPLES)
            self._phase = float((self._phase + step * FRAME_SAMPLES) % (2 * np.pi))
            pcm = (np.sin(phases) * self.amplitude * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        self._pts += FRAME_SAMPLES
        return frame


@dataclass
class WhipResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: str

    @property
    def error(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


def whip_request(
    url: str,
    method: str = "POST",
    body: str | None = None,
    token: str | None = None,
    content_type: str | None = "application/sdp",
) -> WhipResponse:
    """A plain blocking HTTP call (run it in a thread from async code)."""
    request = urllib.request.Request(url, data=None if body is None else body.encode(), method=method)
    if content_type and body is not None:
        request.add_header("Content-Type", content_type)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return WhipResponse(response.status, _lower(response.headers), response.read().decode())
    except urllib.error.HTTPError as err:
        return WhipResponse(err.code, _lower(err.headers), err.read().decode())


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


class WhipPeer:
    """One attendee's audio connection to the embedded media server."""

    def __init__(
        self, base_url: str, signaling_url: str, token: str, tone: float | None = None, *, decode: bool = True
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.signaling_url = signaling_url
        self.token = token
        self.mic = ToneTrack(tone) if tone is not None else None
        self.pc: RTCPeerConnection | None = None
        self.location: str | None = None
        self.answer: WhipResponse | None = None
        self._chunks: collections.deque[tuple[float, np.ndarray]] = collections.deque(
            maxlen=int(KEEP_SECONDS * SAMPLE_RATE / FRAME_SAMPLES)
        )
        self.first_audio_at: float | None = None  # first frame received (silence included)
        self.frames_received = 0  # decoded 20 ms frames, or RTP packets when decode=False
        self.decode = decode
        self._reader: asyncio.Task[None] | None = None
        self.track_ended = asyncio.Event()

    async def join(self) -> WhipResponse:
        """POST the offer; on 201 apply the answer. Returns the HTTP response (any status)."""
        if self.pc is not None:
            await self.pc.close()
        pc = self.pc = RTCPeerConnection(rtc_configuration())
        if self.mic is not None:
            transceiver = pc.addTransceiver(self.mic, direction="sendrecv")
        else:
            transceiver = pc.addTransceiver("audio", direction="recvonly")
        # Like the server: frames out as soon as complete, so latency figures are the server's.
        shorten_jitter_buffer(transceiver.receiver)
        if not self.decode:
            # A load generator: count the RTP packets and drop them before aiortc's jitter buffer
            # and decoder, so one process can hold many listeners. (Replaces the receiver's
            # packet handler on this instance only.)
            async def count(packet: Any, arrival_time_ms: int) -> None:
                if self.first_audio_at is None:
                    self.first_audio_at = time.monotonic()
                self.frames_received += 1

            transceiver.receiver._handle_rtp_packet = count

        @pc.on("track")
        def on_track(track: Any) -> None:
            if self._reader is not None:
                self._reader.cancel()
            self._reader = asyncio.get_running_loop().create_task(self._read(track))

        await pc.setLocalDescription(await pc.createOffer())
        response = await asyncio.to_thread(
            whip_request, self.signaling_url, "POST", pc.localDescription.sdp, self.token
        )
        self.answer = response
        if response.status == 201:
            self.location = response.headers.get("location")
            await pc.setRemoteDescription(RTCSessionDescription(sdp=response.body, type="answer"))
        return response

    async def leave(self) -> WhipResponse | None:
        response = None
        if self.location:
            response = await asyncio.to_thread(whip_request, self.base_url + self.location, "DELETE")
        await self.close()
        return response

    async def promote(self, primary_token: str | None) -> WhipResponse:
        """POST {Location}/promotion: this (replica) session counts as the primary attendee."""
        assert self.location, "not joined"
        url = self.base_url + self.location + "/promotion"
        return await asyncio.to_thread(whip_request, url, "POST", None, primary_token)

    async def demote(self) -> WhipResponse:
        assert self.location, "not joined"
        return await asyncio.to_thread(whip_request, self.base_url + self.location + "/promotion", "DELETE")

    async def volumes(self) -> dict[str, float]:
        """GET the session: {AttendeeId: Volume} of everyone heard in the room."""
        assert self.location, "not joined"
        response = await asyncio.to_thread(whip_request, self.base_url + self.location, "GET")
        assert response.status == 200, (response.status, response.body)
        return {v["AttendeeId"]: v["Volume"] for v in json.loads(response.body)["Volumes"]}

    async def transcripts(self) -> list[dict[str, Any]]:
        """GET the session: the room's live captions (Chime transcript results), while they are on."""
        assert self.location, "not joined"
        response = await asyncio.to_thread(whip_request, self.base_url + self.location, "GET")
        assert response.status == 200, (response.status, response.body)
        transcripts: list[dict[str, Any]] = json.loads(response.body)["Transcripts"]
        return transcripts

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.pc is not None:
            await self.pc.close()
        if self.mic is not None:
            self.mic.stop()

    async def _read(self, track: Any) -> None:
        to_frames = Mono48k()
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if self.first_audio_at is None:
                    self.first_audio_at = now
                for pcm in to_frames(frame):
                    self._chunks.append((now, pcm))
                    self.frames_received += 1
        self.track_ended.set()

    # ------------------------------------------------------------------ analysis

    def samples(self, seconds: float = 0.4) -> np.ndarray:
        """The last `seconds` of received audio (mono int16 as float in [-1, 1])."""
        n = int(seconds * SAMPLE_RATE / FRAME_SAMPLES)
        chunks = [pcm for _, pcm in list(self._chunks)[-n:]]
        if len(chunks) < n:
            return np.zeros(0)
        return np.concatenate(chunks).astype(np.float64) / 32768.0

    def rms(self, seconds: float = 0.2) -> float:
        x = self.samples(seconds)
        return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0

    def spectrum(self, seconds: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
        x = self.samples(seconds)
        if not len(x):
            return np.zeros(0), np.zeros(0)
        magnitude = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        return np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE), magnitude

    def dominant(self, seconds: float = 0.4) -> float | None:
        """The loudest frequency (Hz, parabolic interpolation between bins); None when silent."""
        freqs, mag = self.spectrum(seconds)
        if not len(mag) or self.rms(seconds) < SILENCE_RMS:
            return None
        k = int(np.argmax(mag[1:])) + 1
        if 1 <= k < len(mag) - 1:
            a, b, c = np.log(mag[k - 1 : k + 2] + 1e-12)
            offset = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
            return float(freqs[k] + offset * (freqs[1] - freqs[0]))
        return float(freqs[k])

    def share(self, frequency: float, seconds: float = 0.4, width: float = 15.0) -> float:
        """Fraction of the received energy within `width` Hz of `frequency`."""
        freqs, mag = self.spectrum(seconds)
        if not len(mag):
            return 0.0
        power = mag**2
        total = float(power.sum())
        if total == 0:
            return 0.0
        return float(power[np.abs(freqs - frequency) <= width].sum() / total)

    def hears(self, frequency: float, tolerance: float = 3.0) -> bool:
        found = self.dominant()
        return found is not None and abs(found - frequency) <= tolerance

    def silent(self, seconds: float = 0.2) -> bool:
        return len(self.samples(seconds)) > 0 and self.rms(seconds) < SILENCE_RMS

    def onset(self, frequency: float, after: float, width: float = 15.0) -> float | None:
        """Arrival time of the first 20 ms frame after `after` (monotonic) mostly at `frequency`."""
        for at, pcm in list(self._chunks):
            if at < after:
                continue
            x = pcm.astype(np.float64) / 32768.0
            if np.sqrt(np.mean(x**2)) < SILENCE_RMS:
                continue
            spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
            freqs = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
            if spectrum[np.abs(freqs - frequency) <= max(width, 60.0)].sum() > 0.5 * spectrum.sum():
                return at
        return None


SILENCE_RMS = 0.003  # about -50 dBFS: Opus' own noise floor on silence is far below
