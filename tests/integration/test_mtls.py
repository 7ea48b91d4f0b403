"""Mutual TLS between real gRPC peers: who gets in, who is named, rotation, TLS version.

A grpc.aio server on 127.0.0.1 port 0 with ``server_credentials`` serves the
standard health service and ``/bankmesh.test.Echo/WhoAmI``, which answers the
caller's ``peer_identity`` and certificate serial as JSON, or UNAUTHENTICATED
with the reason ``peer_identity`` gave. The server is "account"; the usual
client is "payment". Certificates the CA would never issue (no URI SAN, two,
expired) are made here with cryptography, signed by the test CA's key.
Everything is issued into temporary directories for the session.

The last tests run ``launch`` (what ``bankmesh up`` runs) in a child process
with two throwaway services: ``secure`` serves mTLS with the identity it is
given, ``plain`` ignores it and serves plaintext.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import textwrap
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from typer.testing import CliRunner

from mesh.cli import app
from mesh.pki import CertificateAuthority, IssuedIdentity, spiffe_id
from mesh.runtime.errors import MeshError
from mesh.runtime.status import Endpoints, check_all
from mesh.tls import (
    PeerIdentityError,
    RotatingChannel,
    channel_credentials,
    channel_options,
    peer_identity,
    server_credentials,
    server_name,
    speaks_tls,
)
from tests.support.launch import launched

pytestmark = pytest.mark.integration

WHO_AM_I = "/bankmesh.test.Echo/WhoAmI"
TIMEOUT = 5.0


async def who_am_i(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    auth = context.auth_context()
    try:
        identity = peer_identity(auth)
    except PeerIdentityError as exc:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
    pem = next(iter(auth["x509_pem_cert"]))
    serial = x509.load_pem_x509_certificate(pem).serial_number
    return json.dumps({"spiffe_id": identity, "serial": serial}).encode()


def echo_handler() -> grpc.GenericRpcHandler[bytes, bytes]:
    return grpc.method_handlers_generic_handler(
        "bankmesh.test.Echo", {"WhoAmI": grpc.unary_unary_rpc_method_handler(who_am_i)}
    )


@dataclass
class Pki:
    root: Path
    ca: CertificateAuthority
    other_ca: CertificateAuthority
    server: IssuedIdentity
    client: IssuedIdentity

    def dir(self, name: str) -> Path:
        return self.root / name


@dataclass
class Server:
    server: grpc.aio.Server
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def write_identity(
    directory: Path,
    ca: CertificateAuthority,
    *,
    uris: Sequence[str],
    not_before: datetime,
    not_after: datetime,
) -> Path:
    """A leaf like the CA's but with the URI SANs and validity given: what issue() refuses to make."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    *(x509.UniformResourceIdentifier(uri) for uri in uris),
                    x509.DNSName("odd.bankmesh.local"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
        .sign(ca.private_key, hashes.SHA256())
    )
    directory.mkdir(parents=True)
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / "ca.pem").write_bytes(ca.certificate_pem)
    return directory


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority.create(root / "ca")
    other_ca = CertificateAuthority.create(root / "other-ca")
    now = datetime.now(UTC)
    valid = {"not_before": now - timedelta(minutes=5), "not_after": now + timedelta(hours=1)}
    write_identity(root / "no-uri", ca, uris=[], **valid)
    write_identity(
        root / "two-uris", ca, uris=[spiffe_id("payment"), spiffe_id("operator")], **valid
    )
    write_identity(
        root / "expired",
        ca,
        uris=[spiffe_id("payment")],
        not_before=now - timedelta(hours=2),
        not_after=now - timedelta(hours=1),
    )
    other_ca.issue("payment", directory=root / "foreign")
    return Pki(
        root=root,
        ca=ca,
        other_ca=other_ca,
        server=ca.issue("account", directory=root / "account"),
        client=ca.issue("payment", directory=root / "payment"),
    )


async def start_server(identity_dir: Path) -> Server:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([echo_handler()])
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(identity_dir))
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    return Server(server, port)


@pytest.fixture(scope="module")
async def account(pki: Pki) -> AsyncIterator[Server]:
    running = await start_server(pki.server.directory)
    yield running
    await running.server.stop(grace=None)


def secure_channel(
    address: str, credentials: grpc.ChannelCredentials, service: str = "account"
) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(address, credentials, options=channel_options(service))


async def call_who_am_i(channel: grpc.aio.Channel) -> dict[str, object]:
    answer = await channel.unary_unary(WHO_AM_I, None, None)(b"", timeout=TIMEOUT)
    assert isinstance(answer, bytes)
    document: dict[str, object] = json.loads(answer)
    return document


async def refused(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError:
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call_who_am_i(channel)
    return caught.value


async def assert_server_accepts_the_valid_client(pki: Pki, server: Server) -> None:
    # Next to each refusal: the same server lets the right client in, so the
    # refusal is about the credentials and not about a server that is down.
    async with secure_channel(server.address, channel_credentials(pki.client.directory)) as ok:
        assert (await call_who_am_i(ok))["spiffe_id"] == spiffe_id("payment")


def peer_certificate(
    port: int,
    client_dir: Path,
    *,
    service: str = "account",
    max_version: ssl.TLSVersion | None = None,
) -> tuple[str | None, str | None, tuple[str, str, int] | None, x509.Certificate]:
    """Handshake with Python's ssl as a gRPC client would: version, ALPN, cipher, server cert."""
    context = ssl.create_default_context(cafile=client_dir / "ca.pem")
    context.load_cert_chain(client_dir / "cert.pem", client_dir / "key.pem")
    context.set_alpn_protocols(["h2"])
    if max_version is not None:
        context.maximum_version = max_version
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=server_name(service)) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return (
            tls.version(),
            tls.selected_alpn_protocol(),
            tls.cipher(),
            x509.load_der_x509_certificate(der),
        )


async def test_a_client_with_a_mesh_certificate_is_served_and_named_by_its_spiffe_id(
    pki: Pki, account: Server
) -> None:
    """Health answers SERVING over mTLS, and the server sees spiffe://bankmesh.local/svc/payment."""
    async with secure_channel(account.address, channel_credentials(pki.client.directory)) as ch:
        health = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        answer = await call_who_am_i(ch)
    assert answer == {
        "spiffe_id": "spiffe://bankmesh.local/svc/payment",
        "serial": pki.client.serial,
    }


async def test_a_client_without_a_certificate_fails_the_handshake(
    pki: Pki, account: Server
) -> None:
    """A TLS client that trusts the CA but presents no certificate gets UNAVAILABLE."""
    anonymous = grpc.ssl_channel_credentials(root_certificates=pki.ca.certificate_pem)
    error = await refused(secure_channel(account.address, anonymous))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    await assert_server_accepts_the_valid_client(pki, account)


async def test_a_client_certificate_from_another_ca_fails_the_handshake(
    pki: Pki, account: Server
) -> None:
    """A well-formed payment certificate signed by a CA the server does not trust gets UNAVAILABLE."""
    foreign = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.certificate_pem,  # the client trusts the server...
        private_key=(pki.dir("foreign") / "key.pem").read_bytes(),
        certificate_chain=(pki.dir("foreign") / "cert.pem").read_bytes(),
    )
    error = await refused(secure_channel(account.address, foreign))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    await assert_server_accepts_the_valid_client(pki, account)


async def test_an_expired_client_certificate_fails_the_handshake(pki: Pki, account: Server) -> None:
    """A certificate from the right CA that expired an hour ago gets UNAVAILABLE."""
    error = await refused(secure_channel(account.address, channel_credentials(pki.dir("expired"))))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    await assert_server_accepts_the_valid_client(pki, account)


async def test_a_client_expecting_another_service_refuses_the_server(
    pki: Pki, account: Server
) -> None:
    """Dialing account's port while expecting risk.bankmesh.local fails: the name is the identity."""
    credentials = channel_credentials(pki.client.directory)
    error = await refused(secure_channel(account.address, credentials, service="risk"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    await assert_server_accepts_the_valid_client(pki, account)


async def test_a_certificate_without_a_uri_san_is_refused_by_peer_identity(
    pki: Pki, account: Server
) -> None:
    """The handshake succeeds (the CA signed it) but peer_identity answers UNAUTHENTICATED."""
    error = await refused(secure_channel(account.address, channel_credentials(pki.dir("no-uri"))))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == (
        "the peer's certificate has 0 URI SANs; an identity needs exactly one, its SPIFFE id"
    )


async def test_a_certificate_with_two_uri_sans_is_refused_by_peer_identity(
    pki: Pki, account: Server
) -> None:
    """Two SPIFFE ids make an ambiguous caller: UNAUTHENTICATED, naming both."""
    credentials = channel_credentials(pki.dir("two-uris"))
    error = await refused(secure_channel(account.address, credentials))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == (
        "the peer's certificate has 2 URI SANs: spiffe://bankmesh.local/svc/payment, "
        "spiffe://bankmesh.local/svc/operator; an identity needs exactly one, its SPIFFE id"
    )


async def test_a_plaintext_client_cannot_talk_to_the_tls_port(account: Server) -> None:
    """An insecure channel to the mTLS port gets UNAVAILABLE, never a response."""
    error = await refused(grpc.aio.insecure_channel(account.address))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_peer_identity_refuses_a_caller_on_a_plaintext_port() -> None:
    """On an insecure server the auth context says 'insecure' and peer_identity says so."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([echo_handler()])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        error = await refused(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
    finally:
        await server.stop(grace=None)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "the peer did not connect over TLS (transport security: insecure)"


@pytest.mark.parametrize(
    ("auth_context", "reason"),
    [
        ({}, r"did not connect over TLS \(transport security: none\)"),
        ({"transport_security_type": [b"ssl"]}, "presented no client certificate"),
    ],
    ids=["empty", "tls-without-certificate"],
)
def test_peer_identity_refuses_an_auth_context_without_a_certificate(
    auth_context: dict[str, list[bytes]], reason: str
) -> None:
    """No transport security at all, or TLS without a peer certificate, is no identity."""
    with pytest.raises(PeerIdentityError, match=reason):
        peer_identity(auth_context)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("spiffe://example.org/svc/payment", "is not in the bankmesh.local trust domain"),
        ("spiffe://bankmesh.local:443/svc/payment", "is not in the bankmesh.local trust domain"),
        ("https://bankmesh.local/svc/payment", "scheme must be spiffe"),
        ("spiffe://bankmesh.local", "has no path"),
        ("spiffe://bankmesh.local/svc//payment", "empty, '.' or '..' segment"),
        ("spiffe://bankmesh.local/svc/payment?x=1", "has a query or fragment"),
    ],
)
def test_peer_identity_refuses_a_uri_san_that_is_not_one_of_our_spiffe_ids(
    pki: Pki, tmp_path: Path, uri: str, reason: str
) -> None:
    """The single URI SAN must be a SPIFFE id in the bankmesh.local trust domain."""
    now = datetime.now(UTC)
    directory = write_identity(
        tmp_path / "odd", pki.ca, uris=[uri], not_before=now, not_after=now + timedelta(hours=1)
    )
    context = {
        "transport_security_type": [b"ssl"],
        "x509_pem_cert": [(directory / "cert.pem").read_bytes()],
    }
    with pytest.raises(PeerIdentityError, match=reason):
        peer_identity(context)


async def test_tls_1_3_is_negotiated_with_a_current_client(pki: Pki, account: Server) -> None:
    """Python's ssl with the client certificate and ALPN h2 gets TLSv1.3 and h2."""
    version, alpn, _, cert = await asyncio.to_thread(
        peer_certificate, account.port, pki.client.directory
    )
    assert version == "TLSv1.3"
    assert alpn == "h2"
    assert cert.serial_number == pki.server.serial


async def test_a_tls_1_2_client_gets_only_a_forward_secret_aead_cipher(
    pki: Pki, account: Server
) -> None:
    """grpc's floor is TLS 1.2 (it has no setting to raise it); 1.2 uses ECDHE with AES-GCM or ChaCha20."""
    version, _, cipher, _ = await asyncio.to_thread(
        peer_certificate, account.port, pki.client.directory, max_version=ssl.TLSVersion.TLSv1_2
    )
    assert version == "TLSv1.2"
    assert cipher is not None
    name = cipher[0]
    assert name.startswith("ECDHE-ECDSA-"), name
    assert "GCM" in name or "CHACHA20" in name, name


async def test_speaks_tls_tells_a_tls_port_from_a_plaintext_one(account: Server) -> None:
    """The launcher's probe: the mTLS port answers with TLS, a plaintext gRPC port does not."""
    plain = grpc.aio.server()
    port = plain.add_insecure_port("127.0.0.1:0")
    await plain.start()
    try:
        assert await asyncio.to_thread(
            speaks_tls, account.address, server_name=server_name("account")
        )
        assert not await asyncio.to_thread(
            speaks_tls, f"127.0.0.1:{port}", server_name=server_name("account")
        )
    finally:
        await plain.stop(grace=None)


async def test_a_reissued_server_certificate_is_served_to_new_connections_without_a_restart(
    pki: Pki, tmp_path: Path
) -> None:
    """Re-issuing the server's files changes the certificate a fresh client sees; old channels work on."""
    server_dir = tmp_path / "account"
    first = pki.ca.issue("account", directory=server_dir)
    running = await start_server(server_dir)
    try:
        before = secure_channel(running.address, channel_credentials(pki.client.directory))
        await call_who_am_i(before)
        seen = await asyncio.to_thread(peer_certificate, running.port, pki.client.directory)
        assert seen[3].serial_number == first.serial

        second = pki.ca.issue("account", directory=server_dir)
        seen = await asyncio.to_thread(peer_certificate, running.port, pki.client.directory)
        assert seen[3].serial_number == second.serial != first.serial
        # The connection made before the rotation is not dropped.
        assert (await call_who_am_i(before))["spiffe_id"] == spiffe_id("payment")
        await before.close(grace=None)
    finally:
        await running.server.stop(grace=None)


async def test_a_server_reissued_by_a_new_ca_trusts_only_that_ca_from_then_on(
    pki: Pki, tmp_path: Path
) -> None:
    """After re-issue from a new CA, a client trusting only the new CA gets in and an old one does not."""
    server_dir = tmp_path / "account"
    pki.ca.issue("account", directory=server_dir)
    running = await start_server(server_dir)
    try:
        new_ca = CertificateAuthority.create(tmp_path / "new-ca")
        new_client = new_ca.issue("payment", directory=tmp_path / "new-payment")
        new_ca.issue("account", directory=server_dir)

        async with secure_channel(
            running.address, channel_credentials(new_client.directory)
        ) as fresh:
            answer = await call_who_am_i(fresh)
        assert answer == {"spiffe_id": spiffe_id("payment"), "serial": new_client.serial}
        old = secure_channel(running.address, channel_credentials(pki.client.directory))
        assert (await refused(old)).code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await running.server.stop(grace=None)


async def test_a_half_written_rotation_keeps_the_previous_server_certificate(
    pki: Pki, tmp_path: Path
) -> None:
    """A new cert.pem beside the old key.pem is not loaded: handshakes go on with the old pair."""
    server_dir = tmp_path / "account"
    first = pki.ca.issue("account", directory=server_dir)
    running = await start_server(server_dir)
    try:
        old_key = (server_dir / "key.pem").read_bytes()
        second = pki.ca.issue("account", directory=tmp_path / "staging")
        (server_dir / "cert.pem").write_bytes(second.cert.read_bytes())
        assert (server_dir / "key.pem").read_bytes() == old_key

        seen = await asyncio.to_thread(peer_certificate, running.port, pki.client.directory)
        assert seen[3].serial_number == first.serial

        (server_dir / "key.pem").write_bytes(second.key.read_bytes())
        seen = await asyncio.to_thread(peer_certificate, running.port, pki.client.directory)
        assert seen[3].serial_number == second.serial
    finally:
        await running.server.stop(grace=None)


def test_server_credentials_refuse_a_key_that_does_not_match_the_certificate(
    pki: Pki, tmp_path: Path
) -> None:
    """A server does not start with a mismatched identity; the error names the files."""
    directory = tmp_path / "account"
    pki.ca.issue("account", directory=directory)
    (directory / "key.pem").write_bytes(pki.client.key.read_bytes())
    with pytest.raises(ValueError, match="is not the key of"):
        server_credentials(directory)


async def test_a_rotating_channel_follows_its_reissued_client_certificate(
    pki: Pki, account: Server, tmp_path: Path
) -> None:
    """After re-issue, channel() is a new channel presenting the new serial; the old one closes after its grace."""
    client_dir = tmp_path / "payment"
    first = pki.ca.issue("payment", directory=client_dir)
    rotating = RotatingChannel(
        account.address, client_dir, service="account", check_interval=0.0, grace=0.2
    )
    try:
        old = rotating.channel()
        assert (await call_who_am_i(old))["serial"] == first.serial
        assert rotating.channel() is old  # unchanged files: same channel

        second = pki.ca.issue("payment", directory=client_dir)
        new = rotating.channel()
        assert new is not old
        assert (await call_who_am_i(new))["serial"] == second.serial
        assert (await call_who_am_i(old))["serial"] == first.serial  # still in its grace period

        await asyncio.sleep(0.5)
        with pytest.raises(grpc.aio.UsageError):
            await call_who_am_i(old)
    finally:
        await rotating.close()


async def test_each_rotated_channel_gets_interceptors_made_from_the_key_it_presents(
    pki: Pki, account: Server, tmp_path: Path
) -> None:
    """End-user assertions are signed with the key of the connection they travel on, even mid-rotation."""
    client_dir = tmp_path / "edge"
    first = pki.ca.issue("edge", directory=client_dir)
    keys: list[bytes] = []

    def interceptors(key_pem: bytes) -> list[object]:
        keys.append(key_pem)
        return []

    rotating = RotatingChannel(
        account.address,
        client_dir,
        service="account",
        check_interval=0.0,
        grace=0.2,
        keyed_interceptors=interceptors,
    )
    try:
        first_key = first.key.read_bytes()
        assert keys == [first_key]
        second = pki.ca.issue("edge", directory=client_dir)
        new = rotating.channel()
        assert keys == [first_key, second.key.read_bytes()]
        assert (await call_who_am_i(new))["serial"] == second.serial
    finally:
        await rotating.close()


def test_status_refuses_credentials_it_cannot_use_instead_of_going_plaintext(
    pki: Pki, tmp_path: Path
) -> None:
    """endpoints.json credentials naming a missing key are an error with a hint, not a fallback."""
    credentials = {
        "ca": str(pki.client.ca),
        "cert": str(pki.client.cert),
        "key": str(tmp_path / "gone.pem"),
        "server_name_suffix": "bankmesh.local",
    }
    with pytest.raises(MeshError, match="cannot use the operator certificate") as caught:
        check_all(Endpoints(services={"account": "127.0.0.1:1"}, credentials=credentials))
    assert caught.value.hint is not None
    assert "bankmesh certs" in caught.value.hint


FAKE_SERVICE = """
import asyncio, json, os, signal
from pathlib import Path

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from mesh.tls import server_credentials


async def main():
    identity = os.environ["BANKMESH_IDENTITY_DIR"]
    print(f"identity: {identity}", flush=True)
    server = grpc.aio.server()
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    listen = os.environ["BANKMESH_LISTEN"]
    if os.environ.get("FAKE_PLAINTEXT") == "1":
        port = server.add_insecure_port(listen)
    else:
        port = server.add_secure_port(listen, server_credentials(Path(identity)))
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    ready = os.environ["BANKMESH_READY_FILE"]
    with open(ready + ".tmp", "w") as f:
        json.dump({"address": f"127.0.0.1:{port}", "pid": os.getpid()}, f)
    os.replace(ready + ".tmp", ready)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


asyncio.run(main())
"""

DRIVER = """
import sys
from contextlib import nullcontext
from pathlib import Path

from mesh.runtime.launcher import MeshConfig, launch
from mesh.runtime.supervisor import ServiceSpec


class WarningsToFile:
    def step(self, description):
        return nullcontext()

    def started(self, mesh):
        pass

    def stopping(self, reason):
        pass

    def stopped(self, summary):
        pass

    def warn(self, message):
        with open(Path(sys.argv[1]) / "warnings.txt", "a") as f:
            print(message, file=f)


config = MeshConfig(
    data_dir=Path(sys.argv[1]),
    database_url=sys.argv[2],
    services=[
        ServiceSpec(name="secure", module="fakesvc", uses_database=False),
        ServiceSpec(
            name="plain", module="fakesvc", uses_database=False, env={"FAKE_PLAINTEXT": "1"}
        ),
    ],
    grace_period=5,
)
sys.exit(launch(config, WarningsToFile()))
"""


@dataclass
class LaunchedMesh:
    data_dir: Path
    process: subprocess.Popen[str]

    @property
    def endpoints(self) -> dict[str, object]:
        document: dict[str, object] = json.loads((self.data_dir / "endpoints.json").read_text())
        return document


@pytest.fixture(scope="module")
def launched_mesh(
    tmp_path_factory: pytest.TempPathFactory, postgres_server_url: str
) -> Iterator[LaunchedMesh]:
    code = tmp_path_factory.mktemp("fake-services")
    (code / "fakesvc").mkdir()
    (code / "fakesvc" / "__init__.py").write_text("")
    (code / "fakesvc" / "__main__.py").write_text(textwrap.dedent(FAKE_SERVICE))
    data_dir = tmp_path_factory.mktemp("mesh")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), env.get("PYTHONPATH")) if p)
    with launched(
        DRIVER, data_dir, [postgres_server_url], env=env, timeout=30, stop_timeout=15
    ) as process:
        yield LaunchedMesh(data_dir, process)


def test_bankmesh_up_starts_each_service_with_its_own_identity(launched_mesh: LaunchedMesh) -> None:
    """BANKMESH_IDENTITY_DIR is <data-dir>/pki/<service>, holding that service's SPIFFE id."""
    pki = launched_mesh.data_dir / "pki"
    for name in ("secure", "plain"):
        log = (launched_mesh.data_dir / "logs" / f"{name}.log").read_text()
        assert f"identity: {pki / name}\n" in log
        assert IssuedIdentity.load(pki / name).spiffe_id == spiffe_id(name)
    operator = IssuedIdentity.load(pki / "operator")
    assert operator.spiffe_id == "spiffe://bankmesh.local/svc/operator"
    assert operator.key.stat().st_mode & 0o777 == 0o600


def test_bankmesh_up_writes_the_operator_credentials_once_services_speak_tls(
    launched_mesh: LaunchedMesh,
) -> None:
    """endpoints.json names the operator's cert, key and CA; the plaintext service is warned about."""
    operator = launched_mesh.data_dir / "pki" / "operator"
    assert launched_mesh.endpoints["credentials"] == {
        "ca": str(operator / "ca.pem"),
        "cert": str(operator / "cert.pem"),
        "key": str(operator / "key.pem"),
        "server_name_suffix": "bankmesh.local",
    }
    warnings = (launched_mesh.data_dir / "warnings.txt").read_text().splitlines()
    assert len(warnings) == 1
    assert warnings[0].startswith("service 'plain' serves plaintext gRPC on 127.0.0.1:")


def test_bankmesh_status_asks_over_mtls_as_the_operator_and_never_falls_back(
    launched_mesh: LaunchedMesh,
) -> None:
    """The mTLS service is SERVING; the plaintext one is UNREACHABLE over mTLS, so status exits 1."""
    result = CliRunner().invoke(
        app, ["status", "--data-dir", str(launched_mesh.data_dir)], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 1, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("│")}
    assert "SERVING" in rows["secure"].split()
    assert "UNREACHABLE" in rows["plain"].split()
    assert "transport: mutual TLS as the operator" in result.output
