"""The process's shared clients, each built once on first use, all in this one place.

A Lambda container reuses them across invocations. Tests swap one for the length of
a block with `override(...)`, instead of changing the environment and clearing
caches; `reset()` forgets them all (after the environment itself changed).

Boto3 and Powertools are imported when a client is first built, not at import time:
a cold start that never touches SQS does not pay for them (the media, push and auth
modules defer their heavy imports the same way).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from chalicelib import auth, broadcast, config, db, push
from chalicelib import media as media_module
from chalicelib import pipelines as pipelines_module

_built: dict[str, Any] = {}
_overrides: dict[str, Any] = {}
_lock = threading.Lock()

BatchKind = Literal["fanout", "moderation", "notify"]


def _get(name: str, build: Callable[[], Any]) -> Any:
    if name in _overrides:
        return _overrides[name]
    with _lock:
        if name not in _built:
            _built[name] = build()
        return _built[name]


def _build_sqs() -> Any:
    import boto3  # cold start: only the Lambdas that queue something load boto3's SQS model
    from botocore.config import Config

    # Standard retry mode (backoff with jitter, throttling retried); short timeouts, so a
    # stuck call fails inside the caller's own time budget.
    # https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html
    return boto3.session.Session().client(
        "sqs",
        region_name=config.get_settings().region,
        config=Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=2, read_timeout=5),
    )


def sqs() -> Any:
    """The one SQS client (the moderation queue and the fan-out queue)."""
    return _get("sqs", _build_sqs)


def _build_sns() -> Any:
    import boto3  # cold start: only the REST handler and the notify consumer load SNS's model
    from botocore.config import Config

    return boto3.session.Session().client(
        "sns",
        region_name=config.get_settings().region,
        config=Config(
            retries={"mode": "standard", "max_attempts": 4},
            connect_timeout=2,
            read_timeout=5,
            max_pool_connections=32,
        ),
    )


def sns() -> Any:
    """The one SNS client (mobile push: platform endpoints and Publish)."""
    return _get("sns", _build_sns)


def _build_processor(kind: BatchKind) -> Any:
    # cold start: Powertools' batch utility is loaded by the SQS consumers only
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

    if kind in ("moderation", "notify"):
        # An all-failed batch is answered with every record listed, like a partly failed one.
        return BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return BatchProcessor(event_type=EventType.SQS)


def batch_processor(kind: BatchKind) -> Any:
    """The partial-batch processor of one SQS consumer."""
    return _get(f"batch:{kind}", lambda: _build_processor(kind))


def _build_s3() -> Any:
    import boto3  # cold start: only evidence reads and captures load S3's model
    from botocore.config import Config

    # SigV4 presigned URLs (the only kind S3 accepts in newer Regions); short timeouts.
    return boto3.session.Session().client(
        "s3",
        region_name=config.get_settings().region,
        config=Config(
            signature_version="s3v4",
            retries={"mode": "standard", "max_attempts": 4},
            connect_timeout=2,
            read_timeout=5,
        ),
    )


def s3() -> Any:
    """The one S3 client (the evidence bucket)."""
    return _get("s3", _build_s3)


def pipelines() -> pipelines_module.CapturePort:
    return _overrides.get("pipelines") or pipelines_module.get_pipelines()


def settings() -> config.Settings:
    return _overrides.get("settings") or config.get_settings()


def media() -> media_module.MediaPort:
    return _overrides.get("media") or media_module.get_media()


def pusher() -> push.Pusher:
    return _overrides.get("pusher") or push.get_pusher()


def publisher() -> broadcast.Publisher:
    """The broadcast tier's publisher (used only when BROADCAST_HTTP_URL is set)."""
    return _overrides.get("publisher") or broadcast.get_publisher()


@contextmanager
def override(**clients: Any) -> Iterator[None]:
    """Use these clients (sqs=, s3=, sns=, settings=, media=, pipelines=, pusher=, publisher=)
    in the block."""
    saved = dict(_overrides)
    _overrides.update(clients)
    if "settings" in clients:
        config.override(clients["settings"])
    try:
        yield
    finally:
        _overrides.clear()
        _overrides.update(saved)
        if "settings" in clients:
            config.override(saved.get("settings"))


def reset() -> None:
    """Forget every built client; the next use builds it from the current settings."""
    with _lock:
        _built.clear()
    config.get_settings.cache_clear()
    db.reset()
    media_module.reset_media()
    pipelines_module.reset_pipelines()
    push.get_pusher.cache_clear()
    broadcast.reset_publishers()
    auth.get_verifier.cache_clear()
