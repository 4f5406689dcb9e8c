"""The media port: audio mixing is delegated to Amazon Chime SDK Meetings.

sohbet never carries audio. A space owns a Chime meeting (plus replica meetings
past 250 attendees); each participant gets an attendee whose Audio capability
follows their role, so a listener or a host-muted speaker cannot send audio even
with a modified client. `ChimeMediaAdapter` implements the port everywhere: the
local stack serves Chime's API itself (devstack/media) and points the client there
with AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS, so this code path is the production one.
boto3 is imported lazily so that a cold start that never touches media does not pay for it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from chalicelib.config import Settings, get_settings

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

# Chime's MediaCapabilities enum.
SEND_RECEIVE = "SendReceive"
SEND = "Send"
RECEIVE = "Receive"
NONE = "None"
AUDIO_CAPABILITIES = frozenset({SEND_RECEIVE, SEND, RECEIVE, NONE})

ROLES = ("host", "cohost", "speaker", "listener")
_STAGE_ROLES = frozenset({"host", "cohost", "speaker"})

# Chime's per-meeting hard limit (MeetingFeatures.Attendee.MaxCount is 1..250).
MAX_ATTENDEES_PER_MEETING = 250
MAX_BATCH = 100  # attendees per BatchCreateAttendee call
# Waits before asking CreateMeeting again after a ConflictException (None: give up).
_CONFLICT_WAITS: tuple[float | None, ...] = (0.2, 0.5, 1.0, None)

# Audio only: no video or screen share can be negotiated, whatever a client asks for.
_AUDIO_ONLY_FEATURES: dict[str, Any] = {
    "Audio": {"EchoReduction": "AVAILABLE"},
    "Video": {"MaxResolution": "None"},
    "Content": {"MaxResolution": "None"},
}

# What a client SDK needs to join: {"Meeting": {...}, "Attendee": {...}}.
JoinCredentials: TypeAlias = dict[str, dict[str, Any]]


class MediaError(Exception):
    """A media-service call failed.

    `retryable` tells the caller whether trying again later can succeed (the
    Chime client has already retried throttling and 5xx itself); `code` is the
    service's error code without the "Exception" suffix, e.g. "NotFound".
    """

    def __init__(self, message: str, *, retryable: bool, code: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code
        self.operation = operation


@dataclass(frozen=True)
class Meeting:
    meeting_id: str
    external_meeting_id: str
    media_region: str
    media_placement: dict[str, Any]
    primary_meeting_id: str | None = None
    meeting_arn: str | None = None  # the source of a media capture pipeline


@dataclass(frozen=True)
class Attendee:
    attendee_id: str
    external_user_id: str
    join_token: str
    meeting_id: str
    audio: str


class MediaPort(Protocol):
    def create_meeting(
        self,
        space_id: str,
        *,
        max_attendees: int,
        primary_meeting_id: str | None = None,
        media_region: str | None = None,
    ) -> Meeting: ...

    def delete_meeting(self, meeting_id: str) -> None: ...

    def create_attendee(self, meeting_id: str, user_id: str, audio: str) -> Attendee: ...

    def create_attendees(
        self, meeting_id: str, external_ids: list[str], audio: str
    ) -> dict[str, Attendee | MediaError]: ...

    def update_attendee_audio(self, meeting_id: str, attendee_id: str, audio: str) -> None: ...

    def delete_attendee(self, meeting_id: str, attendee_id: str) -> None: ...

    def start_transcription(self, meeting_id: str, lang: str | None) -> None: ...

    def stop_transcription(self, meeting_id: str) -> None: ...


# --------------------------------------------------------------------------- pure rules


def audio_capability(role: str, muted_by_host: bool) -> str:
    """The Audio capability a role gets at the media service.

    A host mute is enforced by the media service (Receive), not by trusting the
    client to stay quiet; only the speaker's own unmute restores SendReceive.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if role in _STAGE_ROLES and not muted_by_host:
        return SEND_RECEIVE
    return RECEIVE


# Conservative ASCII subset of Chime's documented ExternalUserId pattern
# ([-_&@+=,(){}\[\]\/«».:|'"#a-zA-Z0-9À-ÿ\s]*); botocore's model does not carry it.
_SAFE_USER_ID = re.compile(r"[-_&@+=,(){}\[\]/.:|'\"#a-zA-Z0-9]+")
_ID_MAX = 64


def external_user_id(user_id: str) -> str:
    """Encode a user id as a Chime ExternalUserId (2-64 chars, restricted alphabet).

    Always prefixed, so the mapping is collision-free and a 1-char id becomes
    valid: "u:" + id when the id is already safe, "b:" + urlsafe base64 when it
    has other characters (e.g. Turkish letters), "h:" + SHA-256 when too long.
    The prefix also keeps us clear of the reserved "aws:" prefix.
    """
    if not user_id:
        raise ValueError("empty user id")
    if len(user_id) <= _ID_MAX - 2 and _SAFE_USER_ID.fullmatch(user_id):
        return "u:" + user_id
    encoded = base64.urlsafe_b64encode(user_id.encode()).decode().rstrip("=")
    if len(encoded) <= _ID_MAX - 2:
        return "b:" + encoded
    return "h:" + hashlib.sha256(user_id.encode()).hexdigest()[: _ID_MAX - 2]


def user_id_from_external(external: str) -> str | None:
    """Invert `external_user_id`; None for hashed (over-long) ids."""
    prefix, _, body = external.partition(":")
    if prefix == "u":
        return body
    if prefix == "b":
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    return None


def client_request_token(external_meeting_id: str, primary_meeting_id: str | None) -> str:
    """Deterministic CreateMeeting idempotency token: a retried create returns the same meeting.

    64 hex chars fit Chime's 2-64 length and [-_a-zA-Z0-9]* pattern. To create a
    fresh meeting for a space whose meeting ended (24 h, or 5 min empty), pass a
    different external id (e.g. f"{space_id}#g2"), not the same one again.
    """
    return hashlib.sha256(f"{external_meeting_id}\x00{primary_meeting_id or ''}".encode()).hexdigest()


def credentials(meeting: Meeting, attendee: Attendee) -> JoinCredentials:
    """Join info in Chime's CreateMeeting/CreateAttendee JSON shape, as the client SDKs expect.

    The JoinToken is a secret: send it only to the attendee's own connection.
    MeetingFeatures is included because the SDKs read EchoReduction from it.
    """
    meeting_json: dict[str, Any] = {
        "MeetingId": meeting.meeting_id,
        "ExternalMeetingId": meeting.external_meeting_id,
        "MediaRegion": meeting.media_region,
        "MediaPlacement": dict(meeting.media_placement),
        "MeetingFeatures": {k: dict(v) for k, v in _AUDIO_ONLY_FEATURES.items()},
    }
    if meeting.primary_meeting_id:
        meeting_json["PrimaryMeetingId"] = meeting.primary_meeting_id
    return {
        "Meeting": meeting_json,
        "Attendee": {
            "AttendeeId": attendee.attendee_id,
            "ExternalUserId": attendee.external_user_id,
            "JoinToken": attendee.join_token,
            "Capabilities": _capabilities(attendee.audio),
        },
    }


def _capabilities(audio: str) -> dict[str, str]:
    return {"Audio": audio, "Video": NONE, "Content": NONE}


def _check_audio(audio: str, operation: str) -> None:
    # Stubber does not check enums and the service would answer BadRequest; fail the same way, early.
    if audio not in AUDIO_CAPABILITIES:
        raise MediaError(
            f"invalid audio capability {audio!r}", retryable=False, code="BadRequest", operation=operation
        )


def _check_meeting_args(space_id: str, max_attendees: int) -> None:
    if not 2 <= len(space_id) <= _ID_MAX or space_id.lower().startswith("aws:"):
        raise MediaError(
            "external meeting id must be 2-64 chars",
            retryable=False,
            code="BadRequest",
            operation="create_meeting",
        )
    if not 1 <= max_attendees <= MAX_ATTENDEES_PER_MEETING:
        raise MediaError(
            f"max_attendees must be 1-{MAX_ATTENDEES_PER_MEETING}",
            retryable=False,
            code="BadRequest",
            operation="create_meeting",
        )


# --------------------------------------------------------------------------- Chime adapter

_RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottledClient",
        "ServiceUnavailable",
        "ServiceFailure",
        "LimitExceeded",
        "ResourceLimitExceeded",
        "Conflict",  # "multiple instances of the same request made simultaneously"
        "RequestTimeout",
    }
)


def _translate(exc: Exception, operation: str) -> MediaError | None:
    """Map a botocore exception to MediaError; None if it is not a botocore error."""
    from botocore import exceptions as bce

    if isinstance(exc, bce.ClientError):
        return _from_client_error(exc, operation)
    if isinstance(exc, bce.ConnectionError | bce.HTTPClientError):
        # Timeouts and resets after botocore's own retries; the call may or may not have landed.
        return MediaError(str(exc), retryable=True, code="Connection", operation=operation)
    if isinstance(exc, bce.BotoCoreError):
        # Parameter validation, missing credentials or region: retrying cannot help.
        return MediaError(str(exc), retryable=False, code=type(exc).__name__, operation=operation)
    return None


def _from_client_error(exc: ClientError, operation: str) -> MediaError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "")).removesuffix("Exception")
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    retryable = code in _RETRYABLE_CODES or (not code and (status == 429 or status >= 500))
    if operation == "create_attendee" and code in ("LimitExceeded", "ResourceLimitExceeded"):
        # The meeting is at MaxCount: only a departure frees a seat, so the caller
        # should place the user in a replica rather than retry.
        retryable = False
    return MediaError(str(error.get("Message") or exc), retryable=retryable, code=code, operation=operation)


def make_chime_client(region: str, max_attempts: int = 2) -> Any:
    """A chime-sdk-meetings client with short timeouts: a join must not hang a Lambda.

    `region` must be a Chime control Region (config.CHIME_CONTROL_REGIONS). Few attempts: Chime's
    API rates are ~10/s per account and Region, so retrying a throttled call from hundreds of
    concurrent joins only deepens the throttling (a retry storm); the caller answers
    `rate_limited` instead and the client tries again later.
    https://docs.aws.amazon.com/chime-sdk/latest/dg/quotas-throttling.html
    Its endpoint is AWS's unless AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS says otherwise (the local stack).
    """
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": max(1, max_attempts)},
        connect_timeout=2,
        read_timeout=5,
    )
    client = boto3.client("chime-sdk-meetings", region_name=region, config=config)
    _spare_limit_exceeded(client)
    return client


def _spare_limit_exceeded(client: Any) -> None:
    """botocore's standard retries, except for LimitExceededException.

    Standard mode counts LimitExceededException as throttling and backs off for up to ~15 s, but
    from Chime it means a full meeting or a used-up replica quota: waiting cannot help, and the
    caller must place the user elsewhere now. (Found by the local stack's Chime emulator.) The
    handler botocore registered is swapped for the same handler behind a filter.
    """
    from botocore.retries import standard

    event, unique_id = "needs-retry.chime-sdk-meetings", "retry-config-chime-sdk-meetings"
    client.meta.events.unregister(event, unique_id=unique_id)
    handler = standard.register_retry_handler(
        client, max_attempts=client.meta.config.retries["total_max_attempts"]
    )
    client.meta.events.unregister(event, unique_id=unique_id)

    def needs_retry(response: Any = None, **kwargs: Any) -> Any:
        if response is not None and response[1].get("Error", {}).get("Code") == "LimitExceededException":
            return None
        return handler.needs_retry(response=response, **kwargs)

    client.meta.events.register(event, needs_retry, unique_id="sohbet-chime-retries")


class ChimeMediaAdapter:
    """MediaPort over a boto3 `chime-sdk-meetings` client."""

    def __init__(self, client: Any, *, media_region: str | None = None) -> None:
        self._client = client
        self._media_region = media_region or client.meta.region_name

    def _call(self, operation: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self._client, method)(**params)
        except Exception as exc:
            error = _translate(exc, operation)
            if error is None:
                raise
            raise error from exc
        return response

    def _delete(self, operation: str, method: str, params: dict[str, Any]) -> None:
        try:
            self._call(operation, method, params)
        except MediaError as exc:
            if exc.code != "NotFound":
                raise
            # Already gone (deleted, or the meeting ended on its own): the goal is met.

    def create_meeting(
        self,
        space_id: str,
        *,
        max_attendees: int,
        primary_meeting_id: str | None = None,
        media_region: str | None = None,
    ) -> Meeting:
        """Create the meeting (idempotent on `space_id` and the primary: the same meeting comes back).

        Two creators racing with one ClientRequestToken may get ConflictException ("multiple
        instances of the same request made simultaneously"): the first one's meeting is what both
        want, so the loser asks again (the same token returns it) instead of failing.
        https://docs.aws.amazon.com/chime-sdk/latest/APIReference/API_meeting-chime_CreateMeeting.html
        """
        _check_meeting_args(space_id, max_attendees)
        region = media_region or self._media_region
        params: dict[str, Any] = {
            "ClientRequestToken": client_request_token(space_id, primary_meeting_id),
            "MediaRegion": region,
            "ExternalMeetingId": space_id,
            "MeetingFeatures": {**_AUDIO_ONLY_FEATURES, "Attendee": {"MaxCount": max_attendees}},
        }
        if primary_meeting_id:
            params["PrimaryMeetingId"] = primary_meeting_id
        for wait in _CONFLICT_WAITS:
            try:
                body = self._call("create_meeting", "create_meeting", params)["Meeting"]
                break
            except MediaError as exc:
                if exc.code != "Conflict" or wait is None:
                    raise
                time.sleep(wait)
        return Meeting(
            meeting_id=body["MeetingId"],
            external_meeting_id=body.get("ExternalMeetingId", space_id),
            media_region=body.get("MediaRegion", region),
            media_placement=dict(body.get("MediaPlacement", {})),
            primary_meeting_id=body.get("PrimaryMeetingId") or primary_meeting_id,
            meeting_arn=body.get("MeetingArn"),
        )

    def delete_meeting(self, meeting_id: str) -> None:
        self._delete("delete_meeting", "delete_meeting", {"MeetingId": meeting_id})

    def create_attendee(self, meeting_id: str, user_id: str, audio: str) -> Attendee:
        """Create (or, as ExternalUserId is Chime's idempotency key, re-fetch) the user's attendee.

        A re-fetched attendee keeps its old capabilities, so they are brought to
        `audio` here: a speaker who rejoins as a listener must not keep SendReceive.
        """
        _check_audio(audio, "create_attendee")
        params = {
            "MeetingId": meeting_id,
            "ExternalUserId": external_user_id(user_id),
            "Capabilities": _capabilities(audio),
        }
        body = self._call("create_attendee", "create_attendee", params)["Attendee"]
        attendee = Attendee(
            attendee_id=body["AttendeeId"],
            external_user_id=body.get("ExternalUserId", params["ExternalUserId"]),
            join_token=body["JoinToken"],
            meeting_id=meeting_id,
            audio=body.get("Capabilities", {}).get("Audio", audio),
        )
        if attendee.audio != audio:
            self.update_attendee_audio(meeting_id, attendee.attendee_id, audio)
            attendee = replace(attendee, audio=audio)
        return attendee

    def create_attendees(
        self, meeting_id: str, external_ids: list[str], audio: str
    ) -> dict[str, Attendee | MediaError]:
        """BatchCreateAttendee (at most 100 a call): one API call for many attendees.

        Per external id, the attendee or the item's error (LimitExceeded once the meeting is full).
        https://docs.aws.amazon.com/chime-sdk/latest/APIReference/API_meeting-chime_BatchCreateAttendee.html
        """
        _check_audio(audio, "create_attendees")
        if not 1 <= len(external_ids) <= MAX_BATCH:
            raise MediaError(
                f"1-{MAX_BATCH} attendees per call",
                retryable=False,
                code="BadRequest",
                operation="create_attendees",
            )
        params = {
            "MeetingId": meeting_id,
            "Attendees": [{"ExternalUserId": e, "Capabilities": _capabilities(audio)} for e in external_ids],
        }
        body = self._call("create_attendees", "batch_create_attendee", params)
        out: dict[str, Attendee | MediaError] = {}
        for item in body.get("Attendees", []):
            out[item["ExternalUserId"]] = Attendee(
                attendee_id=item["AttendeeId"],
                external_user_id=item["ExternalUserId"],
                join_token=item["JoinToken"],
                meeting_id=meeting_id,
                audio=item.get("Capabilities", {}).get("Audio", audio),
            )
        for error in body.get("Errors", []):
            code = str(error.get("ErrorCode", "")).removesuffix("Exception")
            out[error["ExternalUserId"]] = MediaError(
                str(error.get("ErrorMessage") or code),
                retryable=False,
                code=code,
                operation="create_attendees",
            )
        return out

    def update_attendee_audio(self, meeting_id: str, attendee_id: str, audio: str) -> None:
        _check_audio(audio, "update_attendee_audio")
        params = {"MeetingId": meeting_id, "AttendeeId": attendee_id, "Capabilities": _capabilities(audio)}
        self._call("update_attendee_audio", "update_attendee_capabilities", params)

    def delete_attendee(self, meeting_id: str, attendee_id: str) -> None:
        """Remove an attendee; Chime invalidates the join token, which ends their audio."""
        self._delete(
            "delete_attendee", "delete_attendee", {"MeetingId": meeting_id, "AttendeeId": attendee_id}
        )

    def start_transcription(self, meeting_id: str, lang: str | None) -> None:
        """Live captions: Amazon Transcribe on the meeting's audio, delivered to attendees by Chime."""
        params = {"MeetingId": meeting_id, "TranscriptionConfiguration": transcription_configuration(lang)}
        self._call("start_transcription", "start_meeting_transcription", params)

    def stop_transcription(self, meeting_id: str) -> None:
        try:
            self._call("stop_transcription", "stop_meeting_transcription", {"MeetingId": meeting_id})
        except MediaError as exc:
            # NotFound: the meeting is gone; UnprocessableEntity: no transcription is running.
            if exc.code not in ("NotFound", "UnprocessableEntity"):
                raise


# Transcribe's streaming languages as Chime's EngineTranscribeSettings.LanguageCode accepts them:
# https://docs.aws.amazon.com/chime-sdk/latest/APIReference/API_meeting-chime_EngineTranscribeSettings.html
TRANSCRIBE_LANGUAGES = (
    "en-US", "en-GB", "en-AU", "es-US", "fr-CA", "fr-FR", "it-IT", "de-DE",
    "pt-BR", "ja-JP", "ko-KR", "zh-CN", "th-TH", "hi-IN",
)  # fmt: skip
# A bare language (a space's `lang`, e.g. "en") goes to its most common variant.
_DEFAULT_VARIANT = {"en": "en-US", "es": "es-US", "fr": "fr-FR", "pt": "pt-BR"}


def transcription_language(lang: str | None) -> str | None:
    """The LanguageCode for a space's language, or None when Transcribe has no such language."""
    if not lang:
        return None
    wanted = lang.strip().replace("_", "-")
    for code in TRANSCRIBE_LANGUAGES:
        if code.lower() == wanted.lower():
            return code
    base = wanted.split("-")[0].lower()
    if base in _DEFAULT_VARIANT:
        return _DEFAULT_VARIANT[base]
    return next((c for c in TRANSCRIBE_LANGUAGES if c.split("-")[0] == base), None)


def transcription_configuration(lang: str | None) -> dict[str, Any]:
    """The space's language when Transcribe supports it; language identification otherwise
    (IdentifyLanguage needs the candidates, at least two)."""
    code = transcription_language(lang)
    if code is not None:
        return {"EngineTranscribeSettings": {"LanguageCode": code}}
    return {
        "EngineTranscribeSettings": {
            "IdentifyLanguage": True,
            "LanguageOptions": ",".join(TRANSCRIBE_LANGUAGES),
            "PreferredLanguage": "en-US",
        }
    }


# --------------------------------------------------------------------------- selection

_media: MediaPort | None = None
_media_lock = threading.Lock()


def get_media() -> MediaPort:
    """The process-wide Chime adapter, built on first use."""
    global _media
    with _media_lock:
        if _media is None:
            _media = adapter_for(get_settings())
        return _media


def adapter_for(settings: Settings) -> ChimeMediaAdapter:
    """A Chime adapter calling the control Region, hosting meetings in the media Region."""
    client = make_chime_client(settings.chime_control_region, settings.chime_max_attempts)
    return ChimeMediaAdapter(client, media_region=settings.media_region)


def reset_media() -> None:
    """Forget the adapter so the next get_media() reads settings again (tests, local stack restarts)."""
    global _media
    with _media_lock:
        _media = None
