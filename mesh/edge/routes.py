"""The REST routes: read from the services' google.api.http annotations, never hand-written.

`load_routes(services)` turns every annotated method (and each of its
`additional_bindings`) into a `Route`: an HTTP method, a parsed path template,
which request field the body fills, which response field is returned, and the
gRPC method it calls. `RouteTable.match(method, path)` finds the route for a
request, or says why there is none (404, or 405 with the methods that would
have matched).

Path templates are parsed by mesh.edge.templates.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, cast

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.descriptor import ServiceDescriptor as ProtoService

from mesh.edge.templates import PathTemplate, Segment, TemplateError, Variable

__all__ = [
    "HTTP_RULE",
    "Match",
    "NoMatch",
    "PathTemplate",
    "Route",
    "RouteTable",
    "Segment",
    "TemplateError",
    "Variable",
    "bankmesh_services",
    "load_routes",
    "resolve_field",
    "routes_of",
]

if TYPE_CHECKING:
    from google.protobuf.internal.extension_dict import _ExtensionFieldDescriptor

# googleapis-common-protos types `http` as a plain FieldDescriptor; this says
# which message the extension extends and what it holds.
HTTP_RULE = cast(
    "_ExtensionFieldDescriptor[descriptor_pb2.MethodOptions, http_pb2.HttpRule]",
    annotations_pb2.http,
)


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP binding of one gRPC method."""

    http_method: str  # GET, POST, ...
    template: PathTemplate
    method: MethodDescriptor
    body: str = ""  # "", "*" or a top-level request field name
    response_body: str = ""  # "" (the whole response) or a response field name
    binding_index: int = 0  # 0 for the main rule, n for the n-th additional binding

    @property
    def grpc_path(self) -> str:
        """`/package.Service/Method`, as gRPC and the mesh policy name it."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def service(self) -> str:
        """The mesh service that serves it: `bankmesh.account.v1.AccountService` -> account."""
        return self.method.containing_service.full_name.split(".")[1]

    @property
    def operation_id(self) -> str:
        name = self.method.name
        return name if self.binding_index == 0 else f"{name}{self.binding_index + 1}"

    @property
    def input(self) -> Descriptor:
        return self.method.input_type

    @property
    def output(self) -> Descriptor:
        return self.method.output_type

    @property
    def path_fields(self) -> tuple[str, ...]:
        return tuple(v.field_path for v in self.template.variables)

    @property
    def body_field(self) -> FieldDescriptor | None:
        if self.body in ("", "*"):
            return None
        return self.input.fields_by_name[self.body]

    @property
    def response_field(self) -> FieldDescriptor | None:
        if not self.response_body:
            return None
        return self.output.fields_by_name[self.response_body]


def resolve_field(message: Descriptor, field_path: str) -> FieldDescriptor:
    """The field a dotted path such as `page.page_size` names; KeyError if none."""
    current: Descriptor | None = message
    found: FieldDescriptor | None = None
    for name in field_path.split("."):
        if current is None:
            raise KeyError(field_path)
        found = current.fields_by_name.get(name)
        if found is None:
            raise KeyError(field_path)
        current = found.message_type
    assert found is not None
    return found


def routes_of(method: MethodDescriptor) -> list[Route]:
    """The routes of one method: its HttpRule and each additional binding."""
    options = method.GetOptions()
    if not options.HasExtension(HTTP_RULE):
        return []
    rule = options.Extensions[HTTP_RULE]
    routes = [_route(method, rule, 0)]
    for index, extra in enumerate(rule.additional_bindings, start=1):
        if extra.additional_bindings:
            raise TemplateError(f"{method.full_name}: additional bindings do not nest")
        routes.append(_route(method, extra, index))
    return routes


def _route(method: MethodDescriptor, rule: http_pb2.HttpRule, index: int) -> Route:
    pattern = rule.WhichOneof("pattern")
    if pattern is None:
        raise TemplateError(f"{method.full_name}: the HttpRule names no HTTP method")
    if pattern == "custom":
        verb, path = rule.custom.kind.upper(), rule.custom.path
    else:
        verb, path = pattern.upper(), cast(str, getattr(rule, pattern))
    template = PathTemplate.parse(path)
    for variable in template.variables:
        try:
            target = resolve_field(method.input_type, variable.field_path)
        except KeyError:
            raise TemplateError(
                f"{method.full_name}: {path!r} binds {variable.field_path!r}, "
                f"which {method.input_type.full_name} does not have"
            ) from None
        if target.message_type is not None or _is_repeated(target):
            raise TemplateError(
                f"{method.full_name}: path variable {variable.field_path!r} must be a "
                "singular scalar field"
            )
    for name, message in (("body", method.input_type), ("response_body", method.output_type)):
        value = getattr(rule, name)
        if value and value != "*" and value not in message.fields_by_name:
            raise TemplateError(f"{method.full_name}: {name} names no field {value!r}")
    if rule.response_body == "*":
        raise TemplateError(f"{method.full_name}: response_body cannot be '*'")
    return Route(verb, template, method, rule.body, rule.response_body, index)


def _is_repeated(field_descriptor: FieldDescriptor) -> bool:
    return bool(field_descriptor.is_repeated)


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    path_values: dict[str, str]


@dataclass(frozen=True, slots=True)
class NoMatch:
    """No route: `allowed` lists the methods the path does have (405), else 404."""

    allowed: tuple[str, ...] = ()


@dataclass
class RouteTable:
    routes: list[Route] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Templates with a custom verb first: `/v1/x/{id}:freeze` must not be
        # read as `/v1/x/{id}` with id "abc:freeze".
        # Then literal segments before wildcards, longer templates first.
        self.routes.sort(
            key=lambda r: (
                r.template.verb == "",
                -len(r.template.segments),
                [segment.is_wildcard for segment in r.template.segments],
            )
        )

    def match(self, http_method: str, path: str) -> Match | NoMatch:
        allowed: list[str] = []
        verb_matched = False
        for route in self.routes:
            if verb_matched and not route.template.verb:
                break  # a custom-verb route matched the path: it alone owns it
            values = route.template.match(path)
            if values is None:
                continue
            verb_matched = bool(route.template.verb)
            wanted = "GET" if http_method == "HEAD" else http_method
            if route.http_method == wanted:
                return Match(route, values)
            if route.http_method not in allowed:
                allowed.append(route.http_method)
        return NoMatch(tuple(allowed))

    def by_operation(self) -> dict[str, Route]:
        return {route.operation_id: route for route in self.routes}


def load_routes(services: Iterable[ProtoService]) -> RouteTable:
    routes: list[Route] = []
    for service in services:
        for method in service.methods:
            if method.client_streaming or method.server_streaming:
                continue  # unary only: HTTP+JSON has no streams here
            routes.extend(routes_of(method))
    return RouteTable(routes)


def bankmesh_services(package: ModuleType | None = None) -> list[ProtoService]:
    """Every service in the generated `bankmesh.*_pb2` modules, in name order."""
    if package is None:
        package = importlib.import_module("bankmesh")
    names = sorted(
        info.name
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + ".")
        if info.name.endswith("_pb2")
    )
    services: list[ProtoService] = []
    for name in names:
        module = importlib.import_module(name)
        services.extend(module.DESCRIPTOR.services_by_name.values())
    return sorted(services, key=lambda s: s.full_name)
