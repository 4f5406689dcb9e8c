"""REST requests made safe to retry with an `Idempotency-Key` header (Powertools idempotency).

The record's key is a hash of the caller and their key, so two callers never share
a result; the request's payload is hashed too, so the same key with a different
request is refused instead of answered with the wrong result. A request that fails
leaves no record (Powertools deletes it), so it can be retried.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from chalicelib.config import get_settings
from chalicelib.errors import CommandError, ErrorCode

HEADER = "Idempotency-Key"
KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
EXPIRES_AFTER_SECONDS = 24 * 60 * 60


@lru_cache(maxsize=8)
def _persistence(scope: str) -> Any:
    """One store per scope: Powertools keeps the key prefix on the store while it handles a call."""
    # cold start: Powertools' idempotency utility (and its DynamoDB client) load on the first keyed request
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from botocore.config import Config

    return DynamoDBPersistenceLayer(
        table_name=get_settings().idempotency_table,
        key_attr="id",
        expiry_attr="expiration",
        boto_config=Config(
            retries={"mode": "standard", "max_attempts": 4}, connect_timeout=2, read_timeout=5
        ),
    )


def persistence(scope: str) -> Any:
    """The idempotency store of one scope (also used by the notify consumer's records)."""
    return _persistence(scope)


def _run(*, request: dict[str, Any], call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    return call()


def _runner(scope: str, lambda_context: Any) -> Callable[..., Any]:
    # cold start: as above
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

    config = IdempotencyConfig(
        event_key_jmespath="[caller, key]",
        payload_validation_jmespath="payload",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=EXPIRES_AFTER_SECONDS,
        # The invocation's deadline bounds how long an unfinished request blocks its key.
        lambda_context=lambda_context,
    )
    runner: Callable[..., Any] = idempotent_function(
        _run,
        data_keyword_argument="request",
        persistence_store=_persistence(scope),
        config=config,
        key_prefix=f"sohbet#{scope}",
    )
    return runner


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not KEY_RE.fullmatch(key):
        raise CommandError(ErrorCode.BAD_REQUEST, f"{HEADER} must be 1-255 visible ASCII characters")
    return key


def once(
    scope: str,
    caller: str,
    key: str | None,
    payload: Any,
    call: Callable[[], dict[str, Any]],
    lambda_context: Any = None,
) -> dict[str, Any]:
    """`call()`, or, if this caller already made this request with this key, its first result."""
    # cold start: as above
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyValidationError,
    )

    if check_key(key) is None:
        return call()
    request = {"caller": caller, "key": key, "payload": payload}
    try:
        result: dict[str, Any] = _runner(scope, lambda_context)(request=request, call=call)
    except IdempotencyValidationError:
        raise CommandError(
            ErrorCode.BAD_REQUEST, f"this {HEADER} was already used for a different request"
        ) from None
    except IdempotencyAlreadyInProgressError:
        raise CommandError(
            ErrorCode.CONFLICT, f"a request with this {HEADER} is still in progress; retry later"
        ) from None
    return result
