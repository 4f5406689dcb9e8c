"""Event sources driven as Lambda drives them: SQS pollers and schedules.

SQS: long-poll the queue, hand the app's `on_sqs_message` handler a batch in
Lambda's SQS event shape, delete what succeeded. With partial batch responses
(`batchItemFailures`) only the failed records stay on the queue; a raised
exception or an invalid response fails the whole batch, as in Lambda. Failed
records come back after the visibility timeout, and the queue's redrive policy
moves them to the DLQ after maxReceiveCount receives (moto implements redrive).
Schedules: each `@app.schedule` handler is called on its rate.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("devstack.lambdas")

LambdaHandler = Callable[[dict[str, Any], Any], Any]


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def sqs_event(records: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": dict(m.get("Attributes", {})),
                "messageAttributes": {
                    name: {
                        "stringValue": attr.get("StringValue"),
                        # boto3 gives bytes; Lambda's JSON event carries base64 text
                        "binaryValue": _b64(attr.get("BinaryValue")),
                        "stringListValues": attr.get("StringListValues", []),
                        "binaryListValues": [_b64(v) for v in attr.get("BinaryListValues", [])],
                        "dataType": attr["DataType"],
                    }
                    for name, attr in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in records
        ]
    }


def failed_message_ids(result: Any, records: list[dict[str, Any]]) -> set[str]:
    """Lambda's reading of a partial batch response; anything malformed fails the batch."""
    all_ids = {m["MessageId"] for m in records}
    if result is None:
        return set()
    if not isinstance(result, dict):
        return all_ids
    failures = result.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return all_ids
    failed: set[str] = set()
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not ident or ident not in all_ids:
            return all_ids
        failed.add(ident)
    return failed


class SqsPoller(threading.Thread):
    def __init__(
        self,
        name: str,
        handler: LambdaHandler,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        batch_size: int,
        context_factory: Callable[[], Any],
        visibility_timeout: int,
        region: str,
    ) -> None:
        super().__init__(name=f"sqs-{name}", daemon=True)
        self.handler = handler
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.batch_size = min(batch_size, 10)
        self.context_factory = context_factory
        self.visibility_timeout = visibility_timeout
        self.region = region
        self.stopped = threading.Event()
        self.batches = 0

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.poll_once(wait_seconds=1)
            except Exception:
                if not self.stopped.is_set():
                    log.exception("SQS poller %s failed; retrying", self.name)
                    time.sleep(0.5)

    def poll_once(self, wait_seconds: int = 0) -> int:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=self.visibility_timeout,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        records = response.get("Messages", [])
        if not records:
            return 0
        self.batches += 1
        try:
            result = self.handler(sqs_event(records, self.queue_arn, self.region), self.context_factory())
        except Exception:
            log.exception("SQS handler %s raised; the whole batch returns to the queue", self.name)
            return len(records)
        failed = failed_message_ids(result, records)
        done = [m for m in records if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        return len(records)

    def stop(self) -> None:
        self.stopped.set()


def scheduled_event(rule_arn: str, region: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def rate_seconds(expression: Any) -> float:
    """Seconds between runs of a Chalice Rate, or of a `rate(N unit)` string."""
    from chalice.app import Rate

    if isinstance(expression, Rate):
        value, unit = expression.value, expression.unit
    else:
        text = str(expression).strip()
        if not text.startswith("rate(") or not text.endswith(")"):
            raise ValueError(f"only rate() schedules run locally, not {text!r}")
        raw_value, unit = text[5:-1].split()
        value = int(raw_value)
    unit = unit.lower().rstrip("s")
    return value * {"minute": 60, "hour": 3600, "day": 86400}[unit]


class Scheduler(threading.Thread):
    def __init__(
        self,
        jobs: list[tuple[str, LambdaHandler, float]],
        context_factory: Callable[[], Any],
        region: str,
    ) -> None:
        super().__init__(name="scheduler", daemon=True)
        self.jobs = jobs
        self.context_factory = context_factory
        self.region = region
        self.stopped = threading.Event()
        self.runs: dict[str, int] = {name: 0 for name, _, _ in jobs}

    def run(self) -> None:
        next_run = {name: time.monotonic() + every for name, _, every in self.jobs}
        while not self.stopped.is_set():
            now = time.monotonic()
            for name, handler, every in self.jobs:
                if now >= next_run[name]:
                    next_run[name] = now + every
                    self.fire(name, handler)
            wait = min(next_run.values(), default=now + 1) - time.monotonic()
            self.stopped.wait(max(wait, 0.01))

    def fire(self, name: str, handler: LambdaHandler) -> None:
        arn = f"arn:aws:events:{self.region}:123456789012:rule/sohbet-{name}"
        try:
            handler(scheduled_event(arn, self.region), self.context_factory())
        except Exception:
            log.exception("scheduled handler %s raised", name)
        finally:
            self.runs[name] += 1

    def stop(self) -> None:
        self.stopped.set()
