"""The embedded media server's audio: one clocked mix-minus mixer per primary meeting.

Chime's audio semantics, enforced here rather than trusted to clients:
- every attendee receives ONE track, the mix of the OTHER attendees allowed to send
  (Audio SendReceive or Send): never their own voice;
- an uplink from Receive or None is decoded and discarded, never mixed; attendees with
  Send or None receive silence;
- attendees of a replica meeting hear the primary's senders and are never heard
  (https://docs.aws.amazon.com/chime/latest/dg/media-replication.html), so a replica
  listener sits in its primary's room;
- capability changes apply on the next 20 ms tick.

The room's clock ticks every 20 ms (48 kHz, 960 samples): it takes one frame from each
sender's bounded jitter queue (an absent or late sender contributes silence, never
drift), sums the senders once, and hands each receiver "sum minus own frame".

Encoding is where the CPU goes, so the room encodes (Opus, mono) itself: once per tick
for all the attendees who cannot send (listeners all hear the same mix, so they share
one encoded stream), and once per sender (mix-minus differs per sender). aiortc's
senders then only packetize: a track may yield pre-encoded packets.
Everything here runs on the media server's event loop (one thread).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import logging
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

log = logging.getLogger("devstack.media")

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)

SEND_CAPABILITIES = frozenset({"SendReceive", "Send"})
RECEIVE_CAPABILITIES = frozenset({"SendReceive", "Receive"})

# Jitter queue per sender: start mixing once PRIME frames wait (absorbs the phase between the
# sender's packets and our clock), keep at most KEEP after a tick (bounded latency), never more
# than MAX (a burst beyond is dropped, oldest first).
JITTER_PRIME = 2
JITTER_KEEP = 3
JITTER_MAX = 8
# Packets waiting for a receiver's RTP sender; beyond this the oldest is dropped.
OUTBOUND_MAX = 8  # 160 ms: rides out a busy machine's scheduling hiccups; near-empty when all is well
OPUS_BITRATE = 48_000  # mono voice
# A tick more than this late (a stalled loop) resets the clock instead of bursting to catch up.
MAX_LATENESS = 0.2

# Volume indicator: RMS of full scale (a full-scale sine is 0.707), rising at once, falling
# by this factor per 20 ms tick (about -26 dB per second).
LEVEL_DECAY = 0.85

SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
SILENCE.setflags(write=False)


class JitterQueue:
    """A sender's decoded 20 ms frames waiting for the mixer's tick."""

    def __init__(self) -> None:
        self.frames: collections.deque[np.ndarray] = collections.deque(maxlen=JITTER_MAX)
        self.primed = False
        self.underruns = 0

    def push(self, pcm: np.ndarray) -> None:
        self.frames.append(pcm)
        if len(self.frames) >= JITTER_PRIME:
            self.primed = True

    def pop(self) -> np.ndarray | None:
        if not self.primed:
            return None
        if not self.frames:
            self.primed = False
            self.underruns += 1
            return None
        pcm = self.frames.popleft()
        while len(self.frames) > JITTER_KEEP:  # drift or a burst: catch up, a frame at a time
            self.frames.popleft()
        return pcm

    def clear(self) -> None:
        self.frames.clear()
        self.primed = False


class OpusStream:
    """An Opus encoder: 20 ms mono frames in, packet payloads out."""

    def __init__(self) -> None:
        codec = av.CodecContext.create("libopus", "w")
        codec.bit_rate = OPUS_BITRATE
        codec.sample_rate = SAMPLE_RATE
        codec.layout = "mono"
        codec.format = "s16"
        codec.time_base = TIME_BASE
        codec.options = {"application": "voip"}
        self._codec: Any = codec
        self._pts = 0

    def encode(self, pcm: np.ndarray) -> list[bytes]:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        return [bytes(packet) for packet in self._codec.encode(frame)]


class MixTrack(MediaStreamTrack):
    """The one audio track an attendee receives: Opus packets from the room's clock, 20 ms apart."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._payloads: collections.deque[bytes] = collections.deque(maxlen=OUTBOUND_MAX)
        self._ready = asyncio.Event()
        self._pts = 0
        self._started = False  # aiortc's sender starts reading once DTLS is up
        self.dropped = 0

    def push(self, payloads: list[bytes]) -> None:
        for payload in payloads:
            if not self._started:
                self._payloads.clear()  # not connected yet: only the newest matters
            elif len(self._payloads) == OUTBOUND_MAX:
                self.dropped += 1  # the sender fell behind: lose the oldest, keep latency bounded
            self._payloads.append(payload)
        if payloads:
            self._ready.set()

    async def recv(self) -> av.Packet:
        self._started = True
        while not self._payloads:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        # Each receiver's own timeline: switching between the shared stream and an own
        # encoder (a mute) never makes its RTP timestamps jump.
        packet = av.Packet(self._payloads.popleft())
        packet.pts = self._pts
        packet.time_base = TIME_BASE
        self._pts += FRAME_SAMPLES
        return packet

    def stop(self) -> None:
        super().stop()
        self._ready.set()


class Mono48k:
    """Turns decoded frames (any layout, rate or size) into 20 ms mono s16 48 kHz arrays."""

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._pending = np.zeros(0, dtype=np.int16)

    def __call__(self, frame: av.AudioFrame) -> list[np.ndarray]:
        if (
            frame.format.name == "s16"
            and frame.sample_rate == SAMPLE_RATE
            and frame.layout.name
            in (
                "mono",
                "stereo",
            )
        ):
            samples: np.ndarray = frame.to_ndarray().reshape(-1)
            if frame.layout.name == "stereo":  # aiortc's Opus decoder: interleaved L R
                pairs = samples.reshape(-1, 2).astype(np.int32)
                samples = ((pairs[:, 0] + pairs[:, 1]) >> 1).astype(np.int16)
        else:
            if self._resampler is None:
                self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            parts = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
            samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        if len(self._pending) == 0 and len(samples) == FRAME_SAMPLES:
            return [samples]
        buffered = np.concatenate([self._pending, samples])
        whole = len(buffered) // FRAME_SAMPLES * FRAME_SAMPLES
        self._pending = buffered[whole:]
        return [buffered[i : i + FRAME_SAMPLES] for i in range(0, whole, FRAME_SAMPLES)]


class Participant:
    """One attendee's audio in a room: what they send (jitter queue) and what they hear (track)."""

    def __init__(self, attendee_id: str, audio: str, *, replica: bool, external_user_id: str = "") -> None:
        self.attendee_id = attendee_id
        self.external_user_id = external_user_id
        self.audio = audio
        self.replica = replica
        self.level = 0.0  # what this attendee contributes to the mix, 0..1 (see LEVEL_DECAY)
        self.inbound = JitterQueue()
        self.outbound = MixTrack()
        self._encoder: OpusStream | None = None  # only for who needs a mix of their own
        self._reader: asyncio.Task[None] | None = None

    @property
    def may_send(self) -> bool:
        return not self.replica and self.audio in SEND_CAPABILITIES

    @property
    def may_receive(self) -> bool:
        return self.audio in RECEIVE_CAPABILITIES

    @property
    def hears_the_shared_mix(self) -> bool:
        """Listeners: everyone who cannot send hears the same mix, encoded once for all."""
        return self.may_receive and not self.may_send

    def encode(self, pcm: np.ndarray) -> list[bytes]:
        if self._encoder is None:
            self._encoder = OpusStream()
        return self._encoder.encode(pcm)

    def set_audio(self, audio: str) -> None:
        was_sending = self.may_send
        self.audio = audio
        if was_sending and not self.may_send:
            self.inbound.clear()  # what was queued before a mute is never played after it

    def become(self, attendee_id: str, external_user_id: str, audio: str, *, replica: bool) -> None:
        """Count as another attendee from now on (a replica session promoted to its primary, or
        demoted back): the same uplink and track, another identity and capability."""
        self.attendee_id, self.external_user_id, self.replica = attendee_id, external_user_id, replica
        self.audio = audio
        if not self.may_send:
            self.inbound.clear()
        self.level = 0.0

    def listen_to(self, track: MediaStreamTrack) -> None:
        """Read the attendee's uplink; a replaced track (re-offer) stops the previous reader."""
        if self._reader is not None:
            self._reader.cancel()
        self._reader = asyncio.get_running_loop().create_task(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        to_frames = Mono48k()
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame: Any = await track.recv()
                # Decoded either way; only senders' frames are kept for the mix.
                for pcm in to_frames(frame):
                    if self.may_send:
                        self.inbound.push(pcm)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        self.outbound.stop()


class Room:
    """The mixer of one primary meeting: its attendees and its replicas' attendees."""

    def __init__(
        self,
        primary_meeting_id: str,
        on_empty: Callable[[Room], None],
        taps: list[Callable[[np.ndarray], None]] | None = None,
    ) -> None:
        self.primary_meeting_id = primary_meeting_id
        # Who else hears the mix every tick (a capture pipeline's recorder); shared with the
        # server, which may add to it from another thread.
        self.taps = taps if taps is not None else []
        self.participants: dict[str, Participant] = {}
        self._on_empty = on_empty
        self._shared = OpusStream()
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.late_ticks = 0

    def add(self, participant: Participant) -> None:
        old = self.participants.pop(participant.attendee_id, None)
        if old is not None:
            old.close()
        self.participants[participant.attendee_id] = participant
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def rekey(
        self, participant: Participant, attendee_id: str, external_user_id: str, audio: str, *, replica: bool
    ) -> None:
        """A participant of this room takes another identity (promotion to the primary and back)."""
        if self.participants.get(participant.attendee_id) is participant:
            del self.participants[participant.attendee_id]
        participant.become(attendee_id, external_user_id, audio, replica=replica)
        other = self.participants.get(attendee_id)
        if other is not None and other is not participant:
            other.close()
        self.participants[attendee_id] = participant

    def remove(self, attendee_id: str, participant: Participant | None = None) -> None:
        current = self.participants.get(attendee_id)
        if current is None or (participant is not None and current is not participant):
            return
        del self.participants[attendee_id]
        current.close()
        if not self.participants:
            self.stop()
            self._on_empty(self)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        try:
            while self.participants:
                next_tick += FRAME_SECONDS
                delay = next_tick - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -MAX_LATENESS:
                    self.late_ticks += 1
                    next_tick = loop.time()
                self.tick()
        except asyncio.CancelledError:
            pass
        except Exception:  # a mixer bug must be loud, not a silent room
            log.exception("mixer of meeting %s stopped", self.primary_meeting_id)

    def tick(self) -> None:
        """One 20 ms frame: the senders' sum once, then each receiver hears it minus their own part."""
        self.ticks += 1
        frames: dict[str, np.ndarray] = {}
        for attendee_id, participant in self.participants.items():
            pcm = participant.inbound.pop()
            level = 0.0
            if pcm is not None and participant.may_send:
                frames[attendee_id] = pcm
                level = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float32)))) / 32768.0
            participant.level = max(level, participant.level * LEVEL_DECAY)
        total: Any = None
        mixed_all: np.ndarray = SILENCE
        if frames:
            total = np.sum(np.stack(list(frames.values())), axis=0, dtype=np.int32)
            mixed_all = _clip(total)
        for tap in tuple(self.taps):
            tap(mixed_all)
        shared: list[bytes] | None = None
        for attendee_id, participant in self.participants.items():
            if participant.hears_the_shared_mix:
                if shared is None:
                    shared = self._shared.encode(mixed_all)
                participant.outbound.push(shared)
            elif total is None or not participant.may_receive:
                participant.outbound.push(participant.encode(SILENCE))
            elif attendee_id in frames:
                own = frames[attendee_id]
                # the only voice is their own: silence
                heard = SILENCE if len(frames) == 1 else _clip(total - own)
                participant.outbound.push(participant.encode(heard))
            else:
                participant.outbound.push(participant.encode(mixed_all))

    def volumes(self) -> list[dict[str, Any]]:
        """Who is heard and how loud: the senders of this room, as Chime's volume indicators tell."""
        return [
            {"AttendeeId": p.attendee_id, "ExternalUserId": p.external_user_id, "Volume": round(p.level, 4)}
            for p in self.participants.values()
            if p.may_send
        ]

    def stats(self) -> dict[str, Any]:
        return {
            "participants": len(self.participants),
            "senders": sum(1 for p in self.participants.values() if p.may_send),
            "ticks": self.ticks,
            "late_ticks": self.late_ticks,
            "underruns": sum(p.inbound.underruns for p in self.participants.values()),
            "outbound_dropped": sum(p.outbound.dropped for p in self.participants.values()),
        }


def _clip(samples: np.ndarray) -> np.ndarray:
    return np.clip(samples, -32768, 32767).astype(np.int16)
