"""Mobile devices: push tokens registered over REST, as Amazon SNS platform endpoints.

A device is kept on its user's item (`devices`: {device_id: {platform, endpoint_arn,
registered_at}}) so the fan-out reads every follower's devices with the same BatchGetItem
that reads their suspension; `DeviceOwner` says whose a token is now. An endpoint SNS
reports disabled or gone (the platform said the token is invalid) is deleted with the
device, never published to again.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from pynamodb.exceptions import DeleteError, DoesNotExist, UpdateError
from pynamodb.expressions.condition import size

from chalicelib import clients
from chalicelib.clock import now_iso
from chalicelib.config import get_settings
from chalicelib.db import condition_failed
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import DeviceOwner, User
from chalicelib.notifications.rules import device_id
from chalicelib.observability import logger

# CreatePlatformEndpoint refuses a token whose endpoint exists with other attributes
# (e.g. disabled), naming that endpoint in its message.
_EXISTING = re.compile(r"Endpoint (arn:\S+) already exists")


class RegisterDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    platform: Literal["apns", "apns_sandbox", "fcm"]
    # APNs tokens are 64 hex characters, FCM registration tokens ~160-250 visible characters
    token: StrictStr = Field(min_length=8, max_length=4096, pattern=r"^[\x21-\x7e]+$")


def _application_arn(platform: str) -> str:
    settings = get_settings()
    arn = {
        "apns": settings.apns_platform_application_arn,
        "apns_sandbox": settings.apns_sandbox_platform_application_arn,
        "fcm": settings.fcm_platform_application_arn,
    }[platform]
    if not arn:
        raise CommandError(ErrorCode.BAD_REQUEST, f"push to {platform} devices is not configured")
    return arn


def _endpoint(application_arn: str, token: str, user_id: str) -> str:
    """An enabled endpoint for this token, whatever state an earlier registration left.

    The flow AWS recommends: create (returns the existing endpoint for the same token and
    attributes), then make sure its token is this one and it is enabled.
    https://docs.aws.amazon.com/sns/latest/dg/mobile-platform-endpoint.html
    """
    sns = clients.sns()
    try:
        arn: str = sns.create_platform_endpoint(
            PlatformApplicationArn=application_arn, Token=token, CustomUserData=user_id
        )["EndpointArn"]
    except ClientError as exc:
        found = _EXISTING.search(exc.response.get("Error", {}).get("Message", ""))
        if exc.response.get("Error", {}).get("Code") != "InvalidParameter" or not found:
            raise
        arn = found.group(1)
    attributes = sns.get_endpoint_attributes(EndpointArn=arn)["Attributes"]
    if (
        attributes.get("Token") != token
        or str(attributes.get("Enabled")).lower() != "true"
        or attributes.get("CustomUserData") != user_id
    ):
        sns.set_endpoint_attributes(
            EndpointArn=arn, Attributes={"Token": token, "Enabled": "true", "CustomUserData": user_id}
        )
    return arn


def _user_devices(user_id: str) -> dict[str, Any]:
    try:
        user = User.get(user_id, consistent_read=True, attributes_to_get=["user_id", "devices"])
    except DoesNotExist:
        return {}
    return dict(user.devices.as_dict()) if user.devices else {}


def view(device: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {"device_id": device, "platform": entry["platform"], "registered_at": entry["registered_at"]}


def register(user_id: str, body: RegisterDevice) -> dict[str, Any]:
    """Register (or refresh) a token; the same token again is the same device."""
    device = device_id(body.token)
    most = get_settings().max_devices_per_user
    current = _user_devices(user_id)
    if device not in current and len(current) >= most:
        raise CommandError(ErrorCode.LIMIT_REACHED, f"at most {most} devices per user; remove one first")
    arn = _endpoint(_application_arn(body.platform), body.token, user_id)
    entry = {"platform": body.platform, "endpoint_arn": arn, "registered_at": now_iso()}
    _ensure_map(user_id)
    try:
        User(user_id).update(
            actions=[User.devices[device].set(entry)],
            condition=(size(User.devices) < most) | User.devices[device].exists(),
        )
    except UpdateError as exc:
        if condition_failed(exc):
            raise CommandError(
                ErrorCode.LIMIT_REACHED, f"at most {most} devices per user; remove one first"
            ) from None
        raise
    _take_ownership(device, user_id, arn)
    return view(device, entry)


def _ensure_map(user_id: str) -> None:
    # A path inside `devices` can only be set once the map exists.
    try:
        User(user_id).update(actions=[User.devices.set({})], condition=User.devices.does_not_exist())
    except UpdateError as exc:
        if not condition_failed(exc):
            raise


def _take_ownership(device: str, user_id: str, arn: str) -> None:
    key = f"device#{device}"
    try:
        previous = DeviceOwner.get(key, consistent_read=True).owner_id
    except DoesNotExist:
        previous = None
    DeviceOwner(key, owner_id=user_id, endpoint_arn=arn).save()
    if previous and previous != user_id:
        # the phone changed hands: the last owner's notifications must not reach it
        _forget(previous, device)


def _forget(user_id: str, device: str) -> bool:
    """Remove a device from a user's item (False: it was not there)."""
    try:
        User(user_id).update(actions=[User.devices[device].remove()], condition=User.devices[device].exists())
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def unregister(user_id: str, device: str) -> None:
    entry = _user_devices(user_id).get(device)
    if entry is None:
        raise CommandError(ErrorCode.NOT_FOUND, "device not found")
    _forget(user_id, device)
    _delete_endpoint(entry["endpoint_arn"])
    _disown(device, user_id)


def _disown(device: str, user_id: str) -> None:
    try:
        DeviceOwner(f"device#{device}").delete(condition=DeviceOwner.owner_id == user_id)
    except DeleteError as exc:
        if not condition_failed(exc):
            raise  # else: another user owns it now, or it is gone already


def _delete_endpoint(arn: str) -> None:
    try:
        clients.sns().delete_endpoint(EndpointArn=arn)  # idempotent in SNS
    except ClientError:
        logger.warning("could not delete an SNS endpoint", extra={"endpoint_arn": arn})


def listing(user_id: str) -> dict[str, Any]:
    devices = _user_devices(user_id)
    return {"data": [view(d, e) for d, e in sorted(devices.items(), key=lambda p: p[1]["registered_at"])]}


def remove_dead(user_id: str, device: str, arn: str) -> None:
    """SNS said the endpoint is disabled or gone: the token is invalid; drop the device."""
    _forget(user_id, device)
    _delete_endpoint(arn)
    _disown(device, user_id)
