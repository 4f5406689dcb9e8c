"""The transcript around a report: captions on while a report's capture runs land in the capture's
transcription-messages folder (as a Chime capture pipeline writes them), and the admin's evidence
answer holds the lines within two minutes of the first report.

Speech as in test_captions.py: espeak-ng's words played into the host's microphone over WebRTC;
what the recognizer makes of them varies on a loaded machine, so only that lines come back is checked.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_support import close_all
from spaces_support import Clients, create_space, run, uid
from test_captions import joined, speech

from chalicelib.config import get_settings

pytestmark = pytest.mark.e2e

from conftest import admin_token, http, wait_for_case  # noqa: E402


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_report_in_a_captioned_space_yields_the_transcript_around_it(stack: Any, tmp_path: Path) -> None:
    phrase = speech(tmp_path, "hello world")
    pause = np.zeros(48_000, dtype=np.int16)
    said = np.concatenate([phrase, pause, phrase, pause])

    spaces: list[str] = []

    async def scenario(clients: Clients) -> None:
        host_id, reporter_id = uid("host"), uid("rep")
        sid = (await asyncio.to_thread(create_space, stack, host_id, lang="en"))["id"]
        spaces.append(sid)
        host, host_snapshot = await clients.join(host_id, sid)
        reporter, reporter_snapshot = await clients.join(reporter_id, sid)
        mic = await joined(stack, host_snapshot["media"], mic=True)
        ear = await joined(stack, reporter_snapshot["media"])
        try:
            assert await host.send("captions.set", space_id=sid, on=True) == {"captions": True}
            await reporter.send("report.send", space_id=sid, user_id=host_id, category="harassment")
            case = await asyncio.to_thread(wait_for_case, stack, "user", host_id, 1)
            meeting_id = host_snapshot["media"]["Meeting"]["MeetingId"]
            deadline = asyncio.get_running_loop().time() + 10
            while not [c for c in stack.pipelines.active() if c.meeting_id == meeting_id]:
                assert asyncio.get_running_loop().time() < deadline, "no capture pipeline"
                await asyncio.sleep(0.1)
            assert mic.mic is not None
            mic.mic.play(said)

            body: dict[str, Any] = {}
            deadline = asyncio.get_running_loop().time() + 20
            while not body.get("transcript"):
                assert asyncio.get_running_loop().time() < deadline, f"no transcript: {body}"
                await asyncio.sleep(0.5)
                status, body = await asyncio.to_thread(
                    http, stack, "GET", f"/admin/cases/{case['id']}/evidence", token=admin_token(stack)
                )
                assert status == 200, body
            reported = _epoch(case["first_seen_at"])
            for line in body["transcript"]:
                assert line["text"].strip() and line["user_id"] is None  # the mix: no speaker
                assert abs(_epoch(line["at"]) - reported) <= 120 and line["ended_at"] > line["at"]
        finally:
            await close_all(mic, ear)
        await host.send("space.end", space_id=sid)

    run(stack, scenario)
    # the objects, where and as a capture pipeline writes them
    s3, bucket = stack.aws.client("s3"), get_settings().evidence_bucket
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"capture/{spaces[0]}/")["Contents"]
    keys = [o["Key"] for o in listed if "/transcription-messages/" in o["Key"]]
    assert keys and all(k.endswith(".txt") for k in keys)
    event = json.loads(s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read().decode().splitlines()[0])
    [result] = event["transcript"]["results"]
    assert result["isPartial"] is False and result["endTimeMs"] > result["startTimeMs"] > 1_600_000_000_000
