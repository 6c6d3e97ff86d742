"""The OPC UA certificate profiles, checked by cryptography's verifier, openssl and the conformance checker."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import verification as xv
from cryptography.x509.oid import ExtendedKeyUsageOID

import ca
import pki
from tests.conftest import T0, make_identity
from tests.helpers import legacy_certificate

URI = "urn:plant1:historian"


@pytest.fixture
def leaf(test_ca, key_pool):
    key = key_pool.get()
    return ca.build_application_certificate(make_identity(URI, "historian"), key.public_key(), test_ca, now=T0, days=365)


def uri_policy(expected_uri: str):
    """cryptography's webpki end-entity policy plus the OPC UA rule: the SAN URI is the ApplicationUri."""

    def check_san(_policy, _cert, san):
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        if uris != [expected_uri]:
            raise ValueError(f"SAN URIs {uris} are not [{expected_uri}]")

    return xv.ExtensionPolicy.webpki_defaults_ee().require_present(
        x509.SubjectAlternativeName, xv.Criticality.AGNOSTIC, check_san
    )


def verifiers(anchor: x509.Certificate, at, uri: str = URI):
    builder = (
        xv.PolicyBuilder()
        .store(xv.Store([anchor]))
        .time(at)
        .extension_policies(ca_policy=xv.ExtensionPolicy.webpki_defaults_ca(), ee_policy=uri_policy(uri))
    )
    return builder.build_server_verifier(xv.DNSName("localhost")), builder.build_client_verifier()


def test_application_certificate_profile(leaf, test_ca):
    assert leaf.version == x509.Version.v3
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
    assert 0 < leaf.serial_number < 2**159
    assert leaf.not_valid_before_utc == T0 - timedelta(hours=1)
    assert leaf.not_valid_after_utc == T0 + timedelta(days=365)
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert (ku.value.digital_signature, ku.value.content_commitment, ku.value.key_encipherment, ku.value.data_encipherment) == (True,) * 4
    assert not ku.value.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    basic = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [URI]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = test_ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert leaf.subject.rfc4514_string() == "CN=historian,O=certmgr tests"
    assert ca.check_application_certificate(leaf, app_uri=URI, at=T0) == []


def test_root_ca_profile(test_ca):
    cert = test_ca.certificate
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    assert ca.check_ca_certificate(cert, at=T0) == []


def test_default_ca_is_rsa4096_for_ten_years(key_pool):
    key = key_pool.get(ca.DEFAULT_CA_KEY_SIZE)
    cert = ca.build_root_ca(key, ca.SubjectFields("Big CA", "x"), now=T0)
    assert cert.public_key().key_size == 4096
    assert cert.not_valid_after_utc - T0 == timedelta(days=3650)


def test_cryptography_verifier_accepts_issued_certificate_as_server_and_client(leaf, test_ca):
    server, client = verifiers(test_ca.certificate, T0)
    chain = server.verify(leaf, [])
    assert chain[-1] == test_ca.certificate
    assert client.verify(leaf, []).chain[-1] == test_ca.certificate


def _refusable(case, leaf, test_ca, foreign_ca, key_pool):
    """(certificate, validation time) of each case the verifiers and the conformance checker must refuse."""
    if case == "expired":
        return leaf, T0 + timedelta(days=400)
    if case == "tampered":
        return tamper(leaf), T0
    if case == "wrong uri":
        return ca.build_application_certificate(make_identity("urn:plant1:other", "historian"), key_pool.get().public_key(),
                                                test_ca, now=T0), T0
    return ca.build_application_certificate(make_identity(URI), key_pool.get().public_key(), foreign_ca, now=T0), T0


# One case per test (split from one test whose first failing assertion hid the others).
@pytest.mark.parametrize("case, match", [("expired", "not valid at validation time"), ("tampered", None),
                                         ("wrong uri", "SAN URIs"), ("foreign issuer", None)])
@pytest.mark.parametrize("side", ["server", "client"])
def test_cryptography_verifier_refuses(leaf, test_ca, foreign_ca, key_pool, case, match, side):
    cert, at = _refusable(case, leaf, test_ca, foreign_ca, key_pool)
    server, client = verifiers(test_ca.certificate, at)
    with pytest.raises(xv.VerificationError, match=match):
        (server if side == "server" else client).verify(cert, [])


def test_conformance_checker_accepts_the_issued_certificate(leaf, test_ca):
    assert ca.check_application_certificate(leaf, app_uri=URI, at=T0, issuer=test_ca.certificate) == []


@pytest.mark.parametrize("case, code", [("tampered", "signature-invalid"), ("foreign issuer", "signature-invalid"),
                                        ("expired", "expired"), ("wrong uri", "san-uri-mismatch")])
def test_conformance_checker_refuses(leaf, test_ca, foreign_ca, key_pool, case, code):
    if case == "foreign issuer":  # the issued leaf checked against another CA's key
        findings = ca.check_application_certificate(leaf, at=T0, issuer=foreign_ca.certificate)
    elif case == "wrong uri":
        findings = ca.check_application_certificate(leaf, app_uri="urn:plant1:other", at=T0)
    else:
        cert, at = _refusable(case, leaf, test_ca, foreign_ca, key_pool)
        findings = ca.check_application_certificate(cert, at=at, issuer=test_ca.certificate)
    assert code in {f.code for f in ca.errors_only(findings)}


def tamper(cert: x509.Certificate) -> x509.Certificate:
    """Change one byte inside the signed part (the last byte of the SAN), keeping the DER parseable."""
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    position = bytes(der).index(b"localhost") + 1
    der[position] ^= 0x01
    return x509.load_der_x509_certificate(bytes(der))


def openssl_verify(tmp_path, leaf, issuer, crl, at=None, crl_check=True) -> subprocess.CompletedProcess:
    ca_pem = tmp_path / "ca.pem"
    ca_pem.write_bytes(issuer.certificate.public_bytes(serialization.Encoding.PEM))
    crl_pem = tmp_path / "crl.pem"
    crl_pem.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    leaf_pem = tmp_path / "leaf.pem"
    leaf_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    args = ["openssl", "verify", "-CAfile", str(ca_pem)]
    if crl_check:
        args += ["-crl_check", "-CRLfile", str(crl_pem)]
    if at is not None:
        args += ["-attime", str(int(at.timestamp()))]
    return subprocess.run(args + [str(leaf_pem)], capture_output=True, text=True)


def test_openssl_verify_with_crl_check(tmp_path, leaf, test_ca, foreign_ca):
    crl = ca.build_crl(test_ca, number=1, this_update=T0, next_update=T0 + timedelta(days=30))
    ok = openssl_verify(tmp_path, leaf, test_ca, crl, at=T0 + timedelta(days=1))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    expired = openssl_verify(tmp_path, leaf, test_ca, crl, at=T0 + timedelta(days=400), crl_check=False)
    assert expired.returncode != 0 and "expired" in expired.stdout + expired.stderr
    tampered = openssl_verify(tmp_path, tamper(leaf), test_ca, crl, at=T0 + timedelta(days=1))
    assert tampered.returncode != 0 and "signature failure" in tampered.stdout + tampered.stderr
    revoked = ca.build_crl(
        test_ca,
        number=2,
        this_update=T0,
        next_update=T0 + timedelta(days=30),
        revoked=[ca.RevokedEntry(leaf.serial_number, T0, "keyCompromise")],
    )
    refused = openssl_verify(tmp_path, leaf, test_ca, revoked, at=T0 + timedelta(days=1))
    assert refused.returncode != 0 and "revoked" in refused.stdout + refused.stderr
    foreign_crl = ca.build_crl(foreign_ca, number=1, this_update=T0, next_update=T0 + timedelta(days=30))
    untrusted = openssl_verify(tmp_path, leaf, foreign_ca, foreign_crl, at=T0 + timedelta(days=1))
    assert untrusted.returncode != 0


def test_conformance_reports_every_deviation(test_ca, key_pool):
    key = key_pool.get()
    bad = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "sloppy")]))
        .issuer_name(test_ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(T0)
        .not_valid_after(T0 + timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, False, False, False), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("urn:a:b"), x509.UniformResourceIdentifier("urn:c:d")]),
            critical=False,
        )
        .sign(test_ca.private_key, hashes.SHA256())
    )
    codes = {f.code for f in ca.check_application_certificate(bad, app_uri="urn:x:y", at=T0 + timedelta(days=20))}
    assert {
        "subject-o-missing",
        "basic-constraints-ca",
        "key-usage-missing-bits",
        "key-usage-cert-sign",
        "key-usage-not-critical",
        "eku-missing",
        "san-uri-count",
        "san-uri-mismatch",
        "ski-missing",
        "aki-missing",
        "expired",
    } <= codes


def test_conformance_flags_sha1_and_small_keys(tmp_path):
    cert, _, _ = legacy_certificate(tmp_path)
    codes = {f.code for f in ca.check_application_certificate(cert)}
    assert {"signature-sha1", "key-size-small", "san-missing"} <= codes


@pytest.mark.parametrize(
    "uri",
    ["", "   ", "no-scheme", "urn:x", "urn::y", "http://", "urn:plant 1:app", "1urn:a:b"],
)
def test_bad_application_uris_are_refused(uri):
    with pytest.raises(ca.ProfileError):
        ca.validate_application_uri(uri)


@pytest.mark.parametrize("uri", ["urn:plant1:historian", "http://example.com/app", "urn:ab:x:y:z", "opc.tcp://host/app"])
def test_good_application_uris_are_accepted(uri):
    assert ca.validate_application_uri(uri) == uri


def test_names_and_sizes_are_validated():
    with pytest.raises(ca.ProfileError, match="host name"):
        ca.validate_dns_name("bad host")
    with pytest.raises(ca.ProfileError, match="IPv4 or IPv6"):
        ca.validate_ip_address("300.1.1.1")
    with pytest.raises(ca.ProfileError, match="1024"):
        ca.check_key_size(1024)
    with pytest.raises(ca.ProfileError, match="two-letter"):
        ca.SubjectFields("x", country="Germany")
    assert ca.validate_dns_name("PLC01.Plant.local") == "plc01.plant.local"


def test_validity_rules(test_ca, key_pool):
    identity = make_identity()
    key = key_pool.get()
    with pytest.raises(ca.ProfileError, match="days"):
        ca.build_application_certificate(identity, key.public_key(), test_ca, now=T0, days=0)
    capped = ca.build_application_certificate(identity, key.public_key(), test_ca, now=T0, days=100_000)
    assert capped.not_valid_after_utc == test_ca.certificate.not_valid_after_utc
    with pytest.raises(ca.ProfileError, match="expired"):
        ca.build_application_certificate(identity, key.public_key(), test_ca, now=T0 + timedelta(days=5000))
    with pytest.raises(ca.ProfileError, match="timezone"):
        ca.build_application_certificate(identity, key.public_key(), test_ca, now=T0.replace(tzinfo=None))


def test_serials_are_random_positive_and_bounded(test_ca, key_pool):
    identity = make_identity()
    serials = {
        ca.build_application_certificate(identity, key_pool.get().public_key(), test_ca, now=T0).serial_number
        for _ in range(20)
    }
    assert len(serials) == 20
    assert all(0 < s < 2**159 for s in serials)
    with pytest.raises(ca.ProfileError, match="159"):
        ca.build_application_certificate(identity, key_pool.get().public_key(), test_ca, now=T0, serial=2**159)


def test_crl_carries_number_aki_dates_and_reasons(test_ca):
    entries = [ca.RevokedEntry(1000 + i, T0, reason) for i, reason in enumerate(["keyCompromise", "superseded", "unspecified"])]
    crl = ca.build_crl(test_ca, number=7, this_update=T0, next_update=T0 + timedelta(days=30), revoked=entries)
    assert pki.crl_number(crl) == 7
    assert crl.last_update_utc == T0 and crl.next_update_utc == T0 + timedelta(days=30)
    assert crl.is_signature_valid(test_ca.certificate.public_key())
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(test_ca.certificate.public_key()).digest
    reasons = {
        r.serial_number: next((e.value.reason for e in r.extensions if isinstance(e.value, x509.CRLReason)), None)
        for r in crl
    }
    assert reasons == {1000: x509.ReasonFlags.key_compromise, 1001: x509.ReasonFlags.superseded, 1002: None}
    with pytest.raises(ca.ProfileError, match="reason"):
        ca.reason_flag("because")


def test_encrypted_key_round_trip_and_wrong_passphrase(key_pool):
    key = key_pool.get()
    pem = ca.encrypted_private_key_pem(key, b"s3cret")
    assert b"ENCRYPTED PRIVATE KEY" in pem
    assert ca.key_matches_certificate(ca.load_private_key_pem(pem, b"s3cret"), key.public_key())
    with pytest.raises(ca.PassphraseError, match="wrong"):
        ca.load_private_key_pem(pem, b"wrong")
    with pytest.raises(ca.PassphraseError):
        ca.encrypted_private_key_pem(key, b"")


def csr(key, uri: str | None, key_cert_sign: bool = True) -> x509.CertificateSigningRequest:
    """A CSR as Part 12 servers make them: only the URI in the SAN, and a CA-like keyUsage."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "srv")]))
    if uri is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
    builder = builder.add_extension(x509.KeyUsage(True, False, True, True, False, key_cert_sign, False, False, False), critical=True)
    return builder.sign(key, hashes.SHA256())


def test_sign_csr_uses_the_profile_and_refuses_a_foreign_uri_no_uri_or_a_bad_signature(test_ca, key_pool):
    key = key_pool.get()
    identity = make_identity(URI, "historian", dns=("hist01",), ips=("10.0.0.5",))
    cert = ca.sign_csr(csr(key, URI), identity, test_ca, now=T0)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert ca.check_application_certificate(cert, app_uri=URI, at=T0, issuer=test_ca.certificate) == []
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["hist01"]  # from the registration, not the CSR
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is False
    with pytest.raises(ca.ProfileError, match="urn:plant1:other"):
        ca.sign_csr(csr(key, "urn:plant1:other"), identity, test_ca, now=T0)
    with pytest.raises(ca.ProfileError, match="no application URI"):
        ca.sign_csr(csr(key, None), identity, test_ca, now=T0)
    der = bytearray(csr(key, URI).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    with pytest.raises(ca.ProfileError, match="signature"):
        ca.sign_csr(x509.load_der_x509_csr(bytes(der)), identity, test_ca, now=T0)


@pytest.mark.parametrize("serial, accepted", [(2**159 - 1, True), (2**159, False), (1, True), (0, False)])
def test_serial_limit_boundary(test_ca, key_pool, serial, accepted):
    """RFC 5280 allows 20 octets, positive: 159 bits is the largest serial certmgr signs."""
    build = lambda: ca.build_application_certificate(make_identity(), key_pool.get().public_key(), test_ca, now=T0, serial=serial)  # noqa: E731
    if accepted:
        assert build().serial_number == serial
    else:
        with pytest.raises(ca.ProfileError, match="159 bits"):
            build()


def test_application_uri_length_limit_is_1024_characters():
    at_limit = "urn:plant1:" + "h" * (ca.names.MAX_URI_LENGTH - len("urn:plant1:"))
    assert len(at_limit) == 1024 and ca.validate_application_uri(at_limit) == at_limit
    with pytest.raises(ca.ProfileError, match="1025 characters, more than the 1024"):
        ca.validate_application_uri(at_limit + "h")
    with pytest.raises(ca.ProfileError, match="shorter URI"):
        ca.ApplicationIdentity("http://example.com/" + "p" * 10_000, ca.SubjectFields("app", "Plant"))


@pytest.mark.parametrize("field", ["common_name", "organization", "organizational_unit", "locality", "state"])
@pytest.mark.parametrize("char", ["\n", "\t", "\r", "\x01", "\x1b", "\x7f", "\x85", "\u2028"])
def test_control_characters_are_refused_in_every_subject_field(field, char):
    values = {"common_name": "app", "organization": "Plant", field: f"Plant{char}1"}
    with pytest.raises(ca.ProfileError, match=rf"contains control character\(s\) U\+{ord(char):04X}; use printable"):
        ca.SubjectFields(**values)


def test_printable_unicode_subjects_are_accepted():
    subject = ca.SubjectFields("Pumpe Süd 1", "Stadtwerke Zürich", "Wasser & Abwasser", "Zürich", "ZH")
    assert subject.to_name().rfc4514_string() == "CN=Pumpe Süd 1,OU=Wasser & Abwasser,O=Stadtwerke Zürich,L=Zürich,ST=ZH"


def test_scoped_ipv6_addresses_are_refused_and_the_bare_address_accepted():
    with pytest.raises(ca.ProfileError, match=r"carries a zone \(%eth0\).*give fe80::1 without it"):
        ca.validate_ip_address("fe80::1%eth0")
    with pytest.raises(ca.ProfileError, match="zone"):
        ca.ApplicationIdentity("urn:plant1:a", ca.SubjectFields("a", "P"), ip_addresses=("fe80::1%2",))
    assert str(ca.validate_ip_address("fe80::1")) == "fe80::1"
    assert str(ca.validate_ip_address("fd00::20")) == "fd00::20"
