"""The mesh CA issues SPIFFE identities: names, extensions, lifetimes, files and renewal."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store
from typer.testing import CliRunner

from mesh.cli import app
from mesh.pki import (
    CertificateAuthority,
    IssuedIdentity,
    identity_directory,
    issue_mesh_identities,
    spiffe_id,
)

SLACK = timedelta(minutes=1)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "pki" / "ca")


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_spiffe_ids_name_the_service_under_the_bankmesh_trust_domain() -> None:
    """Services, the operator CLI and the edge are spiffe://bankmesh.local/svc/<name>."""
    assert spiffe_id("account") == "spiffe://bankmesh.local/svc/account"
    assert spiffe_id("operator") == "spiffe://bankmesh.local/svc/operator"
    assert spiffe_id("edge") == "spiffe://bankmesh.local/svc/edge"


@pytest.mark.parametrize("name", ["", "Account", "acc/ount", "-edge", "risk-", "a.b", "x" * 64])
def test_a_name_that_is_not_a_dns_label_is_refused_as_a_service(name: str) -> None:
    """A service name becomes a DNS label and a SPIFFE path segment, so anything else is refused."""
    with pytest.raises(ValueError, match="is not a service name"):
        spiffe_id(name)


def test_the_ca_directory_name_cannot_be_used_by_a_service(tmp_path: Path) -> None:
    """<pki>/ca is the CA's own directory, so "ca" is no service's identity directory."""
    assert identity_directory(tmp_path, "account") == tmp_path / "account"
    with pytest.raises(ValueError, match="cannot be a service name"):
        identity_directory(tmp_path, "ca")


def test_the_ca_is_a_self_signed_p256_ca_that_can_sign_leaves_only(
    ca: CertificateAuthority,
) -> None:
    """CA:true with pathlen 0, keyCertSign and cRLSign, P-256, 30 days, key file 0600."""
    cert = certificate(ca.directory / "ca.pem")
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is True
    assert constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert isinstance(public_key.curve, ec.SECP256R1)
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=30) - SLACK < lifetime <= timedelta(days=30)
    assert mode(ca.directory / "ca-key.pem") == 0o600
    assert mode(ca.directory) == 0o700


def test_an_issued_certificate_has_exactly_one_uri_san_its_spiffe_id(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """The only URI SAN is spiffe://bankmesh.local/svc/<service>."""
    identity = ca.issue("payment", directory=tmp_path / "payment")
    uris = sans(certificate(identity.cert)).get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == ["spiffe://bankmesh.local/svc/payment"]
    assert identity.spiffe_id == "spiffe://bankmesh.local/svc/payment"


def test_an_issued_certificate_names_the_service_host_localhost_and_loopback(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """DNS SANs <service>.bankmesh.local and localhost (plus any asked for), IP SAN 127.0.0.1."""
    plain = sans(certificate(ca.issue("risk", directory=tmp_path / "risk").cert))
    assert plain.get_values_for_type(x509.DNSName) == ["risk.bankmesh.local", "localhost"]
    assert plain.get_values_for_type(x509.IPAddress) == [ipaddress.IPv4Address("127.0.0.1")]

    extra = ca.issue("edge", directory=tmp_path / "edge", dns_names=["api.example.test"])
    assert sans(certificate(extra.cert)).get_values_for_type(x509.DNSName) == [
        "edge.bankmesh.local",
        "localhost",
        "api.example.test",
    ]


def test_an_issued_certificate_serves_both_ends_of_a_connection_and_signs_nothing_else(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """EKU serverAuth and clientAuth; keyUsage digitalSignature only; not a CA."""
    cert = certificate(ca.issue("account", directory=tmp_path / "account").cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    assert not usage.value.key_encipherment
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_a_certificate_lives_twelve_hours_by_default_or_as_long_as_asked(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """Default 12 hours from now; `lifetime` overrides it; not_after matches the file."""
    now = datetime.now(UTC)
    default = ca.issue("account", directory=tmp_path / "a")
    assert (
        now + timedelta(hours=12) - SLACK < default.not_after <= now + timedelta(hours=12) + SLACK
    )
    assert certificate(default.cert).not_valid_after_utc == default.not_after
    assert certificate(default.cert).not_valid_before_utc <= now

    short = ca.issue("account", directory=tmp_path / "b", lifetime=timedelta(minutes=30))
    assert now + timedelta(minutes=30) - SLACK < short.not_after <= now + timedelta(minutes=31)


def test_a_certificate_never_outlives_its_ca(tmp_path: Path) -> None:
    """A leaf asked to live longer than the CA ends when the CA does."""
    ca = CertificateAuthority.create(tmp_path / "ca", lifetime=timedelta(hours=2))
    identity = ca.issue("account", directory=tmp_path / "account", lifetime=timedelta(hours=12))
    assert identity.not_after == ca.not_after


def test_the_private_key_is_readable_by_its_owner_only(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """key.pem is 0600 in a 0700 directory; the certificate and CA copy are world-readable."""
    identity = ca.issue("account", directory=tmp_path / "account")
    assert mode(identity.key) == 0o600
    assert mode(identity.directory) == 0o700
    assert mode(identity.cert) & 0o044 == 0o044


def test_the_chain_verifies_against_the_ca_for_a_server_and_for_a_client(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """RFC 5280 path validation from the shipped ca.pem accepts the leaf as server and client."""
    identity = ca.issue("account", directory=tmp_path / "account")
    leaf = certificate(identity.cert)
    store = Store([certificate(identity.ca)])
    assert identity.ca.read_bytes() == (ca.directory / "ca.pem").read_bytes()

    server_chain = (
        PolicyBuilder()
        .store(store)
        .build_server_verifier(x509.DNSName("account.bankmesh.local"))
        .verify(leaf, [])
    )
    assert server_chain[-1] == ca.certificate
    client = PolicyBuilder().store(store).build_client_verifier().verify(leaf, [])
    assert client.subjects is not None
    assert x509.UniformResourceIdentifier(spiffe_id("account")) in client.subjects


def test_a_leaf_does_not_verify_against_another_ca(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """Path validation from a different CA refuses the leaf."""
    identity = ca.issue("account", directory=tmp_path / "account")
    other = CertificateAuthority.create(tmp_path / "other")
    verifier = PolicyBuilder().store(Store([other.certificate])).build_client_verifier()
    with pytest.raises(x509.verification.VerificationError):
        verifier.verify(certificate(identity.cert), [])
    assert not other.issued(identity)
    assert ca.issued(identity)


def test_the_identity_on_disk_reads_back_as_issued(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """IssuedIdentity.load finds the same service, SPIFFE id, expiry, serial and paths."""
    issued = ca.issue("identity", directory=tmp_path / "identity")
    assert IssuedIdentity.load(tmp_path / "identity") == issued
    assert issued.cert == tmp_path / "identity" / "cert.pem"
    assert issued.key == tmp_path / "identity" / "key.pem"
    assert issued.ca == tmp_path / "identity" / "ca.pem"


def test_reissuing_replaces_key_and_certificate_and_leaves_no_temporary_files(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """A second issue writes a new key and serial over the old files, by rename."""
    first = ca.issue("account", directory=tmp_path / "account")
    first_key = first.key.read_bytes()
    second = ca.issue("account", directory=tmp_path / "account")
    assert second.serial != first.serial
    assert second.key.read_bytes() != first_key
    assert sorted(p.name for p in (tmp_path / "account").iterdir()) == [
        "ca.pem",
        "cert.pem",
        "key.pem",
    ]


def test_a_loaded_ca_is_the_one_that_was_created(ca: CertificateAuthority, tmp_path: Path) -> None:
    """load reads the same certificate, and what it issues chains to the original."""
    loaded = CertificateAuthority.load(ca.directory)
    assert loaded.certificate == ca.certificate
    assert not loaded.created
    assert ca.issued(loaded.issue("risk", directory=tmp_path / "risk"))


def test_a_ca_key_that_does_not_match_its_certificate_is_refused(tmp_path: Path) -> None:
    """Loading a CA whose key file belongs to another CA fails instead of signing junk."""
    first = CertificateAuthority.create(tmp_path / "one")
    second = CertificateAuthority.create(tmp_path / "two")
    (first.directory / "ca-key.pem").write_bytes((second.directory / "ca-key.pem").read_bytes())
    with pytest.raises(ValueError, match="is not the key of"):
        CertificateAuthority.load(first.directory)


def test_load_or_create_keeps_a_ca_with_time_left_and_replaces_one_without(
    tmp_path: Path,
) -> None:
    """An existing CA is reused while it outlives min_remaining; otherwise a new one is made."""
    directory = tmp_path / "ca"
    created = CertificateAuthority.load_or_create(directory)
    assert created.created
    again = CertificateAuthority.load_or_create(directory, min_remaining=timedelta(hours=12))
    assert not again.created
    assert again.certificate == created.certificate

    renewed = CertificateAuthority.load_or_create(directory, min_remaining=timedelta(days=31))
    assert renewed.created
    assert renewed.certificate != created.certificate
    assert renewed.not_after - datetime.now(UTC) > timedelta(days=31)


def test_ensure_issued_keeps_a_current_identity(ca: CertificateAuthority, tmp_path: Path) -> None:
    """An identity from this CA with more than renew_within left is returned untouched."""
    first = ca.ensure_issued("account", directory=tmp_path / "account")
    again = ca.ensure_issued("account", directory=tmp_path / "account")
    assert again == first


def test_ensure_issued_renews_an_identity_about_to_expire(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """Less than renew_within left (here 30 minutes of the default hour) means a new certificate."""
    old = ca.issue("account", directory=tmp_path / "account", lifetime=timedelta(minutes=30))
    renewed = ca.ensure_issued("account", directory=tmp_path / "account")
    assert renewed.serial != old.serial
    assert renewed.not_after - datetime.now(UTC) > timedelta(hours=11)


def test_ensure_issued_replaces_another_cas_or_another_services_identity(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """A directory holding a foreign CA's certificate, or another service's, is re-issued."""
    other = CertificateAuthority.create(tmp_path / "other")
    foreign = other.issue("account", directory=tmp_path / "account")
    replaced = ca.ensure_issued("account", directory=tmp_path / "account")
    assert replaced.serial != foreign.serial
    assert ca.issued(replaced)

    wrong_service = ca.issue("risk", directory=tmp_path / "payment")
    fixed = ca.ensure_issued("payment", directory=tmp_path / "payment")
    assert fixed.serial != wrong_service.serial
    assert fixed.spiffe_id == spiffe_id("payment")


def test_mesh_identities_reuse_current_certificates_when_asked_and_reissue_otherwise(
    tmp_path: Path,
) -> None:
    """With renew_within (bankmesh up) identities are kept; without it (bankmesh certs) all are new."""
    pki = tmp_path / "pki"
    first = issue_mesh_identities(pki, ["account", "operator"], renew_within=timedelta(hours=1))
    assert first.ca.created
    assert sorted(first.identities) == ["account", "operator"]
    assert first.identities["operator"].directory == pki / "operator"
    assert mode(pki) == 0o700

    kept = issue_mesh_identities(pki, ["account", "operator"], renew_within=timedelta(hours=1))
    assert not kept.ca.created
    assert kept.identities == first.identities

    fresh = issue_mesh_identities(pki, ["account"])
    assert fresh.ca.certificate == first.ca.certificate
    assert fresh.identities["account"].serial != first.identities["account"].serial


def test_mesh_identities_refuse_a_service_named_like_the_ca_directory(tmp_path: Path) -> None:
    """Nothing is written when one of the names is "ca"."""
    with pytest.raises(ValueError, match="cannot be a service name"):
        issue_mesh_identities(tmp_path / "pki", ["account", "ca"])
    assert not (tmp_path / "pki").exists()


def test_bankmesh_certs_issues_every_identity_and_lists_it(tmp_path: Path) -> None:
    """The CA is created once; each run re-issues every named identity and prints its SPIFFE id."""
    args = ["certs", "--data-dir", str(tmp_path), "--services", "account,operator"]
    first = CliRunner().invoke(app, [*args, "--lifetime-hours", "2"], env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    assert "created the CA" in first.output
    for name in ("account", "operator"):
        assert spiffe_id(name) in first.output
    account = IssuedIdentity.load(tmp_path / "pki" / "account")
    assert account.not_after - datetime.now(UTC) <= timedelta(hours=2)
    assert account.not_after.strftime("%Y-%m-%d %H:%M UTC") in first.output

    second = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert second.exit_code == 0, second.output
    assert "created the CA" not in second.output
    assert "replaced the CA" not in second.output
    again = IssuedIdentity.load(tmp_path / "pki" / "account")
    assert again.serial != account.serial
    assert CertificateAuthority.load(tmp_path / "pki" / "ca").issued(again)


def test_bankmesh_certs_refuses_a_bad_service_name_without_writing(tmp_path: Path) -> None:
    """A name that is not a DNS label is a usage error (exit 2) and no CA is made."""
    result = CliRunner().invoke(
        app, ["certs", "--data-dir", str(tmp_path), "--services", "account,Risk"]
    )
    assert result.exit_code == 2
    assert "'Risk' is not a service name" in result.output
    assert not (tmp_path / "pki").exists()
