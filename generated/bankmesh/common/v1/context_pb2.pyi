from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    CHANNEL_MOBILE: _ClassVar[Channel]
    CHANNEL_WEB: _ClassVar[Channel]
    CHANNEL_BRANCH: _ClassVar[Channel]
    CHANNEL_API: _ClassVar[Channel]
CHANNEL_UNSPECIFIED: Channel
CHANNEL_MOBILE: Channel
CHANNEL_WEB: Channel
CHANNEL_BRANCH: Channel
CHANNEL_API: Channel

class GeoPoint(_message.Message):
    __slots__ = ("latitude", "longitude")
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    latitude: float
    longitude: float
    def __init__(self, latitude: _Optional[float] = ..., longitude: _Optional[float] = ...) -> None: ...

class ClientContext(_message.Message):
    __slots__ = ("channel", "device_id", "ip_address", "geo", "user_agent")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    IP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GEO_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    device_id: str
    ip_address: str
    geo: GeoPoint
    user_agent: str
    def __init__(self, channel: _Optional[_Union[Channel, str]] = ..., device_id: _Optional[str] = ..., ip_address: _Optional[str] = ..., geo: _Optional[_Union[GeoPoint, _Mapping]] = ..., user_agent: _Optional[str] = ...) -> None: ...
