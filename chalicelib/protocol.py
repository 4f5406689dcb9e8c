"""The WebSocket protocol: command envelopes in, replies, errors and events out.

docs/asyncapi.yaml is its machine-readable description; tests validate every
message the server sends against it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, TypeAdapter, ValidationError

from chalicelib.errors import CommandError, ErrorCode
from chalicelib.jsonin import load_json
from chalicelib.rules import SpeakPolicyName

MAX_REF_LENGTH = 64
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


# -- commands ----------------------------------------------------------------

UserId = Annotated[str, Field(pattern=ID_PATTERN)]
SpaceId = Annotated[str, Field(pattern=ID_PATTERN)]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ref: Annotated[str, Field(min_length=1, max_length=MAX_REF_LENGTH)] | None = None


class Ping(Command):
    action: Literal["ping"]


class SpaceCommand(Command):
    space_id: SpaceId


class TargetCommand(SpaceCommand):
    user_id: UserId


class SpaceJoin(SpaceCommand):
    action: Literal["space.join"]


class SpaceLeave(SpaceCommand):
    action: Literal["space.leave"]


class SpaceSync(SpaceCommand):
    action: Literal["space.sync"]


class SpaceEnd(SpaceCommand):
    action: Literal["space.end"]


class HandRaise(SpaceCommand):
    action: Literal["hand.raise"]


class HandLower(SpaceCommand):
    action: Literal["hand.lower"]


class InviteAccept(SpaceCommand):
    action: Literal["invite.accept"]


class InviteDecline(SpaceCommand):
    action: Literal["invite.decline"]


class StageLeave(SpaceCommand):
    action: Literal["stage.leave"]


class MicMute(SpaceCommand):
    action: Literal["mic.mute"]


class MicUnmute(SpaceCommand):
    action: Literal["mic.unmute"]


class SpeakerInvite(TargetCommand):
    action: Literal["speaker.invite"]


class RequestApprove(TargetCommand):
    action: Literal["request.approve"]


class RequestDeny(TargetCommand):
    action: Literal["request.deny"]


class SpeakerRemove(TargetCommand):
    action: Literal["speaker.remove"]


class SpeakerMute(TargetCommand):
    action: Literal["speaker.mute"]


class ParticipantRemove(TargetCommand):
    action: Literal["participant.remove"]


class CohostAdd(TargetCommand):
    action: Literal["cohost.add"]


class CohostRemove(TargetCommand):
    action: Literal["cohost.remove"]


class SettingsUpdate(SpaceCommand):
    action: Literal["settings.update"]
    speak_policy: SpeakPolicyName | None = None
    handover: StrictBool | None = None
    title: Annotated[str, Field(min_length=1, max_length=70)] | None = None


class RecordingSet(SpaceCommand):
    action: Literal["recording.set"]
    on: StrictBool


class CaptionsSet(SpaceCommand):
    action: Literal["captions.set"]
    on: StrictBool


class ReactionSend(SpaceCommand):
    action: Literal["reaction.send"]
    emoji: Annotated[str, Field(min_length=1, max_length=16)]


ReportCategory = Literal[
    "spam", "harassment", "hate", "violence", "self_harm", "sexual_content", "impersonation", "other"
]


NOTE_MAX = 500


class ReportFields(BaseModel):
    """What a report says: the body of POST /reports, and the fields of `report.send`."""

    model_config = ConfigDict(extra="forbid")

    space_id: SpaceId
    user_id: UserId | None = None
    category: ReportCategory
    note: Annotated[str, Field(max_length=NOTE_MAX)] | None = None


class ReportSend(Command, ReportFields):
    action: Literal["report.send"]


AnyCommand = Annotated[
    Ping
    | SpaceJoin
    | SpaceLeave
    | SpaceSync
    | SpaceEnd
    | HandRaise
    | HandLower
    | InviteAccept
    | InviteDecline
    | StageLeave
    | MicMute
    | MicUnmute
    | SpeakerInvite
    | RequestApprove
    | RequestDeny
    | SpeakerRemove
    | SpeakerMute
    | ParticipantRemove
    | CohostAdd
    | CohostRemove
    | SettingsUpdate
    | RecordingSet
    | CaptionsSet
    | ReactionSend
    | ReportSend,
    Field(discriminator="action"),
]

_command_adapter: TypeAdapter[Any] = TypeAdapter(AnyCommand)
COMMAND_NAMES: frozenset[str] = frozenset(
    member.model_fields["action"].annotation.__args__[0]
    for member in AnyCommand.__origin__.__args__  # type: ignore[attr-defined]
)


def read_ref(raw: Any) -> str | None:
    """The ref to echo in an error, when the client sent a usable one."""
    if isinstance(raw, dict):
        ref = raw.get("ref")
        if isinstance(ref, str) and 0 < len(ref) <= MAX_REF_LENGTH:
            return ref
    return None


def parse_command(body: str | None) -> Any:
    """Parse and validate one client message; CommandError(bad_request) if it is not a command."""
    if body is None or body == "":
        raise CommandError(ErrorCode.BAD_REQUEST, "empty message")
    try:
        raw = load_json(body)
    except ValueError as exc:
        raise CommandError(ErrorCode.BAD_REQUEST, _not_json(exc, "message")) from None
    if not isinstance(raw, dict):
        raise CommandError(ErrorCode.BAD_REQUEST, "message must be a JSON object")
    action = raw.get("action")
    if action is None:
        raise CommandError(ErrorCode.BAD_REQUEST, "missing 'action'")
    if not isinstance(action, str) or action not in COMMAND_NAMES:
        raise CommandError(ErrorCode.BAD_REQUEST, f"unknown action {str(action)[:40]!r}")
    try:
        return _command_adapter.validate_python(raw)
    except ValidationError as exc:
        raise CommandError(ErrorCode.BAD_REQUEST, _describe(exc)) from None


def _not_json(exc: ValueError, what: str) -> str:
    # a nesting refusal says so; a decoder error says only that it is not JSON
    return str(exc) if "nested" in str(exc) else f"{what} is not valid JSON"


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"][1:]) or "message"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


# -- server messages ---------------------------------------------------------


def reply(ref: str | None, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "reply", "ref": ref, "ok": True, "data": data or {}}


def error(
    ref: str | None, code: ErrorCode, message: str, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "ref": ref, "code": code.value, "message": message}
    if data:
        frame["data"] = data
    return frame


def event(name: str, space_id: str | None, seq: int | None, **payload: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "event", "event": name}
    if space_id is not None:
        frame["space_id"] = space_id
    if seq is not None:
        frame["seq"] = seq
    frame.update(payload)
    return frame
