"""moto's server, with one fix that keeps the local stack usable at benchmark sizes.

moto 5.2's TransactWriteItems backs up every table a transaction touches with
a deep copy, so each transaction costs time in proportion to all the data in
those tables: a join storm into one space becomes quadratic. Here the backup
holds only the items the transaction writes, and a cancelled transaction puts
exactly those back. What a transaction does, and what a cancelled one leaves,
is unchanged; tests/e2e check conditional failures and rollbacks through it.

It also serves what moto's SNS "sent" to mobile devices (serve_pushes).

The server answers each request on its own thread, and moto's DynamoDB is not
safe under that: a transaction checks its conditions and writes its items in
separate steps, and a cancelled one puts its backups back, so two concurrent
conditional transactions on one item could both pass, or one's rollback could
erase the other's committed write. DynamoDB applies every request atomically,
so here every DynamoDB request runs under one lock.
"""

from __future__ import annotations

import copy
import functools
import sys
import threading
import types
from typing import Any


def patch_transactions() -> None:
    import moto.dynamodb.models as ddb_models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    if getattr(DynamoDBBackend.transact_write_items, "_item_backups", False):
        return

    def deepcopy(value: Any, memo: Any = None) -> Any:
        # The whole-table backup becomes the table itself; items are backed up below.
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    ddb_models.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)  # type: ignore[attr-defined]
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backups = []
        for entry in transact_items:
            try:
                _, op = next(iter(entry.items()))
                table = self.get_table(op["TableName"])
                attrs = op.get("Key") or op["Item"]
                hash_key = DynamoType(attrs[table.hash_key_attr])
                range_key = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
                backups.append(
                    (table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key)))
                )
            except Exception:
                continue
        try:
            original(self, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(backups):
                _restore(table, hash_key, range_key, item)
            raise

    transact_write_items._item_backups = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def _restore(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    if range_key is not None:
        if item is None:
            table.items.get(hash_key, {}).pop(range_key, None)
        else:
            table.items[hash_key][range_key] = item
    elif item is None:
        table.items.pop(hash_key, None)
    else:
        table.items[hash_key] = item


def serialize_dynamodb() -> None:
    """One DynamoDB request at a time, as atomic as DynamoDB makes each of them."""
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "_serialized", False):
        return
    original = DynamoHandler.call_action
    lock = threading.RLock()

    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        with lock:
            return original(self)

    call_action._serialized = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


PUSHES_PATH = "/_sohbet/pushes"


def serve_pushes() -> None:
    """GET /_sohbet/pushes: every SNS platform endpoint and the messages published to it.

    moto keeps what it would have sent to APNs/FCM on the endpoint, with no API to read
    it back; the local stack's /dev/pushes shows it to app developers (devstack/pushes.py).
    """
    import json

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    if getattr(DomainDispatcherApplication.__call__, "_pushes", False):
        return
    original = DomainDispatcherApplication.__call__

    def call(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != PUSHES_PATH:
            return original(self, environ, start_response)
        from moto.sns.models import sns_backends

        endpoints = []
        for account in list(sns_backends.keys()):
            for backend in list(sns_backends[account].values()):
                for endpoint in list(backend.platform_endpoints.values()):
                    endpoints.append(
                        {
                            "arn": endpoint.arn,
                            "platform": endpoint.application.platform,
                            "token": endpoint.token,
                            "custom_user_data": endpoint.custom_user_data,
                            "enabled": endpoint.enabled,
                            "messages": [
                                {"message_id": mid, "message": text}
                                for mid, text in endpoint.messages.items()
                            ],
                        }
                    )
        body = json.dumps({"endpoints": endpoints}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    call._pushes = True  # type: ignore[attr-defined]
    DomainDispatcherApplication.__call__ = call  # type: ignore[method-assign]


PARENT_PID_ENV = "SOHBET_STACK_PID"


def die_with_parent(parent_pid: int, interval: float = 0.25) -> threading.Thread:
    """Exit as soon as the stack that started this server is gone, however it ended.

    A stack that crashes or is killed (SIGKILL runs no clean-up) must not leave moto
    behind. Polling the parent pid works from any thread that started the child
    (PR_SET_PDEATHSIG fires when the forking *thread* exits, not the process).
    """
    import os
    import time

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(0)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def main(argv: list[str]) -> None:
    import os

    from moto.server import main as moto_main

    parent = os.environ.get(PARENT_PID_ENV)
    if parent:
        die_with_parent(int(parent))
    patch_transactions()
    serialize_dynamodb()
    serve_pushes()
    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
