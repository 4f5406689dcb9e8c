"""Follows, blocks and mutes between users. Both directions are key lookups (table and `inverse` GSI).

A mute is "don't notify me about this person": the muted user's spaces still list and
join as before; only the notifications their going live would send are not sent.
"""

from __future__ import annotations

from typing import Any

from chalicelib.clock import now_iso
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Relation
from chalicelib.schemas import decode_cursor, encode_cursor

KINDS = ("follow", "block", "mute")
CURSOR_KEYS = {"user_id", "rel"}


def relation(user_id: str, kind: str, other: str) -> Relation:
    """The item saying `user_id` <kind>s `other`, keyed for both directions."""
    return Relation(
        user_id,
        f"{kind}#{other}",
        kind=kind,
        other_id=other,
        inverse_rel=f"{kind}#{user_id}",
        created_at=now_iso(),
    )


def put(user_id: str, kind: str, other: str) -> Relation:
    if other == user_id:
        raise CommandError(ErrorCode.BAD_REQUEST, f"you cannot {kind} yourself")
    item = relation(user_id, kind, other)
    item.save()
    return item


def delete(user_id: str, kind: str, other: str) -> None:
    Relation(user_id, f"{kind}#{other}").delete()


def page(user_id: str, kind: str, limit: int, cursor: str | None) -> dict[str, Any]:
    results = Relation.query(
        user_id,
        Relation.rel.startswith(f"{kind}#"),
        limit=limit,
        last_evaluated_key=decode_cursor(cursor, CURSOR_KEYS, {"user_id": user_id}),
    )
    items = [{"user_id": r.other_id, "created_at": r.created_at} for r in results]
    return {"data": items, "next_cursor": encode_cursor(results.last_evaluated_key)}


def view(relation: Relation) -> dict[str, Any]:
    return {"user_id": relation.other_id, "created_at": relation.created_at}


def blocked_by(user_id: str) -> list[str]:
    return [r.other_id for r in Relation.query(user_id, Relation.rel.startswith("block#"))]
