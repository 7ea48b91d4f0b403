"""Protobuf <-> domain values for the identity service, and who is calling. No rules live here."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from bankmesh.identity.v1 import identity_service_pb2 as pb
from mesh import context as mesh_context
from mesh.tokens import CLIENT_IP_HEADER
from services.identity.domain.access import EDGE, Caller
from services.identity.domain.errors import InvalidRequest, Reason
from services.identity.domain.model import Customer, Role, User
from services.identity.service_layer.ports import RequestInfo
from services.identity.service_layer.signin import TokenPair

_ROLES_PB = {
    Role.CUSTOMER: pb.ROLE_CUSTOMER,
    Role.SUPPORT: pb.ROLE_SUPPORT,
    Role.AUDITOR: pb.ROLE_AUDITOR,
    Role.ADMIN: pb.ROLE_ADMIN,
    Role.REVIEWER: pb.ROLE_REVIEWER,
}
_ROLES = {value: role for role, value in _ROLES_PB.items()}


# -- the caller --------------------------------------------------------------------------


def current_caller() -> Caller:
    """The end user the call is made for, else the calling service (mesh.context)."""
    service = mesh_context.peer_service.get()
    user = mesh_context.end_user.get()
    if user is None:
        return Caller.for_service(service)
    return Caller.for_end_user(service, user.user_id, user.customer_id, user.roles)


def end_user_id() -> str:
    user = mesh_context.end_user.get()
    return user.user_id if user else ""


def request_info(metadata: Iterable[tuple[str, Any]] | None) -> RequestInfo:
    """The client address the edge saw (trusted from the edge only) and the request id."""
    client_ip = ""
    if mesh_context.peer_service.get() == EDGE:
        for key, value in metadata or ():
            if key == CLIENT_IP_HEADER and isinstance(value, str):
                try:
                    client_ip = str(ipaddress.ip_address(value.strip()))
                except ValueError:
                    client_ip = ""
                break
    return RequestInfo(client_ip=client_ip, request_id=mesh_context.request_id.get())


# -- inputs --------------------------------------------------------------------------------


def required_uuid(value: str, field: str) -> uuid.UUID:
    try:
        parsed = uuid.UUID(value) if value else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.int == 0:
        raise InvalidRequest(f"{field} must be a UUID", reason=Reason.INVALID_ID, field=field)
    return parsed


def role(value: int) -> Role:
    found: Role | None = _ROLES.get(value)  # type: ignore[call-overload]
    if found is None:
        raise InvalidRequest("role must be one of the Role values", field="role")
    return found


# -- outputs -------------------------------------------------------------------------------


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def user(value: User) -> pb.User:
    return pb.User(
        user_id=str(value.id),
        customer_id=str(value.customer_id) if value.customer_id else "",
        roles=sorted(_ROLES_PB[r] for r in value.roles),
        create_time=timestamp(value.created_at),
    )


def customer(value: Customer) -> pb.Customer:
    return pb.Customer(
        customer_id=str(value.id),
        full_name=value.data.full_name,
        email=value.data.email,
        phone_number=value.data.phone_number,
        national_id_masked=value.national_id_masked,
        create_time=timestamp(value.created_at),
    )


def token_pair(pair: TokenPair) -> pb.TokenPair:
    return pb.TokenPair(
        access_token=pair.access_token,
        token_type="Bearer",  # noqa: S106 - the OAuth token type, not a secret
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
        refresh_expires_in=pair.refresh_expires_in,
    )


def jwk(key: Mapping[str, str]) -> pb.JsonWebKey:
    return pb.JsonWebKey(
        kty=key["kty"],
        crv=key["crv"],
        x=key["x"],
        y=key["y"],
        kid=key["kid"],
        use=key["use"],
        alg=key["alg"],
    )
