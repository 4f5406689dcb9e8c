"""The local identity provider: a stand-in for the Cognito user pool. Never deployed.

It mints tokens shaped like Cognito ID tokens, signed RS256 with a key pair made
at start, and serves the public half as a JWKS. The app verifies them with the
same chalicelib.auth.TokenVerifier that checks real Cognito tokens in AWS; only
the configured issuer, audience and JWKS URL differ.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any
from urllib.parse import urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["LocalIdentityProvider", "jwks_path", "routes"]

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_TTL_SECONDS = 24 * 60 * 60
MAX_GROUPS = 32


class LocalIdentityProvider:
    """Holds one RSA-2048 key pair for the life of the process and signs with it."""

    def __init__(self, issuer: str, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid = "local-" + secrets.token_hex(8)
        self._private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def mint(self, user: str, groups: list[str] | None = None, ttl_seconds: int = 3600) -> str:
        """A signed Cognito-shaped ID token for `user` (sub and username are both `user`)."""
        _check_name(user, "user")
        for group in groups or []:
            _check_name(group, "group")
        if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
            raise ValueError(f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}")
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": user,
            "cognito:username": user,
            "iss": self.issuer,
            "aud": self.audience,
            "token_use": "id",
            "auth_time": now,
            "iat": now,
            "exp": now + ttl_seconds,
            "jti": secrets.token_hex(16),
        }
        if groups:
            claims["cognito:groups"] = list(groups)
        return jwt.encode(claims, self._private_key, algorithm="RS256", headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        """The public key set, as Cognito publishes it at .well-known/jwks.json."""
        jwk = RSAAlgorithm.to_jwk(self._private_key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        return {"keys": [jwk]}


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValueError(f"{what} must match {NAME_RE.pattern}")
    return value


def jwks_path(issuer: str) -> str:
    """Where the JWKS lives: the issuer's path + /.well-known/jwks.json, as in Cognito."""
    return urlparse(issuer).path.rstrip("/") + "/.well-known/jwks.json"


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"code": "bad_request", "message": message}, status_code=400)


def routes(idp: LocalIdentityProvider) -> list[Route]:
    """`POST /dev/token` to mint a token and `GET {issuer path}/.well-known/jwks.json`."""

    async def token(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _bad_request("body must be JSON")
        if not isinstance(body, dict):
            return _bad_request("body must be a JSON object")
        user = body.get("user")
        if not isinstance(user, str) or not NAME_RE.fullmatch(user):
            return _bad_request("user is required and must match " + NAME_RE.pattern)
        groups = body.get("groups", [])
        if (
            not isinstance(groups, list)
            or len(groups) > MAX_GROUPS
            or not all(isinstance(g, str) and NAME_RE.fullmatch(g) for g in groups)
        ):
            return _bad_request(f"groups must be a list of at most {MAX_GROUPS} names")
        ttl = body.get("ttl_seconds", 3600)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= MAX_TTL_SECONDS:
            return _bad_request(f"ttl_seconds must be an integer from 1 to {MAX_TTL_SECONDS}")
        groups = list(dict.fromkeys(groups))
        minted = idp.mint(user, groups, ttl)
        return JSONResponse({"token": minted, "user": user, "groups": groups, "expires_in": ttl})

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(idp.jwks(), headers={"Cache-Control": "max-age=300"})

    return [
        Route("/dev/token", token, methods=["POST"]),
        Route(jwks_path(idp.issuer), jwks, methods=["GET"]),
    ]
