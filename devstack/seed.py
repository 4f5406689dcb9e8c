"""Bulk set-up of data for benchmarks and tests on the local stack.

Kept out of `chalicelib`: no Lambda writes in bulk, so the functions' roles do not
grant dynamodb:BatchWriteItem (tests/test_packaging.py checks grants against calls).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.models import Member, Relation
from chalicelib.relations import relation
from sohbet_client import SohbetClient, rest

if TYPE_CHECKING:
    from devstack.stack import LocalStack


def follow_all(followers: list[str], host: str) -> None:
    """`followers` follow `host`, written in batches of 25 by PynamoDB."""
    with Relation.batch_write() as batch:
        for follower in followers:
            batch.save(relation(follower, "follow", host))


def past_members(template: Member, user_ids: list[str]) -> None:
    """Members who joined the template's space and left it, shaped exactly like the template
    (a member item as a real join and leave left it), written in batches of 25."""
    attributes = {k: v for k, v in template.attribute_values.items() if k not in ("space_id", "user_id")}
    with Member.batch_write() as batch:
        for user_id in user_ids:
            batch.save(Member(template.space_id, user_id, **attributes))


async def hosted_space(stack: LocalStack, host_id: str, title: str = "bench") -> tuple[str, SohbetClient]:
    """A live space created over REST, and its host's client joined to it."""
    token = stack.mint_token(host_id)
    status, space = await rest(stack.base_url, "POST", "/spaces", token, {"title": title}, timeout=120)
    assert status == 201, space
    host = await SohbetClient(stack.ws_url, token, auth="token").connect()
    await host.join(space["id"])
    return str(space["id"]), host
