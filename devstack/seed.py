"""Bulk set-up of data for benchmarks and tests on the local stack.

Kept out of `chalicelib`: no Lambda writes in bulk, so the functions' roles do not
grant dynamodb:BatchWriteItem (tests/test_packaging.py checks grants against calls).
"""

from __future__ import annotations

from chalicelib.models import Relation
from chalicelib.relations import relation


def follow_all(followers: list[str], host: str) -> None:
    """`followers` follow `host`, written in batches of 25 by PynamoDB."""
    with Relation.batch_write() as batch:
        for follower in followers:
            batch.save(relation(follower, "follow", host))
