"""Wiring of the identity service: configuration in, a running gRPC server out.

Nothing happens at import time. `serve()` is what `python -m services.identity`
runs; tests use `assemble()` and `build_identity_server()` with port 0, and
the launcher calls `migrate(url)` before starting us.

Start-up refuses to serve with unsafe secrets (outside BANKMESH_INSECURE_DEV=1):
a placeholder data key (all one byte), a key file others may read, a key
directory others may read, or a keyring that lacks a data key the database
still has ciphertexts under (a wrong directory, or a key removed too early).
A key shorter than 32 bytes is refused even in development. On first start
an empty key directory gets its first keys.

Health is SERVING while PostgreSQL answers. Redis only degrades it: sign-in,
refresh and everything else work without it, but Logout answers UNAVAILABLE
(safe to retry) until it can publish the ended session.

Settings beyond `mesh.config.ServiceEnvironment` (which gives
BANKMESH_DATABASE_URL and BANKMESH_REDIS_URL, both required):

| variable                               | default (dev only for dirs)     | meaning           |
|----------------------------------------|---------------------------------|-------------------|
| BANKMESH_IDENTITY_KEY_DIR              | .bankmesh/identity-keys         | signing keys      |
| BANKMESH_IDENTITY_DATA_KEYS            | .bankmesh/identity-data-keys    | data keys, unless |
|                                        |                                 | the next two set  |
| BANKMESH_IDENTITY_DATA_KEY_<n>         | unset                           | data key n, b64   |
| BANKMESH_IDENTITY_BLIND_INDEX_KEY      | unset                           | email index, b64  |
| BANKMESH_IDENTITY_ISSUER               | https://identity.bankmesh.local | iss of tokens     |
| BANKMESH_IDENTITY_AUDIENCE             | https://api.bankmesh.local      | aud of tokens     |
| BANKMESH_IDENTITY_ACCESS_TOKEN_SECONDS | 900 (the maximum)               | access token life |
| BANKMESH_IDENTITY_SESSION_SECONDS      | 2592000 (30 days)               | session's limit   |
| BANKMESH_IDENTITY_LOCKOUT_FAILURES     | 5                               | failures to lock  |
| BANKMESH_IDENTITY_LOCKOUT_SECONDS      | 900                             | a lock's length   |
| BANKMESH_IDENTITY_ARGON2_TIME_COST     | 3                               | argon2id passes   |
| BANKMESH_IDENTITY_ARGON2_MEMORY_KIB    | 65536                           | argon2id memory   |
| BANKMESH_IDENTITY_ARGON2_PARALLELISM   | 4                               | argon2id lanes    |

Outside development the two directories (or the two key variables) must be
set: a default path would let a misplaced service create fresh keys beside
the real ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc.aio
import redis.asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from bankmesh.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from mesh import lifecycle
from mesh.config import ServiceEnvironment
from mesh.security import server_security
from mesh.server import HealthReporter, ServerSecurity, build_server
from mesh.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER, MAX_ACCESS_TOKEN_SECONDS
from services.common.audit.service import ServiceAudit
from services.common.database import create_engine
from services.identity.adapters import migrations
from services.identity.adapters.access_tokens import JwtAccessTokens
from services.identity.adapters.keyring import (
    Keyring,
    ReloadingKeyring,
    UnsafeKeyMaterial,
    create_file_keyring,
    load_env_keyring,
    load_file_keyring,
)
from services.identity.adapters.passwords import Argon2Passwords, Argon2Settings
from services.identity.adapters.pii import AesGcmVault, UndecryptableData
from services.identity.adapters.revocations import RedisSessionRevocations, create_redis
from services.identity.adapters.signing_keys import KeyDirectory, LoadedKeySet, RotatingKeySet
from services.identity.adapters.unit_of_work import SqlUnitOfWork
from services.identity.domain.model import Lockout
from services.identity.entrypoints.errors import translate
from services.identity.entrypoints.grpc_servicer import IdentityServicer
from services.identity.service_layer.directory import Directory
from services.identity.service_layer.ports import Clock, PasswordHasher, SystemClock
from services.identity.service_layer.rewrap import ciphertexts_by_key
from services.identity.service_layer.signin import (
    DEFAULT_SESSION_SECONDS,
    Authentication,
    SessionSettings,
)

log = logging.getLogger("bankmesh.identity")

SERVICE_NAME = identity_service_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name
POOL_SIZE = 10
DEV_KEY_DIR = Path(".bankmesh/identity-keys")
DEV_DATA_KEY_DIR = Path(".bankmesh/identity-data-keys")


class UnsafeConfiguration(SystemExit):
    pass


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    key_dir: Path = DEV_KEY_DIR
    data_key_dir: Path = DEV_DATA_KEY_DIR
    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE
    access_token_seconds: int = MAX_ACCESS_TOKEN_SECONDS
    session_seconds: int = DEFAULT_SESSION_SECONDS
    lockout: Lockout = field(default_factory=Lockout)
    argon2: Argon2Settings = field(default_factory=Argon2Settings)

    @classmethod
    def from_env(
        cls, env: ServiceEnvironment, environ: Mapping[str, str] = os.environ
    ) -> IdentityConfig:
        def directory(name: str, dev_default: Path, needed: bool) -> Path:
            if environ.get(name):
                return Path(environ[name])
            if needed and not env.insecure_dev:
                raise UnsafeConfiguration(
                    f"identity service: set {name} (outside development there is no default)"
                )
            return dev_default

        env_keys = any(
            name.startswith("BANKMESH_IDENTITY_DATA_KEY_")
            or name == "BANKMESH_IDENTITY_BLIND_INDEX_KEY"
            for name in environ
        )
        default = cls()
        return cls(
            key_dir=directory("BANKMESH_IDENTITY_KEY_DIR", DEV_KEY_DIR, needed=True),
            data_key_dir=directory(
                "BANKMESH_IDENTITY_DATA_KEYS", DEV_DATA_KEY_DIR, needed=not env_keys
            ),
            issuer=environ.get("BANKMESH_IDENTITY_ISSUER") or default.issuer,
            audience=environ.get("BANKMESH_IDENTITY_AUDIENCE") or default.audience,
            access_token_seconds=int(
                environ.get("BANKMESH_IDENTITY_ACCESS_TOKEN_SECONDS", default.access_token_seconds)
            ),
            session_seconds=int(
                environ.get("BANKMESH_IDENTITY_SESSION_SECONDS", default.session_seconds)
            ),
            lockout=Lockout(
                max_failures=int(
                    environ.get("BANKMESH_IDENTITY_LOCKOUT_FAILURES", default.lockout.max_failures)
                ),
                lock_seconds=int(
                    environ.get("BANKMESH_IDENTITY_LOCKOUT_SECONDS", default.lockout.lock_seconds)
                ),
            ),
            argon2=Argon2Settings.from_env(environ),
        )


def migrate(database_url: str) -> None:
    """Bring the identity schema up to date (the launcher calls this before starting us)."""
    migrations.upgrade(database_url)


# -- keys ------------------------------------------------------------------------------------


def signing_keys(key_dir: Path, *, insecure_dev: bool) -> RotatingKeySet:
    """The signing key set, with a first key if the directory has none."""
    directory = KeyDirectory(key_dir)
    try:
        if directory.initialize(datetime.now(UTC)):
            log.info("created the first access-token signing key in %s", key_dir)
        return RotatingKeySet(directory, insecure_dev=insecure_dev)
    except (UnsafeKeyMaterial, OSError, ValueError) as exc:
        raise UnsafeConfiguration(f"identity service: signing keys refused: {exc}") from exc


def data_keyring(data_key_dir: Path, environ: Mapping[str, str], *, insecure_dev: bool) -> Keyring:
    """Data keys from the environment when given there, else from the directory."""
    try:
        from_env = load_env_keyring(environ, insecure_dev=insecure_dev)
        if from_env is not None:
            return from_env
        if create_file_keyring(data_key_dir):
            log.info("created the first data key and the blind-index key in %s", data_key_dir)
        return ReloadingKeyring(lambda: load_file_keyring(data_key_dir, insecure_dev=insecure_dev))
    except (UnsafeKeyMaterial, OSError) as exc:
        raise UnsafeConfiguration(f"identity service: data keys refused: {exc}") from exc


async def check_keyring_covers_data(engine: AsyncEngine, keyring: Keyring) -> None:
    """Refuse to start unless the keyring opens the database's personal data.

    Every data key id the ciphertexts name must be in the ring and actually
    decrypt a sample row, and the blind-index key must reproduce that row's
    email index: a fresh keyring in a mistyped directory has a key 1 too, and
    would otherwise start and fail on every customer.
    """

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine)

    usage = await ciphertexts_by_key(uow)
    vault = AesGcmVault(keyring)
    problems = []
    for key_id in sorted(usage):
        try:
            keyring.data_key(key_id)
        except KeyError:
            problems.append(f"data key {key_id} is missing")
            continue
        async with uow() as work:
            sample = await work.identity.customer_on_key(key_id)
        if sample is None:
            continue
        customer_id, sealed, email_index = sample
        try:
            data = vault.open(customer_id, sealed)
        except UndecryptableData:
            problems.append(f"data key {key_id} does not decrypt the stored data")
            continue
        if email_index is not None and vault.email_index(data.email) != email_index:
            problems.append("the blind-index key does not match the stored email index")
    if problems:
        raise UnsafeConfiguration(
            "identity service: the keyring does not fit the database ("
            + "; ".join(dict.fromkeys(problems))
            + "): wrong BANKMESH_IDENTITY_DATA_KEYS, or a key removed before "
            "`keys rewrap-data` finished?"
        )


# -- assembly --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    auth: Authentication
    directory: Directory
    tokens: JwtAccessTokens
    vault: AesGcmVault
    clock: Clock


def assemble(
    engine: AsyncEngine,
    redis_client: redis.asyncio.Redis,
    keys: Callable[[], LoadedKeySet],
    keyring: Keyring,
    config: IdentityConfig,
    *,
    passwords: PasswordHasher | None = None,
    clock: Clock | None = None,
) -> Identity:
    clock = clock or SystemClock()
    passwords = passwords or Argon2Passwords(config.argon2.parameters())

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine)

    tokens = JwtAccessTokens(
        keys,
        issuer=config.issuer,
        audience=config.audience,
        lifetime_seconds=config.access_token_seconds,
    )
    vault = AesGcmVault(keyring)
    revocations = RedisSessionRevocations(redis_client)
    auth = Authentication(
        uow,
        passwords,
        tokens,
        vault,
        revocations,
        clock,
        SessionSettings(session_seconds=config.session_seconds, lockout=config.lockout),
    )
    directory = Directory(uow, passwords, vault, revocations, clock)
    return Identity(auth, directory, tokens, vault, clock)


def build_identity_server(
    identity: Identity, address: str = "127.0.0.1:0", security: ServerSecurity | None = None
) -> tuple[grpc.aio.Server, int, HealthReporter]:
    def register(server: grpc.aio.Server) -> None:
        identity_service_pb2_grpc.add_IdentityServiceServicer_to_server(
            IdentityServicer(identity.auth, identity.directory, identity.tokens, identity.clock),
            server,
        )

    return build_server(
        register=register,
        service_names=[SERVICE_NAME],
        translate_errors=translate,
        address=address,
        security=security,
    )


async def serve(env: ServiceEnvironment, config: IdentityConfig | None = None) -> None:
    config = config or IdentityConfig.from_env(env)
    if not env.redis_url:
        raise UnsafeConfiguration(
            "identity service: set BANKMESH_REDIS_URL; logout publishes ended sessions there"
        )
    keys = signing_keys(config.key_dir, insecure_dev=env.insecure_dev)
    keyring = data_keyring(config.data_key_dir, os.environ, insecure_dev=env.insecure_dev)
    engine = create_engine(env.require_database(), pool_size=POOL_SIZE)
    await check_keyring_covers_data(engine, keyring)
    redis_client = create_redis(env.redis_url)
    identity = assemble(engine, redis_client, keys, keyring, config)
    revocations = RedisSessionRevocations(redis_client)
    audit = ServiceAudit(engine, "identity")
    server, port, health = build_identity_server(
        identity, env.listen, audit.secure(server_security(env))
    )
    await lifecycle.run_server(
        env=env,
        server=server,
        port=port,
        health=health,
        dependencies=[
            lifecycle.database(engine),
            lifecycle.Dependency("Redis", revocations.ping, required=False),
        ],
        log=log,
        background=audit.background(),
        cleanup=[redis_client.aclose, audit.close, engine.dispose],
    )


def main() -> None:
    lifecycle.main("identity", serve)
