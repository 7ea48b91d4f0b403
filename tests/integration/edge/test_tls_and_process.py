"""The public port: TLS 1.3 only, certificate reload, and `python -m mesh.edge` as a service."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from mesh import pki
from mesh.edge.server import CertificateReloader, public_tls_context, serving
from tests.support.mesh import TestMesh

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def tls_pki(tmp_path_factory: pytest.TempPathFactory) -> TestMesh:
    return TestMesh(Path(tmp_path_factory.mktemp("tls-pki")))


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


@pytest.fixture
async def https_port(tls_pki: TestMesh) -> AsyncIterator[int]:
    identity = tls_pki.identity_dir("edge")
    tls = public_tls_context(identity / "cert.pem", identity / "key.pem")
    async with serving(Starlette(routes=[Route("/", hello)]), tls) as port:
        yield port


def handshake(port: int, ca: Path, version: ssl.TLSVersion) -> str:
    """The negotiated version of a client pinned to `version`; ssl.SSLError if refused."""
    context = ssl.create_default_context(cafile=str(ca))
    context.minimum_version = context.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


async def test_a_tls_1_3_client_is_served(https_port: int, tls_pki: TestMesh) -> None:
    """A TLS 1.3 handshake succeeds against the mesh CA with the name localhost."""
    ca = tls_pki.identity_dir("edge") / "ca.pem"
    version = await asyncio.to_thread(handshake, https_port, ca, ssl.TLSVersion.TLSv1_3)
    assert version == "TLSv1.3"
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca))) as client:
        response = await client.get(f"https://localhost:{https_port}/")
    assert response.text == "hello"


async def test_a_tls_1_2_client_fails_the_handshake(https_port: int, tls_pki: TestMesh) -> None:
    """A client that cannot speak TLS 1.3 is refused in the handshake."""
    ca = tls_pki.identity_dir("edge") / "ca.pem"
    with pytest.raises(ssl.SSLError):
        await asyncio.to_thread(handshake, https_port, ca, ssl.TLSVersion.TLSv1_2)


async def test_plain_http_gets_no_answer(https_port: int) -> None:
    """HTTP on the HTTPS port is not served."""
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.HTTPError):
            await client.get(f"http://127.0.0.1:{https_port}/")


def test_a_reissued_certificate_is_loaded_without_a_restart(tmp_path: Path) -> None:
    """CertificateReloader puts a re-issued certificate into the serving context."""
    mesh = TestMesh(tmp_path / "pki")
    identity = mesh.identity_dir("edge")
    context = public_tls_context(identity / "cert.pem", identity / "key.pem")
    reloader = CertificateReloader(context, identity / "cert.pem", identity / "key.pem")
    assert not reloader.check()
    time.sleep(0.01)
    ca = pki.CertificateAuthority.load(mesh.pki_dir / "ca")
    ca.issue("edge", directory=identity)
    assert reloader.check()


def test_python_m_mesh_edge_serves_https_and_stops_on_sigterm(
    tmp_path: Path, tls_pki: TestMesh, redis_url: str
) -> None:
    """The launcher's contract: ready file with the https url, /healthz, exit 0 after SIGTERM."""
    ready = tmp_path / "edge.ready"
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps({"services": {}}))
    env = {
        **os.environ,
        "BANKMESH_LISTEN": "127.0.0.1:0",
        "BANKMESH_READY_FILE": str(ready),
        "BANKMESH_ENDPOINTS": str(endpoints),
        "BANKMESH_IDENTITY_DIR": str(tls_pki.identity_dir("edge")),
        "BANKMESH_REDIS_URL": redis_url,
        "BANKMESH_EDGE_JWKS_REFRESH_SECONDS": "60",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mesh.edge"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert process.poll() is None, process.communicate()[0].decode()
            assert time.monotonic() < deadline, "the edge did not become ready"
            time.sleep(0.05)
        announced = json.loads(ready.read_text())
        assert announced["service"] == "edge"
        assert announced["pid"] == process.pid
        assert announced["url"].startswith("https://127.0.0.1:")
        ca = ssl.create_default_context(cafile=str(tls_pki.identity_dir("edge") / "ca.pem"))
        port = announced["address"].rsplit(":", 1)[1]
        response = httpx.get(f"https://localhost:{port}/healthz", verify=ca)
        assert response.json() == {"status": "ok"}
        not_ready = httpx.get(f"https://localhost:{port}/readyz", verify=ca)
        assert not_ready.status_code == 503
        assert "identity" in not_ready.json()["message"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
