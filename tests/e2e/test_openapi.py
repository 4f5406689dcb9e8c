"""docs/openapi.yaml describes the whole REST API, and the API behaves as it says.

The document and app.py's routes are compared both ways; then schemathesis
generates requests (valid and invalid) for every operation, with a normal user's
token and with an admin's, and checks that no answer is a 5xx or breaks the document.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from conftest import http
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.e2e

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
ERROR_CODES = {
    "bad_request",
    "unauthorized",
    "not_allowed",
    "not_found",
    "conflict",
    "limit_reached",
    "rate_limited",
    "space_ended",
    "internal",
}


def _doc() -> dict[str, Any]:
    return yaml.safe_load(DOC_PATH.read_text())


def _documented() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in _doc()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def _routes(app: Any) -> set[tuple[str, str]]:
    return {(method, path) for path, entries in app.routes.items() for method in entries}


def test_every_route_is_documented_and_nothing_else(stack) -> None:
    routes = _routes(stack.app)
    documented = _documented()
    assert routes - documented == set(), "routes missing from docs/openapi.yaml"
    assert documented - routes == set(), "documented operations that are not routes"


def test_the_document_is_valid_openapi() -> None:
    from openapi_spec_validator import validate

    validate(_doc())


def test_every_operation_documents_bearer_auth_401_and_500_and_its_errors() -> None:
    doc = _doc()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert doc["security"] == [{"bearer": []}]
    error = doc["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"code", "message", "data"}
    assert set(error["properties"]["code"]["enum"]) == ERROR_CODES
    for path, item in doc["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            assert {"401", "500"} <= codes, (method, path)
            assert "security" not in op, (method, path)  # the global bearer requirement applies
            if path.startswith("/admin"):
                assert "403" in codes, (method, path)
            for code in codes - {"200", "201", "202", "204"}:
                ref = op["responses"][code]["$ref"]
                response = doc["components"]["responses"][ref.rsplit("/", 1)[1]]
                assert response["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"
                }


def test_path_parameters_match_the_routes(stack) -> None:
    doc = _doc()
    for path, item in doc["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            declared = {
                p.get("name") or _component_parameter(doc, p)["name"]
                for p in op.get("parameters", [])
                if (p.get("in") or _component_parameter(doc, p)["in"]) == "path"
            }
            assert declared == names, (method, path)


def _component_parameter(doc: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
    return doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]


def test_the_local_stack_serves_the_document(stack) -> None:
    status, body = http(stack, "GET", "/openapi.json")
    assert status == 200
    assert body == _doc()
    status, text = http(stack, "GET", "/openapi.yaml")
    assert status == 200
    assert yaml.safe_load(text) == _doc()


# -- schemathesis -------------------------------------------------------------------------
# Generated from the document itself (so the operations are known when tests are
# collected) and sent to the stack. Derandomized, so CI runs the same examples each
# time; SOHBET_FUZZ_EXAMPLES=500 SOHBET_FUZZ_RANDOM=1 explores further by hand.

SCHEMA = schemathesis.openapi.from_path(DOC_PATH)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = int(os.environ.get("SOHBET_FUZZ_EXAMPLES", "8"))
RANDOM = os.environ.get("SOHBET_FUZZ_RANDOM", "") == "1"


@pytest.fixture(scope="module")
def tokens(stack) -> dict[str, str]:
    return {
        "user": stack.mint_token("fuzz-user"),
        "admin": stack.mint_token("fuzz-admin", ["admins"]),
    }


@pytest.mark.parametrize("who", ["user", "admin"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_the_api_keeps_to_its_document(
    stack, tokens: dict[str, str], operation: Any, mode: GenerationMode, who: str
) -> None:
    headers = {"Authorization": f"Bearer {tokens[who]}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
    )
    def one(case: Any) -> None:
        case.call_and_validate(base_url=stack.base_url, headers=headers, checks=CHECKS, timeout=10)

    one()
