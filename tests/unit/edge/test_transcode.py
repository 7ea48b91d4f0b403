"""Binding HTTP requests to protobuf messages, and protobuf responses to JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf.message import Message

from bankmesh.account.v1 import account_pb2 as pb
from bankmesh.account.v1 import account_service_pb2 as svc
from bankmesh.common.v1 import money_pb2
from mesh.edge.routes import Match, RouteTable, bankmesh_services, load_routes
from mesh.edge.transcode import BindingError, build_request, explain, render_response
from tests.unit.edge.shapes import SHELVES

TABLE = load_routes(bankmesh_services())
SHAPES = load_routes([SHELVES])


def bind(
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    body: Any = None,
    table: RouteTable = TABLE,
) -> Message:
    found = table.match(method, path)
    assert isinstance(found, Match)
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    return build_request(found.route, found.path_values, query or [], raw)


def refusal(*args: Any, **kwargs: Any) -> BindingError:
    with pytest.raises(BindingError) as caught:
        bind(*args, **kwargs)
    return caught.value


def test_a_star_body_fills_the_whole_request_with_camel_or_proto_names() -> None:
    """POST /v1/accounts reads every field from the JSON object, either naming."""
    request = bind(
        "POST",
        "/v1/accounts",
        body={
            "customerId": "c-1",
            "currency_code": "EUR",
            "type": "ACCOUNT_TYPE_CUSTOMER",
            "limits": {"overdraftLimitMinorUnits": "500", "debitsMustNotExceedCredits": True},
            "metadata": {"k": "v"},
        },
    )
    assert request == svc.OpenAccountRequest(
        customer_id="c-1",
        currency_code="EUR",
        type=pb.ACCOUNT_TYPE_CUSTOMER,
        limits=pb.AccountLimits(
            debits_must_not_exceed_credits=True, overdraft_limit_minor_units=500
        ),
        metadata={"k": "v"},
    )


def test_path_variables_fill_their_fields_next_to_the_body() -> None:
    """`:freeze` takes account_id from the path and reason from the body."""
    request = bind("POST", "/v1/accounts/abc:freeze", body={"reason": "lost card"})
    assert request == svc.FreezeAccountRequest(account_id="abc", reason="lost card")


def test_a_body_naming_another_id_than_the_path_is_refused() -> None:
    """A body about account B on a URL about account A is a 400, not a guess."""
    error = refusal("POST", "/v1/accounts/abc:freeze", body={"accountId": "other"})
    assert error.field == "account_id"


def test_a_body_repeating_the_path_value_is_accepted() -> None:
    """The same id in path and body is no conflict."""
    assert bind("POST", "/v1/accounts/abc:close", body={"accountId": "abc"}).account_id == "abc"  # type: ignore[attr-defined]


def test_query_parameters_fill_the_remaining_fields_nested_by_dots() -> None:
    """GET /v1/accounts?customer_id=..&page.page_size=.. with proto or JSON names."""
    request = bind(
        "GET",
        "/v1/accounts",
        [("customerId", "c-1"), ("page.pageSize", "20"), ("page.page_token", "t")],
    )
    assert request == svc.ListAccountsRequest(
        customer_id="c-1", page={"page_size": 20, "page_token": "t"}
    )


def test_a_timestamp_query_parameter_takes_rfc_3339() -> None:
    """GetBalance's as_of is a date-time string in the query."""
    request = bind("GET", "/v1/accounts/a/balance", [("as_of", "2024-01-31T12:00:00Z")])
    assert request.as_of.seconds == 1706702400  # type: ignore[attr-defined]
    error = refusal("GET", "/v1/accounts/a/balance", [("asOf", "yesterday")])
    assert error.field == "asOf"


def test_repeated_query_parameters_append_and_enums_take_names_or_numbers() -> None:
    """tags=a&tags=b, numbers=1&numbers=2, color by name or by number, bool as true/false."""
    request = bind(
        "GET",
        "/v1/shelves",
        [
            ("tags", "a"),
            ("tags", "b"),
            ("numbers", "1"),
            ("numbers", "2"),
            ("color", "COLOR_BLUE"),
            ("flag", "true"),
            ("inner.big", "9007199254740993"),
            ("inner.deep.level", "3"),
        ],
        table=SHAPES,
    )
    assert list(request.tags) == ["a", "b"]  # type: ignore[attr-defined]
    assert list(request.numbers) == [1, 2]  # type: ignore[attr-defined]
    assert request.color == 2  # type: ignore[attr-defined]
    assert request.flag is True  # type: ignore[attr-defined]
    assert request.inner.big == 9007199254740993  # type: ignore[attr-defined]
    assert request.inner.deep.level == 3  # type: ignore[attr-defined]
    assert bind("GET", "/v1/shelves", [("color", "1")], table=SHAPES).color == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ([("page.page_size", "ten")], "page.page_size"),
        ([("page.page_size", "99999999999")], "page.page_size"),
        ([("nope", "1")], "nope"),
        ([("page", "1")], "page"),
        ([("customer_id", "a"), ("customer_id", "b")], "customer_id"),
    ],
)
def test_a_bad_query_parameter_is_refused_naming_it(
    query: list[tuple[str, str]], field: str
) -> None:
    """Wrong types, out-of-range numbers, unknown names, messages and repeats of singular fields."""
    assert refusal("GET", "/v1/accounts", query).field == field


def test_query_parameters_cannot_touch_path_or_body_fields() -> None:
    """account_id is the path's; a `body: "*"` route takes no query at all."""
    assert refusal("GET", "/v1/accounts/a/entries", [("account_id", "b")]).field == "account_id"
    assert refusal("POST", "/v1/accounts", [("currency_code", "EUR")]).field == "currency_code"


def test_bad_enums_booleans_and_maps_in_the_query_are_refused() -> None:
    """An unknown enum name, a bool that is not true/false, and a map are 400s."""
    assert refusal("GET", "/v1/shelves", [("color", "PURPLE")], table=SHAPES).field == "color"
    assert refusal("GET", "/v1/shelves", [("flag", "yes")], table=SHAPES).field == "flag"
    assert refusal("GET", "/v1/shelves", [("labels", "a")], table=SHAPES).field == "labels"


def test_nested_path_variables_fill_nested_fields() -> None:
    """`{inner.id}` and `{inner.deep.level}` reach into sub-messages, converting types."""
    assert bind("GET", "/v1/inner/x", table=SHAPES).inner.id == "x"  # type: ignore[attr-defined]
    assert bind("GET", "/v1/deep/7", table=SHAPES).inner.deep.level == 7  # type: ignore[attr-defined]
    assert refusal("GET", "/v1/deep/seven", table=SHAPES).field == "inner.deep.level"


def test_a_body_naming_one_field_fills_only_that_field() -> None:
    """`body: "inner"` reads the JSON as the inner message; query fills the rest."""
    request = bind(
        "PATCH",
        "/v1/shelves/s1/inner",
        [("flag", "true")],
        body={"id": "i", "big": 5},
        table=SHAPES,
    )
    assert (request.name, request.inner.id, request.inner.big, request.flag) == ("s1", "i", 5, True)  # type: ignore[attr-defined]


def test_a_resource_name_pattern_binds_the_whole_name() -> None:
    """`{name=shelves/*/books/*}` fills name with the full resource name."""
    assert bind("GET", "/v1/shelves/a/books/b", table=SHAPES).name == "shelves/a/books/b"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (b"{not json", "", "malformed JSON"),
        (b'{"currencyCode": 5}', "currencyCode", "expected a string"),
        (
            b'{"limits": {"overdraftLimitMinorUnits": "x"}}',
            "limits.overdraftLimitMinorUnits",
            "integer",
        ),
        (b'{"type": "ACCOUNT_TYPE_GOLD"}', "type", "unknown value"),
        (b'{"balance": 100}', "balance", "unknown field"),
        (b'{"limits": {"secret": 1}}', "limits.secret", "unknown field"),
        (b'{"currencyCode": "EUR", "currencyCode": "USD"}', "currencyCode", "twice"),
        (b"[1, 2]", "", "JSON object"),
        (b'{"x": NaN}', "", "NaN"),
        (b"\xff\xfe", "", "UTF-8"),
        (b'{"metadata": {"a": {"b": {"c": 1}}}}', "metadata", ""),
        (b"[" * 5000 + b"]" * 5000, "", "deeply"),
    ],
)
def test_a_malformed_body_is_refused_with_a_field_level_message(
    body: bytes, field: str, words: str
) -> None:
    """Bad JSON, wrong types, unknown fields, duplicates and deep nesting name what is wrong."""
    error = refusal("POST", "/v1/accounts", body=body)
    assert error.field == field
    assert words in error.message


def test_a_route_without_a_body_refuses_one() -> None:
    """GET routes take no JSON body."""
    assert "no request body" in refusal("GET", "/v1/accounts", body={"customerId": "c"}).message


def test_an_empty_body_on_a_body_route_is_an_empty_message() -> None:
    """POST with no body binds nothing (the service then says what is missing)."""
    assert bind("POST", "/v1/accounts") == svc.OpenAccountRequest()


def test_responses_are_proto3_json_with_int64_as_strings_and_enum_names() -> None:
    """Names are lowerCamelCase, int64 are strings, enums are names, defaults are present."""
    found = TABLE.match("GET", "/v1/accounts/a")
    assert isinstance(found, Match)
    response = svc.GetAccountResponse(
        account=pb.Account(
            account_id="a",
            type=pb.ACCOUNT_TYPE_CUSTOMER,
            balances=pb.Balances(posted=money_pb2.Money(currency_code="EUR", minor_units=2**60)),
        )
    )
    body = render_response(found.route, response)
    assert body["account"]["type"] == "ACCOUNT_TYPE_CUSTOMER"
    assert body["account"]["balances"]["posted"]["minorUnits"] == str(2**60)
    assert body["account"]["status"] == "ACCOUNT_STATUS_UNSPECIFIED"
    assert body["account"]["customerId"] == ""


def test_response_body_returns_only_that_field() -> None:
    """`response_body: "inner"` answers with the inner message alone."""
    found = SHAPES.match("PATCH", "/v1/shelves/s/inner")
    assert isinstance(found, Match)
    shelf_class = type(bind("GET", "/v1/shelves", table=SHAPES))
    rendered = render_response(found.route, shelf_class(name="s", inner={"id": "i"}))
    assert rendered == {"id": "i", "big": "0"}


def test_protobuf_parse_errors_are_explained_by_field() -> None:
    """json_format's nested messages become a dotted path and a short problem."""
    assert explain(
        "Failed to parse amount field: Failed to parse minorUnits field: "
        "invalid literal for int() with base 10: 'abc'.."
    ) == ("amount.minorUnits", "expected an integer")
