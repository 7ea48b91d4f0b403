"""Contract checks on the protobuf definitions and the code generated from them.

These read the compiled descriptors of the generated bankmesh.* modules, so
they check what clients and servers actually use, not the .proto text.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, cast

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    FileDescriptor,
    MethodDescriptor,
)

import bankmesh

if TYPE_CHECKING:
    from google.protobuf.internal.extension_dict import _ExtensionFieldDescriptor

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTOS = REPO_ROOT / "protos"
GOOGLEAPIS = REPO_ROOT / "third_party" / "googleapis"
GENERATED = REPO_ROOT / "generated"

# googleapis-common-protos types `http` as a plain FieldDescriptor; this tells
# mypy which message the extension extends and what it holds.
HTTP_RULE = cast(
    "_ExtensionFieldDescriptor[descriptor_pb2.MethodOptions, http_pb2.HttpRule]",
    annotations_pb2.http,
)

MONEY = "bankmesh.common.v1.Money"

# The only floating-point fields bankmesh may have. None of them is money.
ALLOWED_FLOAT_FIELDS = frozenset(
    {
        "bankmesh.common.v1.GeoPoint.latitude",
        "bankmesh.common.v1.GeoPoint.longitude",
        "bankmesh.risk.v1.ScoreTransactionResponse.score",
    }
)
FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE})
# Wrapper messages that smuggle a float in as a message-typed field.
FLOAT_WRAPPERS = frozenset({"google.protobuf.DoubleValue", "google.protobuf.FloatValue"})

# {name} or {name=pattern} in a google.api.http path template.
PATH_VARIABLE = re.compile(r"\{([^}=]+)(?:=[^}]*)?\}")


# --- discovery -------------------------------------------------------------


def _pb2_modules() -> list[ModuleType]:
    names = sorted(
        info.name
        for info in pkgutil.walk_packages(bankmesh.__path__, prefix="bankmesh.")
        if info.name.endswith("_pb2")
    )
    return [importlib.import_module(name) for name in names]


def _files() -> list[FileDescriptor]:
    return [cast(FileDescriptor, module.DESCRIPTOR) for module in _pb2_modules()]


def _messages() -> Iterator[Descriptor]:
    def walk(message: Descriptor) -> Iterator[Descriptor]:
        yield message
        for nested in message.nested_types:
            yield from walk(nested)

    for file in _files():
        for message in file.message_types_by_name.values():
            yield from walk(message)


def _fields() -> Iterator[FieldDescriptor]:
    for message in _messages():
        yield from message.fields


def _methods() -> list[MethodDescriptor]:
    return [
        method
        for file in _files()
        for service in file.services_by_name.values()
        for method in service.methods
    ]


def _http_rules(method: MethodDescriptor) -> list[http_pb2.HttpRule]:
    options = method.GetOptions()
    if not options.HasExtension(HTTP_RULE):
        return []
    rule = options.Extensions[HTTP_RULE]
    return [rule, *rule.additional_bindings]


def _verb_and_path(rule: http_pb2.HttpRule) -> tuple[str, str]:
    pattern = rule.WhichOneof("pattern")
    assert pattern is not None, "an HttpRule must set get, put, post, delete, patch or custom"
    if pattern == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    return pattern.upper(), cast(str, getattr(rule, pattern))


def _resolve(message: Descriptor, field_path: str) -> FieldDescriptor | None:
    """The field a dotted path such as `page.page_size` names, or None."""
    field: FieldDescriptor | None = None
    current: Descriptor | None = message
    for name in field_path.split("."):
        if current is None:
            return None
        field = current.fields_by_name.get(name)
        if field is None:
            return None
        current = field.message_type
    return field


ANNOTATED_METHODS = [method for method in _methods() if _http_rules(method)]


def _method_id(method: MethodDescriptor) -> str:
    return method.full_name


# --- generated/ is fresh ---------------------------------------------------


def _generate(protos: Path, out: Path) -> None:
    """Run protoc exactly as `make generate` does, into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # The protoc-gen-mypy_grpc plugin lives next to this interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proto_files = sorted(str(p.relative_to(protos.parent)) for p in protos.rglob("*.proto"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{protos.name}",
            f"-I{GOOGLEAPIS}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_grpc_out={out}",
            *proto_files,
        ],
        cwd=protos.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"protoc failed:\n{result.stderr}"
    for directory in [out / "bankmesh", *(out / "bankmesh").rglob("*")]:
        if directory.is_dir():
            (directory / "__init__.py").touch()


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def _differences(expected: dict[str, bytes], actual: dict[str, bytes]) -> list[str]:
    return [
        name
        for name in sorted(expected.keys() | actual.keys())
        if expected.get(name) != actual.get(name)
    ]


def test_generated_code_matches_what_protoc_makes_from_the_protos(tmp_path: Path) -> None:
    """generated/ is what `make generate` would write from protos/ now."""
    _generate(PROTOS, tmp_path)
    stale = _differences(_tree(tmp_path / "bankmesh"), _tree(GENERATED / "bankmesh"))
    assert not stale, (
        "generated/ is stale; run `make generate` and commit the result. Differs: "
        + ", ".join(stale)
    )


def test_the_freshness_check_notices_a_proto_changed_without_regenerating(
    tmp_path: Path,
) -> None:
    """A field added to a .proto makes the generated trees differ."""
    protos = tmp_path / "src" / "protos"
    shutil.copytree(PROTOS, protos)
    money = protos / "bankmesh" / "common" / "v1" / "money.proto"
    text = money.read_text()
    money.write_text(
        text.replace("int64 minor_units = 2;", "int64 minor_units = 2;\n  string x = 3;")
    )
    _generate(protos, tmp_path / "out")
    stale = _differences(_tree(tmp_path / "out" / "bankmesh"), _tree(GENERATED / "bankmesh"))
    assert "common/v1/money_pb2.py" in stale


def test_every_proto_file_has_a_generated_module() -> None:
    """Each .proto under protos/ compiles to an importable bankmesh *_pb2 module."""
    expected = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    assert sorted(file.name for file in _files()) == expected


# --- HTTP routes -----------------------------------------------------------


def test_some_rpcs_have_http_routes() -> None:
    """The route checks below run on something: the edge exposes some RPCs."""
    assert len(ANNOTATED_METHODS) >= 10


@pytest.mark.parametrize("method", ANNOTATED_METHODS, ids=_method_id)
def test_http_path_variables_name_scalar_fields_of_the_request(method: MethodDescriptor) -> None:
    """Every {variable} in a route path is a non-repeated scalar field of the request."""
    for rule in _http_rules(method):
        _, path = _verb_and_path(rule)
        variables = PATH_VARIABLE.findall(path)
        for variable in variables:
            field = _resolve(method.input_type, variable)
            assert field is not None, (
                f"{path}: {{{variable}}} is not a field of {method.input_type.full_name}"
            )
            assert not field.is_repeated, f"{path}: {variable} is repeated"
            assert field.message_type is None, f"{path}: {variable} is a message, not a scalar"
        assert len(variables) == len(set(variables)), f"{path} binds a field twice"


@pytest.mark.parametrize("method", ANNOTATED_METHODS, ids=_method_id)
def test_http_paths_are_absolute_and_carry_the_package_version(method: MethodDescriptor) -> None:
    """A route of package bankmesh.x.vN starts with /vN/."""
    version = method.containing_service.file.package.rsplit(".", 1)[-1]
    for rule in _http_rules(method):
        _, path = _verb_and_path(rule)
        assert path.startswith(f"/{version}/"), f"{path} should start with /{version}/"


@pytest.mark.parametrize("method", ANNOTATED_METHODS, ids=_method_id)
def test_http_bodies_name_real_fields_and_get_or_delete_take_none(
    method: MethodDescriptor,
) -> None:
    """body is empty, "*" or a request field; response_body names a response field."""
    for rule in _http_rules(method):
        verb, path = _verb_and_path(rule)
        if verb in {"GET", "DELETE"}:
            assert not rule.body, f"{verb} {path} must not have a body"
        if rule.body and rule.body != "*":
            assert rule.body in method.input_type.fields_by_name, (
                f"{verb} {path}: body {rule.body!r} is not a field of {method.input_type.full_name}"
            )
        if rule.response_body:
            assert rule.response_body in method.output_type.fields_by_name, (
                f"{verb} {path}: response_body {rule.response_body!r} is not a field of "
                f"{method.output_type.full_name}"
            )


def test_no_two_rpcs_share_an_http_route() -> None:
    """Each verb and path template reaches exactly one RPC at the edge."""
    seen: dict[tuple[str, str], str] = {}
    for method in ANNOTATED_METHODS:
        for rule in _http_rules(method):
            verb, path = _verb_and_path(rule)
            # Variable names do not matter for matching: /a/{x} and /a/{y} collide.
            route = (verb, PATH_VARIABLE.sub("{}", path))
            assert route not in seen, f"{verb} {path}: both {seen[route]} and {method.full_name}"
            seen[route] = method.full_name


# --- money -----------------------------------------------------------------


def _money() -> Descriptor:
    messages = {message.full_name: message for message in _messages()}
    assert MONEY in messages, f"{MONEY} is missing"
    return messages[MONEY]


def test_money_minor_units_is_an_int64() -> None:
    """Money counts minor units in an int64: exact, and wide enough for any balance."""
    field = _money().fields_by_name.get("minor_units")
    assert field is not None
    assert field.type == FieldDescriptor.TYPE_INT64
    assert not field.is_repeated


def test_money_has_a_string_currency_code() -> None:
    """Money names its ISO 4217 currency next to the amount."""
    field = _money().fields_by_name.get("currency_code")
    assert field is not None
    assert field.type == FieldDescriptor.TYPE_STRING


def test_no_field_is_floating_point_except_the_allowed_non_money_ones() -> None:
    """Only the allowlisted coordinates and risk score are float or double."""
    floats = {
        field.full_name
        for field in _fields()
        if field.type in FLOAT_TYPES
        or (field.message_type is not None and field.message_type.full_name in FLOAT_WRAPPERS)
    }
    assert floats <= ALLOWED_FLOAT_FIELDS, (
        f"floating point where exact integers are required: {sorted(floats - ALLOWED_FLOAT_FIELDS)}"
    )


def test_every_allowed_float_field_still_exists() -> None:
    """The float allowlist names real fields, so it cannot silently go stale."""
    fields = {field.full_name: field for field in _fields()}
    for name in ALLOWED_FLOAT_FIELDS:
        assert name in fields, f"{name} is allowlisted but does not exist"
        assert fields[name].type in FLOAT_TYPES, f"{name} is no longer floating point"


def test_fields_named_amount_are_money() -> None:
    """A field called amount or *_amount carries a Money, never a bare number."""
    wrong = [
        field.full_name
        for field in _fields()
        if (field.name == "amount" or field.name.endswith("_amount"))
        and (field.message_type is None or field.message_type.full_name != MONEY)
    ]
    assert not wrong, f"amount fields that are not {MONEY}: {wrong}"


def test_fields_counting_minor_units_are_int64() -> None:
    """Any *minor_units field is an int64, like Money.minor_units."""
    wrong = [
        field.full_name
        for field in _fields()
        if field.name.endswith("minor_units") and field.type != FieldDescriptor.TYPE_INT64
    ]
    assert not wrong, f"minor-unit fields that are not int64: {wrong}"
