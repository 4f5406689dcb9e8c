"""Amazon Chime SDK Media Pipelines' REST API on the local stack: captures that really record.

The app's unchanged `ChimePipelinesAdapter` reaches it through AWS's standard
AWS_ENDPOINT_URL_CHIME_SDK_MEDIA_PIPELINES variable, at `{stack}/_aws/chime-sdk-media-pipelines`.
Requests are matched and validated against botocore's `chime-sdk-media-pipelines` model (the same
machinery as chime_api.py). A capture pipeline taps its meeting's mix on the embedded media server
and writes ~5 s chunks into the embedded S3 (moto) under the sink's prefix; a concatenation
pipeline joins them into `<destination>/audio/<pipeline id>.mp4`.

Chime's rules kept: the sink bucket must exist and its policy must let
mediapipelines.chime.amazonaws.com PutObject (else BadRequest, as Chime answers); one capture
pipeline per meeting; ClientRequestToken idempotency; an account quota of active pipelines
(`max_active`, ResourceLimitExceeded); a capture stops when its meeting ends; concatenation runs
in the background once its capture has stopped (tests: `wait_concatenations()`).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from devstack.media.chime_api import _routes, _validate
from devstack.media.recorder import Recorder, concatenate, write_transcript
from devstack.media.registry import ChimeError, MediaRegistry, Meeting

log = logging.getLogger("devstack.media")

PREFIX = "/_aws/chime-sdk-media-pipelines"
SERVICE = "chime-sdk-media-pipelines"
PRINCIPAL = "mediapipelines.chime.amazonaws.com"
_MEETING_ARN = re.compile(r"^arn:aws[a-z-]*:chime:[a-z0-9-]*:\d{12}:meeting/([0-9a-fA-F-]{36})$")
_BUCKET_ARN = re.compile(r"^arn:aws[a-z-]*:s3:::([a-z0-9.-]{3,63})(?:/(.*))?$")

_STATUS = {
    "BadRequest": 400,
    "UnauthorizedClient": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "ResourceLimitExceeded": 400,
    "ThrottledClient": 429,
    "ServiceFailure": 500,
    "ServiceUnavailable": 503,
}
OPERATIONS = (
    "CreateMediaCapturePipeline",
    "GetMediaCapturePipeline",
    "DeleteMediaCapturePipeline",
    "CreateMediaConcatenationPipeline",
)


def _load_model() -> Any:
    import botocore
    from botocore.model import ServiceModel

    data = Path(botocore.__file__).parent / "data" / SERVICE
    version = sorted(p.name for p in data.iterdir() if p.is_dir())[-1]
    with gzip.open(data / version / "service-2.json.gz") as f:
        return ServiceModel(json.load(f), service_name=SERVICE)


@dataclass
class Capture:
    pipeline_id: str
    arn: str
    meeting_id: str
    sink_arn: str
    bucket: str
    prefix: str
    token: str
    created: float
    recorder: Recorder | None
    status: str = "InProgress"
    updated: float = field(default_factory=time.time)


class MediaPipelinesEmulator:
    """Capture and concatenation pipelines over the media registry, the media server and S3."""

    def __init__(
        self,
        registry: MediaRegistry,
        media_server: Callable[[], Any],
        s3: Callable[[], Any],
        *,
        max_active: int = 100,
    ) -> None:
        self.registry = registry
        self.media_server = media_server
        self.s3 = s3
        self.max_active = max_active
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.captures: dict[str, Capture] = {}
        self.concatenations: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, str] = {}  # ClientRequestToken -> pipeline id
        self._faults: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="concatenation")
        self._jobs: list[Future[None]] = []
        self._model = _load_model()
        self._routes = _routes(self._model)
        self._unsubscribe = registry.subscribe(self)

    # ------------------------------------------------------------------ test hooks

    def fail_next(self, operation: str, error: str, times: int = 1) -> None:
        if operation not in OPERATIONS or error not in _STATUS:
            raise ValueError(f"unknown operation or error: {operation} {error}")
        with self._lock:
            self._faults.setdefault(operation, []).extend([error] * times)

    def count(self, operation: str) -> int:
        with self._lock:
            return sum(1 for name, _ in self.calls if name == operation)

    def active(self) -> list[Capture]:
        with self._lock:
            return [c for c in self.captures.values() if c.status == "InProgress"]

    @contextlib.contextmanager
    def quota(self, max_active: int) -> Iterator[None]:
        saved, self.max_active = self.max_active, max_active
        try:
            yield
        finally:
            self.max_active = saved

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self._faults.clear()

    # ------------------------------------------------------------------ HTTP

    def routes(self) -> list[Any]:
        from starlette.routing import Route

        return [Route(PREFIX + "/{path:path}", self.handle, methods=["GET", "POST", "PUT", "DELETE"])]

    async def handle(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool

        request_id = str(uuid.uuid4())
        path = request.url.path[len(PREFIX) :]
        route, labels = None, {}
        for candidate in self._routes:
            found = candidate.path.match(path) if candidate.method == request.method else None
            if found and candidate.name in OPERATIONS:
                route, labels = candidate, {k: unquote(v) for k, v in found.groupdict().items()}
                break
        if route is None:
            return _error("NotFound", f"no operation for {request.method} {path}", request_id)
        if not request.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 "):
            return _error("UnauthorizedClient", "Missing or invalid SigV4 Authorization header", request_id)
        try:
            raw = await request.body()
            params: dict[str, Any] = json.loads(raw) if raw else {}
            for name, member in route.model.input_shape.members.items():
                key = member.serialization.get("name", name)
                if member.serialization.get("location") == "uri" and key in labels:
                    params[name] = labels[key]
            with self._lock:
                self.calls.append((route.name, params))
                faults = self._faults.get(route.name)
                fault = faults.pop(0) if faults else None
            if fault:
                raise ChimeError(fault, f"injected {fault}")
            _validate(route.model.input_shape, params, "")
            body = await run_in_threadpool(getattr(self, "_op_" + route.name), params)
        except ChimeError as exc:
            return _error(exc.code, exc.message, request_id)
        except ValueError:
            return _error("BadRequest", "The request body is not valid JSON", request_id)
        except Exception:
            log.exception("media pipelines emulator: %s failed", route.name)
            return _error("ServiceFailure", "The service encountered an unexpected error.", request_id)
        return _json(body, route.status, request_id)

    # ------------------------------------------------------------------ operations

    def _check_sink(self, sink_arn: str) -> tuple[str, str]:
        match = _BUCKET_ARN.match(sink_arn)
        if not match:
            raise ChimeError("BadRequest", f"Invalid sink ARN {sink_arn}")
        bucket, prefix = match.group(1), (match.group(2) or "").strip("/")
        s3 = self.s3()
        try:
            policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        except Exception:
            raise ChimeError(
                "BadRequest", f"S3 Bucket policy not valid/present for Sink {sink_arn}"
            ) from None
        if not _allows_pipelines(policy):
            raise ChimeError("BadRequest", f"S3 Bucket policy not valid/present for Sink {sink_arn}")
        return bucket, prefix

    def _op_CreateMediaCapturePipeline(self, params: dict[str, Any]) -> dict[str, Any]:
        token = params.get("ClientRequestToken") or str(uuid.uuid4())
        with self._lock:
            existing = self._tokens.get(token)
        if existing:
            return {"MediaCapturePipeline": self._capture_json(self.captures[existing])}
        match = _MEETING_ARN.match(params["SourceArn"])
        if params["SourceType"] != "ChimeSdkMeeting" or not match:
            raise ChimeError("BadRequest", f"Invalid source ARN {params['SourceArn']}")
        meeting = self.registry.get_meeting(match.group(1))  # NotFound when it has ended
        artifacts = params.get("ChimeSdkMeetingConfiguration", {}).get("ArtifactsConfiguration", {})
        if artifacts.get("Audio", {}).get("MuxType") not in (
            None,
            "AudioOnly",
            "AudioWithActiveSpeakerVideo",
        ):
            raise ChimeError("BadRequest", "Invalid Audio MuxType")
        bucket, prefix = self._check_sink(params["SinkArn"])
        with self._lock:
            existing = self._tokens.get(token)  # a same-token request that won the race
            if existing:
                return {"MediaCapturePipeline": self._capture_json(self.captures[existing])}
            active = [c for c in self.captures.values() if c.status == "InProgress"]
            if any(c.meeting_id == meeting.meeting_id for c in active):
                raise ChimeError("ResourceLimitExceeded", "The meeting already has a media capture pipeline.")
            if len(active) >= self.max_active:
                raise ChimeError("ResourceLimitExceeded", "The account's media pipeline limit is reached.")
            pipeline_id = str(uuid.uuid4())
            arn = f"arn:aws:chime:{self.registry.region}:{self.registry.account}:media-pipeline/{pipeline_id}"
            recorder = Recorder(self.s3(), bucket, prefix, time.time)
            capture = Capture(
                pipeline_id,
                arn,
                meeting.meeting_id,
                params["SinkArn"],
                bucket,
                prefix,
                token,
                time.time(),
                recorder,
            )
            self.captures[pipeline_id] = capture
            self._tokens[token] = pipeline_id
        room = meeting.primary_meeting_id or meeting.meeting_id
        self.media_server().add_tap(room, recorder)
        return {"MediaCapturePipeline": self._capture_json(capture)}

    def _op_GetMediaCapturePipeline(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"MediaCapturePipeline": self._capture_json(self._capture(params["MediaPipelineId"]))}

    def _op_DeleteMediaCapturePipeline(self, params: dict[str, Any]) -> None:
        capture = self._capture(params["MediaPipelineId"])
        if capture.status != "InProgress":
            raise ChimeError("NotFound", "The media pipeline does not exist.")
        self._stop(capture)

    def transcribed(self, room: str, event: dict[str, Any]) -> None:
        """A live transcription result in a room (captions.py): every capture of it stores it."""
        with self._lock:
            sinks = [c for c in self.captures.values() if c.status == "InProgress" and c.meeting_id == room]
        for capture in sinks:
            write_transcript(self.s3(), capture.bucket, capture.prefix, event)

    def _stop(self, capture: Capture) -> None:
        capture.status = "Stopped"
        capture.updated = time.time()
        if capture.recorder is not None:
            self.media_server().remove_tap(capture.meeting_id, capture.recorder)
            capture.recorder.stop()

    def _op_CreateMediaConcatenationPipeline(self, params: dict[str, Any]) -> dict[str, Any]:
        token = params.get("ClientRequestToken") or str(uuid.uuid4())
        with self._lock:
            existing = self._tokens.get(token)
        if existing:
            return {"MediaConcatenationPipeline": self.concatenations[existing]}
        source = params["Sources"][0]["MediaCapturePipelineSourceConfiguration"]
        capture_id = source["MediaPipelineArn"].rsplit("/", 1)[-1]
        capture = self._capture(capture_id)
        destination = params["Sinks"][0]["S3BucketSinkConfiguration"]["Destination"]
        bucket, prefix = self._check_sink(destination)
        pipeline_id = str(uuid.uuid4())
        arn = f"arn:aws:chime:{self.registry.region}:{self.registry.account}:media-pipeline/{pipeline_id}"
        key = f"{prefix}/audio/{pipeline_id}.mp4" if prefix else f"{pipeline_id}/audio/{pipeline_id}.mp4"
        now = _iso(time.time())
        body = {
            "MediaPipelineId": pipeline_id,
            "MediaPipelineArn": arn,
            "Sources": params["Sources"],
            "Sinks": params["Sinks"],
            "Status": "InProgress",
            "CreatedTimestamp": now,
            "UpdatedTimestamp": now,
        }
        with self._lock:
            self.concatenations[pipeline_id] = body
            self._tokens[token] = pipeline_id
            # Chime concatenates in the background, once the capture has stopped ("the
            # concatenation pipeline only starts concatenating when the capture pipeline stops").
            self._jobs.append(self._worker.submit(self._concatenate, capture, bucket, key, body))
        return {"MediaConcatenationPipeline": body}

    def _arn_base(self) -> str:
        return f"arn:aws:chime:{self.registry.region}:{self.registry.account}"

    def _concatenate(self, capture: Capture, bucket: str, key: str, body: dict[str, Any]) -> None:
        while capture.status == "InProgress":
            time.sleep(0.2)
        try:
            written = bucket == capture.bucket and concatenate(self.s3(), capture.bucket, capture.prefix, key)
        except Exception:
            log.exception("concatenation of %s failed", capture.pipeline_id)
            written = False
        with self._lock:
            body["Status"] = "Stopped" if written else "Failed"
            body["UpdatedTimestamp"] = _iso(time.time())

    def wait_concatenations(self, timeout: float = 30) -> None:
        """Tests: wait until every concatenation asked for so far has finished."""
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.result(timeout=timeout)

    def _capture(self, pipeline_id: str) -> Capture:
        with self._lock:
            capture = self.captures.get(pipeline_id)
        if capture is None:
            raise ChimeError("NotFound", "The media pipeline does not exist.")
        return capture

    def _capture_json(self, capture: Capture) -> dict[str, Any]:
        return {
            "MediaPipelineId": capture.pipeline_id,
            "MediaPipelineArn": capture.arn,
            "SourceType": "ChimeSdkMeeting",
            "SourceArn": f"{self._arn_base()}:meeting/{capture.meeting_id}",
            "Status": capture.status,
            "SinkType": "S3Bucket",
            "SinkArn": capture.sink_arn,
            "CreatedTimestamp": _iso(capture.created),
            "UpdatedTimestamp": _iso(capture.updated),
        }

    # ------------------------------------------------------------------ registry observer

    def capabilities_changed(self, attendee: Any) -> None:
        pass

    def attendee_deleted(self, attendee: Any) -> None:
        pass

    def meeting_deleted(self, meeting: Meeting) -> None:
        """A capture stops when its meeting ends (what it recorded stays)."""
        for capture in self.active():
            if capture.meeting_id == meeting.meeting_id:
                self._stop(capture)


def _allows_pipelines(policy: dict[str, Any]) -> bool:
    for statement in policy.get("Statement", []):
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        services = [services] if isinstance(services, str) else services
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if statement.get("Effect") == "Allow" and PRINCIPAL in services and "s3:PutObject" in actions:
            return True
    return False


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _json(body: Any, status: int, request_id: str) -> Any:
    from starlette.responses import Response

    headers = {"x-amzn-RequestId": request_id}
    if body is None:
        return Response(b"", status_code=204 if status == 204 else status, headers=headers)
    return Response(
        json.dumps(body).encode(), status_code=status, headers=headers, media_type="application/json"
    )


def _error(code: str, message: str, request_id: str) -> Any:
    from starlette.responses import Response

    body = {"Code": code, "Message": message, "RequestId": request_id}
    headers = {"x-amzn-ErrorType": f"{code}Exception", "x-amzn-RequestId": request_id}
    return Response(
        json.dumps(body).encode(),
        status_code=_STATUS.get(code, 400),
        headers=headers,
        media_type="application/json",
    )
