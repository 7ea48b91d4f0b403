"""The REST routes: read from the services' google.api.http annotations, never hand-written.

`load_routes(services)` turns every annotated method (and each of its
`additional_bindings`) into a `Route`: an HTTP method, a parsed path template,
which request field the body fills, which response field is returned, and the
gRPC method it calls. `RouteTable.match(method, path)` finds the route for a
request, or says why there is none (404, or 405 with the methods that would
have matched).

Path templates follow google/api/http.proto:

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb     = ":" LITERAL ;

`{x}` is `{x=*}`; `**` matches any number of segments and may only come last.
A variable matching one segment is percent-decoded whole; one matching
several keeps `%2F` encoded, so the value's own slashes stay distinguishable
(the spec's "reserved expansion").
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.descriptor import ServiceDescriptor as ProtoService

if TYPE_CHECKING:
    from google.protobuf.internal.extension_dict import _ExtensionFieldDescriptor

# googleapis-common-protos types `http` as a plain FieldDescriptor; this says
# which message the extension extends and what it holds.
HTTP_RULE = cast(
    "_ExtensionFieldDescriptor[descriptor_pb2.MethodOptions, http_pb2.HttpRule]",
    annotations_pb2.http,
)

_LITERAL = re.compile(r"^[A-Za-z0-9._~!$&'()+,;=@-]+$")
_FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class TemplateError(ValueError):
    """A google.api.http path template that does not follow the grammar."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment of a template: a literal, `*` (one segment) or `**` (the rest)."""

    text: str

    @property
    def is_wildcard(self) -> bool:
        return self.text in ("*", "**")


@dataclass(frozen=True, slots=True)
class Variable:
    """`{field.path=sub/*/template}`: the segments it covers, by index."""

    field_path: str
    start: int  # index of its first segment in PathTemplate.segments
    end: int  # one past its last segment; for `**` the rest of the path

    @property
    def is_multi_segment(self) -> bool:
        return self.end - self.start > 1


@dataclass(frozen=True, slots=True)
class PathTemplate:
    text: str
    segments: tuple[Segment, ...]
    variables: tuple[Variable, ...]
    verb: str = ""

    @classmethod
    def parse(cls, text: str) -> PathTemplate:
        if not text.startswith("/"):
            raise TemplateError(f"{text!r}: a template starts with '/'")
        body, verb = _split_verb(text)
        segments: list[Segment] = []
        variables: list[Variable] = []
        for token in _tokens(body[1:], text):
            if token.startswith("{"):
                inner = token[1:-1]
                path, _, sub = inner.partition("=")
                if not _FIELD_PATH.match(path):
                    raise TemplateError(f"{text!r}: {path!r} is not a field path")
                sub_segments = [_segment(s, text) for s in (sub or "*").split("/")]
                start = len(segments)
                segments.extend(sub_segments)
                variables.append(Variable(path, start, len(segments)))
            else:
                segments.append(_segment(token, text))
        for i, segment in enumerate(segments):
            if segment.text == "**" and i != len(segments) - 1:
                raise TemplateError(f"{text!r}: '**' may only be the last segment")
        paths = [v.field_path for v in variables]
        if len(set(paths)) != len(paths):
            raise TemplateError(f"{text!r}: a field is bound twice")
        return cls(text, tuple(segments), tuple(variables), verb)

    def match(self, path: str) -> dict[str, str] | None:
        """The variables' values if `path` (still percent-encoded) matches, else None."""
        if self.verb:
            suffix = ":" + self.verb
            if not path.endswith(suffix):
                return None
            path = path[: -len(suffix)]
        if not path.startswith("/"):
            return None
        parts = path[1:].split("/")
        if not self._fits(parts):
            return None
        values: dict[str, str] = {}
        for variable in self.variables:
            end = len(parts) if self._is_open_ended(variable) else variable.end
            raw = parts[variable.start : end]
            if variable.is_multi_segment or self._is_open_ended(variable):
                # Reserved expansion: decode all but "/" so it cannot be forged.
                values[variable.field_path] = "/".join(
                    unquote(p.replace("%2F", "%252F").replace("%2f", "%252f")) for p in raw
                )
            else:
                values[variable.field_path] = unquote(raw[0])
        return values

    def _is_open_ended(self, variable: Variable) -> bool:
        return variable.end == len(self.segments) and self.segments[-1].text == "**"

    def _fits(self, parts: Sequence[str]) -> bool:
        open_ended = bool(self.segments) and self.segments[-1].text == "**"
        fixed = len(self.segments) - (1 if open_ended else 0)
        if len(parts) < fixed or (not open_ended and len(parts) != fixed):
            return False
        for segment, part in zip(self.segments[:fixed], parts, strict=False):
            if segment.text == "*":
                if part == "":
                    return False
            elif segment.text != unquote(part):
                return False
        return True

    def openapi_path(self) -> str:
        """The template as an OpenAPI path: one `{field.path}` per variable."""
        out: list[str] = []
        i = 0
        by_start = {v.start: v for v in self.variables}
        while i < len(self.segments):
            variable = by_start.get(i)
            if variable is not None:
                out.append("{" + variable.field_path + "}")
                i = variable.end
            else:
                out.append(self.segments[i].text)
                i += 1
        return "/" + "/".join(out) + (":" + self.verb if self.verb else "")

    def variable_pattern(self, variable: Variable) -> str | None:
        """A regex for a multi-segment variable's value (None for a plain `{x}`)."""
        sub = self.segments[variable.start : variable.end]
        if len(sub) == 1 and sub[0].text == "*":
            return None
        pieces = []
        for segment in sub:
            if segment.text == "*":
                pieces.append("[^/]+")
            elif segment.text == "**":
                pieces.append(".*")
            else:
                pieces.append(re.escape(segment.text))
        return "^" + "/".join(pieces) + "$"


def _split_verb(text: str) -> tuple[str, str]:
    # The verb is a ':' after the last '/' and outside any {...}.
    last_slash = text.rfind("/")
    close = text.rfind("}")
    colon = text.rfind(":")
    if colon > last_slash and colon > close:
        verb = text[colon + 1 :]
        if not _LITERAL.match(verb):
            raise TemplateError(f"{text!r}: {verb!r} is not a verb")
        return text[:colon], verb
    return text, ""


def _tokens(body: str, text: str) -> Iterator[str]:
    """Split segments on '/', keeping `{...}` (which may contain '/') whole."""
    depth, start = 0, 0
    for i, char in enumerate(body):
        if char == "{":
            if depth:
                raise TemplateError(f"{text!r}: variables do not nest")
            depth = 1
        elif char == "}":
            if not depth:
                raise TemplateError(f"{text!r}: unbalanced '}}'")
            depth = 0
        elif char == "/" and not depth:
            yield _checked_token(body[start:i], text)
            start = i + 1
    if depth:
        raise TemplateError(f"{text!r}: unbalanced '{{'")
    yield _checked_token(body[start:], text)


def _checked_token(token: str, text: str) -> str:
    if not token:
        raise TemplateError(f"{text!r}: empty segment")
    if token.startswith("{") and not token.endswith("}"):
        raise TemplateError(f"{text!r}: a variable must be a whole segment")
    return token


def _segment(text: str, template: str) -> Segment:
    if text in ("*", "**") or _LITERAL.match(text):
        return Segment(text)
    raise TemplateError(f"{template!r}: {text!r} is not a segment")


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
