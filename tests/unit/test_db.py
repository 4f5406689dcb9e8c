"""chalicelib/db.py: what a failed DynamoDB write means, told apart without AWS."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from pynamodb.exceptions import DeleteError, PutError, UpdateError

from chalicelib.db import condition_failed


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "UpdateItem")


@pytest.mark.parametrize("error", [UpdateError, DeleteError, PutError])
def test_a_condition_that_did_not_hold_is_told_apart_from_other_refusals(error: type) -> None:
    assert condition_failed(error("write", cause=_client_error("ConditionalCheckFailedException")))
    assert not condition_failed(error("write", cause=_client_error("ProvisionedThroughputExceededException")))
    assert not condition_failed(error("write", cause=_client_error("ValidationException")))


@pytest.mark.parametrize(
    "cause",
    [
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        None,
    ],
)
def test_an_outage_is_not_a_failed_condition_and_does_not_raise_while_asking(cause: Exception | None) -> None:
    # PynamoDB's own cause_response_code raises AttributeError for these causes
    assert not condition_failed(UpdateError("write", cause=cause))
