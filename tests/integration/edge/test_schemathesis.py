"""Property-based API tests: schemathesis drives the edge from its own /openapi.json.

Every account and payment operation gets generated requests (valid and
invalid bodies, parameters, ids) sent over HTTPS through the edge to the real
services, as a signed-in customer. No answer may be a 5xx, and every answer
must match the document: a documented status, JSON, and a body that fits
the response schema (the Status schema for errors). Identity's routes are
left out: the identity service is not part of this mesh yet.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.edge.conftest import EdgeMesh

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def operations(schema: BaseSchema) -> list[APIOperation[Any, Any, Any, Any]]:
    found = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the document has an invalid operation: {result}"
        found.append(result.ok())
    return found


def exercise(document: dict[str, Any], base_url: str, ca: str, token: str) -> list[str]:
    """Run every account and payment operation; the names of those that were exercised."""
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    exercised: list[str] = []
    for operation in operations(schema):
        if not operation.path.startswith(("/v1/accounts", "/v1/payments")):
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(
                base_url=base_url, session=session, headers=headers, checks=CHECKS, verify=ca
            )

        run()
        exercised.append(f"{operation.method.upper()} {operation.path}")
    session.close()
    return exercised


async def test_the_edge_answers_generated_requests_as_its_openapi_says(edge_mesh: EdgeMesh) -> None:
    """No 5xx, and every response conforms to /openapi.json, for generated requests."""
    async with edge_mesh.client() as client:
        document = (await client.get("/openapi.json")).json()
    token = edge_mesh.issuer.customer("schemathesis-customer")
    # The edge and the services run on this event loop; the generated requests
    # are blocking calls, so they are made from a worker thread.
    exercised = await asyncio.to_thread(exercise, document, edge_mesh.url, str(edge_mesh.ca), token)
    assert "POST /v1/payments" in exercised
    assert "GET /v1/accounts/{account_id}" in exercised
    assert len(exercised) == 14


async def test_the_document_is_valid_openapi_3_1(edge_mesh: EdgeMesh) -> None:
    """schemathesis loads the served document and finds every route in it."""
    async with edge_mesh.client() as client:
        document = (await client.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    assert len(operations(schema)) == sum(len(item) for item in document["paths"].values())
