"""shards.py: splitting, queueing shards on SQS (moto's server on loopback), posting one shard.

The fan-out queue is a queue on a ThreadedMotoServer started here; the test's settings
(queue URL, shard size) and clients (SQS, pusher) are swapped in with clients.override.
Posting goes to test_push's FakeGateway.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer
from test_push import KEY, REGION, SECRET, TOKEN, FakeGateway

from chalicelib import clients, shards
from chalicelib.config import get_settings
from chalicelib.push import Pusher


@pytest.mark.parametrize(
    ("count", "size", "sizes"),
    [(0, 3, []), (1, 3, [1]), (6, 3, [3, 3]), (7, 3, [3, 3, 1]), (7, 2, [2, 2, 2, 1]), (5, 250, [5])],
)
def test_split_sizes(count: int, size: int, sizes: list[int]) -> None:
    ids = [f"c{i}" for i in range(count)]
    result = shards.split(ids, size)
    assert [len(s) for s in result] == sizes
    assert [c for shard in result for c in shard] == ids  # nothing lost, nothing twice, in order


def test_split_accepts_a_tuple_and_returns_lists() -> None:
    assert shards.split(("a", "b", "c"), 2) == [["a", "b"], ["c"]]


# --------------------------------------------------------------------------- SQS


class Queue:
    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.url = url
        self.batches: list[dict[str, Any]] = []  # SendMessageBatch requests, as sent

    def receive_all(self) -> list[dict[str, Any]]:
        bodies = []
        while True:
            got = self.client.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if not messages:
                return bodies
            for m in messages:
                bodies.append(json.loads(m["Body"]))
                self.client.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])

    def delayed(self) -> int:
        attrs = self.client.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessagesDelayed"])


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def queue(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Queue]:
    """A fresh fan-out queue; FANOUT_QUEUE_URL and FANOUT_SHARD_SIZE point at it for this test."""
    client = boto3.client(
        "sqs",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    url = client.create_queue(QueueName=f"fanout-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    q = Queue(client, url)
    client.meta.events.register(
        "provide-client-params.sqs.SendMessageBatch", lambda params, **_: q.batches.append(params)
    )
    settings = replace(get_settings(), fanout_queue_url=url, fanout_shard_size=2)
    try:
        with clients.override(sqs=client, settings=settings):
            yield q
    finally:
        client.delete_queue(QueueUrl=url)


def test_enqueue_puts_shards_on_the_queue_ten_per_batch(queue: Queue) -> None:
    ids = [f"conn-{i}=" for i in range(25)]
    data = json.dumps({"event": "stage.changed", "text": "ğüşİ 🎙"}).encode()

    assert shards.enqueue(ids, data) == 13

    assert [len(b["Entries"]) for b in queue.batches] == [10, 3]
    assert all(e["DelaySeconds"] == 0 for b in queue.batches for e in b["Entries"])
    bodies = queue.receive_all()
    assert len(bodies) == 13
    assert all(len(b["connection_ids"]) <= 2 and b["attempt"] == 1 for b in bodies)
    assert all(b["data"].encode() == data for b in bodies)
    received = sorted((c for b in bodies for c in b["connection_ids"]), key=ids.index)
    assert received == ids


def test_enqueue_raises_when_sqs_refuses_a_shard(queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    client = boto3.client(
        "sqs", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    with clients.override(sqs=client), Stubber(client) as stub:
        stub.add_response(
            "send_message_batch",
            {
                "Successful": [{"Id": "0", "MessageId": "m0", "MD5OfMessageBody": "x"}],
                "Failed": [{"Id": "1", "SenderFault": False, "Code": "InternalError"}],
            },
        )
        with pytest.raises(RuntimeError, match="could not queue 1 fan-out shards"):
            shards.enqueue(["a", "b", "c"], b"{}")


# --------------------------------------------------------------------------- posting a shard


@pytest.fixture(scope="module")
def gateway_server() -> Iterator[FakeGateway]:
    server = FakeGateway().start()
    yield server
    server.stop()


@pytest.fixture
def gateway(gateway_server: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGateway]:
    gateway_server.reset()
    for name, value in {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    pusher = Pusher(gateway_server.endpoint, REGION, workers=4)
    with clients.override(pusher=pusher):
        yield gateway_server


def shard(ids: list[str], data: str, attempt: int = 1) -> dict[str, Any]:
    """A shard as the fan-out consumer decodes it from its record."""
    return {"connection_ids": ids, "data": data, "attempt": attempt}


def test_post_shard_reports_gone_and_requeues_failed_later(gateway: FakeGateway, queue: Queue) -> None:
    gateway.play("gone-1=", 410)
    gateway.play("bad-1", 403)
    gateway.play("bad-2", 502, 502, 502, 502, 502)
    gateway.play("busy", 429, 200)
    data = '{"type":"event","event":"stage.changed","text":"ş"}'
    gone: list[str] = []

    result = shards.post_shard(shard(["ok-1", "gone-1=", "bad-1", "busy", "bad-2"], data), gone.append)

    assert (result.delivered, result.gone, sorted(result.failed), result.throttled) == (
        2,
        ["gone-1="],
        ["bad-1", "bad-2"],
        1,
    )
    assert gone == ["gone-1="]
    assert all(s.body == data.encode() for s in gateway.seen)
    # the failed ones go back on the queue, as attempt 2, after a delay
    (batch,) = queue.batches
    assert [e["DelaySeconds"] for e in batch["Entries"]] == [2]
    requeued = json.loads(batch["Entries"][0]["MessageBody"])
    assert requeued == {"connection_ids": ["bad-1", "bad-2"], "data": data, "attempt": 2}
    assert queue.receive_all() == []  # not visible yet
    assert queue.delayed() == 1


def test_post_shard_backs_off_longer_each_attempt(gateway: FakeGateway, queue: Queue) -> None:
    gateway.play("bad", 403)
    shards.post_shard(shard(["bad"], "{}", attempt=2), lambda cid: None)
    assert [e["DelaySeconds"] for b in queue.batches for e in b["Entries"]] == [4]
    assert json.loads(queue.batches[0]["Entries"][0]["MessageBody"])["attempt"] == 3


def test_post_shard_gives_up_after_the_last_attempt(gateway: FakeGateway, queue: Queue) -> None:
    gateway.play("bad", 403)
    gateway.play("gone", 410)
    gone: list[str] = []
    result = shards.post_shard(shard(["bad", "gone", "ok"], "{}", shards.MAX_ATTEMPTS), gone.append)
    assert (result.delivered, result.failed, gone) == (1, ["bad"], ["gone"])
    assert queue.batches == []


@pytest.mark.parametrize("ids", ["abc", [1, 2], ["ok", None]])
def test_a_malformed_shard_raises_and_posts_nothing(gateway: FakeGateway, ids: Any) -> None:
    with pytest.raises(ValueError):
        shards.post_shard({"connection_ids": ids, "data": "{}"}, lambda cid: None)
    assert gateway.seen == []


def test_attendee_clean_up_messages_are_told_apart_and_malformed_ones_fail_their_record() -> None:
    from chalicelib.spaces.membership import attendee_clear_request

    body = {"kind": "attendee.clear", "space_id": "sp-1", "user_id": "ada"}
    assert attendee_clear_request(body) == ("sp-1", "ada")
    assert attendee_clear_request({"connection_ids": ["a"], "data": "{}", "attempt": 1}) is None
    assert attendee_clear_request({"kind": "reactions.flush", "space_id": "sp-1"}) is None
    for bad in (
        {"kind": "attendee.clear", "space_id": "sp-1"},
        {"kind": "attendee.clear", "space_id": "", "user_id": "ada"},
        {"kind": "attendee.clear", "space_id": "sp-1", "user_id": 7},
    ):
        with pytest.raises(ValueError):
            attendee_clear_request(bad)
