"""TokenVerifier against a JWKS served over real HTTP on loopback, and the local IdP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.testclient import TestClient

from chalicelib import auth
from chalicelib.auth import (
    USER_ID_RE,
    AuthError,
    Identity,
    TokenVerifier,
    addressable,
    identity_from_bearer,
    identity_from_query,
)
from chalicelib.protocol import ID_PATTERN
from devstack.idp import LocalIdentityProvider, jwks_path, routes

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TEST"
CLIENT_ID = "app-client-123"
REPO_ROOT = Path(__file__).resolve().parents[2]
NO_GROUPS: dict[str, Any] = {"cognito:groups": None}
NO_USERNAME: dict[str, Any] = {"cognito:username": None}


# -- fixtures --------------------------------------------------------------------


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    entry = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    entry.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return entry


class JwksServer:
    """A real HTTP server on 127.0.0.1 that serves `keys` and counts requests."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.hits = 0
        self.down = False
        self.body: bytes | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                if outer.down:
                    self.send_error(503)
                    return
                body = outer.body if outer.body is not None else json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def reset(self, keys: list[dict[str, Any]]) -> None:
        self.keys, self.hits, self.down, self.body = keys, 0, False, None

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def _server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


@pytest.fixture
def server(_server: JwksServer, key: rsa.RSAPrivateKey) -> JwksServer:
    _server.reset([_jwk(key, "k1")])
    return _server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(server: JwksServer, clock: Clock) -> TokenVerifier:
    return TokenVerifier(ISSUER, CLIENT_ID, server.url, clock=clock)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "u-1",
        "cognito:username": "ada",
        "cognito:groups": ["admins", "staff"],
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "token_use": "id",
        "auth_time": now,
        "iat": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: rsa.RSAPrivateKey, kid: str = "k1", **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), key, algorithm="RS256", headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assemble(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())


def rejects(verifier: TokenVerifier, token: str, message: str = "invalid token") -> None:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    assert info.value.code == "unauthorized"
    assert info.value.message == message


# -- valid tokens ------------------------------------------------------------------


def test_valid_id_token_gives_identity_with_groups(verifier: TokenVerifier, key: rsa.RSAPrivateKey) -> None:
    identity = verifier.verify(sign(key))
    assert identity == Identity(user_id="u-1", groups=frozenset({"admins", "staff"}), username="ada")
    assert identity.is_admin


def test_token_without_groups_or_username(verifier: TokenVerifier, key: rsa.RSAPrivateKey) -> None:
    identity = verifier.verify(sign(key, **NO_GROUPS, **NO_USERNAME))
    assert identity == Identity(user_id="u-1", groups=frozenset(), username="u-1")
    assert not identity.is_admin


def test_jwks_is_fetched_once_and_cached(
    verifier: TokenVerifier, server: JwksServer, key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    for _ in range(5):
        verifier.verify(sign(key))
    assert server.hits == 1
    clock.now += 3600  # cache lifetime passed: one refresh
    verifier.verify(sign(key))
    assert server.hits == 2


def test_access_token_checks_client_id(verifier: TokenVerifier, key: rsa.RSAPrivateKey) -> None:
    access: dict[str, Any] = {"token_use": "access", "aud": None, "username": "ada", "cognito:username": None}
    identity = verifier.verify(sign(key, client_id=CLIENT_ID, **access))
    assert identity.username == "ada" and identity.is_admin
    rejects(verifier, sign(key, client_id="someone-else", **access))
    rejects(verifier, sign(key, **access))  # no client_id at all
    rejects(verifier, sign(key, token_use="access", client_id=None))  # aud does not stand in for client_id


def test_leeway_accepts_slightly_expired(verifier: TokenVerifier, key: rsa.RSAPrivateKey) -> None:
    verifier.verify(sign(key, exp=int(time.time()) - 10))


# -- rejected tokens --------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "   ", "abc", "a.b.c", "not.a.jwt!", "x" * 20_000])
def test_missing_or_garbage_token(verifier: TokenVerifier, server: JwksServer, token: str) -> None:
    rejects(verifier, token)
    assert server.hits == 0  # garbage never reaches the JWKS endpoint


def test_expired(verifier: TokenVerifier, key: rsa.RSAPrivateKey) -> None:
    now = int(time.time())
    rejects(verifier, sign(key, iat=now - 7200, exp=now - 3600), "token expired")


def test_not_yet_valid(verifier: TokenVerifier, key: rsa.RSAPrivateKey) -> None:
    now = int(time.time())
    rejects(verifier, sign(key, nbf=now + 3600), "token not yet valid")
    rejects(verifier, sign(key, iat=now + 3600, exp=now + 7200), "token not yet valid")


def test_forged_with_other_key_same_kid(verifier: TokenVerifier, other_key: rsa.RSAPrivateKey) -> None:
    rejects(verifier, sign(other_key, kid="k1"))


@pytest.mark.parametrize(
    "issuer", ["https://evil.example/eu-west-1_TEST", ISSUER + "/", ISSUER.upper(), None]
)
def test_wrong_issuer(verifier: TokenVerifier, key: rsa.RSAPrivateKey, issuer: str | None) -> None:
    rejects(verifier, sign(key, iss=issuer))


@pytest.mark.parametrize("aud", ["other-client", ["other-client"], None])
def test_wrong_audience(verifier: TokenVerifier, key: rsa.RSAPrivateKey, aud: Any) -> None:
    rejects(verifier, sign(key, aud=aud))


@pytest.mark.parametrize(
    "overrides",
    [
        {"token_use": "refresh"},
        {"token_use": None},
        {"sub": None},
        {"sub": ""},
        {"exp": None},
        {"cognito:groups": "admins"},
        {"cognito:groups": [1]},
    ],
)
def test_bad_claims(verifier: TokenVerifier, key: rsa.RSAPrivateKey, overrides: dict[str, Any]) -> None:
    rejects(verifier, sign(key, **overrides))


def test_alg_none_refused(verifier: TokenVerifier, server: JwksServer) -> None:
    rejects(verifier, assemble({"alg": "none", "typ": "JWT", "kid": "k1"}, claims()) + ".")
    rejects(verifier, assemble({"alg": "None", "kid": "k1"}, claims()) + ".")
    assert server.hits == 0


def test_hs256_with_public_key_as_secret_refused(verifier: TokenVerifier, key: rsa.RSAPrivateKey) -> None:
    """Algorithm confusion: an HMAC keyed with the (public) RSA key must not verify."""
    secret = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = assemble({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims())
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    rejects(verifier, signing_input + "." + b64(mac))
    # The same header lying about the algorithm on an RS256 signature fails too.
    _, payload, signature = sign(key).split(".")
    rejects(verifier, b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode()) + f".{payload}.{signature}")


def test_tampered_groups_without_resigning(verifier: TokenVerifier, key: rsa.RSAPrivateKey) -> None:
    token = sign(key, **NO_GROUPS)
    assert not verifier.verify(token).is_admin
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["cognito:groups"] = ["admins"]
    rejects(verifier, f"{header}.{b64(json.dumps(body).encode())}.{signature}")


def test_missing_kid_refused(verifier: TokenVerifier, key: rsa.RSAPrivateKey) -> None:
    rejects(verifier, jwt.encode(claims(), key, algorithm="RS256"))


# -- key rotation and refetch rate limit -------------------------------------------


def test_unknown_kid_refetches_once_for_rotation(
    verifier: TokenVerifier,
    server: JwksServer,
    key: rsa.RSAPrivateKey,
    other_key: rsa.RSAPrivateKey,
    clock: Clock,
) -> None:
    verifier.verify(sign(key))
    assert server.hits == 1
    clock.now += 5
    server.keys = [_jwk(key, "k1"), _jwk(other_key, "k2")]  # the pool rotates in a new key
    assert verifier.verify(sign(other_key, kid="k2")).user_id == "u-1"
    assert server.hits == 2
    verifier.verify(sign(other_key, kid="k2"))
    verifier.verify(sign(key))
    assert server.hits == 2


def test_flood_of_unknown_kids_is_rate_limited(
    verifier: TokenVerifier, server: JwksServer, key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    verifier.verify(sign(key))
    for i in range(100):
        rejects(verifier, sign(key, kid=f"bogus-{i}"))
    assert server.hits == 2  # initial fetch + one forced refetch
    clock.now += 61  # cooldown over: one more refetch allowed, then quiet again
    for i in range(100):
        rejects(verifier, sign(key, kid=f"again-{i}"))
    assert server.hits == 3
    verifier.verify(sign(key))  # real tokens keep working throughout


# -- JWKS endpoint failures -----------------------------------------------------------


def test_jwks_endpoint_down(verifier: TokenVerifier, server: JwksServer, key: rsa.RSAPrivateKey) -> None:
    server.down = True
    rejects(verifier, sign(key), "token could not be verified")


def test_jwks_endpoint_unreachable(key: rsa.RSAPrivateKey) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    verifier = TokenVerifier(ISSUER, CLIENT_ID, f"http://127.0.0.1:{port}/jwks.json")
    rejects(verifier, sign(key), "token could not be verified")


@pytest.mark.parametrize(
    "body", [b"<html>", b"[]", b'{"keys": "no"}', b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}']
)
def test_jwks_endpoint_garbage(
    verifier: TokenVerifier, server: JwksServer, key: rsa.RSAPrivateKey, body: bytes
) -> None:
    server.body = body
    rejects(verifier, sign(key), "token could not be verified")


def test_failed_fetch_backs_off_then_recovers(
    verifier: TokenVerifier, server: JwksServer, key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    server.down = True
    for _ in range(10):
        rejects(verifier, sign(key), "token could not be verified")
    assert server.hits == 1
    server.down = False
    clock.now += 6
    verifier.verify(sign(key))
    assert server.hits == 2


def test_stale_keys_kept_when_refresh_fails(
    verifier: TokenVerifier, server: JwksServer, key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    verifier.verify(sign(key))
    server.down = True
    clock.now += 4000
    verifier.verify(sign(key))
    assert server.hits == 2


# -- request helpers and settings ---------------------------------------------------


def test_identity_from_bearer(verifier: TokenVerifier, key: rsa.RSAPrivateKey) -> None:
    token = sign(key)
    for name, scheme in [
        ("Authorization", "Bearer"),
        ("authorization", "bearer"),
        ("AUTHORIZATION", "BEARER"),
    ]:
        assert identity_from_bearer({name: f"{scheme} {token}"}, verifier).username == "ada"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}]
)
def test_identity_from_bearer_missing(verifier: TokenVerifier, headers: dict[str, str]) -> None:
    with pytest.raises(AuthError, match="missing bearer token"):
        identity_from_bearer(headers, verifier)


def test_identity_from_query(verifier: TokenVerifier, key: rsa.RSAPrivateKey) -> None:
    assert identity_from_query({"token": sign(key)}, verifier).user_id == "u-1"
    for params in [None, {}, {"token": ""}]:
        with pytest.raises(AuthError, match="missing token"):
            identity_from_query(params, verifier)
    with pytest.raises(AuthError, match="invalid token"):
        identity_from_query({"token": "garbage"}, verifier)


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    from chalicelib.config import get_settings

    get_settings.cache_clear()
    auth.get_verifier.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()
    auth.get_verifier.cache_clear()


def test_get_verifier_from_settings(
    settings_env: pytest.MonkeyPatch, server: JwksServer, key: rsa.RSAPrivateKey
) -> None:
    settings_env.setenv("AUTH_ISSUER", ISSUER)
    settings_env.setenv("AUTH_AUDIENCE", CLIENT_ID)
    settings_env.setenv("AUTH_JWKS_URL", server.url)
    assert auth.get_verifier() is auth.get_verifier()
    assert identity_from_bearer({"Authorization": f"Bearer {sign(key)}"}).is_admin


def test_unconfigured_auth_fails_closed(settings_env: pytest.MonkeyPatch, key: rsa.RSAPrivateKey) -> None:
    settings_env.delenv("AUTH_ISSUER", raising=False)
    settings_env.delenv("AUTH_AUDIENCE", raising=False)
    settings_env.delenv("AUTH_JWKS_URL", raising=False)
    with pytest.raises(AuthError, match="could not be verified"):
        identity_from_query({"token": sign(key)})


def test_import_is_light() -> None:
    """Cold start: importing chalicelib.auth pulls in neither PyJWT nor cryptography."""
    code = "import sys, chalicelib.auth; assert not {'jwt', 'cryptography'} & set(sys.modules), sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)


# -- local identity provider ----------------------------------------------------------

IDP_ISSUER = "http://127.0.0.1:8000/dev-idp"


@pytest.fixture(scope="module")
def idp() -> LocalIdentityProvider:
    return LocalIdentityProvider(IDP_ISSUER, "local-client")


@pytest.fixture
def client(idp: LocalIdentityProvider) -> TestClient:
    return TestClient(Starlette(routes=routes(idp)))


def test_jwks_path_follows_issuer() -> None:
    assert jwks_path(IDP_ISSUER) == "/dev-idp/.well-known/jwks.json"
    assert jwks_path("http://127.0.0.1:9/a/b/") == "/a/b/.well-known/jwks.json"
    assert jwks_path("http://127.0.0.1:9") == "/.well-known/jwks.json"


def test_idp_mints_cognito_shaped_tokens(idp: LocalIdentityProvider) -> None:
    token = idp.mint("root", ["admins"], ttl_seconds=120)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT", "kid": idp.kid}
    body = jwt.decode(token, options={"verify_signature": False})
    assert body["sub"] == body["cognito:username"] == "root"
    assert body["cognito:groups"] == ["admins"]
    assert (body["iss"], body["aud"], body["token_use"]) == (IDP_ISSUER, "local-client", "id")
    assert body["exp"] - body["iat"] == 120 and body["auth_time"] == body["iat"] and body["jti"]
    assert "cognito:groups" not in jwt.decode(idp.mint("ada"), options={"verify_signature": False})
    with pytest.raises(ValueError):
        idp.mint("bad name")


def test_idp_token_route(client: TestClient) -> None:
    response = client.post("/dev/token", json={"user": "ada"})
    assert response.status_code == 200
    body = response.json()
    assert (body["user"], body["groups"], body["expires_in"]) == ("ada", [], 3600)
    response = client.post("/dev/token", json={"user": "root", "groups": ["admins"], "ttl_seconds": 60})
    body = response.json()
    assert (body["user"], body["groups"], body["expires_in"]) == ("root", ["admins"], 60)
    assert jwt.decode(body["token"], options={"verify_signature": False})["cognito:groups"] == ["admins"]


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        "{}",
        '{"user": ""}',
        '{"user": null}',
        '{"user": 5}',
        '{"user": "a b"}',
        '{"user": "ada\\n"}',
        '{"user": "ada/../x"}',
        json.dumps({"user": "x" * 65}),
        '{"user": "ada", "groups": "admins"}',
        '{"user": "ada", "groups": [1]}',
        '{"user": "ada", "groups": ["bad group"]}',
        '{"user": "ada", "ttl_seconds": 0}',
        '{"user": "ada", "ttl_seconds": "60"}',
        '{"user": "ada", "ttl_seconds": true}',
        '{"user": "ada", "ttl_seconds": 999999}',
    ],
)
def test_idp_token_route_rejects_bad_input(client: TestClient, content: str) -> None:
    response = client.post("/dev/token", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "bad_request" and body["message"]


def test_idp_jwks_route(client: TestClient, idp: LocalIdentityProvider) -> None:
    response = client.get("/dev-idp/.well-known/jwks.json")
    assert response.status_code == 200
    (entry,) = response.json()["keys"]
    assert (entry["kid"], entry["kty"], entry["alg"], entry["use"]) == (idp.kid, "RSA", "RS256", "sig")
    assert "d" not in entry  # public half only
    assert client.get("/.well-known/jwks.json").status_code == 404


def test_minted_token_verifies_against_served_jwks() -> None:
    """End to end over loopback: uvicorn serves the IdP routes; the verifier fetches the JWKS."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}/dev-idp"
    idp = LocalIdentityProvider(issuer, "local-client")
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=routes(idp)), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        token = httpx.post(
            issuer.removesuffix("/dev-idp") + "/dev/token", json={"user": "root", "groups": ["admins"]}
        )
        verifier = TokenVerifier(issuer, "local-client", issuer + "/.well-known/jwks.json")
        identity = verifier.verify(token.json()["token"])
        assert identity == Identity(user_id="root", groups=frozenset({"admins"}), username="root")
        assert identity_from_query({"token": idp.mint("ada")}, verifier).username == "ada"
        stranger = LocalIdentityProvider(issuer, "local-client")  # another process's key
        rejects(verifier, stranger.mint("root", ["admins"]))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# -- identities at the token boundary: every user id can be named by a command ----


def test_the_token_boundary_and_the_protocol_agree_on_user_ids() -> None:
    assert USER_ID_RE.pattern == ID_PATTERN


@pytest.mark.parametrize(
    "sub",
    [
        "ada lovelace",  # space
        "ada#1",  # '#': the relations table's key separator
        "ada\n",  # control characters
        "ada\x00",
        "ada\u202e",  # bidi override
        "a" * 65,  # over-long
        "ädä",  # outside the id alphabet
        "ada/../bob",
    ],
)
def test_a_token_whose_subject_no_command_could_name_is_refused(
    verifier: TokenVerifier,
    key: rsa.RSAPrivateKey,
    sub: str,
) -> None:
    assert not addressable(sub)
    rejects(verifier, sign(key, sub=sub), "this account's user id is not supported")


@pytest.mark.parametrize("sub", ["u-1", "3f1c2a9e-7b1d-4a43-9c5e-0e2f1d7a9b10", "a" * 64, "x.y:z_w-1"])
def test_cognito_shaped_subjects_pass_and_carry_the_token_expiry(
    verifier: TokenVerifier,
    key: rsa.RSAPrivateKey,
    sub: str,
) -> None:
    exp = int(time.time()) + 600
    identity = verifier.verify(sign(key, sub=sub, exp=exp))
    assert identity.user_id == sub
    assert identity.expires_at == exp
    assert claims()["exp"] > 0
