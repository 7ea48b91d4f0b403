"""OpenAPI 3.1 for the edge, generated from the same descriptors the transcoder serves.

Schemas follow the proto3 JSON mapping the edge speaks: lowerCamelCase
properties, 64-bit integers as strings (`format: int64`), enums as their
names, repeated fields as arrays, maps as objects with `additionalProperties`,
Timestamps as `date-time` strings, Durations as `"1.5s"` strings. Message
schemas are closed (`additionalProperties: false`) because the edge refuses
unknown fields. Every operation documents its 200 response and google.rpc.Status
for 4XX/5XX; routes that need a token carry the `bearer` security scheme.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from mesh.edge.routes import Route, RouteTable
from mesh.edge.transcode import SCALAR_WELL_KNOWN

JSON = "application/json"
STATUS = "google.rpc.Status"

_INT32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
_UINT32 = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}
_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
_UINT64 = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}
_FLOATS = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}

_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
    },
}
_WRAPPERS = {
    "google.protobuf.DoubleValue": FieldDescriptor.TYPE_DOUBLE,
    "google.protobuf.FloatValue": FieldDescriptor.TYPE_FLOAT,
    "google.protobuf.Int64Value": FieldDescriptor.TYPE_INT64,
    "google.protobuf.UInt64Value": FieldDescriptor.TYPE_UINT64,
    "google.protobuf.Int32Value": FieldDescriptor.TYPE_INT32,
    "google.protobuf.UInt32Value": FieldDescriptor.TYPE_UINT32,
    "google.protobuf.BoolValue": FieldDescriptor.TYPE_BOOL,
    "google.protobuf.StringValue": FieldDescriptor.TYPE_STRING,
    "google.protobuf.BytesValue": FieldDescriptor.TYPE_BYTES,
}


def scalar_schema(kind: int) -> dict[str, Any]:
    if kind == FieldDescriptor.TYPE_STRING:
        return {"type": "string"}
    if kind == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "format": "byte", "contentEncoding": "base64"}
    if kind == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if kind in _INT32:
        return {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
    if kind in _UINT32:
        return {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1}
    if kind in _INT64:
        return {"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,19}$"}
    if kind in _UINT64:
        return {"type": "string", "format": "uint64", "pattern": "^[0-9]{1,20}$"}
    if kind in _FLOATS:
        return {"type": "number"}
    raise ValueError(f"no schema for field type {kind}")


class SchemaBuilder:
    """Component schemas for messages and enums, added as they are referenced."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def message(self, descriptor: Descriptor) -> dict[str, Any]:
        name = descriptor.full_name
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name in _WRAPPERS:
            return {"oneOf": [scalar_schema(_WRAPPERS[name]), {"type": "null"}]}
        if name not in self.components:
            self.components[name] = {}  # placeholder: recursive messages refer to it
            self.components[name] = self.object_schema(descriptor)
        return self.ref(name)

    def object_schema(self, descriptor: Descriptor, *, skip: Iterable[str] = ()) -> dict[str, Any]:
        skipped = set(skip)
        properties = {
            f.json_name: self.field(f) for f in descriptor.fields if f.name not in skipped
        }
        schema: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        return schema

    def enum(self, descriptor: EnumDescriptor) -> dict[str, Any]:
        name = descriptor.full_name
        if name not in self.components:
            self.components[name] = {"type": "string", "enum": [v.name for v in descriptor.values]}
        return self.ref(name)

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            value = message.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.single(value)}
        single = self.single(field)
        if field.is_repeated:
            return {"type": "array", "items": single}
        return single

    def single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None:
            return self.message(field.message_type)
        if field.enum_type is not None:
            return self.enum(field.enum_type)
        return scalar_schema(field.type)


def status_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "google.rpc.Status: the gRPC code, a message for developers, "
        "and details; details[] holds a google.rpc.ErrorInfo whose reason is stable.",
        "properties": {
            "code": {"type": "integer", "format": "int32"},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "@type": {"type": "string"},
                        "reason": {"type": "string"},
                        "domain": {"type": "string"},
                        "metadata": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                    },
                    "required": ["@type"],
                },
            },
        },
        "required": ["code", "message", "details"],
    }


def build_openapi(
    table: RouteTable,
    *,
    needs_token: Callable[[Route], str],
    title: str = "bankmesh API",
    version: str = "v1",
    server_url: str = "",
) -> dict[str, Any]:
    """The OpenAPI 3.1 document. `needs_token(route)` is "required", "optional" or "none"."""
    schemas = SchemaBuilder()
    paths: dict[str, dict[str, Any]] = {}
    for route in sorted(table.routes, key=lambda r: (r.template.openapi_path(), r.http_method)):
        item = paths.setdefault(route.template.openapi_path(), {})
        item[route.http_method.lower()] = _operation(route, schemas, needs_token(route))
    schemas.components[STATUS] = status_schema()
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "HTTPS+JSON for mobile clients, transcoded to the bankmesh gRPC "
            "services from their google.api.http annotations. Errors are google.rpc.Status.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


def _operation(route: Route, schemas: SchemaBuilder, auth: str) -> dict[str, Any]:
    method = route.method
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "tags": [method.containing_service.name],
        "summary": f"{method.containing_service.full_name}.{method.name}",
        "parameters": _parameters(route, schemas),
        "responses": _responses(route, schemas, auth),
    }
    if auth == "required":
        operation["security"] = [{"bearer": []}]
    elif auth == "optional":
        operation["security"] = [{}, {"bearer": []}]
    else:
        operation["security"] = []
    body = _request_body(route, schemas)
    if body is not None:
        operation["requestBody"] = body
    idempotency = route.input.fields_by_name.get("idempotency_key")
    if idempotency is not None and route.body:
        operation["parameters"].append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Used as idempotency_key when the body does not set it.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        )
    return operation


def _parameters(route: Route, schemas: SchemaBuilder) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    for variable in route.template.variables:
        field = _resolve(route.input, variable.field_path)
        schema = schemas.single(field)
        pattern = route.template.variable_pattern(variable)
        if pattern:
            schema = {"type": "string", "pattern": pattern}
        parameters.append(
            {"name": variable.field_path, "in": "path", "required": True, "schema": schema}
        )
    if route.body == "*":
        return parameters
    bound = {*route.path_fields, route.body} - {""}
    for name, field in _query_fields(route.input, "", bound, set()):
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": schemas.field(field),
                **({"explode": True} if field.is_repeated else {}),
            }
        )
    return parameters


def _query_fields(
    message: Descriptor, prefix: str, bound: set[str], seen: set[str]
) -> list[tuple[str, FieldDescriptor]]:
    """(dotted JSON name below `message`, field) for every field a query parameter can set."""
    out: list[tuple[str, FieldDescriptor]] = []
    for field in message.fields:
        proto_path = f"{prefix}{field.name}"
        nested = field.message_type
        if proto_path in bound or (nested is not None and nested.GetOptions().map_entry):
            continue
        if nested is not None and nested.full_name not in SCALAR_WELL_KNOWN:
            if field.is_repeated or nested.full_name in seen:
                continue  # a repeated message or a cycle cannot be flat parameters
            for inner_name, inner in _query_fields(
                nested, proto_path + ".", bound, seen | {nested.full_name}
            ):
                out.append((f"{field.json_name}.{inner_name}", inner))
            continue
        out.append((field.json_name, field))
    return out


def _resolve(message: Descriptor, path: str) -> FieldDescriptor:
    current: Descriptor | None = message
    field: FieldDescriptor | None = None
    for name in path.split("."):
        assert current is not None
        field = current.fields_by_name[name]
        current = field.message_type
    assert field is not None
    return field


def _request_body(route: Route, schemas: SchemaBuilder) -> dict[str, Any] | None:
    if not route.body:
        return None
    if route.body == "*":
        top_level_path = {p for p in route.path_fields if "." not in p}
        schema = schemas.object_schema(route.input, skip=top_level_path)
    else:
        schema = schemas.field(route.input.fields_by_name[route.body])
    return {"required": False, "content": {JSON: {"schema": schema}}}


def _responses(route: Route, schemas: SchemaBuilder, auth: str) -> dict[str, Any]:
    target = route.response_field
    ok = schemas.message(route.output) if target is None else schemas.field(target)
    error = {"content": {JSON: {"schema": schemas.ref(STATUS)}}}
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {JSON: {"schema": ok}}},
        "400": {"description": "Invalid argument or failed precondition", **error},
        "404": {"description": "Not found (or not yours)", **error},
        "4XX": {"description": "Refused: see details[].reason", **error},
        "5XX": {"description": "The service could not answer", **error},
    }
    if auth != "none":
        responses["401"] = {
            "description": "No, an invalid or an expired access token",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            **error,
        }
    responses["429"] = {
        "description": "Rate limited",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        **error,
    }
    return responses
