"""Routes from google.api.http: templates, matching, 404 and 405, and every method served."""

from __future__ import annotations

import pytest

from mesh.edge.routes import (
    Match,
    NoMatch,
    PathTemplate,
    TemplateError,
    bankmesh_services,
    load_routes,
)
from tests.unit.edge.shapes import SHELVES

TABLE = load_routes(bankmesh_services())
SHAPES = load_routes([SHELVES])


def matched(table: object, method: str, path: str) -> Match:
    assert hasattr(table, "match")
    found = table.match(method, path)
    assert isinstance(found, Match), f"{method} {path} did not match: {found}"
    return found


def test_every_annotated_method_of_the_contracts_is_served() -> None:
    """Each method with a google.api.http option has a route, and only those do."""
    annotated = {
        f"/{service.full_name}/{method.name}"
        for service in bankmesh_services()
        for method in service.methods
        if method.GetOptions().ListFields()
    }
    assert {route.grpc_path for route in TABLE.routes} == annotated
    assert "/bankmesh.account.v1.AccountService/CreateTransfer" not in annotated
    assert "/bankmesh.risk.v1.RiskService/ScoreTransaction" not in annotated


def test_a_simple_variable_binds_one_segment_decoded() -> None:
    """`/v1/accounts/{account_id}` gives account_id, percent-decoded."""
    found = matched(TABLE, "GET", "/v1/accounts/a%20b")
    assert found.route.grpc_path.endswith("/GetAccount")
    assert found.path_values == {"account_id": "a b"}


def test_a_custom_verb_selects_its_own_method() -> None:
    """`:freeze`, `:unfreeze` and `:close` on one account path are three methods."""
    for verb, method in (("freeze", "FreezeAccount"), ("close", "CloseAccount")):
        found = matched(TABLE, "POST", f"/v1/accounts/abc:{verb}")
        assert found.route.grpc_path.endswith(f"/{method}")
        assert found.path_values == {"account_id": "abc"}


def test_a_custom_verb_path_with_the_wrong_method_is_405_naming_post() -> None:
    """GET on a `:freeze` path is not GetAccount of "abc:freeze"; it is 405 with Allow: POST."""
    assert TABLE.match("GET", "/v1/accounts/abc:freeze") == NoMatch(("POST",))


def test_a_known_path_with_another_method_lists_the_allowed_ones() -> None:
    """PUT /v1/accounts is 405 and says GET and POST would work."""
    found = TABLE.match("PUT", "/v1/accounts")
    assert isinstance(found, NoMatch)
    assert set(found.allowed) == {"GET", "POST"}


def test_an_unknown_path_matches_nothing() -> None:
    """Unknown paths, extra segments and empty variables are 404 material."""
    for path in ("/v1/nope", "/v1/accounts/a/b/c", "/v1/accounts//entries", "/"):
        assert TABLE.match("GET", path) == NoMatch(())


def test_head_is_answered_by_the_get_route() -> None:
    """HEAD matches the GET route of the same path."""
    assert matched(TABLE, "HEAD", "/v1/accounts").route.grpc_path.endswith("/ListAccounts")


def test_a_segments_pattern_binds_the_whole_resource_name() -> None:
    """`{name=shelves/*/books/*}` binds "shelves/s1/books/b1", keeping an encoded slash."""
    found = matched(SHAPES, "GET", "/v1/shelves/s1/books/b%2F1")
    assert found.path_values == {"name": "shelves/s1/books/b%2F1"}
    assert SHAPES.match("GET", "/v1/shelves/s1/books") == NoMatch(())


def test_a_double_wildcard_binds_the_rest_of_the_path() -> None:
    """`{name=**}` takes every remaining segment."""
    assert matched(SHAPES, "GET", "/v1/files/a/b/c").path_values == {"name": "a/b/c"}


def test_a_nested_field_path_is_a_variable_name() -> None:
    """`{inner.id}` and `{inner.deep.level}` bind nested fields."""
    assert matched(SHAPES, "GET", "/v1/inner/x").path_values == {"inner.id": "x"}
    assert matched(SHAPES, "GET", "/v1/deep/7").path_values == {"inner.deep.level": "7"}


def test_additional_bindings_are_routes_of_the_same_method() -> None:
    """POST /v1/shelves and PUT /v1/shelves/{name} both call Create, with distinct ids."""
    post = matched(SHAPES, "POST", "/v1/shelves").route
    put = matched(SHAPES, "PUT", "/v1/shelves/s1").route
    assert post.method is put.method
    assert (post.operation_id, put.operation_id) == ("Create", "Create2")


def test_a_custom_http_pattern_has_its_own_method() -> None:
    """`custom { kind: "PURGE" }` answers PURGE."""
    assert matched(SHAPES, "PURGE", "/v1/tags/t").route.grpc_path.endswith("/Tag")


@pytest.mark.parametrize(
    "template",
    [
        "v1/no-slash",
        "/v1/{a/b}",
        "/v1/**/tail",
        "/v1/{a}/{a}",
        "/v1/{a={b}}",
        "/v1//x",
        "/v1/{1abc}",
        "/v1/x:",
    ],
)
def test_a_malformed_template_is_refused(template: str) -> None:
    """Templates outside the HttpRule grammar are rejected when routes load."""
    with pytest.raises(TemplateError):
        PathTemplate.parse(template)


def test_templates_render_as_openapi_paths() -> None:
    """Variables become `{field.path}`; the custom verb stays."""
    assert PathTemplate.parse("/v1/{name=shelves/*}/x:go").openapi_path() == "/v1/{name}/x:go"
