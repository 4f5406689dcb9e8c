"""Single-use WebSocket connect tickets: `POST /ws/ticket` (Bearer JWT) → `wss://…?ticket=…`.

A JWT in the connect URL lands in access logs and browser history for its whole
life (an hour or more). A ticket lives TICKET_TTL_SECONDS, opens one socket and is
gone: redeeming it is one conditional DeleteItem, so a replay finds nothing.
Only its SHA-256 is stored, so the table holds nothing a reader could connect with.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from pynamodb.constants import ALL_OLD
from pynamodb.exceptions import DeleteError

from chalicelib.auth import AuthError, Identity
from chalicelib.config import get_settings
from chalicelib.db import condition_failed
from chalicelib.models import Ticket

# secrets.token_urlsafe(32): 43 characters of the urlsafe base64 alphabet
TICKET_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def _hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def issue(identity: Identity) -> dict[str, Any]:
    """A new ticket for `identity`; it never outlives the token that bought it."""
    now = int(time.time())
    expires_at = now + get_settings().ticket_ttl_seconds
    if identity.expires_at is not None:
        expires_at = min(expires_at, int(identity.expires_at))
    ticket = secrets.token_urlsafe(32)
    Ticket(
        _hash(ticket),
        user_id=identity.user_id,
        username=identity.username,
        groups=set(identity.groups) or None,
        token_exp=identity.expires_at,
        expires_at=expires_at,
    ).save(condition=Ticket.ticket_hash.does_not_exist())
    when = datetime.fromtimestamp(expires_at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"ticket": ticket, "expires_at": when, "expires_in": expires_at - now}


def redeem(ticket: str) -> Identity:
    """The identity a ticket was issued to; the ticket is consumed. AuthError if unusable."""
    if not isinstance(ticket, str) or not TICKET_RE.fullmatch(ticket):
        raise AuthError("invalid ticket")
    now = int(time.time())
    try:
        # TTL deletion lags by up to days: validity is checked in the condition.
        response = Ticket._get_connection().delete_item(
            _hash(ticket),
            condition=Ticket.ticket_hash.exists() & (Ticket.expires_at > now),
            return_values=ALL_OLD,
        )
    except DeleteError as exc:
        if condition_failed(exc):
            raise AuthError("invalid, expired or used ticket") from None
        raise
    item = Ticket.from_raw_data(response["Attributes"])
    return Identity(
        user_id=item.user_id,
        groups=frozenset(item.groups or ()),
        username=item.username,
        expires_at=int(item.token_exp) if item.token_exp is not None else None,
    )
