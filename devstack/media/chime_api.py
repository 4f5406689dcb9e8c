"""Amazon Chime SDK Meetings' REST API on the local stack, read from botocore's own service model.

The app's unchanged `ChimeMediaAdapter` reaches it through a boto3 client whose endpoint is
`{stack}/_aws/chime-sdk-meetings` (AWS's standard AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS variable;
botocore keeps an endpoint's path prefix). Requests are matched and validated against the
`chime-sdk-meetings` model (paths, query discriminators, required members, lengths, ranges, enums,
patterns — what Stubber does not check), and errors go out as rest-json errors (the
`x-amzn-ErrorType` header) so botocore raises the modeled exceptions.

Rules about requests live here and are off unless switched on (`ChimeRules`): per-operation rate
limits (ThrottlingException, 429) and ConflictException for concurrent CreateMeeting calls with one
ClientRequestToken. Rules about state live in `MediaRegistry`. Tests can inject faults
(`fail_next`, `failing`) answered with real Chime errors, and read `calls`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from chalicelib.config import CHIME_CONTROL_REGIONS
from devstack.media.registry import Attendee, ChimeError, MediaRegistry, Meeting

log = logging.getLogger("devstack.media")

PREFIX = "/_aws/chime-sdk-meetings"
SERVICE = "chime-sdk-meetings"

# MediaRegion values CreateMeeting accepts:
# https://docs.aws.amazon.com/chime-sdk/latest/APIReference/API_meeting-chime_Meeting.html
MEDIA_REGIONS = frozenset(
    {
        "af-south-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-south-1",
        "ap-southeast-1",
        "ap-southeast-2",
        "ca-central-1",
        "eu-central-1",
        "eu-north-1",
        "eu-south-1",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "sa-east-1",
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "us-gov-east-1",
        "us-gov-west-1",
    }
)

# The Regions with a Chime SDK Meetings API endpoint (control Regions); meetings can be hosted
# in any MEDIA_REGIONS. https://docs.aws.amazon.com/chime-sdk/latest/dg/chime-sdk-meetings-regions.html
CONTROL_REGIONS = CHIME_CONTROL_REGIONS  # the app's list, checked against botocore's endpoints

# Default API rates, requests per second per account and Region. The figures are listed on
# https://docs.aws.amazon.com/general/latest/gr/chime-sdk.html (linked from
# https://docs.aws.amazon.com/chime-sdk/latest/dg/quotas-throttling.html, which says a caller over
# its rate gets HTTP 429); about 10/s each, adjustable per account: set your own in ChimeRules.rates.
DEFAULT_RATES: dict[str, float] = {
    "CreateMeeting": 10,
    "CreateMeetingWithAttendees": 10,
    "GetMeeting": 10,
    "DeleteMeeting": 10,
    "CreateAttendee": 10,
    "BatchCreateAttendee": 10,
    "GetAttendee": 10,
    "ListAttendees": 10,
    "DeleteAttendee": 10,
    "UpdateAttendeeCapabilities": 10,
    "BatchUpdateAttendeeCapabilitiesExcept": 10,
    "StartMeetingTranscription": 10,
    "StopMeetingTranscription": 10,
}

# ExternalUserId's documented pattern, which botocore's model does not carry:
# https://docs.aws.amazon.com/chime-sdk/latest/APIReference/API_meeting-chime_CreateAttendee.html
_EXTERNAL_USER_ID = re.compile(r"[-_&@+=,(){}\[\]/«».:|'\"#a-zA-Z0-9À-ÿ\s]*")

# botocore's exception names and the status codes its model gives them.
_STATUS = {
    "BadRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "Conflict": 409,
    "LimitExceeded": 400,
    "UnprocessableEntity": 422,
    "Throttling": 429,
    "ServiceFailure": 500,
    "ServiceUnavailable": 503,
}


@dataclass
class ChimeRules:
    """Chime's request rules, each off unless switched on (tests create attendees quickly).

    rate_limits: answer ThrottlingException (429) past `rates` requests/s per operation.
    create_meeting_seconds: > 0 makes CreateMeeting take that long, during which another
        CreateMeeting with the same ClientRequestToken gets ConflictException ("multiple
        instances of the same request have been made simultaneously").
    """

    rate_limits: bool = False
    rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    create_meeting_seconds: float = 0.0

    @classmethod
    def from_env(cls) -> ChimeRules:
        """LOCAL_CHIME_RATE_LIMITS=1 switches the rate limits on (e.g. `LOCAL_CHIME_RATE_LIMITS=1 make dev`);
        LOCAL_CHIME_CREATE_MEETING_SECONDS=0.5 makes concurrent same-token CreateMeetings conflict."""
        return cls(
            rate_limits=os.environ.get("LOCAL_CHIME_RATE_LIMITS", "") in ("1", "true", "yes"),
            create_meeting_seconds=float(os.environ.get("LOCAL_CHIME_CREATE_MEETING_SECONDS") or 0),
        )


class _Bucket:
    """A token bucket: `rate` requests per second, bursts of up to `rate`."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.tokens = rate
        self.clock = clock
        self.at = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


# --------------------------------------------------------------------------- the service model


def _load_model() -> Any:
    import botocore
    from botocore.model import ServiceModel

    data = Path(botocore.__file__).parent / "data" / SERVICE
    version = sorted(p.name for p in data.iterdir() if p.is_dir())[-1]
    with gzip.open(data / version / "service-2.json.gz") as f:
        return ServiceModel(json.load(f), service_name=SERVICE)


@dataclass(frozen=True)
class _Route:
    name: str
    method: str
    path: re.Pattern[str]
    query: dict[str, str]  # discriminators such as operation=batch-create
    status: int
    model: Any


def _routes(model: Any) -> list[_Route]:
    routes = []
    for name in model.operation_names:
        op = model.operation_model(name)
        uri, _, query = op.http["requestUri"].partition("?")
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(uri))
        discriminators = {k: v[0] for k, v in parse_qs(query).items()}
        routes.append(
            _Route(
                name,
                op.http["method"],
                re.compile(pattern + "$"),
                discriminators,
                op.http.get("responseCode", 200),
                op,
            )
        )
    # The most specific first: POST /meetings?operation=create-attendees before POST /meetings.
    routes.sort(key=lambda r: -len(r.query))
    return routes


def _validate(shape: Any, value: Any, path: str) -> None:
    """Check a parsed value against its shape; raise BadRequest naming the member at fault."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise ChimeError("BadRequest", f"{path or 'body'} must be an object")
        for required in shape.required_members:
            if value.get(required) is None:
                raise ChimeError("BadRequest", f"{_join(path, required)} is required")
        for key, item in value.items():
            if key not in shape.members:
                raise ChimeError("BadRequest", f"{_join(path, key)} is not a member of {shape.name}")
            _validate(shape.members[key], item, _join(path, key))
        return
    if kind == "list":
        if not isinstance(value, list):
            raise ChimeError("BadRequest", f"{path} must be a list")
        _check_range(shape, len(value), path, "items")
        for i, item in enumerate(value):
            _validate(shape.member, item, f"{path}[{i}]")
        return
    if kind == "string":
        if not isinstance(value, str):
            raise ChimeError("BadRequest", f"{path} must be a string")
        _check_range(shape, len(value), path, "characters")
        enum = shape.enum
        if enum and value not in enum:
            raise ChimeError("BadRequest", f"{path} must be one of {', '.join(enum)}")
        pattern = shape.metadata.get("pattern")
        if pattern and not _matches(pattern, value):
            raise ChimeError("BadRequest", f"{path} does not match {pattern}")
        return
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ChimeError("BadRequest", f"{path} must be an integer")
        _check_range(shape, value, path, "")
        return
    if kind == "boolean" and not isinstance(value, bool):
        raise ChimeError("BadRequest", f"{path} must be a boolean")


def _check_range(shape: Any, n: int, path: str, unit: str) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if (low is not None and n < low) or (high is not None and n > high):
        bounds = f"{low if low is not None else 0}-{high if high is not None else '∞'}"
        raise ChimeError("BadRequest", f"{path} must be {bounds} {unit}".rstrip())


def _matches(pattern: str, value: str) -> bool:
    # Smithy patterns are not anchored; Chime's unanchored ones describe the whole value.
    try:
        if pattern.startswith("^"):
            return re.search(pattern, value) is not None
        return re.fullmatch(pattern, value) is not None
    except re.error:
        return True


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --------------------------------------------------------------------------- the emulator


class ChimeMeetingsEmulator:
    """Serves the Chime SDK Meetings API over a MediaRegistry.

    `public_url()` gives the base URL clients reach the stack at (MediaPlacement points there).
    """

    def __init__(
        self,
        registry: MediaRegistry,
        public_url: Callable[[], str],
        rules: ChimeRules | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.public_url = public_url
        self.rules = rules or ChimeRules()
        self.clock = clock
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.throttled = 0  # requests answered ThrottlingException by the rate limits
        self._model = _load_model()
        self._routes = _routes(self._model)
        self._lock = threading.Lock()
        self._faults: dict[str, list[tuple[str, str, int | None]]] = {}  # op -> [(code, message, times)]
        self._buckets: dict[str, _Bucket] = {}
        self._creating: set[str] = set()  # ClientRequestTokens of CreateMeeting calls in progress
        self._holds: dict[str, list[threading.Event]] = {}  # op -> gates the next calls wait on
        # Live captions (StartMeetingTranscription): set by the stack to the media server's
        # captioner; None answers UnprocessableEntity, "captions are unavailable here".
        self.transcriber: Any = None

    # ------------------------------------------------------------------ test hooks

    def fail_next(
        self, operation: str, error: str = "ServiceUnavailable", times: int = 1, message: str = ""
    ) -> None:
        """Answer the next `times` calls of `operation` (e.g. "CreateAttendee") with a Chime error.

        The call changes nothing. Note that botocore retries ServiceUnavailable, ServiceFailure and
        Throttling itself (standard mode: 4 attempts for the app's client): to make one app call
        fail with a retryable error, use `failing` or times >= the client's max_attempts.
        """
        self._arm(operation, error, message, times)

    @contextlib.contextmanager
    def failing(self, operation: str, error: str = "ServiceUnavailable", message: str = "") -> Iterator[None]:
        """Answer every call of `operation` with a Chime error while the block runs (an outage)."""
        self._arm(operation, error, message, None)
        try:
            yield
        finally:
            with self._lock:
                self._faults.pop(operation, None)

    def _arm(self, operation: str, error: str, message: str, times: int | None) -> None:
        if operation not in DEFAULT_RATES:
            raise ValueError(f"unknown operation {operation!r}; expected one of {sorted(DEFAULT_RATES)}")
        if error not in _STATUS:
            raise ValueError(f"unknown error {error!r}; expected one of {sorted(_STATUS)}")
        with self._lock:
            self._faults.setdefault(operation, []).append((error, message or f"injected {error}", times))

    def _injected(self, operation: str) -> ChimeError | None:
        with self._lock:
            queue = self._faults.get(operation)
            if not queue:
                return None
            code, message, times = queue[0]
            if times is not None:
                if times <= 1:
                    queue.pop(0)
                else:
                    queue[0] = (code, message, times - 1)
            return ChimeError(code, message)

    def hold_next(self, operation: str) -> threading.Event:
        """The next call of `operation` waits (up to 10 s) until the returned event is set, then is
        served as usual: a test makes a race happen in a chosen order."""
        if operation not in DEFAULT_RATES:
            raise ValueError(f"unknown operation {operation!r}; expected one of {sorted(DEFAULT_RATES)}")
        gate = threading.Event()
        with self._lock:
            self._holds.setdefault(operation, []).append(gate)
        return gate

    def _held(self, operation: str) -> threading.Event | None:
        with self._lock:
            queue = self._holds.get(operation)
            return queue.pop(0) if queue else None

    def stats(self) -> dict[str, Any]:
        """Requests served per operation (throttled ones included), and how many were throttled."""
        with self._lock:
            requests: dict[str, int] = {}
            for name, _ in self.calls:
                requests[name] = requests.get(name, 0) + 1
            return {"requests": requests, "throttled": self.throttled}

    def count(self, operation: str, **params: str) -> int:
        """Calls of `operation` so far; with `params` (e.g. MeetingId=...), only those naming them."""
        with self._lock:
            return sum(
                1
                for name, called in self.calls
                if name == operation and all(called.get(k) == v for k, v in params.items())
            )

    def reset(self) -> None:
        """Forget calls, faults and rate-limit state (not the registry's meetings)."""
        with self._lock:
            self.calls.clear()
            self.throttled = 0
            self._faults.clear()
            self._buckets.clear()
            for gates in self._holds.values():
                for gate in gates:
                    gate.set()
            self._holds.clear()

    # ------------------------------------------------------------------ HTTP

    def routes(self) -> list[Any]:
        from starlette.routing import Route

        return [
            Route(
                PREFIX + "/{path:path}",
                self.handle,
                methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"],
            )
        ]

    async def handle(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool

        request_id = str(uuid.uuid4())
        route, labels = self._match(request.method, request.url.path[len(PREFIX) :], request.query_params)
        if route is None:
            return _error(
                "UnknownOperation", f"no operation for {request.method} {request.url.path}", request_id, 404
            )
        if not request.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 "):
            return _error("Unauthorized", "Missing or invalid SigV4 Authorization header", request_id)
        region = _signed_region(request.headers.get("authorization", ""))
        if region not in CONTROL_REGIONS:
            # In AWS the client would not even connect: meetings-chime.{region}.amazonaws.com does
            # not exist outside the control Regions. Refused here so a stack in such a Region fails
            # locally the way it would in AWS.
            return _error(
                "Forbidden",
                f"no Chime SDK Meetings API in {region}: call a control Region "
                f"({', '.join(sorted(CONTROL_REGIONS))})",
                request_id,
            )
        try:
            params = self._parse(route, labels, request.query_params, await request.body())
            with self._lock:
                self.calls.append((route.name, params))
            held = self._held(route.name)
            if held is not None:
                await run_in_threadpool(held.wait, 10)
            fault = self._injected(route.name)
            if fault is not None:
                raise fault
            self._throttle(route.name)
            _validate(route.model.input_shape, params, "")
            if route.name in ("CreateMeeting", "CreateMeetingWithAttendees"):
                body = await self._create_meeting(route.name, params)
            else:
                body = await run_in_threadpool(getattr(self, "_op_" + route.name), params)
        except ChimeError as exc:
            return _error(exc.code, exc.message, request_id)
        except Exception:
            log.exception("Chime emulator: %s failed", route.name)
            return _error("ServiceFailure", "The service encountered an unexpected error.", request_id)
        return _json(body, route.status, request_id)

    def _match(self, method: str, path: str, query: Any) -> tuple[_Route | None, dict[str, str]]:
        for route in self._routes:
            if route.method != method or any(query.get(k) != v for k, v in route.query.items()):
                continue
            found = route.path.match(path)
            if found:
                return route, {k: unquote(v) for k, v in found.groupdict().items()}
        return None, {}

    def _parse(self, route: _Route, labels: dict[str, str], query: Any, raw: bytes) -> dict[str, Any]:
        shape = route.model.input_shape
        params: dict[str, Any] = {}
        if raw:
            try:
                params = json.loads(raw)
            except ValueError:
                raise ChimeError("BadRequest", "The request body is not valid JSON") from None
            if not isinstance(params, dict):
                raise ChimeError("BadRequest", "The request body must be a JSON object")
        for name, member in (shape.members if shape else {}).items():
            location = member.serialization.get("location")
            key = member.serialization.get("name", name)
            if location == "uri" and key in labels:
                params[name] = labels[key]
            elif location == "querystring" and key in query:
                value = query[key]
                if member.type_name == "integer":
                    try:
                        value = int(value)
                    except ValueError:
                        raise ChimeError("BadRequest", f"{name} must be an integer") from None
                params[name] = value
        return params

    def _throttle(self, operation: str) -> None:
        if not self.rules.rate_limits:
            return
        rate = self.rules.rates.get(operation)
        if not rate:
            return
        with self._lock:
            bucket = self._buckets.get(operation)
            if bucket is None or bucket.rate != rate:
                bucket = self._buckets[operation] = _Bucket(rate, self.clock)
            allowed = bucket.take()
        if not allowed:
            with self._lock:
                self.throttled += 1
            raise ChimeError("Throttling", f"Rate exceeded for {operation}")

    # ------------------------------------------------------------------ operations

    async def _create_meeting(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        from starlette.concurrency import run_in_threadpool

        token = params["ClientRequestToken"]
        delay = self.rules.create_meeting_seconds
        if delay <= 0:
            return await run_in_threadpool(getattr(self, "_op_" + name), params)
        with self._lock:
            if token in self._creating:
                raise ChimeError(
                    "Conflict", "Multiple instances of the same request have been made simultaneously."
                )
            self._creating.add(token)
        try:
            await asyncio.sleep(delay)
            return await run_in_threadpool(getattr(self, "_op_" + name), params)
        finally:
            with self._lock:
                self._creating.discard(token)

    def _new_meeting(self, params: dict[str, Any]) -> Meeting:
        region = params["MediaRegion"]
        if region not in MEDIA_REGIONS:
            raise ChimeError("BadRequest", f"Invalid MediaRegion {region!r}")
        _check_external_id(params["ExternalMeetingId"], "ExternalMeetingId")
        features = params.get("MeetingFeatures") or {}
        return self.registry.create_meeting(
            client_request_token=params["ClientRequestToken"],
            media_region=region,
            external_meeting_id=params["ExternalMeetingId"],
            max_attendees=int(features.get("Attendee", {}).get("MaxCount", 250)),
            primary_meeting_id=params.get("PrimaryMeetingId"),
            meeting_features=features,
            tenant_ids=params.get("TenantIds") or (),
            meeting_host_id=params.get("MeetingHostId"),
        )

    def _op_CreateMeeting(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"Meeting": self.meeting_json(self._new_meeting(params))}

    def _op_CreateMeetingWithAttendees(self, params: dict[str, Any]) -> dict[str, Any]:
        meeting = self._new_meeting(params)
        attendees, errors = self._batch_create(meeting.meeting_id, params["Attendees"])
        return {"Meeting": self.meeting_json(meeting), "Attendees": attendees, "Errors": errors}

    def _op_GetMeeting(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"Meeting": self.meeting_json(self.registry.get_meeting(params["MeetingId"]))}

    def _op_DeleteMeeting(self, params: dict[str, Any]) -> None:
        self.registry.delete_meeting(params["MeetingId"])

    def _op_CreateAttendee(self, params: dict[str, Any]) -> dict[str, Any]:
        _check_external_id(params["ExternalUserId"], "ExternalUserId")
        attendee = self.registry.create_attendee(
            params["MeetingId"], params["ExternalUserId"], params.get("Capabilities")
        )
        return {"Attendee": attendee_json(attendee)}

    def _op_BatchCreateAttendee(self, params: dict[str, Any]) -> dict[str, Any]:
        self.registry.get_meeting(params["MeetingId"])  # NotFound for the whole request
        attendees, errors = self._batch_create(params["MeetingId"], params["Attendees"])
        return {"Attendees": attendees, "Errors": errors}

    def _batch_create(self, meeting_id: str, items: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
        """Per-item results: a refused item goes to Errors with its exception's code."""
        attendees, errors = [], []
        for item in items:
            try:
                _check_external_id(item["ExternalUserId"], "ExternalUserId")
                attendee = self.registry.create_attendee(
                    meeting_id, item["ExternalUserId"], item.get("Capabilities")
                )
            except ChimeError as exc:
                errors.append(
                    {
                        "ExternalUserId": item["ExternalUserId"],
                        "ErrorCode": exc.code,
                        "ErrorMessage": exc.message,
                    }
                )
            else:
                attendees.append(attendee_json(attendee))
        return attendees, errors

    def _op_GetAttendee(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "Attendee": attendee_json(self.registry.get_attendee(params["MeetingId"], params["AttendeeId"]))
        }

    def _op_ListAttendees(self, params: dict[str, Any]) -> dict[str, Any]:
        attendees = self.registry.list_attendees(params["MeetingId"])
        start = _decode_token(params.get("NextToken"))
        size = params.get("MaxResults") or 100
        page = attendees[start : start + size]
        body: dict[str, Any] = {"Attendees": [attendee_json(a) for a in page]}
        if start + size < len(attendees):
            body["NextToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return body

    def _op_DeleteAttendee(self, params: dict[str, Any]) -> None:
        self.registry.delete_attendee(params["MeetingId"], params["AttendeeId"])

    def _op_UpdateAttendeeCapabilities(self, params: dict[str, Any]) -> dict[str, Any]:
        attendee = self.registry.update_capabilities(
            params["MeetingId"], params["AttendeeId"], params["Capabilities"]
        )
        return {"Attendee": attendee_json(attendee)}

    def _op_BatchUpdateAttendeeCapabilitiesExcept(self, params: dict[str, Any]) -> None:
        excluded = [item["AttendeeId"] for item in params["ExcludedAttendeeIds"]]
        self.registry.update_capabilities_except(params["MeetingId"], excluded, params["Capabilities"])

    def _op_StartMeetingTranscription(self, params: dict[str, Any]) -> None:
        meeting = self.registry.get_meeting(params["MeetingId"])
        if self.transcriber is None:
            raise ChimeError(
                "UnprocessableEntity",
                "Captions are unavailable on the local stack: no speech recognizer is installed "
                "(pip install pocketsphinx, see docs/media.md).",
            )
        self.transcriber.start(meeting, params.get("TranscriptionConfiguration") or {})

    def _op_StopMeetingTranscription(self, params: dict[str, Any]) -> None:
        meeting = self.registry.get_meeting(params["MeetingId"])
        if self.transcriber is None or not self.transcriber.stop(meeting):
            raise ChimeError("UnprocessableEntity", "No transcription is running in this meeting.")

    # ------------------------------------------------------------------ JSON shapes

    def media_placement(self, meeting_id: str) -> dict[str, str]:
        """Where clients connect. An http(s) SignalingUrl means: the embedded media server, use WHIP
        (Chime's is always wss://). The other URLs point at the stack too; only WHIP is served."""
        base = self.public_url().rstrip("/")
        host = base.split("://", 1)[-1]
        ws = "wss" if base.startswith("https") else "ws"
        return {
            "AudioHostUrl": host,
            "AudioFallbackUrl": f"{ws}://{host}/media/calls/{meeting_id}",
            "SignalingUrl": f"{base}/media/whip/{meeting_id}",
            "TurnControlUrl": f"{base}/media/turn_sessions",
            "ScreenDataUrl": f"{ws}://{host}/media/screen/{meeting_id}",
            "ScreenViewingUrl": f"{ws}://{host}/media/screen/{meeting_id}",
            "ScreenSharingUrl": f"{ws}://{host}/media/screen/{meeting_id}",
            "EventIngestionUrl": f"{base}/media/client-events",
        }

    def meeting_json(self, meeting: Meeting) -> dict[str, Any]:
        registry = self.registry
        body: dict[str, Any] = {
            "MeetingId": meeting.meeting_id,
            "MediaRegion": meeting.media_region,
            "MediaPlacement": self.media_placement(meeting.meeting_id),
            "MeetingFeatures": meeting.meeting_features,
            "MeetingArn": f"arn:aws:chime:{registry.region}:{registry.account}:meeting/{meeting.meeting_id}",
        }
        if meeting.external_meeting_id is not None:
            body["ExternalMeetingId"] = meeting.external_meeting_id
        if meeting.meeting_host_id is not None:
            body["MeetingHostId"] = meeting.meeting_host_id
        if meeting.primary_meeting_id is not None:
            body["PrimaryMeetingId"] = meeting.primary_meeting_id
        if meeting.tenant_ids:
            body["TenantIds"] = list(meeting.tenant_ids)
        return body


def attendee_json(attendee: Attendee) -> dict[str, Any]:
    return {
        "AttendeeId": attendee.attendee_id,
        "ExternalUserId": attendee.external_user_id,
        "JoinToken": attendee.join_token,
        "Capabilities": attendee.capabilities,
    }


def _signed_region(authorization: str) -> str:
    """The Region of a SigV4 credential scope: Credential=AKID/DATE/REGION/SERVICE/aws4_request."""
    match = re.search(r"Credential=[^/]+/\d+/([^/]+)/", authorization)
    return match.group(1) if match else ""


def _check_external_id(value: str, name: str) -> None:
    # "aws:" is reserved, and ExternalUserId has a restricted alphabet (see _EXTERNAL_USER_ID).
    if value.lower().startswith("aws:"):
        raise ChimeError("BadRequest", f"{name} must not begin with the reserved prefix aws:")
    if name == "ExternalUserId" and not _EXTERNAL_USER_ID.fullmatch(value):
        raise ChimeError("BadRequest", f"{name} has characters outside the allowed set")


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        return max(0, int(base64.urlsafe_b64decode(token.encode()).decode()))
    except ValueError:
        raise ChimeError("BadRequest", "Invalid NextToken") from None


def _json(body: Any, status: int, request_id: str) -> Any:
    from starlette.responses import Response

    headers = {"x-amzn-RequestId": request_id}
    if status == 204 or body is None:
        return Response(
            b"" if status == 204 else b"{}",
            status_code=status,
            headers=headers,
            media_type=None if status == 204 else "application/json",
        )
    return Response(
        json.dumps(body).encode(), status_code=status, headers=headers, media_type="application/json"
    )


def _error(code: str, message: str, request_id: str, status: int | None = None) -> Any:
    """A rest-json error: botocore reads the code from x-amzn-ErrorType and raises {code}Exception."""
    from starlette.responses import Response

    body = {"Code": code, "Message": message, "RequestId": request_id}
    headers = {"x-amzn-ErrorType": f"{code}Exception", "x-amzn-RequestId": request_id}
    if code == "ServiceUnavailable":
        headers["Retry-After"] = "1"
    return Response(
        json.dumps(body).encode(),
        status_code=status or _STATUS.get(code, 400),
        headers=headers,
        media_type="application/json",
    )
