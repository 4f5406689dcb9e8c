"""GET /dev/pushes: the mobile pushes the app "sent" through moto's SNS, per device.

In AWS, SNS hands a Publish to APNs or FCM; locally moto keeps it on the platform
endpoint (devstack/moto_server.py serves them). An app developer on `make dev` sees here
what each registered device would have shown. `?user_id=ada` narrows it to one user.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import urllib.request
from typing import Any

from devstack.moto_server import PUSHES_PATH

# SNS platform -> the platform name the REST API uses (chalicelib/notifications/rules.py)
PLATFORMS = {"APNS": "apns", "APNS_SANDBOX": "apns_sandbox", "GCM": "fcm"}


def _payload(platform: str, message: str) -> dict[str, Any]:
    """What the device gets: the platform's own payload of a MessageStructure=json message."""
    try:
        structured = json.loads(message)
        raw = structured.get(platform, structured.get("default"))
        parsed = json.loads(raw) if isinstance(raw, str) and raw.startswith("{") else raw
        return {"default": structured.get("default"), "payload": parsed}
    except (ValueError, AttributeError):
        return {"default": message, "payload": message}


def pushes(moto_endpoint: str, user_id: str | None = None) -> dict[str, Any]:
    with urllib.request.urlopen(moto_endpoint + PUSHES_PATH, timeout=10) as response:
        endpoints = json.loads(response.read())["endpoints"]
    devices = []
    for endpoint in endpoints:
        owner = endpoint["custom_user_data"] or None
        if user_id is not None and owner != user_id:
            continue
        devices.append(
            {
                "user_id": owner,
                "device_id": hashlib.sha256(endpoint["token"].encode()).hexdigest()[:32],
                "platform": PLATFORMS.get(endpoint["platform"], endpoint["platform"]),
                "endpoint_arn": endpoint["arn"],
                "enabled": endpoint["enabled"],
                "pushes": [
                    {"message_id": m["message_id"], **_payload(endpoint["platform"], m["message"])}
                    for m in endpoint["messages"]
                ],
            }
        )
    return {"devices": devices}


def route(moto_endpoint: str) -> Any:
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def handle(request: Any) -> Any:
        user_id = request.query_params.get("user_id")
        return JSONResponse(await asyncio.to_thread(pushes, moto_endpoint, user_id))

    return Route("/dev/pushes", handle, methods=["GET"])
