"""Verification of Amazon Cognito user-pool JWTs.

This is the only code path that turns a token into an identity, in production
and in the local stack alike (the local identity provider in devstack/ mints
Cognito-shaped tokens and serves its own JWKS). Only the issuer, audience and
JWKS URL differ, and those come from configuration.

Importing this module does no network I/O and does not import PyJWT or
cryptography: handlers that never authenticate pay nothing at cold start.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

__all__ = [
    "AuthError",
    "Identity",
    "TokenVerifier",
    "addressable",
    "get_verifier",
    "identity_from_bearer",
    "identity_from_query",
    "identity_from_token",
]

logger = logging.getLogger(__name__)

ADMIN_GROUP = "admins"
ALGORITHM = "RS256"
_MAX_TOKEN_CHARS = 16 * 1024
_MAX_JWKS_BYTES = 1024 * 1024
_MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class Identity:
    """Who the caller is, taken only from a verified token."""

    user_id: str
    groups: frozenset[str]
    username: str
    # the token's `exp`, epoch s: a socket's identity ends there (not part of who it is)
    expires_at: int | None = field(default=None, compare=False)

    @property
    def is_admin(self) -> bool:
        return ADMIN_GROUP in self.groups


class AuthError(Exception):
    """Authentication failed. `message` is safe to show to the client."""

    code = "unauthorized"

    def __init__(self, message: str = "unauthorized") -> None:
        super().__init__(message)
        self.message = message


class _JwksUnavailable(Exception):
    """No keys could be obtained from the JWKS endpoint."""


class TokenVerifier:
    """Verifies RS256 Cognito ID and access tokens against a cached JWKS.

    The JWKS is fetched on first use and kept for `jwks_cache_seconds`. A token
    whose `kid` is not in the cache forces one refetch (key rotation), but at most
    one per `refetch_cooldown_seconds`, so a flood of made-up kids cannot turn
    into a flood of requests to the JWKS endpoint. After a failed fetch no new
    attempt is made for `failure_backoff_seconds`; keys already held are kept.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks_url: str,
        leeway_seconds: int = 30,
        jwks_cache_seconds: int = 3600,
        *,
        refetch_cooldown_seconds: float = 60.0,
        failure_backoff_seconds: float = 5.0,
        fetch_timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("auth issuer and audience must be configured")
        if urlparse(jwks_url).scheme not in ("http", "https"):
            raise ValueError(f"JWKS URL must be http(s): {jwks_url!r}")
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.leeway_seconds = leeway_seconds
        self.jwks_cache_seconds = jwks_cache_seconds
        self.refetch_cooldown_seconds = refetch_cooldown_seconds
        self.failure_backoff_seconds = failure_backoff_seconds
        self.fetch_timeout_seconds = fetch_timeout_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, RSAPublicKey] = {}
        self._fetched_at: float | None = None
        self._refetched_at: float | None = None
        self._failed_at: float | None = None
        self.fetch_count = 0

    # -- public ------------------------------------------------------------

    def verify(self, token: str) -> Identity:
        """Return the identity in `token` or raise AuthError."""
        import jwt

        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
            raise AuthError("invalid token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("invalid token") from None
        # Checked before any key lookup: `none` and HS256 (algorithm confusion)
        # are refused outright and can never trigger a JWKS refetch.
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str) or not kid:
            raise AuthError("invalid token")
        try:
            key = self._key_for(kid)
        except _JwksUnavailable:
            raise AuthError("token could not be verified") from None
        if key is None:
            logger.info("token rejected: unknown kid")
            raise AuthError("invalid token")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["exp", "iss", "sub", "token_use"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not yet valid") from None
        except jwt.PyJWTError as exc:
            logger.info("token rejected: %s", type(exc).__name__)
            raise AuthError("invalid token") from None
        return self._identity(claims)

    # -- claims --------------------------------------------------------------

    def _identity(self, claims: dict[str, Any]) -> Identity:
        """Check the Cognito-specific claims; the signature is already verified."""
        token_use = claims.get("token_use")
        if token_use == "id":
            aud = claims.get("aud")
            ok = aud == self.audience or (isinstance(aud, list) and self.audience in aud)
        elif token_use == "access":
            ok = claims.get("client_id") == self.audience
        else:
            ok = False
        if not ok:
            logger.info("token rejected: audience/client_id/token_use mismatch")
            raise AuthError("invalid token")

        sub = claims.get("sub")
        groups = claims.get("cognito:groups", [])
        if not isinstance(sub, str) or not sub:
            raise AuthError("invalid token")
        if not addressable(sub):
            # Refused, not normalised: mapping two subjects onto one id would merge two people.
            logger.info("token rejected: subject is not an addressable user id")
            raise AuthError("this account's user id is not supported")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise AuthError("invalid token")
        username = sub
        for name in ("cognito:username", "username"):
            value = claims.get(name)
            if isinstance(value, str) and value:
                username = value
                break
        exp = claims["exp"]
        expires_at = int(exp) if isinstance(exp, int | float) else None
        return Identity(user_id=sub, groups=frozenset(groups), username=username, expires_at=expires_at)

    # -- keys ----------------------------------------------------------------

    def _key_for(self, kid: str) -> RSAPublicKey | None:
        with self._lock:
            now = self._clock()
            fetched_now = False
            if self._fetched_at is None or now - self._fetched_at >= self.jwks_cache_seconds:
                fetched_now = self._refresh(now)
                if not self._keys:
                    raise _JwksUnavailable
            key = self._keys.get(kid)
            if key is not None or fetched_now:
                return key
            if self._refetched_at is not None and now - self._refetched_at < self.refetch_cooldown_seconds:
                return None
            self._refetched_at = now
            self._refresh(now)
            return self._keys.get(kid)

    def _refresh(self, now: float) -> bool:
        """Fetch the JWKS; on failure keep whatever keys are already held."""
        if self._failed_at is not None and now - self._failed_at < self.failure_backoff_seconds:
            return False
        try:
            keys = self._fetch()
        except Exception:
            self._failed_at = now
            logger.exception("JWKS fetch from %s failed", self.jwks_url)
            return False
        self._keys = keys
        self._fetched_at = now
        self._failed_at = None
        return True

    def _fetch(self) -> dict[str, RSAPublicKey]:
        import urllib.request

        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
        from jwt.algorithms import RSAAlgorithm

        self.fetch_count += 1
        request = urllib.request.Request(self.jwks_url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=self.fetch_timeout_seconds) as response:
            body = response.read(_MAX_JWKS_BYTES + 1)
        if len(body) > _MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
        document = json.loads(body)
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError("JWKS document has no 'keys' list")
        keys: dict[str, RSAPublicKey] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("kty") != "RSA":
                continue
            kid = entry.get("kid")
            if not isinstance(kid, str) or entry.get("use", "sig") != "sig":
                continue
            if entry.get("alg", ALGORITHM) != ALGORITHM:
                continue
            try:
                key = RSAAlgorithm.from_jwk(entry)
            except Exception:
                logger.warning("skipping unusable JWKS key %r", kid)
                continue
            if isinstance(key, RSAPrivateKey):
                key = key.public_key()
            if isinstance(key, RSAPublicKey) and key.key_size >= _MIN_RSA_BITS:
                keys[kid] = key
        if not keys:
            raise ValueError("JWKS document has no usable RS256 keys")
        return keys


# -- module-level helpers ------------------------------------------------------

# The user ids commands and paths can name (chalicelib.protocol.ID_PATTERN): a token
# whose subject is anything else (spaces, '#', control characters, over 64 characters)
# would make a user nobody could mute, remove, block or report. Cognito's `sub` is a
# UUID, always addressable. Kept in step with ID_PATTERN by tests/unit/test_auth.py.
USER_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def addressable(user_id: str) -> bool:
    return bool(USER_ID_RE.fullmatch(user_id))


@lru_cache(maxsize=1)
def get_verifier() -> TokenVerifier:
    """The process-wide verifier, built from settings on first use.

    Raises ValueError when auth is not configured. `get_verifier.cache_clear()`
    rebuilds it after the environment changes (tests, local stack).
    """
    from chalicelib.config import get_settings

    settings = get_settings()
    return TokenVerifier(settings.auth_issuer, settings.auth_audience, settings.auth_jwks_url)


def _verify(token: str, verifier: TokenVerifier | None) -> Identity:
    if verifier is None:
        try:
            verifier = get_verifier()
        except ValueError:
            logger.exception("auth is misconfigured")
            raise AuthError("token could not be verified") from None
    return verifier.verify(token)


def identity_from_bearer(headers: Mapping[str, str], verifier: TokenVerifier | None = None) -> Identity:
    """Identity from an `Authorization: Bearer <jwt>` header (REST API)."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    parts = value.split() if isinstance(value, str) else []
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise AuthError("missing bearer token")
    return _verify(parts[1], verifier)


def identity_from_token(value: str, verifier: TokenVerifier | None = None) -> Identity:
    """Identity from a bare JWT or `Bearer <jwt>` (the broadcast tier's Authorization header)."""
    parts = value.split() if isinstance(value, str) else []
    if len(parts) == 2 and parts[0].lower() == "bearer":
        parts = parts[1:]
    if len(parts) != 1:
        raise AuthError("missing token")
    return _verify(parts[0], verifier)


def identity_from_query(params: Mapping[str, str] | None, verifier: TokenVerifier | None = None) -> Identity:
    """Identity from the `ticket` (single use, recommended) or `token` query parameter of $connect.

    WebSocket $connect has no headers a browser can set. With both, the ticket is used.
    """
    ticket = (params or {}).get("ticket")
    if ticket is not None:
        from chalicelib import tickets

        return tickets.redeem(ticket)
    token = (params or {}).get("token")
    if not isinstance(token, str) or not token.strip():
        raise AuthError("missing token")
    return _verify(token.strip(), verifier)
