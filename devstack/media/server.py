"""The embedded media server: WebRTC sessions of attendees, on their own event loop.

Each WHIP session is one aiortc RTCPeerConnection whose single audio transceiver carries
the attendee's uplink in and the room's mix-minus out (devstack.media.mixer). The
server listens to the MediaRegistry: a capability change reaches the mixer on its next
tick, DeleteAttendee and DeleteMeeting close the peer connections.

Nothing leaves the machine: no ICE servers at all (aiortc would otherwise fall back to
a public STUN server), and aioice gathers host candidates on the configured addresses
only — 127.0.0.1 by default; `--media-address` may advertise a LAN address instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import secrets
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from devstack.media.mixer import Participant, Room
from devstack.media.registry import Attendee, ChimeError, MediaRegistry, Meeting

log = logging.getLogger("devstack.media")
T = TypeVar("T")

MAX_OFFER_BYTES = 64 * 1024


def restrict_host_candidates(addresses: Sequence[str]) -> None:
    """Make aioice (every peer connection in this process) gather host candidates on these addresses only.

    aioice skips 127.0.0.1 and offers every other interface address; we want the reverse.
    aioice has no setting for it, so its address lookup is replaced, process-wide.
    """
    import aioice.ice

    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def rtc_configuration() -> Any:
    from aiortc import RTCConfiguration

    return RTCConfiguration(iceServers=[])  # never None: None means Google's public STUN server


def shorten_jitter_buffer(receiver: Any) -> None:
    """Release each uplink frame as soon as it is complete (aiortc waits for 4 more: ~80 ms).

    The mixer has its own jitter queue per sender, so aiortc's prefetch only adds delay.
    aiortc has no setting for it: its private buffer is replaced when it has the expected shape.
    """
    from aiortc.jitterbuffer import JitterBuffer

    attribute = "_RTCRtpReceiver__jitter_buffer"
    current = getattr(receiver, attribute, None)
    if isinstance(current, JitterBuffer) and not current._is_video:
        setattr(receiver, attribute, JitterBuffer(capacity=current.capacity, prefetch=1))


class WhipError(Exception):
    """A refused WHIP request: HTTP status, stable error code, clear message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Session:
    session_id: str
    attendee_id: str
    meeting_id: str
    room: Room
    participant: Participant
    pc: Any
    connected: bool = False
    closed: bool = False
    own: Attendee | None = None  # the session's own (replica) attendee, as admitted
    promoted: Attendee | None = None  # the primary attendee this replica session counts as


@dataclass(frozen=True)
class Answer:
    session_id: str
    sdp: str


class MediaServer:
    """WebRTC sessions and mixers for the meetings of `registry`."""

    def __init__(self, registry: MediaRegistry, *, addresses: Sequence[str] = ("127.0.0.1",)) -> None:
        self.registry = registry
        self.addresses = list(addresses)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._rooms: dict[str, Room] = {}
        self._sessions: dict[str, Session] = {}
        self._by_attendee: dict[str, Session] = {}
        self._promoted: dict[str, Session] = {}  # primary attendee id -> the replica session promoted with it
        self._revoked: set[str] = set()  # join tokens of deleted attendees: 404, not 401
        self._taps: dict[str, list[Any]] = {}  # primary meeting id -> who hears its mix (recorders)
        self.captions: Any = None  # devstack.media.captions.Captioner, when a recognizer is installed
        self._unsubscribe: Any = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> MediaServer:
        restrict_host_candidates(self.addresses)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            assert self.loop is not None
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name="media", daemon=True)
        self._thread.start()
        ready.wait(5)
        self._unsubscribe = self.registry.subscribe(self)
        return self

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.loop is None:
            return
        with contextlib.suppress(Exception):
            self.call(self._close_all()).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `coro` on the media loop (from any thread); returns a concurrent future."""
        assert self.loop is not None, "the media server is not started"
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the media loop from another event loop (e.g. the HTTP server's)."""
        return await asyncio.wrap_future(self.call(coro))

    # ------------------------------------------------------------------ WHIP

    async def offer(self, meeting_id: str, token: str | None, sdp: str) -> Answer:
        """Admit an attendee's SDP offer into `meeting_id`; the answer, or WhipError."""
        attendee = self._authorize(meeting_id, token)
        if len(sdp.encode()) > MAX_OFFER_BYTES:
            raise WhipError(400, "bad_request", f"the SDP offer is larger than {MAX_OFFER_BYTES} bytes")
        if not sdp.lstrip().startswith("v=0"):
            raise WhipError(400, "bad_request", "the body is not an SDP offer (it must start with v=0)")
        if "opus/48000" not in sdp.lower():
            raise WhipError(400, "bad_request", "the SDP offer must offer Opus (opus/48000) audio")
        meeting = self._meeting(attendee.meeting_id)
        from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        replica = meeting.primary_meeting_id is not None
        participant = Participant(
            attendee.attendee_id, attendee.audio, replica=replica, external_user_id=attendee.external_user_id
        )
        pc = RTCPeerConnection(rtc_configuration())

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                participant.listen_to(track)

        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except Exception as exc:
                raise WhipError(400, "bad_request", f"the SDP offer cannot be used: {exc}") from exc
            audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
            if not audio:
                raise WhipError(400, "bad_request", "the SDP offer has no audio m-line")
            for transceiver in pc.getTransceivers():
                if transceiver.kind != "audio" or transceiver is not audio[0]:
                    transceiver.direction = "inactive"  # audio only, one track, as Chime allows
            shorten_jitter_buffer(audio[0].receiver)
            # The mixer sends Opus packets it encoded itself: Opus is the only codec answered.
            codecs = RTCRtpSender.getCapabilities("audio").codecs
            audio[0].setCodecPreferences([c for c in codecs if c.mimeType.lower() == "audio/opus"])
            pc.addTrack(participant.outbound)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)  # gathers the (loopback) candidates: no trickle
        except BaseException:
            participant.close()
            await pc.close()
            raise
        # Deleted, or muted, while we negotiated? Read the attendee again now.
        current = self.registry.attendee_by_token(attendee.join_token)
        if current is None:
            participant.close()
            await pc.close()
            raise WhipError(404, "not_found", "the attendee was deleted while joining")
        participant.set_audio(current.audio)
        session = await self._admit(current, meeting, participant, pc)
        return Answer(session.session_id, pc.localDescription.sdp)

    async def leave(self, meeting_id: str, session_id: str) -> None:
        await self._end(self._session(meeting_id, session_id), dropped=False)

    def promotion_of(self, attendee_id: str) -> str | None:
        """The primary attendee a session of this (replica) attendee is promoted as, if any (tests)."""
        session = self._by_attendee.get(attendee_id)
        return session.promoted.attendee_id if session is not None and session.promoted else None

    async def volumes(self, meeting_id: str, session_id: str) -> list[dict[str, Any]]:
        """The volume of each attendee who may send in the session's room (the primary's stage)."""
        session = self._sessions.get(session_id)
        if session is None or session.meeting_id != meeting_id:
            raise WhipError(404, "not_found", "no such WHIP session (it ended or was replaced)")
        return session.room.volumes()

    async def transcripts(self, meeting_id: str, session_id: str) -> list[dict[str, Any]]:
        """The live captions of the session's room (the latest results), while they are on."""
        session = self._sessions.get(session_id)
        if session is None or session.meeting_id != meeting_id:
            raise WhipError(404, "not_found", "no such WHIP session (it ended or was replaced)")
        if self.captions is None:
            return []
        result: list[dict[str, Any]] = self.captions.transcripts(session.room.primary_meeting_id)
        return result

    # ------------------------------------------------------------------ promotion out of a replica

    async def promote(self, meeting_id: str, session_id: str, token: str | None) -> Attendee:
        """Chime's promote-to-primary on a WHIP session of a replica attendee: the same peer
        connection now counts as the primary attendee holding `token` (its capabilities, its
        voice in the primary's mix, AttendeeJoined for it). Refusals follow the SDK's statuses
        (https://aws.github.io/amazon-chime-sdk-js/modules/replicatedmeetings.html):
        AudioAuthenticationRejected (bad credentials: 401; not a replica session: 409) and, here,
        a token of another meeting than this replica's primary: 403."""
        session = self._session(meeting_id, session_id)
        if not token:
            raise WhipError(
                401, "unauthorized", "missing Authorization: Bearer <primary attendee's JoinToken>"
            )
        meeting = self._meeting(session.meeting_id)
        if meeting.primary_meeting_id is None:
            raise WhipError(409, "conflict", "only a session in a replica meeting can be promoted")
        primary = self.registry.attendee_by_token(token)
        if primary is None:
            if token in self._revoked:
                raise WhipError(
                    401, "unauthorized", "this primary attendee was deleted: its join token is revoked"
                )
            raise WhipError(401, "unauthorized", "unknown join token")
        if primary.meeting_id != meeting.primary_meeting_id:
            raise WhipError(
                403, "not_allowed", "this join token is not of an attendee of this replica's primary meeting"
            )
        if session.promoted is not None:
            if session.promoted.attendee_id == primary.attendee_id:
                return session.promoted  # promoted already: the same answer
            await self._demote(session)
        holder = self._promoted.get(primary.attendee_id)
        if holder is not None:
            await self._demote(holder)  # the same attendee promoted elsewhere: the newest wins
        direct = self._by_attendee.get(primary.attendee_id)
        if direct is not None:
            await self._end(direct, dropped=False)  # its own session in the primary: taken over
        session.promoted = primary
        self._promoted[primary.attendee_id] = session
        session.room.rekey(
            session.participant, primary.attendee_id, primary.external_user_id, primary.audio, replica=False
        )
        if session.connected:
            await self._registry_call(self.registry.audio_connected, primary.attendee_id)
        return primary

    async def demote(self, meeting_id: str, session_id: str) -> None:
        """`DELETE .../promotion`: the session is a replica listener again (demoteFromPrimaryMeeting)."""
        session = self._session(meeting_id, session_id)
        if session.promoted is None:
            raise WhipError(409, "conflict", "this session is not promoted")
        await self._demote(session)

    async def _demote(self, session: Session) -> None:
        primary = session.promoted
        if primary is None:
            return
        session.promoted = None
        if self._promoted.get(primary.attendee_id) is session:
            del self._promoted[primary.attendee_id]
        own = session.own
        assert own is not None
        current = self.registry.attendee_by_token(own.join_token) or own
        session.room.rekey(
            session.participant, own.attendee_id, own.external_user_id, current.audio, replica=True
        )
        if session.connected:
            await self._registry_call(self.registry.audio_disconnected, primary.attendee_id)

    def _session(self, meeting_id: str, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None or session.meeting_id != meeting_id:
            raise WhipError(404, "not_found", "no such WHIP session (it ended or was replaced)")
        return session

    def _authorize(self, meeting_id: str, token: str | None) -> Attendee:
        if not token:
            raise WhipError(401, "unauthorized", "missing Authorization: Bearer <JoinToken>")
        attendee = self.registry.attendee_by_token(token)
        if attendee is None:
            if token in self._revoked:
                raise WhipError(404, "not_found", "this attendee was deleted: its join token is revoked")
            self._meeting(meeting_id)  # 404 when the meeting itself is gone
            raise WhipError(401, "unauthorized", "unknown join token")
        if attendee.meeting_id != meeting_id:
            raise WhipError(403, "not_allowed", "this join token belongs to another meeting")
        return attendee

    def _meeting(self, meeting_id: str) -> Meeting:
        try:
            return self.registry.get_meeting(meeting_id)
        except ChimeError as exc:
            raise WhipError(404, "not_found", f"meeting {meeting_id} does not exist or has ended") from exc

    async def _admit(
        self, attendee: Attendee, meeting: Meeting, participant: Participant, pc: Any
    ) -> Session:
        holder = self._promoted.get(attendee.attendee_id)
        if holder is not None:
            # A primary attendee connecting on its own while a replica session is promoted with
            # it: the newest connection wins, as for two sessions of one attendee.
            await self._demote(holder)
        previous = self._by_attendee.get(attendee.attendee_id)
        if previous is not None and previous.promoted is not None:
            # A new connection is not promoted (Chime demotes on any reconnection): the client
            # promotes again with the same credentials.
            await self._demote(previous)
        if previous is not None:
            # A new offer replaces the old session (WHIP has no renegotiation: a speaker who
            # gains a sending capability may re-POST with a microphone). Not a disconnection
            # for the registry.
            previous.closed = True
            self._sessions.pop(previous.session_id, None)
            asyncio.get_running_loop().create_task(previous.pc.close())
        room_id = meeting.primary_meeting_id or meeting.meeting_id
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = Room(room_id, self._forget_room, self._taps.setdefault(room_id, []))
        session = Session(
            secrets.token_urlsafe(16),
            attendee.attendee_id,
            meeting.meeting_id,
            room,
            participant,
            pc,
            own=attendee,
        )
        self._sessions[session.session_id] = session
        self._by_attendee[attendee.attendee_id] = session
        room.add(participant)
        if previous is not None and previous.connected:
            session.connected = True

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected" and not session.connected:
                session.connected = True
                await self._registry_call(self.registry.audio_connected, session.attendee_id)
                if session.promoted is not None:  # promoted before the connection was up
                    await self._registry_call(self.registry.audio_connected, session.promoted.attendee_id)
            elif pc.connectionState in ("failed", "closed") and not session.closed:
                await self._end(session, dropped=True)

        return session

    async def _end(self, session: Session, *, dropped: bool) -> None:
        if session.closed:
            return
        await self._demote(session)  # a closing session is demoted first (AttendeeLeft for the primary)
        session.closed = True
        self._sessions.pop(session.session_id, None)
        if self._by_attendee.get(session.attendee_id) is session:
            del self._by_attendee[session.attendee_id]
        session.room.remove(session.participant.attendee_id, session.participant)
        await session.pc.close()
        if session.connected and self._by_attendee.get(session.attendee_id) is None:
            await self._registry_call(self.registry.audio_disconnected, session.attendee_id, dropped=dropped)

    async def _registry_call(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        # The registry may emit events that do I/O: keep the mixer's clock off it.
        await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))

    def _forget_room(self, room: Room) -> None:
        if self._rooms.get(room.primary_meeting_id) is room:
            del self._rooms[room.primary_meeting_id]

    async def _close_all(self) -> None:
        for session in list(self._sessions.values()):
            await self._end(session, dropped=True)
        # aiortc/aioice background tasks (consent checks, closing peers): cancel and await them,
        # so none is destroyed pending when the loop goes.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    # ------------------------------------------------------------------ registry observer (any thread)

    def capabilities_changed(self, attendee: Attendee) -> None:
        self._soon(self._apply_capabilities, attendee)

    def attendee_deleted(self, attendee: Attendee) -> None:
        self._soon(self._apply_deleted, attendee)

    def meeting_deleted(self, meeting: Meeting) -> None:
        self._soon(self._apply_meeting_deleted, meeting)

    def _soon(self, fn: Any, arg: Any) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, arg)

    def _apply_capabilities(self, attendee: Attendee) -> None:
        promoted = self._promoted.get(attendee.attendee_id)
        if promoted is not None:
            promoted.promoted = attendee
            promoted.participant.set_audio(attendee.audio)
            return
        session = self._by_attendee.get(attendee.attendee_id)
        if session is not None and session.promoted is None:  # a promoted session speaks as the primary
            session.participant.set_audio(attendee.audio)

    def _apply_deleted(self, attendee: Attendee) -> None:
        self._revoked.add(attendee.join_token)
        promoted = self._promoted.get(attendee.attendee_id)
        if promoted is not None:
            # DeleteAttendee of the primary attendee demotes; the replica connection goes on.
            asyncio.get_running_loop().create_task(self._demote(promoted))
        session = self._by_attendee.get(attendee.attendee_id)
        if session is not None:
            asyncio.get_running_loop().create_task(self._end(session, dropped=False))

    def _apply_meeting_deleted(self, meeting: Meeting) -> None:
        for session in [s for s in self._sessions.values() if s.meeting_id == meeting.meeting_id]:
            asyncio.get_running_loop().create_task(self._end(session, dropped=False))

    # ------------------------------------------------------------------ taps (any thread)

    def add_tap(self, primary_meeting_id: str, tap: Any) -> None:
        """Give `tap` every 20 ms frame of the meeting's mix (all its senders), from now on."""
        self._taps.setdefault(primary_meeting_id, []).append(tap)

    def remove_tap(self, primary_meeting_id: str, tap: Any) -> None:
        taps = self._taps.get(primary_meeting_id, [])
        if tap in taps:
            taps.remove(tap)

    # ------------------------------------------------------------------ figures

    async def snapshot(self) -> dict[str, Any]:
        """`stats()` read on the media loop (call it through `run`)."""
        return self.stats()

    def stats(self) -> dict[str, Any]:
        """Sessions and per-room mixer counters; read it on the media loop (or through `snapshot`)."""
        return {
            "sessions": len(self._sessions),
            "rooms": {room_id: room.stats() for room_id, room in self._rooms.items()},
        }
