"""The web client (web/) as static files: the page at `/`, the admin console at `/admin` and
`/admin/` (web/admin/index.html; its links are relative, so a copy of web/ on any static host
works the same), their modules under `/app/`, the Chime SDK bundle (built by `make web`) under
`/vendor/`. No REST or WebSocket path lies under these (`/admin/cases`… stay the admin API's),
and a WebSocket upgrade at `/` still reaches the gateway (another scope type)."""

from __future__ import annotations

from typing import Any

from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from devstack.aws import REPO

WEB = REPO / "web"


class _Revalidated(StaticFiles):
    # Plain ES modules, no build and no hashed names: make the browser revalidate each time.
    def file_response(self, *args: Any, **kwargs: Any) -> Any:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


async def _index(request: Any) -> FileResponse:
    return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})


async def _admin(request: Any) -> FileResponse:
    return FileResponse(WEB / "admin" / "index.html", headers={"Cache-Control": "no-cache"})


def routes() -> list[Any]:
    return [
        Route("/", _index, methods=["GET", "HEAD"]),
        Route("/index.html", _index, methods=["GET", "HEAD"]),
        Route("/admin", _admin, methods=["GET", "HEAD"]),
        Route("/admin/", _admin, methods=["GET", "HEAD"]),
        Mount("/app", _Revalidated(directory=WEB / "app")),
        Mount("/vendor", _Revalidated(directory=WEB / "vendor", check_dir=False)),
    ]
