"""HTTP request -> protobuf request, protobuf response -> JSON: the proto3 JSON mapping.

A request message is filled from three places, as google/api/http.proto says:

1. the body: with `body: "*"` the whole JSON object is the request; with
   `body: "field"` the JSON value is that one field; with no body, a request
   body is refused;
2. the path variables, which win over nothing: a body that names the same
   field with another value is refused (a URL about account A with a body
   about account B is a mistake or an attack, and guessing is worse);
3. query parameters, for every field not bound by the path or the body (not
   with `body: "*"`): `?customer_id=c-1&page.page_size=10`, JSON or proto
   field names, dotted for nested messages, repeated by repeating the
   parameter, enums by name or number, Timestamps and Durations in their
   JSON string forms.

Conversion goes through `google.protobuf.json_format`, so the checks
(int64 range, enum names, base64, RFC 3339 times) are protobuf's own, and
unknown JSON fields are refused. What protobuf reports is rewritten into a
`BindingError(field, message)` naming the field as a client wrote it.

Responses use the canonical proto3 JSON: lowerCamelCase names, int64 as
strings, enums by name, and every field present (zeros and empty lists
included) so clients need no knowledge of proto3 defaults.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from mesh.edge.routes import Route

# Messages whose JSON form is a string, number or bool (so a path or query
# value can carry them), by full name.
SCALAR_WELL_KNOWN = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        "google.protobuf.DoubleValue",
        "google.protobuf.FloatValue",
        "google.protobuf.Int64Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.Int32Value",
        "google.protobuf.UInt32Value",
        "google.protobuf.BoolValue",
        "google.protobuf.StringValue",
        "google.protobuf.BytesValue",
    }
)
MAX_JSON_DEPTH = 32


class BindingError(ValueError):
    """The request cannot become the method's input message; `field` says where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN/Infinity literals, bounded depth."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BindingError("", "the body is not UTF-8") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise BindingError("", "the body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise BindingError("", f"malformed JSON: {exc.msg} at {where}") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise BindingError("", "the body is nested too deeply")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise BindingError(key, "the field appears twice")
        seen[key] = value
    return seen


def _no_constant(name: str) -> Any:
    raise BindingError("", f"malformed JSON: {name} is not a JSON value")


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        nested: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nested.extend(item.values())
            elif isinstance(item, list):
                nested.extend(item)
        level = nested
        if depth > MAX_JSON_DEPTH:
            break
    return depth - 1


def build_request(
    route: Route,
    path_values: Mapping[str, str],
    query: Sequence[tuple[str, str]],
    body: bytes,
) -> Message:
    """The route's input message from its path values, query parameters and body."""
    request = message_class(route.input)()
    _bind_body(route, request, body)
    for field_path, value in path_values.items():
        _bind_path(request, field_path, value)
    if route.body == "*":
        if query:
            raise BindingError(
                query[0][0], "this route takes its fields in the body, not the query"
            )
        return request
    _bind_query(route, request, query)
    return request


def _bind_body(route: Route, request: Message, body: bytes) -> None:
    if not route.body:
        if body.strip():
            raise BindingError("", "this route takes no request body")
        return
    data = parse_json(body) if body.strip() else {}
    if route.body == "*":
        if not isinstance(data, dict):
            raise BindingError("", "the body must be a JSON object")
        _parse_into(data, request, "")
        return
    target = route.input.fields_by_name[route.body]
    if target.message_type is not None and not _is_repeated(target) and not body.strip():
        return
    _parse_into({target.name: data}, request, "")


def _parse_into(data: dict[str, Any], message: Message, prefix: str) -> None:
    try:
        json_format.ParseDict(data, message, max_recursion_depth=MAX_JSON_DEPTH)
    except json_format.ParseError as exc:
        field, problem = explain(str(exc))
        raise BindingError(_join(prefix, field), problem) from None
    except (TypeError, AttributeError, ValueError) as exc:
        # json_format lets some shape errors through as Python errors.
        raise BindingError(prefix, f"wrong type ({exc})") from None


def _bind_path(request: Message, field_path: str, value: str) -> None:
    parent, leaf = _walk(request, field_path.split("."), field_path)
    current = getattr(parent, leaf.name)
    fresh = _scalar_message(parent, leaf, [value], field_path)
    bound = getattr(fresh, leaf.name)
    if current != bound and current != _default(leaf):
        raise BindingError(field_path, "the body names another value than the path")
    parent.MergeFrom(fresh)


def _bind_query(route: Route, request: Message, query: Sequence[tuple[str, str]]) -> None:
    grouped: dict[tuple[str, ...], tuple[str, list[str]]] = {}
    for key, value in query:
        names = tuple(_canonical_path(route.input, key))
        grouped.setdefault(names, (key, []))[1].append(value)
    bound_elsewhere = set(route.path_fields)
    if route.body:
        bound_elsewhere.add(route.body)
    for names, (key, values) in grouped.items():
        dotted = ".".join(names)
        if any(dotted == b or dotted.startswith(b + ".") for b in bound_elsewhere):
            raise BindingError(key, "this field is bound by the path or the body")
        parent, leaf = _walk(request, list(names), key)
        if leaf.message_type is not None and leaf.message_type.GetOptions().map_entry:
            raise BindingError(key, "maps cannot be passed as query parameters")
        if not _is_repeated(leaf) and len(values) > 1:
            raise BindingError(key, "given more than once, but takes one value")
        parent.MergeFrom(_scalar_message(parent, leaf, values, key))


def _canonical_path(message: Descriptor, key: str) -> list[str]:
    """Proto field names for a dotted key written with proto or JSON names."""
    names: list[str] = []
    current: Descriptor | None = message
    for part in key.split("."):
        if current is None:
            raise BindingError(key, "unknown query parameter")
        found = current.fields_by_name.get(part) or _by_json_name(current, part)
        if found is None:
            raise BindingError(key, "unknown query parameter")
        names.append(found.name)
        current = found.message_type if found.message_type is not None else None
        if current is not None and current.full_name in SCALAR_WELL_KNOWN:
            current = None
    return names


def _by_json_name(message: Descriptor, name: str) -> FieldDescriptor | None:
    for candidate in message.fields:
        if candidate.json_name == name:
            return candidate
    return None


def _descriptor(message: Message) -> Descriptor:
    return cast(Descriptor, message.DESCRIPTOR)


def _walk(request: Message, names: list[str], shown: str) -> tuple[Message, FieldDescriptor]:
    """The message holding the last field of `names` (created on the way) and that field."""
    parent = request
    for name in names[:-1]:
        descriptor = _descriptor(parent).fields_by_name[name]
        if _is_repeated(descriptor):
            raise BindingError(shown, "cannot reach into a repeated field")
        parent = getattr(parent, name)
    leaf = _descriptor(parent).fields_by_name.get(names[-1])
    if leaf is None:
        raise BindingError(shown, "unknown field")
    nested = leaf.message_type
    if (
        nested is not None
        and nested.full_name not in SCALAR_WELL_KNOWN
        and not nested.GetOptions().map_entry
    ):
        raise BindingError(shown, "a message cannot be given as one value")
    return parent, leaf


def _scalar_message(
    parent: Message, leaf: FieldDescriptor, values: list[str], shown: str
) -> Message:
    """A fresh message of the parent's type with `leaf` set from text values."""
    converted = [_json_value(leaf, value, shown) for value in values]
    fresh = type(parent)()
    data = {leaf.name: converted if _is_repeated(leaf) else converted[0]}
    try:
        json_format.ParseDict(data, fresh)
    except json_format.ParseError as exc:
        _, problem = explain(str(exc))
        raise BindingError(shown, problem) from None
    return fresh


def _json_value(leaf: FieldDescriptor, value: str, shown: str) -> Any:
    """A path or query string as the JSON value json_format expects for `leaf`."""
    kind = leaf.type
    if leaf.message_type is not None and leaf.message_type.full_name == "google.protobuf.BoolValue":
        kind = FieldDescriptor.TYPE_BOOL
    if kind == FieldDescriptor.TYPE_BOOL:
        if value in ("true", "1"):
            return True
        if value in ("false", "0"):
            return False
        raise BindingError(shown, f"expected true or false, got {value!r}")
    return value


def _default(leaf: FieldDescriptor) -> Any:
    return leaf.default_value


def _is_repeated(leaf: FieldDescriptor) -> bool:
    return bool(leaf.is_repeated)


def _join(prefix: str, field: str) -> str:
    return ".".join(part for part in (prefix, field) if part)


def render_response(route: Route, response: Message) -> Any:
    """The JSON value to send: the whole response, or its `response_body` field."""
    full = json_format.MessageToDict(response, always_print_fields_with_no_presence=True)
    target = route.response_field
    if target is None:
        return full
    if target.json_name in full:
        return full[target.json_name]
    # An unset message field is absent even with defaults printed.
    return {} if target.message_type is not None and not _is_repeated(target) else None


_STEP = re.compile(r"^Failed to parse (\S+) field: ")
_UNKNOWN = re.compile(r'has no field named "([^"]+)"')
_ENUM = re.compile(r"Invalid enum value (.+?) for enum type (\S+?)(?: at .*)?\.?$")
_PROBLEMS = (
    ("invalid literal for int()", "expected an integer"),
    ("Couldn't parse integer", "expected an integer"),
    ("Value out of range", "the number is out of range"),
    ("expected string or bytes-like object", "expected a string"),
    ("Expected true or false", "expected true or false"),
    ("Couldn't parse float", "expected a number"),
    ("could not convert string to float", "expected a number"),
    ("not iterable", "expected an array or object"),
    ("has no attribute", "expected a JSON object"),
    ("Failed to load timestamp", "expected an RFC 3339 time such as 2024-01-31T12:00:00Z"),
    ("Invalid base64", "expected base64"),
    ("Incorrect padding", "expected base64"),
    ("Duration", "expected a duration such as 1.5s"),
)


def explain(text: str) -> tuple[str, str]:
    """(dotted field path, short problem) from a json_format.ParseError message."""
    path: list[str] = []
    rest = text
    while True:
        step = _STEP.match(rest)
        if step is None:
            break
        path.append(step.group(1))
        rest = rest[step.end() :]
    unknown = _UNKNOWN.search(rest)
    if unknown:
        return ".".join([*path, unknown.group(1)]), "unknown field"
    enum = _ENUM.search(rest)
    if enum:
        return ".".join(path), f"unknown value {enum.group(1)} of {enum.group(2)}"
    for needle, problem in _PROBLEMS:
        if needle in rest:
            return ".".join(path), problem
    return ".".join(path), rest.split(" at ")[0].rstrip(".").strip() or "invalid value"
