"""SQS consumers and schedules, driven as Lambda drives them, against moto on loopback."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, SqsModel
from chalice import Rate
from conftest import wait_until

from devstack.lambdas import SqsPoller, failed_message_ids, rate_seconds

pytestmark = pytest.mark.e2e

VISIBILITY = 1  # seconds before a failed record is received again
MAX_RECEIVES = 2


# -- failed_message_ids: Lambda's reading of a partial batch response -------------------

RECORDS = [{"MessageId": "m1"}, {"MessageId": "m2"}, {"MessageId": "m3"}]
ALL = {"m1", "m2", "m3"}


@pytest.mark.parametrize(
    ("result", "failed"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": None}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "m2"}]}, {"m2"}),
        ({"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m3"}]}, {"m1", "m3"}),
        ({"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m2"}]}, {"m2"}),
        # anything Lambda cannot read fails the whole batch
        ({"batchItemFailures": [{"itemIdentifier": "unknown"}]}, ALL),
        ({"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "unknown"}]}, ALL),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, ALL),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, ALL),
        ({"batchItemFailures": [{"messageId": "m1"}]}, ALL),
        ({"batchItemFailures": ["m1"]}, ALL),
        ({"batchItemFailures": "m1"}, ALL),
        ({"batchItemFailures": {"itemIdentifier": "m1"}}, ALL),
        ("ok", ALL),
        ([{"itemIdentifier": "m1"}], ALL),
    ],
)
def test_failed_message_ids(result: Any, failed: set[str]) -> None:
    assert failed_message_ids(result, RECORDS) == failed


# -- a queue with a DLQ, polled like Lambda ---------------------------------------------


class Queues:
    def __init__(self, stack: Any) -> None:
        self.sqs = stack.aws.client("sqs")
        name = f"e2e-{uuid.uuid4().hex[:10]}"
        self.dlq_url = self.sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = self._arn(self.dlq_url)
        self.url = self.sqs.create_queue(
            QueueName=name,
            Attributes={
                "VisibilityTimeout": "30",
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}
                ),
            },
        )["QueueUrl"]
        self.arn = self._arn(self.url)

    def _arn(self, url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    def send(self, bodies: list[str]) -> None:
        for start in range(0, len(bodies), 10):
            chunk = bodies[start : start + 10]
            self.sqs.send_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)],
            )

    def counts(self, url: str | None = None) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def drain_dlq(self) -> list[str]:
        bodies: list[str] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return bodies
            bodies += [m["Body"] for m in got]
            self.sqs.delete_message_batch(
                QueueUrl=self.dlq_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
            )

    def delete(self) -> None:
        self.sqs.delete_queue(QueueUrl=self.url)
        self.sqs.delete_queue(QueueUrl=self.dlq_url)


@pytest.fixture
def queues(stack) -> Iterator[Queues]:
    made = Queues(stack)
    yield made
    made.delete()


def _poller(queues: Queues, handler: Any, name: str = "e2e") -> SqsPoller:
    return SqsPoller(
        name, handler, queues.sqs, queues.url, queues.arn, 10, lambda: None, VISIBILITY, "us-east-1"
    )


class PartialBatchHandler:
    """A consumer that fails the records whose body says "fail", as a partial batch response."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.succeeded: Counter[str] = Counter()
        self.deliveries: Counter[str] = Counter()
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        with self.lock:
            self.events.append(event)
            for record in event["Records"]:
                self.deliveries[record["body"]] += 1
                if "fail" in record["body"]:
                    failures.append({"itemIdentifier": record["messageId"]})
                else:
                    self.succeeded[record["body"]] += 1
        return {"batchItemFailures": failures}


def test_partial_batch_failures_retry_then_land_in_the_dlq(stack, queues) -> None:
    bodies = [f"fail-{i}" if i % 4 == 0 else f"ok-{i}" for i in range(12)]
    good = {b for b in bodies if b.startswith("ok")}
    bad = {b for b in bodies if b.startswith("fail")}
    queues.send(bodies)
    handler = PartialBatchHandler()
    poller = _poller(queues, handler)
    poller.start()
    try:
        assert wait_until(lambda: queues.counts(queues.dlq_url)[0] == len(bad), timeout=8)
        assert wait_until(lambda: queues.counts() == (0, 0), timeout=3)
    finally:
        poller.stop()
        poller.join(timeout=5)
    assert not poller.is_alive()

    # succeeded records were deleted after their one delivery
    assert set(handler.succeeded) == good
    assert all(handler.succeeded[b] == 1 for b in good)
    # failed records came back after the visibility timeout, maxReceiveCount times, then went to the DLQ
    assert {b: handler.deliveries[b] for b in bad} == dict.fromkeys(bad, MAX_RECEIVES)
    dead = queues.drain_dlq()
    assert sorted(dead) == sorted(bad)
    assert len(bodies) == len(handler.succeeded) + len(dead)

    # the events are Lambda's SQS events
    for event in handler.events:
        SqsModel.model_validate(event)
        for record in event["Records"]:
            assert record["eventSource"] == "aws:sqs"
            assert record["eventSourceARN"] == queues.arn
            assert record["awsRegion"] == "us-east-1"
        assert len(event["Records"]) <= 10
    receive_counts = {
        r["body"]: int(r["attributes"]["ApproximateReceiveCount"])
        for e in handler.events
        for r in e["Records"]
    }
    assert all(receive_counts[b] == MAX_RECEIVES for b in bad)


def test_message_attributes_reach_the_handler_as_lambda_gives_them(stack, queues) -> None:
    queues.sqs.send_message(
        QueueUrl=queues.url,
        MessageBody="with attributes",
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "report"},
            "size": {"DataType": "Number", "StringValue": "42"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
        },
    )
    handler = PartialBatchHandler()
    assert _poller(queues, handler).poll_once(wait_seconds=1) == 1
    [record] = handler.events[0]["Records"]
    SqsModel.model_validate(handler.events[0])
    attributes = record["messageAttributes"]
    assert attributes["kind"]["stringValue"] == "report"
    assert attributes["kind"]["dataType"] == "String"
    assert attributes["size"]["dataType"] == "Number"
    # Lambda's event is JSON: binary values arrive base64-encoded
    assert attributes["blob"]["binaryValue"] == base64.b64encode(b"\x00\x01\xff").decode()
    json.dumps(handler.events[0])
    assert queues.counts() == (0, 0)


def _whole_batch_case(queues: Queues, first_answer: Any) -> None:
    """The first call answers `first_answer` (or raises it); the batch must come back whole."""
    queues.send(["a", "b", "c"])
    calls: list[list[str]] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        calls.append(sorted(r["messageId"] for r in event["Records"]))
        if len(calls) == 1:
            if isinstance(first_answer, Exception):
                raise first_answer
            return first_answer
        return {"batchItemFailures": []}

    poller = _poller(queues, handler)
    assert poller.poll_once(wait_seconds=1) == 3
    assert queues.counts() == (0, 3)  # nothing deleted: all in flight until the visibility timeout
    deadline = time.monotonic() + 5
    while len(calls) < 2 and time.monotonic() < deadline:
        poller.poll_once(wait_seconds=1)
    assert len(calls) == 2
    assert calls[1] == calls[0]  # the very same messages, all of them
    assert wait_until(lambda: queues.counts() == (0, 0))


def test_a_handler_that_raises_fails_the_whole_batch(stack, queues) -> None:
    _whole_batch_case(queues, RuntimeError("consumer crashed"))


def test_an_unknown_item_identifier_fails_the_whole_batch(stack, queues) -> None:
    _whole_batch_case(queues, {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]})


def test_a_malformed_response_fails_the_whole_batch(stack, queues) -> None:
    _whole_batch_case(queues, {"batchItemFailures": "everything"})


# -- the app's own consumers ------------------------------------------------------------


def _queue_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def test_the_apps_sqs_consumers_are_polling_the_template_queues(stack) -> None:
    sqs = stack.aws.client("sqs")
    stage = stack.options.stage
    expected = {
        "on_moderation_report": f"sohbet-{stage}-moderation",
        "on_fanout_shard": f"sohbet-{stage}-fanout",
        "on_notify": f"sohbet-{stage}-notify",
    }
    # a source with MaximumConcurrency > 1 has several pollers of one queue: one per name here
    pollers = {p.name.removeprefix("sqs-"): p for p in stack.pollers}
    assert {name: _queue_name(p.queue_url) for name, p in pollers.items()} == expected
    # the queues the app is told about (the template's outputs) are the ones being polled
    assert _queue_name(stack.env["MODERATION_QUEUE_URL"]) == expected["on_moderation_report"]
    assert _queue_name(stack.env["FANOUT_QUEUE_URL"]) == expected["on_fanout_shard"]
    assert _queue_name(stack.env["NOTIFY_QUEUE_URL"]) == expected["on_notify"]
    for name, poller in pollers.items():
        assert poller.is_alive(), name
        assert poller.handler is stack.app.handler_map[name]
        assert poller.visibility_timeout == 1
        assert poller.batch_size == 10
        attrs = sqs.get_queue_attributes(QueueUrl=poller.queue_url, AttributeNames=["All"])["Attributes"]
        assert attrs["QueueArn"] == poller.queue_arn
        assert poller.queue_arn.endswith(":" + expected[name])
        assert "deadLetterTargetArn" in json.loads(attrs["RedrivePolicy"])


def test_a_message_the_app_sends_reaches_the_consumer(stack) -> None:
    """Sent to the URL in the app's environment, as the app sends; received by the poller.

    The handler is swapped for a recorder: the app's consumer logic is not under test here.
    """
    sqs = stack.aws.client("sqs")
    [poller] = [p for p in stack.pollers if p.name == "sqs-on_fanout_shard"]
    original = poller.handler
    seen: list[dict[str, Any]] = []
    marker = f"e2e-{uuid.uuid4().hex}"

    def record(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.extend(r for r in event["Records"] if r["body"] == marker)
        return {"batchItemFailures": []}

    poller.handler = record
    try:
        sqs.send_message(QueueUrl=stack.env["FANOUT_QUEUE_URL"], MessageBody=marker)
        assert wait_until(lambda: seen, timeout=5)
    finally:
        poller.handler = original
    assert seen[0]["eventSourceARN"] == poller.queue_arn


# -- schedules ---------------------------------------------------------------------------


def test_the_sweep_schedule_runs_with_a_scheduled_event(stack) -> None:
    scheduler = stack.scheduler
    index = next(i for i, job in enumerate(scheduler.jobs) if job[0] == "sweep")
    name, handler, every = scheduler.jobs[index]
    assert handler is stack.app.handler_map["sweep"]
    assert every == 0.5
    events: list[dict[str, Any]] = []

    def recording(event: dict[str, Any], context: Any) -> Any:
        events.append(event)
        return handler(event, context)

    before = scheduler.runs["sweep"]
    scheduler.jobs[index] = (name, recording, every)
    try:
        time.sleep(1.5)
        assert wait_until(lambda: scheduler.runs["sweep"] >= before + 2, timeout=1.5)
    finally:
        scheduler.jobs[index] = (name, handler, every)
    assert events
    for event in events:
        EventBridgeModel.model_validate(event)
        assert event["detail-type"] == "Scheduled Event"
        assert event["source"] == "aws.events"
        assert event["detail"] == {}
        assert event["version"] == "0"
        assert len(event["account"]) == 12 and event["account"].isdigit()
        assert time.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")
        [rule] = event["resources"]
        assert rule.startswith(f"arn:aws:events:{event['region']}:{event['account']}:rule/")
    assert len({e["id"] for e in events}) == len(events)


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        (Rate(1, unit=Rate.MINUTES), 60),
        (Rate(2, unit=Rate.HOURS), 7200),
        (Rate(1, unit=Rate.DAYS), 86400),
        ("rate(5 minutes)", 300),
        ("rate(1 minute)", 60),
    ],
)
def test_rate_seconds(expression: Any, seconds: float) -> None:
    assert rate_seconds(expression) == seconds


def test_cron_schedules_are_refused_locally() -> None:
    with pytest.raises(ValueError):
        rate_seconds("cron(0 12 * * ? *)")
