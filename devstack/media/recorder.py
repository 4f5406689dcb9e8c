"""Recording the embedded media server's mix into S3, as a Chime media capture pipeline does.

A `Recorder` taps a room's mix (what a listener hears: every sender), cuts it into ~5 s
chunks and writes each to S3 as `<prefix>/audio/<YYYY-MM-DD-HH-MM-SS-mmm>.mp4`, the chunk's
start time in UTC. `concatenate` joins a capture's chunks into one file, as a media
concatenation pipeline does. The mix is tapped on the media loop (cheap: a list append);
encoding and uploads run on a worker thread.

Chime writes AAC in MP4; here the audio is Opus in MP4 (PyAV's encoders, and it plays in
every browser). Same container, same content type (audio/mp4), same key layout.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import av
import numpy as np

from devstack.media.mixer import FRAME_SAMPLES, SAMPLE_RATE

log = logging.getLogger("devstack.media")

CHUNK_FRAMES = 250  # 250 x 20 ms = 5 s, Chime's chunk length
_uploads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="recorder")


def chunk_name(at: float) -> str:
    dt = datetime.fromtimestamp(at, tz=UTC)
    return dt.strftime("%Y-%m-%d-%H-%M-%S-") + f"{dt.microsecond // 1000:03d}.mp4"


def encode_mp4(pcm: np.ndarray) -> bytes:
    """Mono 48 kHz int16 samples as Opus in an MP4 container."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream: Any = container.add_stream("libopus", rate=SAMPLE_RATE)
        stream.layout = "mono"
        stream.bit_rate = 48_000
        for start in range(0, len(pcm), FRAME_SAMPLES):
            part = pcm[start : start + FRAME_SAMPLES]
            if len(part) < FRAME_SAMPLES:
                part = np.concatenate([part, np.zeros(FRAME_SAMPLES - len(part), dtype=np.int16)])
            frame = av.AudioFrame.from_ndarray(part.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def decode(data: bytes) -> np.ndarray:
    """An audio file's samples as mono 48 kHz int16."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    parts: list[np.ndarray] = []
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray().reshape(-1))
    for out in resampler.resample(None):
        parts.append(out.to_ndarray().reshape(-1))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


class Recorder:
    """One capture: the mix in, 5 s MP4 chunks out to s3://bucket/prefix/audio/."""

    def __init__(self, s3: Any, bucket: str, prefix: str, clock: Callable[[], float]) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.clock = clock
        self._frames: list[np.ndarray] = []
        self._started_at = 0.0
        self._lock = threading.Lock()
        self._pending: list[Any] = []
        self.chunks_written = 0
        self.stopped = False

    def __call__(self, mix: np.ndarray) -> None:
        """A 20 ms frame of the mix (called on the media loop)."""
        if self.stopped:
            return
        if not self._frames:
            self._started_at = self.clock()
        self._frames.append(mix.copy())
        if len(self._frames) >= CHUNK_FRAMES:
            self._flush()

    def _flush(self) -> None:
        frames, self._frames = self._frames, []
        if frames:
            started = self._started_at
            self._pending.append(_uploads.submit(self._write, np.concatenate(frames), started))

    def _write(self, pcm: np.ndarray, started: float) -> None:
        key = f"{self.prefix}/audio/{chunk_name(started)}"
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=encode_mp4(pcm), ContentType="audio/mp4")
            with self._lock:
                self.chunks_written += 1
        except Exception:
            log.exception("could not write capture chunk %s", key)

    def stop(self) -> None:
        """Write what is left and wait for the uploads (call off the media loop's thread)."""
        self.stopped = True
        self._flush()
        for future in list(self._pending):
            future.result(timeout=30)


def write_transcript(s3: Any, bucket: str, prefix: str, event: dict[str, Any]) -> str:
    """A TranscriptEvent into the capture's transcription-messages folder, as a capture pipeline on
    a meeting with live transcription writes it: .txt objects named by a UTC timestamp, holding
    JSON messages (https://docs.aws.amazon.com/chime-sdk/latest/dg/transcription-messages.html).
    Guesses: one event per object, one JSON object per line, named after the result's start."""
    [result] = event["transcript"]["results"]
    key = f"{prefix.strip('/')}/transcription-messages/{chunk_name(result['startTimeMs'] / 1000)[:-4]}.txt"
    body = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/plain")
    return key


def concatenate(s3: Any, bucket: str, source_prefix: str, key: str) -> bool:
    """Join the chunks under source_prefix/audio/ into one MP4 at `key`; False if there are none."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=source_prefix.strip("/") + "/audio/"
    ):
        keys += [item["Key"] for item in page.get("Contents", [])]
    if not keys:
        return False
    pcm = np.concatenate([decode(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in sorted(keys)])
    s3.put_object(Bucket=bucket, Key=key, Body=encode_mp4(pcm), ContentType="audio/mp4")
    return True
