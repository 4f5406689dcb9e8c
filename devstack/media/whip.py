"""WHIP signaling (RFC 9725 shape) for the embedded media server, as Starlette routes.

    POST   /media/whip/{MeetingId}              Content-Type: application/sdp,
                                                Authorization: Bearer <JoinToken>
           -> 201 Created, SDP answer, Location: /media/whip/{MeetingId}/{SessionId}
    DELETE /media/whip/{MeetingId}/{SessionId}  -> 200, the session ends
    GET    /media/whip/{MeetingId}/{SessionId}  -> 200 {"Volumes": [{AttendeeId, ExternalUserId,
                                                Volume}]}: who is heard and how loud (the local
                                                stand-in for Chime's volume indicators; the mix
                                                is one track, so a client cannot tell otherwise),
                                                "Transcripts": [...]}: the room's live captions
                                                while they are on (devstack/media/captions.py), the
                                                stand-in for Chime's transcript data messages

    POST   /media/whip/{MeetingId}/{SessionId}/promotion  Authorization: Bearer <primary JoinToken>
           -> 200 {"AttendeeId", "ExternalUserId", "Capabilities"}: a replica session now counts
              as that primary attendee (Chime's promoteToPrimaryMeeting; the connection is kept)
    DELETE /media/whip/{MeetingId}/{SessionId}/promotion  -> 200, demoted (demoteFromPrimaryMeeting)

A new POST with the same token replaces that attendee's session (WHIP has no
renegotiation: a listener promoted to the stage re-POSTs with a microphone).
Errors are JSON `{"code", "message"}` with the project's stable codes: 401
unauthorized (missing or unknown token), 403 not_allowed (token of another
meeting), 404 not_found (attendee deleted, meeting ended, unknown session),
415 bad_request (not application/sdp), 400 bad_request (unusable offer), 405
(trickle ICE PATCH is not supported: candidates are all in the offer/answer).
CORS is open (no cookies are used; the JoinToken is the credential).
"""

from __future__ import annotations

from typing import Any

from devstack.media.server import MediaServer, WhipError

PREFIX = "/media/whip"

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag",
    "Access-Control-Max-Age": "600",
}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(
        {"code": code, "message": message}, status_code=status, headers={**CORS, **(headers or {})}
    )


def _bearer(request: Any) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def routes(server: MediaServer) -> list[Any]:
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def endpoint(request: Any) -> Any:
        meeting_id = request.path_params["meeting_id"]
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={**CORS, "Accept-Post": "application/sdp"})
        if request.method != "POST":
            return _error(
                405, "bad_request", f"{request.method} is not supported here", {"Allow": "POST, OPTIONS"}
            )
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/sdp":
            return _error(415, "bad_request", "the offer must be sent as Content-Type: application/sdp")
        token = _bearer(request)
        body = (await request.body()).decode("utf-8", errors="replace")
        try:
            answer = await server.run(server.offer(meeting_id, token, body))
        except WhipError as err:
            return _error(err.status, err.code, err.message)
        location = f"{PREFIX}/{meeting_id}/{answer.session_id}"
        return Response(
            answer.sdp,
            status_code=201,
            media_type="application/sdp",
            headers={**CORS, "Location": location, "ETag": f'"{answer.session_id}"'},
        )

    async def session(request: Any) -> Any:
        meeting_id = request.path_params["meeting_id"]
        session_id = request.path_params["session_id"]
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=CORS)
        if request.method == "GET":
            try:
                volumes = await server.run(server.volumes(meeting_id, session_id))
                transcripts = await server.run(server.transcripts(meeting_id, session_id))
            except WhipError as err:
                return _error(err.status, err.code, err.message)
            body = {"Volumes": volumes, "Transcripts": transcripts}
            return JSONResponse(body, headers={**CORS, "Cache-Control": "no-store"})
        if request.method == "PATCH":
            # RFC 9725 §4.3: no trickle ICE or ICE restarts: 405.
            return _error(
                405, "bad_request", "trickle ICE is not supported: POST a new offer", {"Allow": "GET, DELETE"}
            )
        if request.method != "DELETE":
            allow = {"Allow": "GET, DELETE"}
            return _error(405, "bad_request", f"{request.method} is not supported here", allow)
        try:
            await server.run(server.leave(meeting_id, session_id))
        except WhipError as err:
            return _error(err.status, err.code, err.message)
        return Response(status_code=200, headers=CORS)

    async def promotion(request: Any) -> Any:
        meeting_id = request.path_params["meeting_id"]
        session_id = request.path_params["session_id"]
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=CORS)
        try:
            if request.method == "POST":
                primary = await server.run(server.promote(meeting_id, session_id, _bearer(request)))
                body = {
                    "AttendeeId": primary.attendee_id,
                    "ExternalUserId": primary.external_user_id,
                    "Capabilities": primary.capabilities,
                }
                return JSONResponse(body, headers=CORS)
            if request.method == "DELETE":
                await server.run(server.demote(meeting_id, session_id))
                return Response(status_code=200, headers=CORS)
        except WhipError as err:
            return _error(err.status, err.code, err.message)
        allow = {"Allow": "POST, DELETE, OPTIONS"}
        return _error(405, "bad_request", f"{request.method} is not supported here", allow)

    every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return [
        Route(PREFIX + "/{meeting_id}", endpoint, methods=every),
        Route(PREFIX + "/{meeting_id}/{session_id}", session, methods=every),
        Route(PREFIX + "/{meeting_id}/{session_id}/promotion", promotion, methods=every),
    ]
