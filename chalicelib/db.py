"""DynamoDB plumbing shared by every module: the low-level connection for transactions,
and what a failed write or transaction means."""

from __future__ import annotations

from pynamodb.connection import Connection as DynamoConnection
from pynamodb.exceptions import PynamoDBException, TransactGetError, TransactWriteError

from chalicelib.config import get_settings

_dynamo: DynamoConnection | None = None


def dynamo() -> DynamoConnection:
    global _dynamo
    if _dynamo is None:
        _dynamo = DynamoConnection(region=get_settings().region)
    return _dynamo


def reset() -> None:
    """Forget the connection (tests that point the settings elsewhere)."""
    global _dynamo
    _dynamo = None


# A transaction is cancelled with ConditionalCheckFailed when a condition of ours did not
# hold, and with TransactionConflict when another transaction held one of its items:
# both mean "someone else got there first", so read again and decide again.
# https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html
_CONFLICT_CODES = frozenset({"ConditionalCheckFailed", "TransactionConflict"})


def is_conflict(exc: TransactWriteError) -> bool:
    """Did a transaction fail because another writer got there first (not an outage)?"""
    reasons = getattr(exc, "cancellation_reasons", None) or []
    return any(r is not None and r.code in _CONFLICT_CODES for r in reasons)


def held_by_another(exc: TransactWriteError) -> bool:
    """Cancelled only because another transaction held one of its items (none of our conditions
    failed): the same write may simply be tried again."""
    codes = {r.code for r in getattr(exc, "cancellation_reasons", None) or [] if r is not None and r.code}
    return codes == {"TransactionConflict"}


def condition_failed(exc: PynamoDBException) -> bool:
    """Did a single-item write fail because its condition did not hold (not an outage)?"""
    # getattr: PynamoDB's cause_response_code raises AttributeError when the cause is no
    # ClientError (a read timeout, a refused connection)
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


def is_read_conflict(exc: TransactGetError) -> bool:
    """Was a TransactGetItems cancelled because a transactional write held one of its items?"""
    reasons = getattr(exc, "cancellation_reasons", None) or []
    return any(r is not None and r.code == "TransactionConflict" for r in reasons)
