"""`python -m bench.presence [-n 10000] [--present 100]`: what one broadcast reads to find its
recipients in a space where N people joined over time and only a few are there now.

On the local stack: one listener joins and leaves for real, and N - present - 1 more member items
are written in its exact shape (devstack/seed.py: the history of a long space, without N real
joins); then `present` listeners join over real WebSockets and the host changes the title (one
broadcast). Counted for the recipients' Query the broadcast made (the presence table, now) and for
the Query it replaced (the members partition filtered on `present`, run here as it was), with a
botocore hook on every client (devstack/stats.py): Query calls and items read (ScannedCount).

moto reports a constant ConsumedCapacity, so read units are computed as DynamoDB bills them: a
Query page costs the sizes of every item it read (before any filter) summed and rounded up to
4 KB, one unit per 4 KB strongly consistent, and a page stops at 1 MB
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Query.FilterExpression.html),
item sizes by https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from decimal import Decimal
from typing import Any

from devstack.stack import LocalStack, StackOptions
from devstack.stats import QUERY_READS
from sohbet_client import SohbetClient

PAGE_BYTES = 1024 * 1024
UNIT_BYTES = 4096


def value_size(value: dict[str, Any]) -> int:
    """The bytes of one attribute value in DynamoDB's JSON (its name not included)."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        digits = Decimal(raw).normalize().as_tuple().digits
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in raw)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in raw.items())
    raise ValueError(f"no size rule here for {kind}")


def item_size(item: dict[str, dict[str, Any]]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def read_units(sizes: list[int]) -> tuple[int, int]:
    """(pages, read units) of a strongly consistent Query that reads items of these sizes in order."""
    pages, units, page = 0, 0, 0
    for size in [*sizes, None]:
        if size is None or page + size > PAGE_BYTES:
            if page:
                pages, units = pages + 1, units + math.ceil(page / UNIT_BYTES)
            page = 0
        if size is not None:
            page += size
    return pages, units


def partition_sizes(stack: LocalStack, table: str, space_id: str) -> list[int]:
    """Sizes of every item in the space's partition of the table, in key order."""
    ddb = stack.aws.client("dynamodb")
    sizes: list[int] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "space_id = :s",
        "ExpressionAttributeValues": {":s": {"S": space_id}},
        "ConsistentRead": True,
    }
    while True:
        page = ddb.query(**kwargs)
        sizes += [item_size(item) for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return sizes
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def run(stack: LocalStack, members: int, present: int) -> dict[str, Any]:
    from chalicelib.config import get_settings
    from chalicelib.models import Member
    from devstack import seed

    settings = get_settings()
    tag = int(time.time() * 1000)
    host_id = f"bench-host-{tag}"
    sid, host = await seed.hosted_space(stack, host_id)

    # One real join and leave: the shape of a member who came and went.
    first = await SohbetClient(stack.ws_url, stack.mint_token(f"gone0-{tag}"), auth="token").connect()
    await first.join(sid)
    await first.send("space.leave", space_id=sid)
    await first.close()
    template = Member.get(sid, f"gone0-{tag}", consistent_read=True)
    assert not template.present and template.connection_id is None
    began = time.perf_counter()
    gone = [f"gone{i}-{tag}" for i in range(1, members - present - 1)]
    await asyncio.to_thread(seed.past_members, template, gone)
    seeded = time.perf_counter() - began

    people = []
    for i in range(present):
        client = await SohbetClient(stack.ws_url, stack.mint_token(f"here{i}-{tag}"), auth="token").connect()
        await client.join(sid)
        people.append(client)
    await asyncio.sleep(3)  # the count events of the joins go out first

    scheduler = stack.scheduler
    jobs, scheduler.jobs = scheduler.jobs, []  # no sweep Query counted with the broadcast's
    await asyncio.sleep(1)
    try:
        QUERY_READS.reset()
        posted = stack.gateway.posted  # type: ignore[union-attr]

        def titled(event: dict[str, Any]) -> bool:
            return bool(event["settings"]["title"] == "now")

        watchers = [
            asyncio.create_task(p.next_event("settings.changed", timeout=60, predicate=titled))
            for p in (host, *people)
        ]
        await host.send("settings.update", space_id=sid, title="now")
        await asyncio.gather(*watchers)
        await asyncio.sleep(0.5)  # the gateway counts a post once its frame is sent: after it arrived
        after_calls, after_items = QUERY_READS.of(settings.presence_table)
        members_during = QUERY_READS.of(settings.members_table)
        posts = stack.gateway.posted - posted  # type: ignore[union-attr]

        # The Query the broadcast made before the presence table, as it was made.
        QUERY_READS.reset()
        before = Member.query(
            sid,
            consistent_read=True,
            filter_condition=Member.present == True,  # noqa: E712
            attributes_to_get=["connection_id"],
        )
        before_ids = {m.connection_id for m in before if m.connection_id}
        before_calls, before_items = QUERY_READS.of(settings.members_table)
    finally:
        scheduler.jobs = jobs
    from chalicelib import fanout

    assert before_ids == set(fanout.recipients(sid)), "both Queries find the same sockets"
    member_sizes = partition_sizes(stack, settings.members_table, sid)
    presence_sizes = partition_sizes(stack, settings.presence_table, sid)
    assert len(member_sizes) == before_items == members, (len(member_sizes), before_items, members)
    assert len(presence_sizes) == after_items == present + 1, (len(presence_sizes), after_items)
    before_pages, before_units = read_units(member_sizes)
    after_pages, after_units = read_units(presence_sizes)

    await host.end(sid)
    await asyncio.gather(host.close(), *(p.close() for p in people), return_exceptions=True)
    return {
        "members": members,
        "present": present + 1,
        "seeded_s": seeded,
        "posts": posts,
        "members_queried_during_broadcast": members_during,
        "before": {
            "calls": before_calls,
            "items": before_items,
            "pages": before_pages,
            "rcu": before_units,
            "bytes": sum(member_sizes),
        },
        "after": {
            "calls": after_calls,
            "items": after_items,
            "pages": after_pages,
            "rcu": after_units,
            "bytes": sum(presence_sizes),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--members", type=int, default=10_000, help="members who ever joined")
    parser.add_argument("--present", type=int, default=100, help="listeners there now (the host too)")
    args = parser.parse_args()
    assert args.members > args.present + 1
    stack = LocalStack(
        StackOptions(port=0, extra_env={"POWERTOOLS_LOG_LEVEL": "ERROR", "MAX_CONNECTIONS_PER_USER": "100"})
    ).start()
    try:
        result = asyncio.run(run(stack, args.members, args.present))
    finally:
        stack.stop()
    before, after = result["before"], result["after"]
    print(
        f"\none broadcast in a space where {result['members']} members joined and {result['present']} "
        f"are present (the host included); {result['posts']} posts (the host's reply included)"
    )
    print("| recipients' Query | Query calls | items read | bytes read | read units (strongly consistent) |")
    print("|---|---|---|---|---|")
    print(
        f"| before: members partition, filter present | {before['calls']} | {before['items']} | "
        f"{before['bytes']} | {before['rcu']} |"
    )
    print(
        f"| after: presence rows | {after['calls']} | {after['items']} | {after['bytes']} | {after['rcu']} |"
    )
    print(
        f"ratio before/after: {before['items'] / after['items']:.0f}x items, "
        f"{before['rcu'] / after['rcu']:.0f}x read units; the members table was queried "
        f"{result['members_queried_during_broadcast'][0]} times during the broadcast"
    )


if __name__ == "__main__":
    main()
