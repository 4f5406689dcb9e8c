"""A space's captured audio: report evidence and the host's recording for replay.

One capture runs per space at a time (Chime allows one media capture pipeline per
meeting), for every reason at once: a report ("report"), the deployment capturing every
space ("all"), the host recording ("recording"). A capture is a *segment*; a new one
starts when the recording flag changes, so a replay never holds audio from before the
room was told it is being recorded. Segments end with the space, at the cap
(EVIDENCE_MAX_SECONDS), or when nothing needs them; each finished segment is
concatenated into one file.

Key layout in the evidence bucket (the same locally and in AWS):
    capture/{space_id}/{n}/audio/<YYYY-MM-DD-HH-MM-SS-mmm>.mp4   the pipeline's ~5 s chunks
    media/{space_id}/{n}/audio/<concatenation pipeline id>.mp4  the segment as one file
Retention (infra/template.yaml, docs/media.md): chunks expire after 30 days; a segment's
file is tagged `case-open=false` once no open case holds the space, which starts its
30-day expiry; while a case holds it the tag is `true` and only a 365-day backstop applies.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib import clients, observability
from chalicelib import pipelines as pipelines_module
from chalicelib.clock import now_iso
from chalicelib.config import get_settings
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.media import MediaError
from chalicelib.models import Case, Space
from chalicelib.observability import logger
from chalicelib.rules import SpaceState

REASONS = ("report", "all", "recording")
CAPTURE_SHARD = "capture"
RELEASE_CHECK_SECONDS = 600  # after the end: look for the concatenated files again this often
RELEASE_GIVE_UP_SECONDS = 24 * 60 * 60
REPLAY_DAYS = 30
CAPPED = "the capture reached its time cap"
QUOTA = "media pipeline quota reached (ResourceLimitExceeded)"
NOT_LIVE = "the space was not live"
HOLD_TAG = "case-open"
CHUNK_SECONDS = 5.0
_CHUNK_NAME = re.compile(r"(\d{4})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{3})")
ATTEMPTS = 5


@dataclass(frozen=True)
class Outcome:
    """What a request for capture came to: "capturing", or "unavailable" and why."""

    status: str
    reason: str | None = None


def capture_prefix(space_id: str, n: int) -> str:
    return f"capture/{space_id}/{n}"


def media_prefix(space_id: str, n: int) -> str:
    return f"media/{space_id}/{n}"


# -- starting, changing and stopping the capture ------------------------------------------


def desired_reasons(space: Space, current: list[str], add: str | None) -> list[str]:
    """Why the space's audio should be captured now (pure)."""
    reasons = set(current) | ({add} if add else set())
    if get_settings().capture_all_spaces:
        reasons.add("all")
    if space.recording:
        reasons.add("recording")
    else:
        reasons.discard("recording")
    return [r for r in REASONS if r in reasons]


def sync(space_id: str, add: str | None = None) -> Outcome:
    """Bring the space's capture in line with why it should run (idempotent; safe to retry).

    Chime calls carry deterministic ClientRequestTokens and the space item is written with a
    condition on `capture_segments`, so two callers at once end with one pipeline.
    """
    for _ in range(ATTEMPTS):
        space = Space.get(space_id, consistent_read=True)
        current = space.capture
        if space.state != SpaceState.LIVE or not space.meeting:
            if current:
                finish(space, "the space ended")
            return Outcome("unavailable", NOT_LIVE)
        reasons = desired_reasons(space, (current or {}).get("reasons", []), add)
        if current and (not reasons or bool(current.get("recording")) != bool(space.recording)):
            if not finish(space, "no longer needed" if not reasons else "recording changed"):
                continue
            space = Space.get(space_id, consistent_read=True)
            current = None
        if not reasons:
            return Outcome("unavailable", "nothing asked for a capture")
        if current:
            if reasons != current.get("reasons") and not _set_reasons(space, current, reasons):
                continue
            return Outcome("capturing")
        if space.capture_error == CAPPED:
            return Outcome("unavailable", CAPPED)
        outcome = _start(space, reasons)
        if outcome is not None:
            return outcome
    raise RuntimeError(f"the capture of space {space_id} kept changing")


def _meeting_arn(space: Space) -> str:
    meeting = space.meeting or {}
    arn = meeting.get("meeting_arn")
    if arn:
        return str(arn)
    raise MediaError(
        "the space's meeting has no ARN", retryable=False, code="BadRequest", operation="start_capture"
    )


def _start(space: Space, reasons: list[str]) -> Outcome | None:
    """Start segment n+1; None if the space changed meanwhile (the caller reads again)."""
    settings = get_settings()
    if not settings.evidence_bucket:
        return Outcome("unavailable", "no evidence bucket is configured")
    n = int(space.capture_segments or 0) + 1
    meeting_id = str(space.meeting_id)
    sink = pipelines_module.bucket_arn(settings.evidence_bucket, capture_prefix(space.space_id, n))
    try:
        pipeline = clients.pipelines().start_capture(
            _meeting_arn(space), sink, pipelines_module.request_token("capture", meeting_id, str(n))
        )
    except MediaError as exc:
        if exc.retryable:
            raise
        reason = QUOTA if exc.code in pipelines_module.QUOTA_CODES else f"capture refused: {exc.code}"
        logger.warning("audio capture unavailable", extra={"space_id": space.space_id, "error": str(exc)})
        observability.count_by("CaptureUnavailable", code=exc.code or "unknown")
        _note_error(space, reason)
        return Outcome("unavailable", reason)
    now = time.time()
    segment = {
        "n": n,
        "pipeline_id": pipeline.pipeline_id,
        "pipeline_arn": pipeline.pipeline_arn,
        "meeting_id": meeting_id,
        "started_at": now_iso(now),
        "ended_at": None,
        "recording": bool(space.recording),
        "reasons": reasons,
    }
    try:
        space.update(
            actions=[
                Space.capture.set(segment),
                Space.capture_segments.set(n),
                Space.capture_error.remove(),
                Space.capture_shard.set(CAPTURE_SHARD),
                Space.capture_due.set(int(now) + settings.evidence_max_seconds),
            ],
            condition=(Space.capture_segments == n - 1)
            if n > 1
            else Space.capture_segments.does_not_exist() | (Space.capture_segments == 0),
        )
    except UpdateError:
        return None  # another caller started segment n: the same token gave it the same pipeline
    observability.count("CapturesStarted")
    logger.info("audio capture started", extra={"space_id": space.space_id, "segment": n, "reasons": reasons})
    return Outcome("capturing")


def _note_error(space: Space, reason: str) -> None:
    try:
        space.update(actions=[Space.capture_error.set(reason)])
    except UpdateError:
        logger.exception("could not record the capture error", extra={"space_id": space.space_id})


def _set_reasons(space: Space, current: dict[str, Any], reasons: list[str]) -> bool:
    try:
        space.update(
            actions=[Space.capture.set({**current, "reasons": reasons})],
            condition=Space.capture_segments == int(current["n"]),
        )
    except UpdateError:
        return False
    return True


def finish(space: Space, why: str) -> bool:
    """End the running segment: delete its pipeline (a live pipeline keeps a meeting from
    ending), concatenate it, file it under `captures`. False if someone else changed it first."""
    current = space.capture
    if not current:
        return True
    settings = get_settings()
    port = clients.pipelines()
    port.stop_capture(current["pipeline_id"])
    n = int(current["n"])
    segment = {**current, "ended_at": now_iso(), "ended_because": why}
    try:
        concatenation = port.concatenate(
            current["pipeline_arn"],
            pipelines_module.bucket_arn(settings.evidence_bucket, media_prefix(space.space_id, n)),
            pipelines_module.request_token("concatenate", current["pipeline_id"]),
        )
        segment["concatenation_id"] = concatenation.pipeline_id
    except MediaError as exc:
        if exc.retryable:
            raise
        # The chunks stay readable (30 days): the evidence survives without its single file.
        logger.warning(
            "could not concatenate a capture", extra={"space_id": space.space_id, "error": str(exc)}
        )
        segment["concatenation_id"] = None
    actions: list[Any] = [
        Space.capture.remove(),
        Space.captures.set([*(space.captures or []), segment]),
        # look for the concatenated file (and tag it) a little later
        Space.capture_shard.set(CAPTURE_SHARD),
        Space.capture_due.set(int(time.time()) + RELEASE_CHECK_SECONDS),
    ]
    if why == CAPPED:
        actions.append(Space.capture_error.set(CAPPED))
    try:
        space.update(actions=actions, condition=Space.capture.exists() & (Space.capture_segments == n))
    except UpdateError:
        return False
    space.capture = None
    space.captures = [*(space.captures or []), segment]
    logger.info("audio capture finished", extra={"space_id": space.space_id, "segment": n, "why": why})
    return True


def on_space_ended(space_id: str) -> None:
    """The space ended: finish its capture, stop its captions, tag what it left."""
    try:
        space = Space.get(space_id, consistent_read=True)
    except DoesNotExist:
        return
    if space.capture:
        for _ in range(ATTEMPTS):
            if finish(space, "the space ended"):
                break
            space = Space.get(space_id, consistent_read=True)
    if space.captures:
        release(space)


def retry_soon(space_id: str) -> None:
    """Finishing at the end failed (a Chime or S3 error): the sweep tries again within a minute,
    so the pipeline is not left capturing until its cap."""
    Space(space_id).update(
        actions=[Space.capture_shard.set(CAPTURE_SHARD), Space.capture_due.set(int(time.time()))],
        condition=Space.space_id.exists(),
    )


def housekeeping(now: float | None = None) -> int:
    """The sweep: captures past their cap end; ended spaces get their files tagged."""
    now = time.time() if now is None else now
    handled = 0
    for space in Space.by_capture_due.query(CAPTURE_SHARD, Space.capture_due <= now):
        handled += 1
        try:
            if space.capture and space.state == SpaceState.LIVE:
                finish(space, CAPPED)
                continue
            if space.capture:
                finish(space, "the space ended")
            done = release(space)
            ended = _ts(space.ended_at) or now
            actions: list[Any]
            if done or now - ended > RELEASE_GIVE_UP_SECONDS:
                actions = [Space.capture_shard.remove(), Space.capture_due.remove()]
            else:
                actions = [Space.capture_due.set(int(now) + RELEASE_CHECK_SECONDS)]
            space.update(actions=actions, condition=Space.capture.does_not_exist())
        except Exception:
            logger.exception("capture housekeeping failed", extra={"space_id": space.space_id})
    return handled


# -- holding and releasing the files --------------------------------------------------------


def hold_actions(case_id: str) -> Any:
    """The space-side update of a case starting to hold a space's audio (in triage's transaction)."""
    return Space.held_by.add({case_id})


def release(space: Space) -> bool:
    """Tag every concatenated file of the space: held by an open case or not.
    True when every finished segment's file was found (nothing left to wait for)."""
    settings = get_settings()
    s3 = clients.s3()
    value = "true" if space.held_by else "false"
    complete = True
    for segment in space.captures or []:
        keys = _keys(media_prefix(space.space_id, int(segment["n"])) + "/audio/")
        if not keys and segment.get("concatenation_id"):
            complete = False
        for key, _, _ in keys:
            s3.put_object_tagging(
                Bucket=settings.evidence_bucket,
                Key=key,
                Tagging={"TagSet": [{"Key": HOLD_TAG, "Value": value}]},
            )
    return complete


def release_cases(case: Case) -> None:
    """After a case closed (its id already left `held_by` in the same transaction)."""
    for space_id in sorted(case.evidence_spaces or ()):
        try:
            release(Space.get(space_id, consistent_read=True))
        except Exception:
            logger.exception("could not release a space's audio", extra={"space_id": space_id})


# -- reading: evidence for admins, the replay for everyone ---------------------------------


def _keys(prefix: str) -> list[tuple[str, datetime, int]]:
    s3 = clients.s3()
    found: list[tuple[str, datetime, int]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=get_settings().evidence_bucket, Prefix=prefix
    ):
        for item in page.get("Contents", []):
            found.append((item["Key"], item["LastModified"], int(item.get("Size", 0))))
    return sorted(found)


def _ts(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _chunk_start(key: str) -> datetime | None:
    match = _CHUNK_NAME.search(key.rsplit("/", 1)[-1])
    if not match:
        return None
    y, mo, d, h, mi, s, ms = (int(g) for g in match.groups())
    return datetime(y, mo, d, h, mi, s, ms * 1000, tzinfo=UTC)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _presign(key: str) -> tuple[str, str]:
    settings = get_settings()
    seconds = settings.evidence_url_seconds
    url = clients.s3().generate_presigned_url(
        "get_object",
        Params={"Bucket": settings.evidence_bucket, "Key": key, "ResponseContentType": "audio/mp4"},
        ExpiresIn=seconds,
    )
    return url, _iso(datetime.now(tz=UTC) + timedelta(seconds=seconds))


def segment_items(space_id: str, segment: dict[str, Any]) -> list[dict[str, Any]]:
    """A segment's audio: its one concatenated file, or (still capturing, or not yet
    concatenated) its chunks in order."""
    n = int(segment["n"])
    whole = _keys(media_prefix(space_id, n) + "/audio/")
    items = []
    if whole:
        for key, _, _ in whole[-1:]:
            url, expires = _presign(key)
            items.append(_item(url, expires, segment["started_at"], segment.get("ended_at")))
        return items
    for key, modified, _ in _keys(capture_prefix(space_id, n) + "/audio/"):
        start = _chunk_start(key) or (modified - timedelta(seconds=CHUNK_SECONDS))
        url, expires = _presign(key)
        items.append(_item(url, expires, _iso(start), _iso(start + timedelta(seconds=CHUNK_SECONDS))))
    return items


def _item(url: str, expires: str, started: str | None, ended: str | None) -> dict[str, Any]:
    return {
        "url": url,
        "expires_at": expires,
        "content_type": "audio/mp4",
        "started_at": started,
        "ended_at": ended,
    }


def _segments(space: Space) -> list[dict[str, Any]]:
    return [*(space.captures or []), *([space.capture] if space.capture else [])]


def case_status(case: Case) -> dict[str, Any]:
    """The case's evidence without listing a bucket: capturing, available or unavailable."""
    spaces = sorted(case.evidence_spaces or ())
    if not spaces:
        return {"status": "unavailable", "reason": case.evidence_reason or NOT_LIVE}
    for space_id in spaces:
        try:
            if Space.get(space_id, attributes_to_get=["space_id", "capture"]).capture:
                return {"status": "capturing", "reason": None}
        except DoesNotExist:
            continue
    return {"status": "available", "reason": None}


# -- the transcript around the report -------------------------------------------------------
# A capture pipeline on a meeting with live transcription also writes the transcription messages
# into the sink: capture/{space}/{n}/transcription-messages/<YYYY-MM-DD-HH-MM-SS-mmm>.txt, JSON
# TranscriptEvents (https://docs.aws.amazon.com/chime-sdk/latest/dg/transcription-messages.html,
# shape: https://docs.aws.amazon.com/chime-sdk/latest/dg/delivery-examples.html). Read as JSON
# objects one after another, so one per object or several per line both parse.

TRANSCRIPT_WINDOW_SECONDS = 120
_NAME_SLACK_SECONDS = 60  # a file's name time vs its results' times (not documented: a margin)
_MAX_TRANSCRIPT_FILES = 500


def transcript_lines(body: str) -> list[dict[str, Any]]:
    """The final results of the TranscriptEvents in one transcription-messages file (pure)."""
    decoder, at = json.JSONDecoder(), 0
    lines: list[dict[str, Any]] = []
    while True:
        while at < len(body) and body[at].isspace():
            at += 1
        if at >= len(body):
            return lines
        try:
            event, at = decoder.raw_decode(body, at)
        except ValueError:
            return lines  # a torn or foreign file: what parsed so far
        results = ((event.get("transcript") or {}).get("results") or []) if isinstance(event, dict) else []
        for result in results:
            alternatives = result.get("alternatives") or []
            if result.get("isPartial") or not alternatives or "startTimeMs" not in result:
                continue
            text = str(alternatives[0].get("transcript") or "").strip()
            if not text:
                continue
            attendee: dict[str, Any] = next(
                (i["attendee"] for i in alternatives[0].get("items") or [] if i.get("attendee")), {}
            )
            lines.append(
                {
                    "at": _iso(datetime.fromtimestamp(int(result["startTimeMs"]) / 1000, tz=UTC)),
                    "ended_at": _iso(
                        datetime.fromtimestamp(
                            int(result.get("endTimeMs") or result["startTimeMs"]) / 1000, tz=UTC
                        )
                    ),
                    "user_id": attendee.get("externalUserId"),
                    "attendee_id": attendee.get("attendeeId"),
                    "text": text,
                }
            )


def around(
    lines: list[dict[str, Any]], at: float, window: float = TRANSCRIPT_WINDOW_SECONDS
) -> list[dict[str, Any]]:
    """The lines that start within `window` seconds of `at` (epoch s), in time order, once each (pure)."""
    seen: set[tuple[str, str]] = set()
    kept: list[dict[str, Any]] = []
    for line in sorted(lines, key=lambda line: line["at"]):
        start = _ts(line["at"])
        key = (line["at"], line["text"])
        if start is not None and abs(start - at) <= window and key not in seen:
            seen.add(key)
            kept.append(line)
    return kept


def case_transcript(case: Case, spaces: list[Space]) -> list[dict[str, Any]]:
    """The transcript lines within the window of the case's first report."""
    at = _ts(case.first_seen_at)
    if at is None:
        return []
    s3, bucket = clients.s3(), get_settings().evidence_bucket
    lines: list[dict[str, Any]] = []
    reach = TRANSCRIPT_WINDOW_SECONDS + _NAME_SLACK_SECONDS
    for space in spaces:
        for segment in _segments(space):
            keys = _keys(capture_prefix(space.space_id, int(segment["n"])) + "/transcription-messages/")
            for key, _, _ in keys[:_MAX_TRANSCRIPT_FILES]:
                named = _chunk_start(key)
                if named is not None and abs(named.timestamp() - at) > reach:
                    continue
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", "replace")
                lines += transcript_lines(body)
    return around(lines, at)


def case_evidence(case: Case) -> dict[str, Any]:
    """GET /admin/cases/{id}/evidence: presigned URLs of every segment of every space the case holds,
    and the transcript around the first report when captions were on."""
    items: list[dict[str, Any]] = []
    capturing = False
    spaces: list[Space] = []
    for space_id in sorted(case.evidence_spaces or ()):
        try:
            space = Space.get(space_id, consistent_read=True)
        except DoesNotExist:
            continue
        spaces.append(space)
        capturing = capturing or bool(space.capture)
        for segment in _segments(space):
            items += segment_items(space_id, segment)
    if capturing:
        status, reason = "capturing", None
    elif items:
        status, reason = "available", None
    else:
        status = "unavailable"
        reason = case.evidence_reason or (NOT_LIVE if not case.evidence_spaces else "no audio was captured")
    return {"items": items, "status": status, "reason": reason, "transcript": case_transcript(case, spaces)}


def replay(space: Space, now: float | None = None) -> dict[str, Any]:
    """GET /spaces/{id}/recording: the recorded segments, for 30 days after the space ended."""
    now = time.time() if now is None else now
    recorded = [s for s in space.captures or [] if s.get("recording")]
    if space.state != SpaceState.ENDED:
        if space.recording or recorded or (space.capture or {}).get("recording"):
            raise CommandError(ErrorCode.CONFLICT, "the replay is available once the space has ended")
        raise CommandError(ErrorCode.NOT_FOUND, "this space is not being recorded")
    if not recorded:
        raise CommandError(ErrorCode.NOT_FOUND, "this space was not recorded")
    ended = _ts(space.ended_at) or now
    if now - ended > REPLAY_DAYS * 86400:
        raise CommandError(
            ErrorCode.NOT_FOUND, f"the replay expired {REPLAY_DAYS} days after the space ended"
        )
    items: list[dict[str, Any]] = []
    for segment in recorded:
        items += segment_items(space.space_id, segment)
    return {
        "items": items,
        "status": "available" if items else "unavailable",
        "reason": None if items else "no audio was recorded",
        "available_until": _iso(datetime.fromtimestamp(ended, tz=UTC) + timedelta(days=REPLAY_DAYS)),
    }
