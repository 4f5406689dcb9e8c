"""SigV4 verification for the emulator's @connections API, as API Gateway requires IAM.

The signature is recomputed with botocore's own signer (the code that signs the
app's calls) from the request as received and the local stack's credentials, and
compared in constant time. Refusals use API Gateway's 403 shapes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime

_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/\s]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z0-9-]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;_.-]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
MAX_SKEW_SECONDS = 15 * 60  # AWS refuses signatures older or newer than 15 minutes


class SignatureError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def verify(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Mapping[str, str],
    region: str,
    service: str = "execute-api",
    now: datetime | None = None,
) -> str:
    """The access key id that signed the request; SignatureError if it is not signed right.

    `headers` are keyed in lower case; `url` carries the path exactly as sent.
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    authorization = headers.get("authorization")
    if not authorization:
        raise SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTH_RE.fullmatch(authorization.strip())
    if match is None:
        raise SignatureError("IncompleteSignatureException", "Authorization header is not a SigV4 signature")
    key_id = match["key"]
    secret = secrets.get(key_id)
    if secret is None:
        raise SignatureError(
            "UnrecognizedClientException", "The security token included in the request is invalid"
        )
    if match["region"] != region or match["service"] != service:
        raise SignatureError(
            "InvalidSignatureException", f"Credential should be scoped to {region}/{service}"
        )
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError("IncompleteSignatureException", "X-Amz-Date is missing or malformed") from None
    if not amz_date.startswith(match["date"]):
        raise SignatureError("InvalidSignatureException", "Credential date does not match X-Amz-Date")
    if abs(((now or datetime.now(tz=UTC)) - signed_at).total_seconds()) > MAX_SKEW_SECONDS:
        raise SignatureError("InvalidSignatureException", "Signature expired")
    names = match["signed"].split(";")
    if "host" not in names or any(name not in headers for name in names):
        raise SignatureError("IncompleteSignatureException", "a signed header is missing")

    claimed = headers.get("x-amz-content-sha256")
    if claimed is not None and claimed != hashlib.sha256(body).hexdigest():
        raise SignatureError("InvalidSignatureException", "x-amz-content-sha256 does not match the body")

    request = AWSRequest(method=method, url=url, data=body, headers={n: headers[n] for n in names})
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(key_id, secret), service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise SignatureError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided",
        )
    return key_id
