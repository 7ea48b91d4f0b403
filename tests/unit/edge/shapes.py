"""A test-only service with every HttpRule shape our own protos do not use (yet).

Built as a FileDescriptorProto and added to the default descriptor pool (the
google.api.http extension lives there), so the edge reads it exactly as it
reads the generated bankmesh modules.
"""

from __future__ import annotations

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, timestamp_pb2
from google.protobuf.descriptor import ServiceDescriptor

from mesh.edge.routes import HTTP_RULE

PACKAGE = "bankmesh.edgetest.v1"
F = descriptor_pb2.FieldDescriptorProto


def _field(
    name: str,
    number: int,
    kind: int,
    *,
    type_name: str = "",
    repeated: bool = False,
) -> F:
    field = F(
        name=name,
        number=number,
        type=kind,  # type: ignore[arg-type]
        label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL,
    )
    if type_name:
        field.type_name = type_name
    return field


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="bankmesh/edgetest/v1/shelves.proto",
        package=PACKAGE,
        syntax="proto3",
        dependency=["google/api/annotations.proto", "google/protobuf/timestamp.proto"],
    )
    proto.enum_type.add(
        name="Color",
        value=[
            descriptor_pb2.EnumValueDescriptorProto(name="COLOR_UNSPECIFIED", number=0),
            descriptor_pb2.EnumValueDescriptorProto(name="COLOR_RED", number=1),
            descriptor_pb2.EnumValueDescriptorProto(name="COLOR_BLUE", number=2),
        ],
    )
    proto.message_type.add(
        name="Inner",
        field=[
            _field("id", 1, F.TYPE_STRING),
            _field("big", 2, F.TYPE_INT64),
            _field("deep", 3, F.TYPE_MESSAGE, type_name=f".{PACKAGE}.Deep"),
        ],
    )
    proto.message_type.add(name="Deep", field=[_field("level", 1, F.TYPE_INT32)])
    shelf = proto.message_type.add(
        name="Shelf",
        field=[
            _field("name", 1, F.TYPE_STRING),
            _field("inner", 2, F.TYPE_MESSAGE, type_name=f".{PACKAGE}.Inner"),
            _field("tags", 3, F.TYPE_STRING, repeated=True),
            _field("numbers", 4, F.TYPE_INT32, repeated=True),
            _field("color", 5, F.TYPE_ENUM, type_name=f".{PACKAGE}.Color"),
            _field("flag", 6, F.TYPE_BOOL),
            _field("when", 7, F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp"),
            _field(
                "labels",
                8,
                F.TYPE_MESSAGE,
                type_name=f".{PACKAGE}.Shelf.LabelsEntry",
                repeated=True,
            ),
            _field("ratio", 9, F.TYPE_DOUBLE),
            _field("blob", 10, F.TYPE_BYTES),
            _field("count", 11, F.TYPE_UINT64),
        ],
    )
    entry = shelf.nested_type.add(
        name="LabelsEntry",
        field=[_field("key", 1, F.TYPE_STRING), _field("value", 2, F.TYPE_STRING)],
    )
    entry.options.map_entry = True
    service = proto.service.add(name="Shelves")

    def method(name: str, rule: http_pb2.HttpRule) -> None:
        added = service.method.add(
            name=name, input_type=f".{PACKAGE}.Shelf", output_type=f".{PACKAGE}.Shelf"
        )
        added.options.Extensions[HTTP_RULE].CopyFrom(rule)

    method("GetBook", http_pb2.HttpRule(get="/v1/{name=shelves/*/books/*}"))
    method("GetByInner", http_pb2.HttpRule(get="/v1/inner/{inner.id}"))
    method("GetByDeep", http_pb2.HttpRule(get="/v1/deep/{inner.deep.level}"))
    method(
        "UpdateInner",
        http_pb2.HttpRule(patch="/v1/shelves/{name}/inner", body="inner", response_body="inner"),
    )
    method(
        "Create",
        http_pb2.HttpRule(
            post="/v1/shelves",
            body="*",
            additional_bindings=[http_pb2.HttpRule(put="/v1/shelves/{name}", body="*")],
        ),
    )
    method("GetFile", http_pb2.HttpRule(get="/v1/files/{name=**}"))
    method("Search", http_pb2.HttpRule(get="/v1/shelves"))
    method("Archive", http_pb2.HttpRule(post="/v1/shelves/{name}:archive"))
    method(
        "Tag",
        http_pb2.HttpRule(custom=http_pb2.CustomHttpPattern(kind="PURGE", path="/v1/tags/{name}")),
    )
    return proto


def _load() -> ServiceDescriptor:
    pool = descriptor_pool.Default()
    # Importing these modules put the dependencies in the default pool.
    assert annotations_pb2.DESCRIPTOR.name and timestamp_pb2.DESCRIPTOR.name
    try:
        file = pool.FindFileByName("bankmesh/edgetest/v1/shelves.proto")
    except KeyError:
        file = pool.AddSerializedFile(_file().SerializeToString())
    return file.services_by_name["Shelves"]


SHELVES = _load()
