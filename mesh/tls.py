"""Mutual TLS for the mesh's gRPC: credentials from identity directories, peer ids.

An identity directory (see mesh.pki) holds ``cert.pem``, ``key.pem`` and
``ca.pem``. From it:

* ``server_credentials`` gives a server that requires a client certificate
  from the mesh CA. It is built on ``grpc.dynamic_ssl_server_credentials``:
  grpc asks our fetcher for the certificate configuration at every new
  handshake, and the fetcher reloads the files when their modification time,
  size or inode change. Re-issuing a certificate therefore rotates it without
  a restart; connections already open keep the old one until they close.
* ``channel_credentials`` gives a client the same identity. grpc's TLS client
  checks the server's host name, not its SPIFFE id, so clients dial
  ``127.0.0.1`` with ``grpc.ssl_target_name_override`` set to
  ``server_name(service)``: only the holder of that service's certificate
  can answer. ``RotatingChannel`` rebuilds such a channel when the files
  change, since channel credentials cannot be swapped in place.
* ``peer_identity`` reads the caller's SPIFFE id from the server side's
  ``context.auth_context()``. grpc exposes, for a TLS peer:
  ``transport_security_type`` (``ssl``; ``insecure`` on a plaintext port),
  ``x509_pem_cert``, ``x509_subject``, ``x509_common_name``,
  ``x509_subject_alternative_name``, ``peer_uri``, ``peer_dns``,
  ``peer_ip``, ``peer_spiffe_id``, ``security_level``,
  ``ssl_tls_version``, ``ssl_requested_server_name``,
  ``ssl_session_reused`` and ``ssl_negotiated_key_exchange_group``. We parse
  ``x509_pem_cert`` ourselves instead of trusting ``peer_spiffe_id``: grpc
  sets that for a SPIFFE id of any trust domain and silently omits it when a
  certificate has two URI SANs, whereas our rule (exactly one URI SAN, a
  SPIFFE id in our trust domain) must refuse and say what was wrong.

A reader may see a new certificate beside the old key for an instant while
files are being replaced (each file is replaced atomically, the set is not).
Every load checks that the key matches the certificate and that the CA
bundle signed it; an inconsistent set is skipped and read again at the next
change, so a server keeps its previous identity rather than failing
handshakes. (grpc also refuses a mismatched pair on its own, logging
"Invalid private key" and keeping the previous one; we check anyway so that
the CA is checked too and the log says which files disagree.)

The TLS version is grpc's choice: grpcio has no setting for it. Servers
negotiate TLS 1.3 with current clients and still accept TLS 1.2 (with ECDHE
and AEAD ciphers only); nothing older.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import grpc.aio
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from mesh.pki import CA_CERT, CERT, KEY, TRUST_DOMAIN

log = logging.getLogger("bankmesh.tls")

TARGET_NAME_OVERRIDE = "grpc.ssl_target_name_override"

_FileStamp = tuple[tuple[int, int, int], ...]


class PeerIdentityError(ValueError):
    """The caller has no acceptable SPIFFE id; the message says why."""


def server_name(service: str, *, domain: str = TRUST_DOMAIN) -> str:
    """The host name ``service``'s certificate is issued for: ``<service>.bankmesh.local``."""
    return f"{service}.{domain}"


def channel_options(service: str, *, domain: str = TRUST_DOMAIN) -> list[tuple[str, Any]]:
    """Channel options for dialing ``service`` by address: expect its certificate's name."""
    return [(TARGET_NAME_OVERRIDE, server_name(service, domain=domain))]


@dataclass(frozen=True, slots=True)
class IdentityFiles:
    """Where a certificate, its key and the trusted CA bundle are."""

    cert: Path
    key: Path
    ca: Path

    @classmethod
    def in_directory(cls, directory: Path) -> IdentityFiles:
        directory = Path(directory)
        return cls(cert=directory / CERT, key=directory / KEY, ca=directory / CA_CERT)

    def stamp(self) -> _FileStamp:
        """Changes whenever one of the files is replaced or rewritten."""
        stats = [path.stat() for path in (self.cert, self.key, self.ca)]
        return tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in stats)

    def read(self) -> _Material:
        """The three files' contents, checked to belong together (ValueError if not)."""
        cert_pem, key_pem, ca_pem = (p.read_bytes() for p in (self.cert, self.key, self.ca))
        certificate = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if _spki(key.public_key()) != _spki(certificate.public_key()):
            raise ValueError(f"{self.key} is not the key of {self.cert}")
        authorities = x509.load_pem_x509_certificates(ca_pem)
        if not any(_directly_issued(certificate, ca) for ca in authorities):
            raise ValueError(f"{self.cert} was not issued by a CA in {self.ca}")
        return _Material(cert_pem=cert_pem, key_pem=key_pem, ca_pem=ca_pem)


@dataclass(frozen=True, slots=True)
class _Material:
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes


def server_credentials(identity_dir: Path) -> grpc.ServerCredentials:
    """Mutual TLS server credentials that follow ``identity_dir`` as it is re-issued.

    Raises OSError or ValueError when the directory does not hold a
    consistent identity now: a server must not start without one.
    """
    reloader = _ServerIdentity(IdentityFiles.in_directory(identity_dir))
    return grpc.dynamic_ssl_server_credentials(
        reloader.initial,
        # grpc documents None as "keep the current configuration"; the stubs
        # do not allow for it.
        reloader.fetch,  # type: ignore[arg-type]
        require_client_authentication=True,
    )


class _ServerIdentity:
    """grpc's certificate-configuration fetcher for one identity directory.

    grpc calls ``fetch`` from its own threads at every handshake, so it is
    cheap when nothing changed (three stat calls) and never raises: an
    exception there would fail the handshake instead of keeping the
    identity that still works.
    """

    def __init__(self, files: IdentityFiles) -> None:
        self._files = files
        self._lock = threading.Lock()
        self._stamp = files.stamp()
        self._rejected: _FileStamp | None = None
        self._last_warning: str | None = None
        self.initial = _server_configuration(files.read())

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            stamp: _FileStamp | None = None
            try:
                stamp = self._files.stamp()
                if stamp in (self._stamp, self._rejected):
                    return None
                material = self._files.read()
            except (OSError, ValueError) as exc:
                # Mid-rotation, or a broken re-issue: keep serving the
                # identity we have and look again at the next handshake.
                self._rejected = stamp
                self._warn_once(f"keeping the current server certificate: {exc}")
                return None
            except Exception as exc:
                self._warn_once(f"keeping the current server certificate: {exc!r}")
                return None
            self._stamp, self._last_warning = stamp, None
            log.info("server certificate reloaded from %s", self._files.cert)
            return _server_configuration(material)

    def _warn_once(self, message: str) -> None:
        # fetch runs at every handshake: one line per distinct problem.
        if message != self._last_warning:
            log.warning("%s", message)
            self._last_warning = message


def _server_configuration(material: _Material) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.key_pem, material.cert_pem)], root_certificates=material.ca_pem
    )


def channel_credentials(identity_dir: Path) -> grpc.ChannelCredentials:
    """Client credentials presenting the identity in ``identity_dir`` and trusting its CA."""
    return identity_channel_credentials(IdentityFiles.in_directory(identity_dir))


def identity_channel_credentials(files: IdentityFiles) -> grpc.ChannelCredentials:
    """``channel_credentials`` for files that are not in one identity directory."""
    material = files.read()
    return grpc.ssl_channel_credentials(
        root_certificates=material.ca_pem,
        private_key=material.key_pem,
        certificate_chain=material.cert_pem,
    )


class RotatingChannel:
    """A grpc.aio channel to one service that follows its identity directory.

    ``channel()`` returns the current channel, first checking the identity
    files (at most every ``check_interval`` seconds) and opening a new
    channel when they changed. The previous channel keeps working for
    ``grace`` seconds, so calls already made on it finish, and is then
    closed. Callers should therefore ask for ``channel()`` (and make a stub
    on it) per call or short unit of work rather than keep a stub for the
    life of the process. Use it from the event loop that runs the calls.

    ``keyed_interceptors``, when given, makes each channel's interceptors from
    the private key that channel presents (instead of ``interceptors``):
    end-user assertions are signed with that key and checked against the
    certificate of the connection they arrive on, so signer and channel must
    change together. A signer re-reading the key on a timer of its own signed
    with the new key while calls still went out with the old certificate
    (or the reverse), and every such call was refused as TOKEN_INVALID for
    up to ``check_interval`` after each rotation.
    """

    def __init__(
        self,
        target: str,
        identity_dir: Path,
        *,
        service: str,
        check_interval: float = 5.0,
        grace: float = 30.0,
        options: Sequence[tuple[str, Any]] = (),
        interceptors: Sequence[Any] = (),
        keyed_interceptors: Callable[[bytes], Sequence[Any]] | None = None,
    ) -> None:
        self._target = target
        self._files = IdentityFiles.in_directory(identity_dir)
        self._options = [*options, *channel_options(service)]
        self._interceptors = list(interceptors)
        self._keyed_interceptors = keyed_interceptors
        self._check_interval = check_interval
        self._grace = grace
        self._stamp = self._files.stamp()
        self._channel = self._open(self._files.read())
        self._checked_at = time.monotonic()
        self._retiring: dict[asyncio.Task[None], grpc.aio.Channel] = {}

    def channel(self) -> grpc.aio.Channel:
        now = time.monotonic()
        if now - self._checked_at >= self._check_interval:
            self._checked_at = now
            self._rotate_if_changed()
        return self._channel

    async def close(self) -> None:
        """Close the current channel and any still in their grace period."""
        for task, old in list(self._retiring.items()):
            task.cancel()
            await old.close(grace=None)
        self._retiring.clear()
        await self._channel.close(grace=None)

    def _rotate_if_changed(self) -> None:
        try:
            stamp = self._files.stamp()
            if stamp == self._stamp:
                return
            material = self._files.read()
        except (OSError, ValueError) as exc:
            # Mid-rotation or broken: the current channel still works.
            log.warning("keeping the channel to %s: %s", self._target, exc)
            return
        old, self._channel, self._stamp = self._channel, self._open(material), stamp
        task = asyncio.get_running_loop().create_task(self._close_later(old))
        self._retiring[task] = old
        task.add_done_callback(lambda done: self._retiring.pop(done, None))

    async def _close_later(self, old: grpc.aio.Channel) -> None:
        await asyncio.sleep(self._grace)
        await old.close(grace=None)

    def _open(self, material: _Material) -> grpc.aio.Channel:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=material.ca_pem,
            private_key=material.key_pem,
            certificate_chain=material.cert_pem,
        )
        interceptors = (
            list(self._keyed_interceptors(material.key_pem))
            if self._keyed_interceptors is not None
            else self._interceptors
        )
        return grpc.aio.secure_channel(
            self._target, credentials, options=self._options, interceptors=interceptors
        )


def peer_identity(auth_context: Mapping[str, Iterable[bytes]]) -> str:
    """The caller's SPIFFE id, from ``context.auth_context()`` on the server.

    Requires a TLS peer whose certificate has exactly one URI SAN, a SPIFFE
    id in the bankmesh.local trust domain. Raises PeerIdentityError otherwise.
    """
    security = [v.decode(errors="replace") for v in auth_context.get("transport_security_type", ())]
    if security != ["ssl"]:
        raise PeerIdentityError(
            f"the peer did not connect over TLS (transport security: {', '.join(security) or 'none'})"
        )
    pems = list(auth_context.get("x509_pem_cert", ()))
    if len(pems) != 1:
        raise PeerIdentityError("the peer presented no client certificate")
    return _spiffe_id_of(pems[0])


# Every call on a connection presents the same certificate, and parsing X.509
# per call showed up in the ledger's profile: remember the verdict per PEM.
# Bounded, and keyed by the exact bytes, so a rotated certificate is parsed anew.
@functools.lru_cache(maxsize=1024)
def _spiffe_id_of(pem: bytes) -> str:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        raise PeerIdentityError("the peer's certificate has no subject alternative names") from None
    except ValueError as exc:
        raise PeerIdentityError(f"the peer's certificate cannot be parsed: {exc}") from exc
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        listed = f": {', '.join(uris)}" if uris else ""
        raise PeerIdentityError(
            f"the peer's certificate has {len(uris)} URI SANs{listed}; "
            "an identity needs exactly one, its SPIFFE id"
        )
    problem = _spiffe_problem(uris[0])
    if problem:
        raise PeerIdentityError(f"the peer's URI SAN {uris[0]!r} {problem}")
    return uris[0]


def _spiffe_problem(uri: str) -> str | None:
    """Why ``uri`` is not a SPIFFE id of our trust domain (None when it is one)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "is not a URI"
    if parts.scheme != "spiffe":
        return "is not a SPIFFE id (scheme must be spiffe)"
    # Exact comparison: the trust domain is lower case by definition, and a
    # port or user info would make netloc differ too.
    if parts.netloc != TRUST_DOMAIN:
        return f"is not in the {TRUST_DOMAIN} trust domain"
    segments = parts.path.split("/")[1:]
    if not parts.path.startswith("/") or any(s in ("", ".", "..") for s in segments):
        return "has no path or an empty, '.' or '..' segment"
    if parts.query or parts.fragment or "?" in uri or "#" in uri:
        return "has a query or fragment"
    return None


def speaks_tls(address: str, *, server_name: str, timeout: float = 2.0) -> bool:
    """Whether the server at ``host:port`` answers a TLS ClientHello with TLS.

    Sends the opening of a handshake and looks at the first byte of the
    answer: a TLS record (handshake 0x16 or alert 0x15) means TLS; a
    plaintext gRPC server answers with an HTTP/2 frame, or closes. No
    certificate is checked and the handshake is never finished: this tells
    what a port speaks, not whom to trust.
    """
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    context = ssl.create_default_context()
    context.set_alpn_protocols(["h2"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    handshake = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    # Raises SSLWantReadError once the ClientHello is written: the answer is
    # read from the socket below, not fed back to the handshake.
    with contextlib.suppress(ssl.SSLWantReadError):
        handshake.do_handshake()
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(outgoing.read())
        try:
            first = conn.recv(1)
        except OSError:
            return False
    return first[:1] in (b"\x15", b"\x16")


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _directly_issued(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
