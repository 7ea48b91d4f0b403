"""The IdentityService gRPC servicer: protobuf in, use case, protobuf out.

No rules here: parsing lives in convert.py, decisions in the domain and the
use cases, and errors are mapped by the mesh's interceptor. Nothing here
logs a request: requests carry passwords, tokens and personal data.
"""

from __future__ import annotations

from typing import Any

import grpc.aio

from bankmesh.identity.v1 import identity_service_pb2 as pb
from bankmesh.identity.v1 import identity_service_pb2_grpc as pb_grpc
from services.identity.service_layer.directory import Directory
from services.identity.service_layer.ports import AccessTokenIssuer, Clock
from services.identity.service_layer.signin import Authentication

from . import convert

Context = grpc.aio.ServicerContext[Any, Any]


class IdentityServicer(pb_grpc.IdentityServiceServicer):
    def __init__(
        self,
        auth: Authentication,
        directory: Directory,
        jwks: AccessTokenIssuer,
        clock: Clock,
    ) -> None:
        self._auth = auth
        self._directory = directory
        self._jwks = jwks
        self._clock = clock

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.LoginResponse:
        pair = await self._auth.login(
            request.email, request.password, convert.request_info(context.invocation_metadata())
        )
        return pb.LoginResponse(tokens=convert.token_pair(pair))

    async def RefreshToken(
        self, request: pb.RefreshTokenRequest, context: Context
    ) -> pb.RefreshTokenResponse:
        pair = await self._auth.refresh(
            request.refresh_token, convert.request_info(context.invocation_metadata())
        )
        return pb.RefreshTokenResponse(tokens=convert.token_pair(pair))

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> pb.LogoutResponse:
        await self._auth.logout(
            request.refresh_token,
            convert.end_user_id(),
            convert.request_info(context.invocation_metadata()),
        )
        return pb.LogoutResponse()

    async def GetJwks(self, request: pb.GetJwksRequest, context: Context) -> pb.GetJwksResponse:
        keys = self._jwks.public_keys(self._clock.now())
        return pb.GetJwksResponse(keys=[convert.jwk(key) for key in keys])

    async def GetCurrentUser(
        self, request: pb.GetCurrentUserRequest, context: Context
    ) -> pb.GetCurrentUserResponse:
        user, customer = await self._directory.current_user(convert.current_caller())
        return pb.GetCurrentUserResponse(
            user=convert.user(user),
            customer=convert.customer(customer) if customer else None,
        )

    async def CreateCustomer(
        self, request: pb.CreateCustomerRequest, context: Context
    ) -> pb.CreateCustomerResponse:
        customer, user = await self._directory.create_customer(
            convert.current_caller(),
            full_name=request.full_name,
            email=request.email,
            phone_number=request.phone_number,
            national_id=request.national_id,
            password=request.password,
            request=convert.request_info(context.invocation_metadata()),
        )
        return pb.CreateCustomerResponse(
            customer=convert.customer(customer), user=convert.user(user)
        )

    async def GetCustomer(
        self, request: pb.GetCustomerRequest, context: Context
    ) -> pb.GetCustomerResponse:
        customer = await self._directory.get_customer(
            convert.current_caller(), convert.required_uuid(request.customer_id, "customer_id")
        )
        return pb.GetCustomerResponse(customer=convert.customer(customer))

    async def AssignRole(
        self, request: pb.AssignRoleRequest, context: Context
    ) -> pb.AssignRoleResponse:
        user = await self._directory.assign_role(
            convert.current_caller(),
            convert.required_uuid(request.user_id, "user_id"),
            convert.role(request.role),
            convert.request_info(context.invocation_metadata()),
        )
        return pb.AssignRoleResponse(user=convert.user(user))

    async def RevokeRole(
        self, request: pb.RevokeRoleRequest, context: Context
    ) -> pb.RevokeRoleResponse:
        change = await self._directory.revoke_role(
            convert.current_caller(),
            convert.required_uuid(request.user_id, "user_id"),
            convert.role(request.role),
            convert.request_info(context.invocation_metadata()),
        )
        return pb.RevokeRoleResponse(user=convert.user(change.user))
