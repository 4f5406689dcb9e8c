"""The capture port: a meeting's mixed audio recorded into S3 by Amazon Chime SDK media pipelines.

One media capture pipeline per meeting (its primary: replicas carry no senders of their own)
writes the mix in ~5 s chunks under the sink prefix; once it is deleted, a media concatenation
pipeline joins the chunks into one file under another prefix. `ChimePipelinesAdapter` is the
production implementation everywhere: the local stack serves the same API
(devstack/media/pipelines_api.py) and records the embedded media server's mix into moto's S3.

- https://docs.aws.amazon.com/chime-sdk/latest/APIReference/API_media-pipelines-chime_CreateMediaCapturePipeline.html
- https://docs.aws.amazon.com/chime-sdk/latest/dg/create-capture-pipe.html (5-second chunks)
- https://docs.aws.amazon.com/chime-sdk/latest/dg/concat-folder-structure.html
  (<prefix>/audio/<pipeline id>.mp4)
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.config import get_settings
from chalicelib.media import MediaError, _translate

# Only the mixed audio: no video, no content share, whatever the meeting could carry.
CAPTURE_ARTIFACTS: dict[str, Any] = {
    "Audio": {"MuxType": "AudioOnly"},
    "Video": {"State": "Disabled", "MuxType": "VideoOnly"},
    "Content": {"State": "Disabled", "MuxType": "ContentOnly"},
}
CONCATENATE_ARTIFACTS: dict[str, Any] = {
    "Audio": {"State": "Enabled"},
    "Video": {"State": "Disabled"},
    "Content": {"State": "Disabled"},
    "DataChannel": {"State": "Disabled"},
    "TranscriptionMessages": {"State": "Disabled"},
    "MeetingEvents": {"State": "Disabled"},
    "CompositedVideo": {"State": "Disabled"},
}

# Quota and throttling codes of chime-sdk-media-pipelines (no "Exception" suffix).
QUOTA_CODES = frozenset({"ResourceLimitExceeded"})
_RETRYABLE = frozenset({"ThrottledClient", "ServiceUnavailable", "ServiceFailure"})


@dataclass(frozen=True)
class Pipeline:
    pipeline_id: str
    pipeline_arn: str


class CapturePort(Protocol):
    def start_capture(self, meeting_arn: str, sink_arn: str, token: str) -> Pipeline: ...

    def stop_capture(self, pipeline_id: str) -> None: ...

    def concatenate(self, capture_arn: str, sink_arn: str, token: str) -> Pipeline: ...


def request_token(*parts: str) -> str:
    """A deterministic ClientRequestToken: a retried create returns the same pipeline.

    64 hex characters fit the model's 2-64 length and [-_a-zA-Z0-9]* pattern.
    """
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def bucket_arn(bucket: str, prefix: str = "") -> str:
    return f"arn:aws:s3:::{bucket}" + (f"/{prefix.strip('/')}" if prefix else "")


class ChimePipelinesAdapter:
    """CapturePort over a boto3 `chime-sdk-media-pipelines` client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def _call(self, operation: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self._client, method)(**params)
        except Exception as exc:
            error = _translate(exc, operation)
            if error is None:
                raise
            # A quota is not a transient condition: record it, do not retry it.
            error.retryable = error.code in _RETRYABLE
            raise error from exc
        return response

    def start_capture(self, meeting_arn: str, sink_arn: str, token: str) -> Pipeline:
        body = self._call(
            "start_capture",
            "create_media_capture_pipeline",
            {
                "SourceType": "ChimeSdkMeeting",
                "SourceArn": meeting_arn,
                "SinkType": "S3Bucket",
                "SinkArn": sink_arn,
                "ClientRequestToken": token,
                "ChimeSdkMeetingConfiguration": {"ArtifactsConfiguration": CAPTURE_ARTIFACTS},
            },
        )["MediaCapturePipeline"]
        return Pipeline(body["MediaPipelineId"], body["MediaPipelineArn"])

    def stop_capture(self, pipeline_id: str) -> None:
        try:
            self._call("stop_capture", "delete_media_capture_pipeline", {"MediaPipelineId": pipeline_id})
        except MediaError as exc:
            if exc.code != "NotFound":
                raise
            # Gone already (deleted before, or it stopped with its meeting): the goal is met.

    def concatenate(self, capture_arn: str, sink_arn: str, token: str) -> Pipeline:
        body = self._call(
            "concatenate",
            "create_media_concatenation_pipeline",
            {
                "Sources": [
                    {
                        "Type": "MediaCapturePipeline",
                        "MediaCapturePipelineSourceConfiguration": {
                            "MediaPipelineArn": capture_arn,
                            "ChimeSdkMeetingConfiguration": {"ArtifactsConfiguration": CONCATENATE_ARTIFACTS},
                        },
                    }
                ],
                "Sinks": [{"Type": "S3Bucket", "S3BucketSinkConfiguration": {"Destination": sink_arn}}],
                "ClientRequestToken": token,
            },
        )["MediaConcatenationPipeline"]
        return Pipeline(body["MediaPipelineId"], body["MediaPipelineArn"])


def make_pipelines_client(region: str) -> Any:
    """Standard retries (throttling and 5xx), short timeouts. Its endpoint is AWS's unless
    AWS_ENDPOINT_URL_CHIME_SDK_MEDIA_PIPELINES says otherwise (the local stack)."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=2, read_timeout=5)
    return boto3.client("chime-sdk-media-pipelines", region_name=region, config=config)


_port: CapturePort | None = None
_lock = threading.Lock()


def get_pipelines() -> CapturePort:
    global _port
    with _lock:
        if _port is None:
            _port = ChimePipelinesAdapter(make_pipelines_client(get_settings().region))
        return _port


def reset_pipelines() -> None:
    global _port
    with _lock:
        _port = None
