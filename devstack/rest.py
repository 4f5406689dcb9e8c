"""The app's REST routes, dispatched by Chalice's own local gateway machinery."""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import Executor
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

_PATH_SAFE = "/:@!$&'()*+,=-._~"


class RestGateway:
    def __init__(self, app: Any, stage: str, executor: Executor) -> None:
        from chalice.config import Config
        from chalice.local import CustomLocalChalice, LocalChalice, LocalGateway

        # As `chalice local` does: a thread-local current_request, since
        # requests are served from many threads at once.
        if not isinstance(app, LocalChalice):
            CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
            app.__class__ = CustomLocalChalice
        self._gateway = LocalGateway(app, Config.create(chalice_app=app, chalice_stage=stage))
        self._executor = executor

    async def handle(self, request: Request) -> Response:
        from chalice.local import LocalGatewayException

        body = await request.body()
        # The decoded path, with what Chalice's route matcher (urlparse) would cut off
        # or mistake (; ? # and control characters) quoted again: API Gateway keeps
        # them inside their path segment. (request.url.path would drop newlines.)
        path = quote(request.scope["path"], safe=_PATH_SAFE)
        if request.url.query:
            path += "?" + request.url.query
        headers = {k: v for k, v in request.headers.items()}
        loop = asyncio.get_running_loop()
        try:
            result: dict[str, Any] = await loop.run_in_executor(
                self._executor, self._gateway.handle_request, request.method, path, headers, body or None
            )
        except LocalGatewayException as error:
            if error.CODE == 403:
                # No such route: API Gateway's MISSING_AUTHENTICATION_TOKEN, which the
                # template turns into the uniform 404 (infra/template.yaml, RestAPI).
                # Chalice's imitation of the default would echo the Authorization header.
                return JSONResponse({"code": "not_found", "message": "no such route"}, status_code=404)
            return Response(error.body or b"", status_code=error.CODE, headers=dict(error.headers))
        return _to_response(result)


def _to_response(result: dict[str, Any]) -> Response:
    raw = result.get("body")
    if raw is None:
        content = b""
    elif result.get("isBase64Encoded"):
        content = base64.b64decode(raw)
    else:
        content = raw.encode("utf-8") if isinstance(raw, str) else raw
    response = Response(content, status_code=int(result.get("statusCode", 200)))
    for name, value in (result.get("headers") or {}).items():
        response.headers[name] = str(value)
    for name, values in (result.get("multiValueHeaders") or {}).items():
        for value in values:
            response.headers.append(name, str(value))
    if "content-type" not in response.headers:
        # API Gateway's default when a proxy integration's response names none
        response.headers["Content-Type"] = "application/json"
    return response
