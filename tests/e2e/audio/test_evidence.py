"""Audio evidence and host recordings, end to end on the local stack.

A report during a live space starts a capture (the app's ChimePipelinesAdapter against the
stack's media pipelines emulator), the embedded media server records the mix into moto's S3,
the space's end concatenates it, and an admin's presigned URL returns a file whose dominant
frequency is the speaker's tone. The bucket is checked as the template configures it.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import numpy as np
import pytest
from audio_support import close_all, until
from spaces_support import Clients, create_space, run, uid

from chalicelib.config import get_settings
from devstack.media.mixer import SAMPLE_RATE
from devstack.media.recorder import decode
from devstack.media.whip_client import WhipPeer

pytestmark = pytest.mark.e2e

from conftest import admin_token, http, refused, settings_overridden, token, wait_for_case  # noqa: E402


def dominant(pcm: np.ndarray) -> float:
    """The loudest frequency of a whole recording (Hz)."""
    samples = pcm.astype(np.float32) * np.hanning(len(pcm))
    spectrum = np.abs(np.fft.rfft(samples))
    freqs = np.fft.rfftfreq(len(pcm), 1 / SAMPLE_RATE)
    return float(freqs[int(np.argmax(spectrum[1:])) + 1])


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # a presigned URL needs no token
        assert response.status == 200
        return bytes(response.read())


async def joined(stack: Any, media: dict[str, Any], tone: float | None = None) -> WhipPeer:
    url = media["Meeting"]["MediaPlacement"]["SignalingUrl"]
    peer = WhipPeer(stack.base_url, url, media["Attendee"]["JoinToken"], tone)
    response = await peer.join()
    assert response.status == 201, (response.status, response.body)
    return peer


def evidence(stack: Any, case_id: str, as_token: str | None = None) -> tuple[int, Any]:
    return http(stack, "GET", f"/admin/cases/{case_id}/evidence", token=as_token or admin_token(stack))


def s3(stack: Any) -> Any:
    return stack.aws.client("s3")


def test_a_report_captures_the_space_and_the_admin_hears_the_speaker(stack: Any) -> None:
    from chalicelib import evidence as evidence_module

    async def scenario(clients: Clients) -> None:
        host_id, reporter_id = uid("host"), uid("rep")
        space = await asyncio.to_thread(create_space, stack, host_id)
        sid = space["id"]
        host, host_snapshot = await clients.join(host_id, sid)
        reporter, reporter_snapshot = await clients.join(reporter_id, sid)
        speaker = await joined(stack, host_snapshot["media"], tone=440)
        listener = await joined(stack, reporter_snapshot["media"])
        try:
            await until(lambda: listener.hears(440), what="the host heard")
            await reporter.send("report.send", space_id=sid, user_id=host_id, category="harassment")
            case = await asyncio.to_thread(wait_for_case, stack, "user", host_id, 1)
            await until(lambda: stack.pipelines.active(), what="a capture pipeline")
            meeting_id = host_snapshot["media"]["Meeting"]["MeetingId"]
            [capture] = [c for c in stack.pipelines.active() if c.meeting_id == meeting_id]
            status, body = await asyncio.to_thread(evidence, stack, case["id"])
            assert status == 200 and body["status"] == "capturing", body
            status, detail = http(stack, "GET", f"/admin/cases/{case['id']}", token=admin_token(stack))
            assert detail["evidence"] == {"status": "capturing", "reason": None}
            # ~5 s chunks arrive while the space is live
            await until(lambda: capture.recorder.chunks_written >= 1, timeout=12, what="a first chunk")
            status, body = await asyncio.to_thread(evidence, stack, case["id"])
            assert body["status"] == "capturing" and body["items"], body
            assert body["transcript"] == []  # captions are off: no transcript
            first = body["items"][0]
            assert first["content_type"] == "audio/mp4" and first["expires_at"] > first["started_at"]
            assert abs(dominant(decode(await asyncio.to_thread(fetch, first["url"]))) - 440) < 3
            await host.send("space.end", space_id=sid)
        finally:
            await close_all(speaker, listener)

        assert stack.pipelines.count("DeleteMediaCapturePipeline") >= 1
        # Chime concatenates in the background; until then the chunks are the evidence
        status, body = await asyncio.to_thread(evidence, stack, case["id"])
        assert status == 200 and body["status"] == "available" and body["items"], body
        await asyncio.to_thread(stack.pipelines.wait_concatenations)
        # the sweep finds the file and tags it (it looks again 10 minutes after the end)
        await asyncio.to_thread(
            evidence_module.housekeeping, time.time() + evidence_module.RELEASE_CHECK_SECONDS + 1
        )
        status, body = await asyncio.to_thread(evidence, stack, case["id"])
        assert status == 200 and body["status"] == "available" and body["reason"] is None, body
        [whole] = body["items"]  # one concatenated file per segment
        assert whole["ended_at"] and whole["started_at"] < whole["ended_at"]
        pcm = decode(await asyncio.to_thread(fetch, whole["url"]))
        assert len(pcm) >= 5 * SAMPLE_RATE
        assert abs(dominant(pcm) - 440) < 3
        # held by the open case: tagged so, hence out of the 30-day expiry
        bucket = get_settings().evidence_bucket
        keys = [
            o["Key"] for o in s3(stack).list_objects_v2(Bucket=bucket, Prefix=f"media/{sid}/")["Contents"]
        ]
        assert len(keys) == 1 and keys[0].startswith(f"media/{sid}/1/audio/") and keys[0].endswith(".mp4")
        tags = s3(stack).get_object_tagging(Bucket=bucket, Key=keys[0])["TagSet"]
        assert tags == [{"Key": "case-open", "Value": "true"}]
        # dismissing the case releases it: its 30 days start
        status, acted = http(
            stack,
            "POST",
            f"/admin/cases/{case['id']}/actions",
            {"action": "dismiss", "reason": "heard it: fine"},
            token=admin_token(stack),
        )
        assert status == 200, acted
        tags = s3(stack).get_object_tagging(Bucket=bucket, Key=keys[0])["TagSet"]
        assert tags == [{"Key": "case-open", "Value": "false"}]

    run(stack, scenario)


def test_nobody_but_an_admin_reads_evidence(stack: Any) -> None:
    host, reporter = uid("h"), uid("r")
    sid = create_space(stack, host)["id"]
    case_id = "0" * 32
    status, body = http(stack, "GET", f"/admin/cases/{case_id}/evidence")
    assert (status, body["code"]) == (401, "unauthorized")
    for who in (host, reporter):
        status, body = evidence(stack, case_id, token(stack, who))
        assert (status, body["code"], body["message"]) == (403, "not_allowed", "admins only")
    status, body = evidence(stack, case_id)
    assert (status, body["code"]) == (404, "not_found")
    status, body = evidence(stack, "open%23user%23x")
    assert (status, body["code"]) == (404, "not_found")
    # and the bucket itself is closed to the public
    bucket = get_settings().evidence_bucket
    block = s3(stack).get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    assert sid


def test_the_bucket_is_configured_as_the_template_says(stack: Any) -> None:
    client = s3(stack)
    bucket = get_settings().evidence_bucket
    assert bucket.startswith("sohbet-dev-evidence-")
    rule = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
    writes = next(s for s in policy["Statement"] if s["Sid"] == "ChimeMediaPipelinesWrite")
    assert writes["Principal"] == {"Service": "mediapipelines.chime.amazonaws.com"}
    assert "s3:PutObject" in writes["Action"] and writes["Resource"] == f"arn:aws:s3:::{bucket}/*"
    assert writes["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    assert writes["Condition"]["ArnLike"] == {"aws:SourceArn": "arn:aws:chime:us-east-1:123456789012:*"}
    # (the template's TLS-only denial is left out locally: the stack is plain http on loopback)
    assert [s["Sid"] for s in policy["Statement"]] == ["ChimeMediaPipelinesWrite", "ChimeMediaPipelinesList"]
    rules = {r["ID"]: r for r in client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["capture-chunks-30-days"]["Filter"] == {"Prefix": "capture/"}
    assert rules["capture-chunks-30-days"]["Expiration"] == {"Days": 30}
    released = rules["released-media-30-days"]
    assert released["Filter"] == {
        "And": {"Prefix": "media/", "Tags": [{"Key": "case-open", "Value": "false"}]}
    }
    assert released["Expiration"] == {"Days": 30}
    assert rules["media-backstop-365-days"]["Expiration"] == {"Days": 365}
    # no rule expires a held file (tag case-open=true) before the backstop
    for r in rules.values():
        assert r["Filter"].get("Prefix") != "media/" or r["Expiration"]["Days"] == 365


def test_a_pipeline_quota_refusal_leaves_the_case_without_evidence_and_nothing_else_broken(
    stack: Any,
) -> None:
    async def scenario(clients: Clients) -> None:
        host_id, reporter_id = uid("host"), uid("rep")
        sid = (await asyncio.to_thread(create_space, stack, host_id))["id"]
        host, _ = await clients.join(host_id, sid)
        reporter, _ = await clients.join(reporter_id, sid)
        with stack.pipelines.quota(0):
            await reporter.send("report.send", space_id=sid, user_id=host_id, category="spam")
            case = await asyncio.to_thread(wait_for_case, stack, "user", host_id, 1)
        status, body = await asyncio.to_thread(evidence, stack, case["id"])
        assert status == 200, body
        assert body == {
            "items": [],
            "status": "unavailable",
            "reason": "media pipeline quota reached (ResourceLimitExceeded)",
            "transcript": [],
        }
        status, detail = http(stack, "GET", f"/admin/cases/{case['id']}", token=admin_token(stack))
        assert detail["evidence"]["status"] == "unavailable"
        # the space goes on as before
        await reporter.send("hand.raise", space_id=sid)
        await host.event("hand.raised", user_id=reporter_id)
        await host.send("space.end", space_id=sid)

    run(stack, scenario)


def test_a_report_on_a_space_that_is_not_live_has_no_evidence(stack: Any) -> None:
    async def scenario(clients: Clients) -> None:
        host_id, reporter_id = uid("host"), uid("rep")
        sid = (await asyncio.to_thread(create_space, stack, host_id))["id"]
        host, _ = await clients.join(host_id, sid)
        await clients.join(reporter_id, sid)
        await host.send("space.end", space_id=sid)
        status, _ = http(
            stack,
            "POST",
            "/reports",
            {"space_id": sid, "category": "spam"},
            token=token(stack, reporter_id),
        )
        assert status == 202
        case = await asyncio.to_thread(wait_for_case, stack, "space", sid, 1)
        status, body = await asyncio.to_thread(evidence, stack, case["id"])
        assert body == {
            "items": [],
            "status": "unavailable",
            "reason": "the space was not live",
            "transcript": [],
        }

    run(stack, scenario)


def test_host_recording_is_announced_and_replayed_after_the_end(stack: Any) -> None:
    async def scenario(clients: Clients) -> None:
        host_id, listener_id, blocked_id = uid("host"), uid("l"), uid("b")
        sid = (await asyncio.to_thread(create_space, stack, host_id))["id"]
        host, host_snapshot = await clients.join(host_id, sid)
        listener, listener_snapshot = await clients.join(listener_id, sid)
        assert listener_snapshot["space"]["recording"] is False
        status, _ = http(stack, "GET", f"/spaces/{sid}/recording", token=token(stack, listener_id))
        assert status == 404
        speaker = await joined(stack, host_snapshot["media"], tone=660)
        try:
            reply = await host.send("recording.set", space_id=sid, on=True)
            assert reply["recording"] is True and reply["started_at"]
            event = await listener.event("recording.changed")
            assert event["recording"] is True and event["started_at"] == reply["started_at"]
            await refused(listener.send("recording.set", space_id=sid, on=False), "not_allowed")
            _, late = await clients.join(uid("late"), sid)
            assert late["space"]["recording"] is True
            status, body = http(stack, "GET", f"/spaces/{sid}/recording", token=token(stack, listener_id))
            assert (status, body["code"]) == (409, "conflict")
            await until(
                lambda: any(c.recorder.chunks_written for c in stack.pipelines.active() if c.recorder),
                timeout=12,
                what="a recorded chunk",
            )
            await host.send("space.end", space_id=sid)
        finally:
            await close_all(speaker)
        await asyncio.to_thread(stack.pipelines.wait_concatenations)
        http(stack, "PUT", f"/me/blocks/{blocked_id}", token=token(stack, host_id))
        status, body = http(stack, "GET", f"/spaces/{sid}/recording", token=token(stack, blocked_id))
        assert (status, body["code"]) == (403, "not_allowed")
        status, body = http(stack, "GET", f"/spaces/{sid}/recording", token=token(stack, listener_id))
        assert status == 200 and body["status"] == "available", body
        [item] = body["items"]
        assert abs(dominant(decode(await asyncio.to_thread(fetch, item["url"]))) - 660) < 3
        assert body["available_until"] > item["ended_at"]

    run(stack, scenario)


def test_capture_calls_are_idempotent_when_triage_runs_twice(stack: Any) -> None:
    """A redelivered report (or two reports at once) finds the running capture: one pipeline."""
    from chalicelib import evidence as evidence_module

    async def scenario(clients: Clients) -> None:
        host_id = uid("host")
        sid = (await asyncio.to_thread(create_space, stack, host_id))["id"]
        host, _ = await clients.join(host_id, sid)
        before = stack.pipelines.count("CreateMediaCapturePipeline")
        outcomes = await asyncio.gather(
            *(asyncio.to_thread(evidence_module.sync, sid, "report") for _ in range(3))
        )
        assert {o.status for o in outcomes} == {"capturing"}
        assert len([c for c in stack.pipelines.active() if c.prefix == f"capture/{sid}/1"]) == 1
        assert stack.pipelines.count("CreateMediaCapturePipeline") - before >= 1
        await host.send("space.end", space_id=sid)
        assert not [c for c in stack.pipelines.active() if c.prefix.startswith(f"capture/{sid}/")]

    run(stack, scenario)


def test_a_capture_stops_at_its_cap_and_does_not_start_again(stack: Any) -> None:
    """The sweep ends a capture EVIDENCE_MAX_SECONDS after it started; later reports find it capped."""
    from chalicelib import evidence as evidence_module
    from chalicelib.models import Space

    async def scenario(clients: Clients) -> None:
        host_id = uid("host")
        sid = (await asyncio.to_thread(create_space, stack, host_id))["id"]
        host, _ = await clients.join(host_id, sid)
        assert (await asyncio.to_thread(evidence_module.sync, sid, "report")).status == "capturing"
        space = await asyncio.to_thread(Space.get, sid, consistent_read=True)
        cap = get_settings().evidence_max_seconds
        assert space.capture_due >= time.time() + cap - 60  # due at the cap
        assert await asyncio.to_thread(evidence_module.housekeeping, time.time()) >= 0  # not yet due
        assert (await asyncio.to_thread(Space.get, sid, consistent_read=True)).capture is not None
        await asyncio.to_thread(evidence_module.housekeeping, time.time() + cap + 1)
        space = await asyncio.to_thread(Space.get, sid, consistent_read=True)
        assert space.capture is None and space.capture_error == evidence_module.CAPPED
        [segment] = space.captures
        assert segment["ended_because"] == evidence_module.CAPPED and segment["concatenation_id"]
        assert not [c for c in stack.pipelines.active() if c.prefix.startswith(f"capture/{sid}/")]
        again = await asyncio.to_thread(evidence_module.sync, sid, "report")
        assert again == evidence_module.Outcome("unavailable", evidence_module.CAPPED)
        await host.send("space.end", space_id=sid)

    run(stack, scenario)


def test_capture_all_spaces_captures_a_space_from_its_start(stack: Any) -> None:
    from chalicelib.models import Space

    async def scenario(clients: Clients) -> None:
        with settings_overridden(CAPTURE_ALL_SPACES="true"):
            host_id = uid("host")
            sid = (await asyncio.to_thread(create_space, stack, host_id))["id"]
            host, snapshot = await clients.join(host_id, sid)
            space = await asyncio.to_thread(Space.get, sid, consistent_read=True)
            assert space.capture is not None and space.capture["reasons"] == ["all"]
            assert space.capture["recording"] is False and snapshot["space"]["recording"] is False
            meeting_id = snapshot["media"]["Meeting"]["MeetingId"]
            assert [c.meeting_id for c in stack.pipelines.active() if c.prefix == f"capture/{sid}/1"] == [
                meeting_id
            ]
            await host.send("space.end", space_id=sid)
        space = await asyncio.to_thread(Space.get, sid, consistent_read=True)
        assert space.capture is None and len(space.captures) == 1

    run(stack, scenario)


def test_a_capture_that_cannot_be_stopped_at_the_end_is_stopped_by_the_sweep(stack: Any) -> None:
    """The space still ends (its meetings go); the sweep finishes the capture within a minute."""
    from chalicelib import evidence as evidence_module
    from chalicelib.models import Space

    async def scenario(clients: Clients) -> None:
        host_id = uid("host")
        sid = (await asyncio.to_thread(create_space, stack, host_id))["id"]
        host, _ = await clients.join(host_id, sid)
        assert (await asyncio.to_thread(evidence_module.sync, sid, "report")).status == "capturing"
        stack.pipelines.fail_next("DeleteMediaCapturePipeline", "Forbidden")
        await host.send("space.end", space_id=sid)
        space = await asyncio.to_thread(Space.get, sid, consistent_read=True)
        assert space.state == "ended" and space.capture is not None
        assert space.capture_due <= time.time() + 1
        await asyncio.to_thread(evidence_module.housekeeping, time.time() + 1)
        space = await asyncio.to_thread(Space.get, sid, consistent_read=True)
        assert space.capture is None and space.captures[0]["ended_because"] == "the space ended"
        assert not [c for c in stack.pipelines.active() if c.prefix.startswith(f"capture/{sid}/")]

    run(stack, scenario)
