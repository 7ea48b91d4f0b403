"""google.api.http path templates: parsing, matching a request path, OpenAPI form.

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

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

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
