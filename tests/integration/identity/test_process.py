"""`python -m services.identity` as the launcher runs it: ready file, mTLS, SIGTERM, refusals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bankmesh.identity.v1 import identity_service_pb2 as pb
from mesh.tokens import Jwks
from services.identity.adapters.keyring import Keyring
from services.identity.adapters.signing_keys import RotatingKeySet
from services.identity.app import IdentityConfig
from tests.support.mesh import TestMesh

from .conftest import stub_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def service_env(
    mesh: TestMesh,
    database_url: str,
    redis_url: str,
    key_dir: Path,
    data_keys: Path,
    ready_file: Path,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANKMESH_")}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.update(
        {
            "BANKMESH_DATABASE_URL": database_url,
            "BANKMESH_REDIS_URL": redis_url,
            "BANKMESH_IDENTITY_DIR": str(mesh.identity_dir("identity")),
            "BANKMESH_IDENTITY_KEY_DIR": str(key_dir),
            "BANKMESH_IDENTITY_DATA_KEYS": str(data_keys),
            "BANKMESH_READY_FILE": str(ready_file),
            "BANKMESH_LISTEN": "127.0.0.1:0",
            # The real argon2id cost is fine for one process; keep start-up quick anyway.
            "BANKMESH_IDENTITY_ARGON2_MEMORY_KIB": str(19 * 1024),
            "BANKMESH_IDENTITY_ARGON2_TIME_COST": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def ready_file(tmp_path: Path) -> Path:
    return tmp_path / "identity.ready"


@pytest.fixture
def process_env(
    mesh: TestMesh,
    identity_database_url: str,
    redis_url: str,
    config: IdentityConfig,
    keys: RotatingKeySet,
    keyring: Keyring,
    ready_file: Path,
) -> dict[str, str]:
    """The session's keys (made by the fixtures), so the database's data decrypts."""
    return service_env(
        mesh, identity_database_url, redis_url, config.key_dir, config.data_key_dir, ready_file
    )


@pytest.fixture
def service(process_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "identity.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.identity"],
        cwd=REPO,
        env=process_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()
    log.close()


async def wait_ready(ready_file: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 30
    while not await asyncio.to_thread(ready_file.exists):
        assert process.poll() is None, "the service exited before it was ready"
        assert time.monotonic() < deadline, "the service never wrote its ready file"
        await asyncio.sleep(0.1)
    ready = json.loads(await asyncio.to_thread(ready_file.read_text))
    return int(ready["address"].rsplit(":", 1)[1])


async def test_the_service_process_serves_jwks_over_mtls_and_stops_cleanly_on_sigterm(
    service: subprocess.Popen[bytes], ready_file: Path, mesh: TestMesh
) -> None:
    """Ready file written, GetJwks answers the edge over mTLS, SIGTERM exits 0."""
    port = await wait_ready(ready_file, service)
    async with stub_for(mesh, port) as stub:
        jwks = Jwks.from_proto(await stub.GetJwks(pb.GetJwksRequest(), timeout=10))
    assert jwks.kids
    service.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(service.wait, 20) == 0


def test_the_service_refuses_to_start_with_a_placeholder_data_key(
    mesh: TestMesh, redis_url: str, tmp_path: Path
) -> None:
    """An all-zero data key: exit status 1 and a message naming the problem."""
    data_keys = tmp_path / "data-keys"
    data_keys.mkdir(mode=0o700)
    for name in ("data-1.key", "blind-index.key"):
        path = data_keys / name
        path.write_bytes(bytes(32))
        path.chmod(0o600)
    env = service_env(
        mesh,
        "postgresql://nobody@127.0.0.1:1/none",
        redis_url,
        tmp_path / "keys",
        data_keys,
        tmp_path / "ready",
    )
    result = subprocess.run(
        [sys.executable, "-m", "services.identity"],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert b"placeholder" in result.stderr
    assert not (tmp_path / "ready").exists()


def test_the_service_refuses_to_start_without_key_directories_outside_development(
    mesh: TestMesh, redis_url: str, tmp_path: Path
) -> None:
    """No BANKMESH_IDENTITY_KEY_DIR in production: exit 1 before anything listens."""
    env = service_env(
        mesh, "postgresql://x@127.0.0.1:1/x", redis_url, tmp_path, tmp_path, tmp_path / "ready"
    )
    del env["BANKMESH_IDENTITY_KEY_DIR"]
    result = subprocess.run(
        [sys.executable, "-m", "services.identity"],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert b"BANKMESH_IDENTITY_KEY_DIR" in result.stderr
