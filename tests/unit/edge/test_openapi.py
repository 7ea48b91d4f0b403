"""The OpenAPI document generated from the descriptors."""

from __future__ import annotations

from typing import Any

from mesh.edge.openapi import build_openapi
from mesh.edge.routes import bankmesh_services, load_routes
from mesh.edge.settings import EdgeSettings
from tests.unit.edge.shapes import SHELVES

SETTINGS = EdgeSettings()
TABLE = load_routes(bankmesh_services())
DOC = build_openapi(TABLE, needs_token=lambda r: SETTINGS.auth_for(r.grpc_path).value)
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]


def operation(path: str, method: str) -> dict[str, Any]:
    found: dict[str, Any] = DOC["paths"][path][method]
    return found


def test_every_route_is_an_operation_named_after_its_method() -> None:
    """One operation per route; operationIds are the gRPC method names, unique."""
    ids = [op["operationId"] for item in DOC["paths"].values() for op in item.values()]
    assert sorted(ids) == sorted(r.operation_id for r in TABLE.routes)
    assert len(set(ids)) == len(ids)


def test_path_parameters_are_required_and_query_parameters_dotted() -> None:
    """account_id is a required path parameter; page.pageSize an optional query one."""
    parameters = {
        p["name"]: p for p in operation("/v1/accounts/{account_id}/entries", "get")["parameters"]
    }
    assert parameters["account_id"] == {
        "name": "account_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    assert parameters["page.pageSize"]["in"] == "query"
    assert parameters["page.pageSize"]["schema"]["format"] == "int32"
    assert "accountId" not in parameters


def test_schemas_follow_the_proto3_json_mapping() -> None:
    """int64 strings, enum names, arrays, maps as objects, Timestamps as date-time, closed objects."""
    balances = SCHEMAS["bankmesh.account.v1.Balances"]["properties"]
    assert balances["debitsPosted"] == {
        "type": "string",
        "format": "int64",
        "pattern": "^-?[0-9]{1,19}$",
    }
    account = SCHEMAS["bankmesh.account.v1.Account"]
    assert account["additionalProperties"] is False
    assert account["properties"]["type"] == {
        "$ref": "#/components/schemas/bankmesh.account.v1.AccountType"
    }
    assert "ACCOUNT_TYPE_CUSTOMER" in SCHEMAS["bankmesh.account.v1.AccountType"]["enum"]
    assert account["properties"]["metadata"] == {
        "type": "object",
        "additionalProperties": {"type": "string"},
    }
    assert account["properties"]["createTime"] == {"type": "string", "format": "date-time"}
    listed = SCHEMAS["bankmesh.account.v1.ListAccountsResponse"]["properties"]["accounts"]
    assert listed == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/bankmesh.account.v1.Account"},
    }


def test_a_star_body_leaves_out_the_path_fields() -> None:
    """FreezeAccount's body schema has reason but not account_id."""
    body = operation("/v1/accounts/{account_id}:freeze", "post")["requestBody"]
    assert set(body["content"]["application/json"]["schema"]["properties"]) == {"reason"}


def test_errors_are_the_status_schema_and_security_follows_the_route() -> None:
    """4XX/5XX are google.rpc.Status; login needs no token, accounts need a bearer token."""
    accounts = operation("/v1/accounts", "get")
    assert accounts["responses"]["4XX"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/google.rpc.Status"
    }
    assert accounts["security"] == [{"bearer": []}]
    assert "WWW-Authenticate" in accounts["responses"]["401"]["headers"]
    assert operation("/v1/auth/login", "post")["security"] == []
    assert operation("/v1/customers", "post")["security"] == [{}, {"bearer": []}]
    assert DOC["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_payments_document_the_idempotency_key_header() -> None:
    """CreatePayment lists the Idempotency-Key header."""
    names = [p["name"] for p in operation("/v1/payments", "post")["parameters"]]
    assert "Idempotency-Key" in names


def test_other_shapes_render_too() -> None:
    """Resource-name patterns, repeated query parameters, response_body and bytes."""
    doc = build_openapi(load_routes([SHELVES]), needs_token=lambda r: "required")
    book = doc["paths"]["/v1/{name}"]["get"]["parameters"][0]
    assert book["schema"]["pattern"] == "^shelves/[^/]+/books/[^/]+$"
    search = {p["name"]: p for p in doc["paths"]["/v1/shelves"]["get"]["parameters"]}
    assert search["tags"]["schema"] == {"type": "array", "items": {"type": "string"}}
    assert search["inner.deep.level"]["schema"]["type"] == "integer"
    assert "labels" not in search
    inner = doc["paths"]["/v1/shelves/{name}/inner"]["patch"]
    assert inner["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/bankmesh.edgetest.v1.Inner"
    }
    shelf = doc["components"]["schemas"]["bankmesh.edgetest.v1.Shelf"]["properties"]
    assert shelf["blob"]["format"] == "byte"
    assert shelf["count"]["format"] == "uint64"
