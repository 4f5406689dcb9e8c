"""Media capture, concatenation and live transcription against botocore's real service models (Stubber).

Stubber checks parameter names, types, required members and lengths; a hook checks enums and
patterns too (what Stubber skips). The same adapters against the local stack's emulators, with
audio really recorded: tests/e2e/audio/test_evidence.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.model import OperationModel, Shape
from botocore.stub import ANY, Stubber

from chalicelib import media, pipelines
from chalicelib.media import (
    ChimeMediaAdapter,
    MediaError,
    transcription_configuration,
    transcription_language,
)
from chalicelib.pipelines import CAPTURE_ARTIFACTS, ChimePipelinesAdapter, bucket_arn, request_token

MEETING_ID = "11111111-2222-3333-4444-555555555555"
MEETING_ARN = f"arn:aws:chime:us-east-1:123456789012:meeting/{MEETING_ID}"
PIPELINE_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
PIPELINE_ARN = f"arn:aws:chime:us-east-1:123456789012:media-pipeline/{PIPELINE_ID}"
CONCAT_ID = "99999999-8888-7777-6666-555555555555"
SINK = "arn:aws:s3:::sohbet-dev-evidence-123456789012-us-east-1/capture/sp1/1"


def _violations(shape: Shape, value: Any, path: str) -> list[str]:
    problems: list[str] = []
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            if name in value:
                problems += _violations(member, value[name], f"{path}.{name}")
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            problems += _violations(shape.member, item, f"{path}[{i}]")
    elif shape.type_name == "string":
        enum = shape.metadata.get("enum")
        if enum and value not in enum:
            problems.append(f"{path}={value!r} not in {enum}")
        pattern = shape.metadata.get("pattern")
        if pattern and not re.search(pattern if pattern.startswith("^") else f"^(?:{pattern})$", value):
            problems.append(f"{path}={value!r} does not match {pattern}")
    return problems


def _checked_client(service: str) -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(service, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    problems: list[str] = []

    def check(params: dict[str, Any], model: OperationModel, **_: Any) -> None:
        problems.extend(_violations(model.input_shape, params, model.name))

    client.meta.events.register(f"before-parameter-build.{service}.*", check)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()
    assert problems == []


@pytest.fixture
def pipes() -> Iterator[tuple[ChimePipelinesAdapter, Stubber]]:
    for client, stub in _checked_client("chime-sdk-media-pipelines"):
        yield ChimePipelinesAdapter(client), stub


@pytest.fixture
def meetings() -> Iterator[tuple[ChimeMediaAdapter, Stubber]]:
    for client, stub in _checked_client("chime-sdk-meetings"):
        yield ChimeMediaAdapter(client, media_region="us-east-1"), stub


def _capture_response() -> dict[str, Any]:
    return {
        "MediaCapturePipeline": {
            "MediaPipelineId": PIPELINE_ID,
            "MediaPipelineArn": PIPELINE_ARN,
            "SourceType": "ChimeSdkMeeting",
            "SourceArn": MEETING_ARN,
            "Status": "Initializing",
            "SinkType": "S3Bucket",
            "SinkArn": SINK,
        }
    }


# -- capture ------------------------------------------------------------------------------


def test_start_capture_asks_for_the_mixed_audio_only(pipes: Any) -> None:
    adapter, stub = pipes
    token = request_token("capture", MEETING_ID, "1")
    stub.add_response(
        "create_media_capture_pipeline",
        _capture_response(),
        {
            "SourceType": "ChimeSdkMeeting",
            "SourceArn": MEETING_ARN,
            "SinkType": "S3Bucket",
            "SinkArn": SINK,
            "ClientRequestToken": token,
            "ChimeSdkMeetingConfiguration": {
                "ArtifactsConfiguration": {
                    "Audio": {"MuxType": "AudioOnly"},
                    "Video": {"State": "Disabled", "MuxType": "VideoOnly"},
                    "Content": {"State": "Disabled", "MuxType": "ContentOnly"},
                }
            },
        },
    )
    pipeline = adapter.start_capture(MEETING_ARN, SINK, token)
    assert (pipeline.pipeline_id, pipeline.pipeline_arn) == (PIPELINE_ID, PIPELINE_ARN)


def test_a_retried_start_sends_the_same_request_token(pipes: Any) -> None:
    adapter, stub = pipes
    token = request_token("capture", MEETING_ID, "1")
    assert token == request_token("capture", MEETING_ID, "1") != request_token("capture", MEETING_ID, "2")
    assert re.fullmatch(r"[-_a-zA-Z0-9]{2,64}", token)
    for _ in range(2):
        stub.add_response(
            "create_media_capture_pipeline",
            _capture_response(),
            {
                "SourceType": "ChimeSdkMeeting",
                "SourceArn": MEETING_ARN,
                "SinkType": "S3Bucket",
                "SinkArn": SINK,
                "ClientRequestToken": token,
                "ChimeSdkMeetingConfiguration": ANY,
            },
        )
    first = adapter.start_capture(MEETING_ARN, SINK, token)
    assert adapter.start_capture(MEETING_ARN, SINK, token) == first


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        ("ResourceLimitExceededException", 400, False),  # the quota: recorded, not retried
        ("BadRequestException", 400, False),
        ("ForbiddenException", 403, False),
        ("UnauthorizedClientException", 401, False),
        ("ThrottledClientException", 429, True),
        ("ServiceUnavailableException", 503, True),
        ("ServiceFailureException", 500, True),
    ],
)
def test_capture_errors(pipes: Any, code: str, status: int, retryable: bool) -> None:
    adapter, stub = pipes
    stub.add_client_error(
        "create_media_capture_pipeline",
        service_error_code=code,
        service_message="no",
        http_status_code=status,
    )
    with pytest.raises(MediaError) as caught:
        adapter.start_capture(MEETING_ARN, SINK, "t" * 64)
    assert caught.value.code == code.removesuffix("Exception")
    assert caught.value.retryable is retryable
    assert caught.value.operation == "start_capture"
    if code.startswith("ResourceLimit"):
        assert caught.value.code in pipelines.QUOTA_CODES


def test_stop_capture_deletes_the_pipeline_and_a_missing_one_is_already_stopped(pipes: Any) -> None:
    adapter, stub = pipes
    stub.add_response("delete_media_capture_pipeline", {}, {"MediaPipelineId": PIPELINE_ID})
    adapter.stop_capture(PIPELINE_ID)
    stub.add_client_error("delete_media_capture_pipeline", "NotFoundException", http_status_code=404)
    adapter.stop_capture(PIPELINE_ID)
    stub.add_client_error("delete_media_capture_pipeline", "ForbiddenException", http_status_code=403)
    with pytest.raises(MediaError) as caught:
        adapter.stop_capture(PIPELINE_ID)
    assert caught.value.code == "Forbidden"


def test_concatenate_joins_the_capture_into_one_audio_file(pipes: Any) -> None:
    adapter, stub = pipes
    destination = bucket_arn("sohbet-dev-evidence-123456789012-us-east-1", "media/sp1/1")
    assert destination == "arn:aws:s3:::sohbet-dev-evidence-123456789012-us-east-1/media/sp1/1"
    token = request_token("concatenate", PIPELINE_ID)
    stub.add_response(
        "create_media_concatenation_pipeline",
        {
            "MediaConcatenationPipeline": {
                "MediaPipelineId": CONCAT_ID,
                "MediaPipelineArn": PIPELINE_ARN + "c",
            }
        },
        {
            "Sources": [
                {
                    "Type": "MediaCapturePipeline",
                    "MediaCapturePipelineSourceConfiguration": {
                        "MediaPipelineArn": PIPELINE_ARN,
                        "ChimeSdkMeetingConfiguration": {
                            "ArtifactsConfiguration": {
                                "Audio": {"State": "Enabled"},
                                "Video": {"State": "Disabled"},
                                "Content": {"State": "Disabled"},
                                "DataChannel": {"State": "Disabled"},
                                "TranscriptionMessages": {"State": "Disabled"},
                                "MeetingEvents": {"State": "Disabled"},
                                "CompositedVideo": {"State": "Disabled"},
                            }
                        },
                    },
                }
            ],
            "Sinks": [{"Type": "S3Bucket", "S3BucketSinkConfiguration": {"Destination": destination}}],
            "ClientRequestToken": token,
        },
    )
    assert adapter.concatenate(PIPELINE_ARN, destination, token).pipeline_id == CONCAT_ID
    stub.add_client_error(
        "create_media_concatenation_pipeline", "ResourceLimitExceededException", http_status_code=400
    )
    with pytest.raises(MediaError) as caught:
        adapter.concatenate(PIPELINE_ARN, destination, token)
    assert (caught.value.code, caught.value.retryable) == ("ResourceLimitExceeded", False)


def test_capture_artifacts_are_audio_only() -> None:
    assert CAPTURE_ARTIFACTS["Audio"] == {"MuxType": "AudioOnly"}
    assert CAPTURE_ARTIFACTS["Video"]["State"] == CAPTURE_ARTIFACTS["Content"]["State"] == "Disabled"


# -- live transcription ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "code"),
    [
        ("en", "en-US"),
        ("en-GB", "en-GB"),
        ("en_gb", "en-GB"),
        ("de", "de-DE"),
        ("fr", "fr-FR"),
        ("pt", "pt-BR"),
        ("ja", "ja-JP"),
        ("tr", None),  # Turkish: not among Chime's Transcribe languages -> identification
        ("ar-SA", None),
        (None, None),
        ("", None),
    ],
)
def test_transcription_language(lang: str | None, code: str | None) -> None:
    assert transcription_language(lang) == code


def test_start_transcription_uses_the_space_language(meetings: Any) -> None:
    adapter, stub = meetings
    stub.add_response(
        "start_meeting_transcription",
        {},
        {
            "MeetingId": MEETING_ID,
            "TranscriptionConfiguration": {"EngineTranscribeSettings": {"LanguageCode": "de-DE"}},
        },
    )
    adapter.start_transcription(MEETING_ID, "de")


def test_start_transcription_identifies_a_language_it_does_not_know(meetings: Any) -> None:
    adapter, stub = meetings
    config = transcription_configuration("tr")
    settings = config["EngineTranscribeSettings"]
    assert settings["IdentifyLanguage"] is True and "LanguageCode" not in settings
    assert len(settings["LanguageOptions"].split(",")) >= 2
    assert settings["PreferredLanguage"] in settings["LanguageOptions"].split(",")
    stub.add_response(
        "start_meeting_transcription", {}, {"MeetingId": MEETING_ID, "TranscriptionConfiguration": config}
    )
    adapter.start_transcription(MEETING_ID, "tr")


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        ("LimitExceededException", 400, True),
        ("UnprocessableEntityException", 422, False),
        ("NotFoundException", 404, False),
        ("ServiceUnavailableException", 503, True),
    ],
)
def test_start_transcription_errors(meetings: Any, code: str, status: int, retryable: bool) -> None:
    adapter, stub = meetings
    stub.add_client_error("start_meeting_transcription", code, http_status_code=status)
    with pytest.raises(MediaError) as caught:
        adapter.start_transcription(MEETING_ID, "en")
    assert (caught.value.code, caught.value.retryable) == (code.removesuffix("Exception"), retryable)


def test_stop_transcription_and_what_counts_as_already_stopped(meetings: Any) -> None:
    adapter, stub = meetings
    stub.add_response("stop_meeting_transcription", {}, {"MeetingId": MEETING_ID})
    adapter.stop_transcription(MEETING_ID)
    stub.add_client_error("stop_meeting_transcription", "NotFoundException", http_status_code=404)
    adapter.stop_transcription(MEETING_ID)  # the meeting is gone
    stub.add_client_error("stop_meeting_transcription", "UnprocessableEntityException", http_status_code=422)
    adapter.stop_transcription(MEETING_ID)  # nothing was running
    stub.add_client_error("stop_meeting_transcription", "ForbiddenException", http_status_code=403)
    with pytest.raises(MediaError):
        adapter.stop_transcription(MEETING_ID)


def test_the_meeting_arn_is_kept_for_the_capture(meetings: Any) -> None:
    adapter, stub = meetings
    stub.add_response(
        "create_meeting",
        {
            "Meeting": {
                "MeetingId": MEETING_ID,
                "ExternalMeetingId": "sp1",
                "MediaRegion": "us-east-1",
                "MediaPlacement": {"AudioHostUrl": "h"},
                "MeetingArn": MEETING_ARN,
            }
        },
    )
    assert adapter.create_meeting("sp1", max_attendees=250).meeting_arn == MEETING_ARN
    assert media.Meeting("m", "sp1", "us-east-1", {}).meeting_arn is None  # records stored before
