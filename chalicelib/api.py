"""REST plumbing: the caller's identity, JSON bodies, and errors as stable codes."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from chalice import Response
from pydantic import BaseModel, ValidationError

from chalicelib import auth
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.jsonin import load_json
from chalicelib.observability import logger
from chalicelib.protocol import ID_PATTERN

M = TypeVar("M", bound=BaseModel)
P = ParamSpec("P")
ID_RE = re.compile(ID_PATTERN)

HTTP_STATUS = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.NOT_ALLOWED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.LIMIT_REACHED: 409,
    ErrorCode.SPACE_ENDED: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL: 500,
}


def error_response(code: ErrorCode, message: str, data: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"code": code.value, "message": message}
    if data:
        body["data"] = data
    return Response(body=body, status_code=HTTP_STATUS[code], headers={"Content-Type": "application/json"})


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def caller(request: Any) -> auth.Identity:
    """The verified caller. A suspended account reads but changes nothing: every REST request
    that writes is refused here, the one door they all pass (the WebSocket's are $connect and
    space.join, chalicelib/commands.py)."""
    try:
        identity = auth.identity_from_bearer(request.headers or {})
    except auth.AuthError as exc:
        raise CommandError(ErrorCode.UNAUTHORIZED, exc.message) from None
    if request.method not in READ_METHODS:
        from chalicelib import suspensions

        refusal = suspensions.refusal(identity.user_id)
        if refusal is not None:
            raise refusal
    return identity


def admin(request: Any) -> auth.Identity:
    identity = caller(request)
    if not identity.is_admin:
        raise CommandError(ErrorCode.NOT_ALLOWED, "admins only")
    return identity


def body_as(request: Any, model: type[M]) -> M:
    raw = request.raw_body or b""
    try:
        data = load_json(raw) if raw else {}
    except ValueError as exc:
        message = str(exc) if "nested" in str(exc) else "body is not valid JSON"
        raise CommandError(ErrorCode.BAD_REQUEST, message) from None
    if not isinstance(data, dict):
        raise CommandError(ErrorCode.BAD_REQUEST, "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc, "body") from None


def query_as(request: Any, model: type[M]) -> M:
    """The query string, validated by a pydantic model (unknown parameters are refused)."""
    try:
        return model.model_validate(dict(request.query_params or {}))
    except ValidationError as exc:
        raise _invalid(exc, "query") from None


def _invalid(exc: ValidationError, what: str) -> CommandError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or what
    return CommandError(ErrorCode.BAD_REQUEST, f"{where}: {first['msg']}")


def endpoint(func: Callable[P, Any]) -> Callable[P, Any]:
    """A REST handler whose refusals become {"code", "message"} with their HTTP status."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            result = func(*args, **kwargs)
        except CommandError as exc:
            return error_response(exc.code, exc.message, exc.data)
        except Exception:
            logger.exception("unhandled error in REST handler")
            return error_response(ErrorCode.INTERNAL, "internal error")
        return result

    return wrapper


def path_id(value: str, what: str) -> str:
    if not ID_RE.fullmatch(value):
        raise CommandError(ErrorCode.NOT_FOUND, f"{what} not found")
    return value


NO_SUCH_ROUTE = "no such route"

# Chalice answers a few requests itself, before any view runs (a Content-Type other
# than JSON: 415), with {"Code", "Message"}; clients get our shape and codes instead.
_CHALICE_STATUS = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.NOT_ALLOWED,
    404: ErrorCode.NOT_FOUND,
    # A method the route does not serve. In AWS, API Gateway answers it before the app,
    # as for an unknown path: the template's MISSING_AUTHENTICATION_TOKEN response.
    405: ErrorCode.NOT_FOUND,
    415: ErrorCode.BAD_REQUEST,
    500: ErrorCode.INTERNAL,
}


def uniform_errors(response: Response) -> Response:
    body = response.body
    code = _CHALICE_STATUS.get(response.status_code)
    if code is None or not isinstance(body, dict) or set(body) != {"Code", "Message"}:
        return response
    message = {415: "Content-Type must be application/json", 405: NO_SUCH_ROUTE}.get(
        response.status_code, str(body["Message"])
    )
    answer = error_response(code, message)
    for name, value in (response.headers or {}).items():
        if name.lower() != "content-type":
            answer.headers[name] = value
    return answer
