"""The mesh's internal certificate authority and the identities it issues.

Every internal gRPC hop is mutual TLS. A service proves who it is with an
X.509-SVID: a short-lived certificate whose single URI SAN is its SPIFFE id,
``spiffe://bankmesh.local/svc/<service>``. Authorization (which caller may
call which method) keys on that id, never on host names or addresses.

Design:

* One CA per data directory (``<data-dir>/pki/ca``): EC P-256, self-signed,
  ``pathLen=0`` so it can sign leaves but no intermediate CA. It lives 30
  days by default; leaves live hours, so a stolen leaf key is worth little
  and rotation is routine rather than an event. P-256 rather than Ed25519:
  grpc's BoringSSL offers no Ed25519 signature algorithm in its handshakes
  (``NO_COMMON_SIGNATURE_ALGORITHMS``), so Ed25519 certificates cannot be used.
* A leaf is good for both ends of a connection (EKU serverAuth and
  clientAuth): every service is a server to its callers and a client of its
  dependencies, with one identity. Besides the SPIFFE id it names
  ``<service>.bankmesh.local``, ``localhost`` and 127.0.0.1, because
  grpc's TLS client checks the server's host name; clients dial 127.0.0.1
  and override the expected name to ``<service>.bankmesh.local``, so the
  name check is an identity check too.
* An identity directory holds ``cert.pem``, ``key.pem`` and the CA's
  ``ca.pem``. Each file is replaced by write-then-rename, so a server that
  reloads on change never reads half a file; a reader can still see a new
  certificate next to the old key for an instant, so readers check that the
  key matches (mesh.tls does) and retry later when it does not.
* Private keys are created with mode 0600 from the first byte (never
  written and then chmod-ed) in directories of mode 0700.

Nothing here talks to gRPC; mesh.tls turns identity directories into
credentials.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "bankmesh.local"
OPERATOR = "operator"
EDGE = "edge"

DEFAULT_CA_LIFETIME = timedelta(days=30)
DEFAULT_LIFETIME = timedelta(hours=12)
# Certificates start a little in the past so a peer whose clock is slightly
# behind ours does not reject a certificate issued a moment ago.
CLOCK_SKEW = timedelta(minutes=5)

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
CERT = "cert.pem"
KEY = "key.pem"

# A service name becomes a DNS label and a SPIFFE path segment: keep it to
# what is valid in both.
_SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def spiffe_id(service: str) -> str:
    """``spiffe://bankmesh.local/svc/<service>``."""
    return f"spiffe://{TRUST_DOMAIN}/svc/{_checked_service(service)}"


def dns_name(service: str) -> str:
    """``<service>.bankmesh.local``: the host name in every leaf of ``service``."""
    return f"{_checked_service(service)}.{TRUST_DOMAIN}"


def identity_directory(pki_dir: Path, service: str) -> Path:
    """Where a mesh keeps ``service``'s identity: ``<pki_dir>/<service>``."""
    if _checked_service(service) == "ca":
        # <pki_dir>/ca is the CA's own directory.
        raise ValueError('"ca" cannot be a service name: <pki>/ca holds the certificate authority')
    return Path(pki_dir) / service


@dataclass(frozen=True, slots=True)
class IssuedIdentity:
    """A service's certificate, key and the CA that issued them, on disk."""

    service: str
    spiffe_id: str
    cert: Path
    key: Path
    ca: Path
    not_after: datetime
    serial: int

    @property
    def directory(self) -> Path:
        return self.cert.parent

    @classmethod
    def load(cls, directory: Path) -> IssuedIdentity:
        """Read the identity in ``directory``.

        Raises FileNotFoundError when a file is missing and ValueError when the
        certificate is not a bankmesh leaf (no single SPIFFE id of ours).
        """
        directory = Path(directory)
        cert_path, key_path, ca_path = directory / CERT, directory / KEY, directory / CA_CERT
        for path in (key_path, ca_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist")
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        uris = _uri_sans(certificate)
        prefix = f"spiffe://{TRUST_DOMAIN}/svc/"
        if len(uris) != 1 or not uris[0].startswith(prefix):
            raise ValueError(f"{cert_path} does not carry exactly one {prefix}<service> URI SAN")
        return cls(
            service=uris[0].removeprefix(prefix),
            spiffe_id=uris[0],
            cert=cert_path,
            key=key_path,
            ca=ca_path,
            not_after=certificate.not_valid_after_utc,
            serial=certificate.serial_number,
        )


class CertificateAuthority:
    """The mesh CA: signs short-lived service identities.

    ``created`` says whether this object made a new CA (``create``) rather
    than reading an existing one (``load``), so callers can tell the operator
    that every identity it issued before is no longer trusted.
    """

    def __init__(
        self,
        directory: Path,
        certificate: x509.Certificate,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        created: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.certificate = certificate
        self.private_key = private_key
        self.created = created

    @property
    def cert_path(self) -> Path:
        return self.directory / CA_CERT

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def create(
        cls, directory: Path, *, lifetime: timedelta = DEFAULT_CA_LIFETIME
    ) -> CertificateAuthority:
        """Make a new CA in ``directory`` (``ca.pem``, ``ca-key.pem``), replacing any there."""
        if lifetime <= timedelta(0):
            raise ValueError(f"a CA lifetime must be positive, not {lifetime}")
        directory = Path(directory)
        _make_private_dir(directory)
        key = ec.generate_private_key(ec.SECP256R1())
        # A random suffix: two CAs made for one data directory (one replaced
        # the other) must not look like the same issuer to a verifier.
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bankmesh"),
                x509.NameAttribute(
                    NameOID.COMMON_NAME, f"bankmesh internal CA {secrets.token_hex(4)}"
                ),
            ]
        )
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        # Key first: a directory with a CA certificate but no key would look
        # loadable and then fail.
        _write_atomically(directory / CA_KEY, _private_pem(key), private=True)
        _write_atomically(directory / CA_CERT, certificate.public_bytes(serialization.Encoding.PEM))
        return cls(directory, certificate, key, created=True)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        """Read the CA in ``directory``; FileNotFoundError when there is none."""
        directory = Path(directory)
        certificate = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or _public_der(
            key.public_key()
        ) != _public_der(certificate.public_key()):
            raise ValueError(f"{directory / CA_KEY} is not the key of {directory / CA_CERT}")
        return cls(directory, certificate, key)

    @classmethod
    def load_or_create(
        cls,
        directory: Path,
        *,
        min_remaining: timedelta = timedelta(0),
        lifetime: timedelta = DEFAULT_CA_LIFETIME,
    ) -> CertificateAuthority:
        """The CA in ``directory``, or a new one when there is none or it expires too soon.

        ``min_remaining`` is how long the CA must still be valid: a leaf cannot
        outlive its CA, so callers pass the lifetime of the leaves they are
        about to issue.
        """
        with contextlib.suppress(FileNotFoundError):
            existing = cls.load(directory)
            if existing.not_after - datetime.now(UTC) >= min_remaining:
                return existing
        return cls.create(directory, lifetime=max(lifetime, min_remaining + timedelta(hours=1)))

    def issue(
        self,
        service: str,
        *,
        directory: Path,
        lifetime: timedelta = DEFAULT_LIFETIME,
        dns_names: Sequence[str] | None = None,
    ) -> IssuedIdentity:
        """Issue ``service`` a fresh key and certificate into ``directory``.

        The certificate's only URI SAN is ``spiffe_id(service)``; its DNS SANs
        are ``<service>.bankmesh.local``, ``localhost`` and ``dns_names``, and
        its IP SAN 127.0.0.1. It is valid for ``lifetime``, or until the CA
        expires if that is sooner.
        """
        if lifetime <= timedelta(0):
            raise ValueError(f"a certificate lifetime must be positive, not {lifetime}")
        directory = Path(directory)
        _make_private_dir(directory)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        names = _unique([dns_name(service), "localhost", *(dns_names or ())])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bankmesh"),
                        x509.NameAttribute(NameOID.COMMON_NAME, service),
                    ]
                )
            )
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(min(now + lifetime, self.not_after))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.UniformResourceIdentifier(spiffe_id(service)),
                        *(x509.DNSName(name) for name in names),
                        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                critical=False,
            )
            .sign(self.private_key, hashes.SHA256())
        )
        # The certificate last: its change is what marks a new identity, and
        # by then the key and CA it goes with are in place.
        _write_atomically(directory / CA_CERT, self.certificate_pem)
        _write_atomically(directory / KEY, _private_pem(key), private=True)
        _write_atomically(directory / CERT, certificate.public_bytes(serialization.Encoding.PEM))
        return IssuedIdentity(
            service=service,
            spiffe_id=spiffe_id(service),
            cert=directory / CERT,
            key=directory / KEY,
            ca=directory / CA_CERT,
            not_after=certificate.not_valid_after_utc,
            serial=certificate.serial_number,
        )

    def issued(self, identity: IssuedIdentity) -> bool:
        """Whether this CA signed ``identity``'s certificate and it ships this CA."""
        try:
            certificate = x509.load_pem_x509_certificate(identity.cert.read_bytes())
            certificate.verify_directly_issued_by(self.certificate)
            return identity.ca.read_bytes() == self.certificate_pem
        except (OSError, ValueError, TypeError, InvalidSignature):
            # Unreadable, another issuer's name or key type, or a bad signature.
            return False

    def ensure_issued(
        self,
        service: str,
        *,
        directory: Path,
        lifetime: timedelta = DEFAULT_LIFETIME,
        renew_within: timedelta = timedelta(hours=1),
    ) -> IssuedIdentity:
        """``service``'s identity in ``directory``, re-issued unless it is current.

        Current means: issued by this CA to ``service`` and valid for more than
        ``renew_within``. Anything else (missing, unreadable, another CA's,
        about to expire) is replaced.
        """
        try:
            existing = IssuedIdentity.load(directory)
        except (OSError, ValueError):
            pass
        else:
            if (
                existing.service == service
                and existing.not_after - datetime.now(UTC) > renew_within
                and self.issued(existing)
            ):
                return existing
        return self.issue(service, directory=directory, lifetime=lifetime)


@dataclass(frozen=True, slots=True)
class MeshIdentities:
    """What ``issue_mesh_identities`` left in a data directory's ``pki/``."""

    ca: CertificateAuthority
    identities: dict[str, IssuedIdentity]


def issue_mesh_identities(
    pki_dir: Path,
    services: Iterable[str],
    *,
    lifetime: timedelta = DEFAULT_LIFETIME,
    renew_within: timedelta | None = None,
) -> MeshIdentities:
    """The CA in ``<pki_dir>/ca`` and an identity per service in ``<pki_dir>/<service>``.

    The CA is created when missing, and replaced when it would expire before
    a leaf of ``lifetime`` does. With ``renew_within`` an identity is kept
    while current (see ``ensure_issued``), which is what ``bankmesh up`` does
    at every start; without it every identity is issued afresh, which is what
    ``bankmesh certs`` is for.
    """
    names = _unique(services)
    directories = {name: identity_directory(pki_dir, name) for name in names}
    _make_private_dir(Path(pki_dir))
    ca = CertificateAuthority.load_or_create(Path(pki_dir) / "ca", min_remaining=lifetime)
    identities = {
        name: (
            ca.issue(name, directory=directory, lifetime=lifetime)
            if renew_within is None
            else ca.ensure_issued(
                name, directory=directory, lifetime=lifetime, renew_within=renew_within
            )
        )
        for name, directory in directories.items()
    }
    return MeshIdentities(ca=ca, identities=identities)


def _checked_service(service: str) -> str:
    if not _SERVICE_NAME.match(service):
        raise ValueError(
            f"{service!r} is not a service name: use lowercase letters, digits and "
            "inner hyphens (it becomes a DNS label and a SPIFFE path segment)"
        )
    return service


def _uri_sans(certificate: x509.Certificate) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return san.value.get_values_for_type(x509.UniformResourceIdentifier)


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_der(key: object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _make_private_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def _write_atomically(path: Path, data: bytes, *, private: bool = False) -> None:
    # O_EXCL on a fresh name: the temporary file is ours alone, and a key is
    # 0600 from creation rather than after a chmod.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
