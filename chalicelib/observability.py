"""Powertools logger, tracer and metrics shared by every entry point.

`observe` wraps every entry point (a Chalice middleware for all event types, app.py):
one X-Ray subsegment per invocation and one flush of the EMF metrics.

The Tracer is made lazily. Powertools' Tracer builds the X-Ray SDK's recorder when it is
constructed (importing aws_xray_sdk and creating botocore clients for its sampler),
about 0.3 s of CPU: made at import, it would tax every cold start. It is made on the
first invocation that X-Ray samples (Lambda's trace header says `Sampled=1`), so
importing the app never pays it, nor does a cold start whose request is not sampled;
there is nothing to record for those. botocore sends the trace header downstream
without the SDK, so unsampled requests still propagate their trace id.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

SERVICE = "sohbet"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", SERVICE)

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
metrics.set_default_dimensions(stage=os.environ.get("SOHBET_STAGE", "dev"))
# Powertools' metric set is shared state; the local stack runs handlers in threads.
_metrics_lock = threading.Lock()


def _sampled() -> bool:
    """True inside Lambda when this invocation is sampled by X-Ray and tracing is on."""
    if "AWS_LAMBDA_FUNCTION_NAME" not in os.environ:
        return False
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() in ("1", "true"):
        return False
    return "Sampled=1" in os.environ.get("_X_AMZN_TRACE_ID", "")


@lru_cache(maxsize=1)
def tracer() -> Tracer:
    """The process's Tracer, made on first use (patches botocore, hence PynamoDB too)."""
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE, patch_modules=["botocore"])


def _context(event: Any) -> Any:
    """The Lambda context: a REST Request's `context` is API Gateway's requestContext."""
    lambda_context = getattr(event, "lambda_context", None)
    return lambda_context if lambda_context is not None else getattr(event, "context", None)


def observe(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Run one invocation: traced when sampled, its metrics flushed whatever happens."""
    try:
        if not _sampled():
            return get_response(event)
        context = _context(event)
        name = getattr(context, "function_name", None) or "handler"

        def invoke(_event: Any, _context: Any) -> Any:
            return get_response(event)

        invoke.__name__ = name
        traced = tracer().capture_lambda_handler(invoke, capture_response=False)
        return traced(event, context)
    finally:
        flush()


def flush() -> None:
    """Print the invocation's metrics as one EMF record (CloudWatch reads it from the log)."""
    with _metrics_lock:
        if metrics.metric_set:
            metrics.flush_metrics()
            # Disabled metrics (the local stack) are not printed, nor cleared by Powertools.
            metrics.clear_metrics()


# -- the app's metrics (docs/deploy.md, "Operations") -------------------------


def count(name: str, value: float = 1) -> None:
    """A plain count, flushed at the end of the invocation."""
    if value:
        with _metrics_lock:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def count_by(name: str, value: float = 1, **dimensions: str) -> None:
    """A count with its own dimensions (e.g. a command's action and outcome), emitted now."""
    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=value,
        namespace=NAMESPACE,
        default_dimensions=metrics.default_dimensions | {"service": SERVICE},
    ) as metric:
        for key, dim in dimensions.items():
            metric.add_dimension(name=key, value=dim)


def record_delivery(delivery: Any) -> None:
    """A push.Delivery's outcome: posts made, 410s (gone), 429s retried."""
    count("FanoutPosts", delivery.delivered + len(delivery.gone) + len(delivery.failed))
    count("Gone", len(delivery.gone))
    count("Retries429", delivery.throttled)


def milliseconds(name: str, value: float) -> None:
    with _metrics_lock:
        metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=value)
