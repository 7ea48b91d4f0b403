"""The identity service against real PostgreSQL and Redis, and over the real mesh.

* The identity database is migrated from scratch once per session (shared
  `databases` factory); tests keep apart by using fresh emails and ids.
* Signing keys and data keys live in per-session directories, made exactly
  as the service makes them on first start.
* Passwords are argon2id with small parameters (the real ones cost 64 MiB a
  hash); tests that are about timing or rehashing choose their own.
* `identity` is the assembled service (use cases over the real adapters) with
  a clock the test can move; `grpc_identity` serves it on port 0 behind the
  mesh's mTLS, policy and interceptors, and `call_as(...)` reaches it as the
  edge or the operator, on behalf of a person or not.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import argon2
import grpc
import grpc.aio
import pytest
import redis.asyncio
from grpc_status import rpc_status
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bankmesh.identity.v1 import identity_service_pb2 as pb
from bankmesh.identity.v1 import identity_service_pb2_grpc as pb_grpc
from mesh import context
from mesh.context import EndUser
from mesh.errors import ERROR_DOMAIN, error_info
from services.common.database import create_engine
from services.identity.adapters.keyring import Keyring
from services.identity.adapters.passwords import Argon2Passwords
from services.identity.adapters.revocations import create_redis
from services.identity.adapters.signing_keys import RotatingKeySet
from services.identity.app import (
    Identity,
    IdentityConfig,
    assemble,
    build_identity_server,
    data_keyring,
    migrate,
    signing_keys,
)
from services.identity.domain.access import Caller
from services.identity.service_layer.ports import RequestInfo
from tests.conftest import DatabaseFactory
from tests.support.clock import SteppingClock
from tests.support.mesh import TestMesh

if TYPE_CHECKING:
    from bankmesh.identity.v1.identity_service_pb2_grpc import IdentityServiceAsyncStub as Stub

PASSWORD = "correct horse battery staple"
# argon2id all the same, at a cost a test suite can afford.
FAST_ARGON2 = argon2.Parameters(
    type=argon2.Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=1,
    memory_cost=1024,
    parallelism=1,
)
NO_REQUEST = RequestInfo()
SIGN_UP = Caller.for_service("edge")
OPERATOR = Caller.for_service("operator")


def new_email() -> str:
    return f"person-{uuid.uuid4().hex[:12]}@example.com"


# -- storage and keys --------------------------------------------------------------------


@pytest.fixture(scope="session")
def identity_database_url(databases: DatabaseFactory) -> str:
    return databases.create(migrate, "identity")


@pytest.fixture(scope="session")
async def identity_engine(identity_database_url: str) -> AsyncIterator[AsyncEngine]:
    # Small: the PostgreSQL server is shared with every other suite (max_connections is
    # finite); concurrent tests queue on the pool instead.
    engine = create_engine(identity_database_url, pool_size=4)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def identity_redis(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def key_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("identity")


@pytest.fixture(scope="session")
def config(key_home: Path) -> IdentityConfig:
    return IdentityConfig(key_dir=key_home / "keys", data_key_dir=key_home / "data-keys")


@pytest.fixture(scope="session")
def keys(config: IdentityConfig) -> RotatingKeySet:
    return signing_keys(config.key_dir, insecure_dev=False)


@pytest.fixture(scope="session")
def keyring(config: IdentityConfig) -> Keyring:
    return data_keyring(config.data_key_dir, {}, insecure_dev=False)


@pytest.fixture(scope="session")
def fast_passwords() -> Argon2Passwords:
    return Argon2Passwords(FAST_ARGON2)


@pytest.fixture
def identity(
    identity_engine: AsyncEngine,
    identity_redis: redis.asyncio.Redis,
    keys: RotatingKeySet,
    keyring: Keyring,
    config: IdentityConfig,
    fast_passwords: Argon2Passwords,
    clock: SteppingClock,
) -> Identity:
    return assemble(
        identity_engine,
        identity_redis,
        keys,
        keyring,
        config,
        passwords=fast_passwords,
        clock=clock,
    )


@dataclass
class Person:
    user_id: uuid.UUID
    customer_id: uuid.UUID
    email: str
    password: str = PASSWORD

    @property
    def end_user(self) -> EndUser:
        return EndUser(str(self.user_id), str(self.customer_id), frozenset({"customer"}))


async def sign_up(identity: Identity, email: str | None = None, **fields: str) -> Person:
    """A customer who signed themselves up, with the test password."""
    email = email or new_email()
    values = {
        "full_name": "Test Person",
        "email": email,
        "phone_number": "+15555550100",
        "national_id": "ZX9876543",
        "password": PASSWORD,
        **fields,
    }
    customer, user = await identity.directory.create_customer(SIGN_UP, request=NO_REQUEST, **values)
    return Person(user.id, customer.id, email, values["password"])


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


# -- over the mesh ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> TestMesh:
    return TestMesh(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture
async def grpc_identity(identity: Identity, mesh: TestMesh) -> AsyncIterator[int]:
    server, port, health = build_identity_server(identity, security=mesh.security("identity"))
    await server.start()
    await health.set_serving(True)
    yield port
    await server.stop(grace=None)


@contextmanager
def acting_for(user: EndUser | None) -> Iterator[None]:
    token = context.end_user.set(user)
    try:
        yield
    finally:
        context.end_user.reset(token)


@asynccontextmanager
async def stub_for(mesh: TestMesh, port: int, caller: str = "edge") -> AsyncIterator[Stub]:
    async with mesh.channel(caller, "identity", port) as channel:
        yield pb_grpc.IdentityServiceStub(channel)


@dataclass(frozen=True)
class Refusal:
    code: grpc.StatusCode
    reason: str
    message: str
    metadata: dict[str, str]


async def refusal(call: Awaitable[Any]) -> Refusal:
    """Await a call that must fail; its code, ErrorInfo reason, message and metadata."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None, "the error must carry a google.rpc.Status"
    info = error_info(status)
    assert info is not None and info.domain == ERROR_DOMAIN
    return Refusal(
        caught.value.code(), info.reason, caught.value.details() or "", dict(info.metadata)
    )


def create_request(email: str | None = None, **fields: str) -> pb.CreateCustomerRequest:
    values = {
        "full_name": "Test Person",
        "email": email or new_email(),
        "phone_number": "+15555550100",
        "national_id": "ZX9876543",
        "password": PASSWORD,
        **fields,
    }
    return pb.CreateCustomerRequest(**values)


def roles_of(user: pb.User) -> Sequence[str]:
    return sorted(pb.Role.Name(r).removeprefix("ROLE_").lower() for r in user.roles)
