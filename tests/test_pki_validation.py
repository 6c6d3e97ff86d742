"""Peer validation against a store, at fixed dates, with every refusal a stack would make."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

import ca
import pki
from tests.conftest import T0, make_identity
from tests.helpers import der, legacy_certificate

URI = "urn:test:peer"
BEFORE, INSIDE, AFTER = T0 - timedelta(days=1), T0 + timedelta(days=10), T0 + timedelta(days=31)


@pytest.fixture
def peer(test_ca, key_pool):
    return ca.build_application_certificate(make_identity(URI, "peer"), key_pool.get().public_key(), test_ca, now=T0 - timedelta(days=2))


@pytest.fixture
def store(tmp_path, test_ca):
    store = pki.ApplicationStore(tmp_path / "pki")
    store.create()
    store.add_certificate(test_ca.certificate, pki.TRUSTED)
    store.publish_crl(der(crl(test_ca, 1)), test_ca.certificate, 1)
    return store


def crl(issuer, number, revoked=(), this_update=T0, days=30):
    return ca.build_crl(issuer, number=number, this_update=this_update, next_update=this_update + timedelta(days=days), revoked=revoked)


def check(cert, store, at=INSIDE, **kw):
    return pki.validate(cert, pki.load_trust_material(store), at=at, **kw)


def test_trusted_ca_with_current_crl_accepts(peer, store, test_ca):
    result = check(peer, store, app_uri=URI, role="client")
    assert result.ok, result.message
    assert result.chain == [peer, test_ca.certificate]


def test_crl_validity_at_three_fixed_dates(peer, store):
    assert check(peer, store, at=BEFORE).status == "BadCertificateRevocationUnknown"  # CRL not yet valid
    assert check(peer, store, at=INSIDE).ok
    assert check(peer, store, at=AFTER).status == "BadCertificateRevocationUnknown"  # nextUpdate passed


def test_untrusted_and_incomplete_chains(peer, tmp_path, test_ca, foreign_ca, key_pool):
    empty = pki.ApplicationStore(tmp_path / "empty")
    empty.create()
    assert check(peer, empty).status == "BadCertificateChainIncomplete"
    issuer_only = pki.ApplicationStore(tmp_path / "issuer-only", "node-opcua")
    issuer_only.add_certificate(test_ca.certificate, pki.ISSUER)
    issuer_only.publish_crl(der(crl(test_ca, 1)), test_ca.certificate, 1, pki.ISSUER)
    assert check(peer, issuer_only).status == "BadCertificateUntrusted"  # issuers/ alone grants no trust
    self_signed, _, _ = legacy_certificate(tmp_path, "selfie", bits=2048, digest="sha256")
    assert check(self_signed, empty).status == "BadCertificateUntrusted"
    empty.add_certificate(self_signed, pki.TRUSTED)
    assert check(self_signed, empty, at=T0).status != "BadCertificateUntrusted"


def test_revocation_by_issuer_and_serial(peer, store, test_ca, foreign_ca):
    entry = ca.RevokedEntry(peer.serial_number, T0, "keyCompromise")
    # The same serial revoked by another CA does not revoke this certificate.
    store.publish_crl(der(crl(foreign_ca, 5, [entry])), foreign_ca.certificate, 5)
    assert check(peer, store).ok
    store.publish_crl(der(crl(test_ca, 2, [entry])), test_ca.certificate, 2)
    assert check(peer, store).status == "BadCertificateRevoked"


@pytest.mark.parametrize("case", ["expired", "other-key", "wrong-issuer", "missing", "garbage"])
def test_bad_crls_are_refused(peer, store, test_ca, foreign_ca, case):
    folder = store.crl_dir(pki.TRUSTED)
    for path in folder.iterdir():
        path.unlink()
    if case == "expired":
        store.publish_crl(der(crl(test_ca, 2, this_update=T0 - timedelta(days=60))), test_ca.certificate, 2)
    elif case == "other-key":
        forged = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(test_ca.certificate.subject)
            .last_update(T0)
            .next_update(T0 + timedelta(days=30))
            .add_extension(x509.CRLNumber(9), False)
            .sign(foreign_ca.private_key, hashes.SHA256())
        )
        (folder / "forged.crl").write_bytes(forged.public_bytes(serialization.Encoding.DER))
    elif case == "wrong-issuer":
        store.publish_crl(der(crl(foreign_ca, 2)), foreign_ca.certificate, 2)
    elif case == "garbage":
        (folder / "Test CA.crl").write_bytes(os.urandom(300))
    result = check(peer, store)
    assert result.status == "BadCertificateRevocationUnknown", result.message
    if case == "garbage":
        assert any("Test CA.crl" in u for u in pki.load_trust_material(store).unreadable)


def test_time_uri_usage_policy_and_hostname(store, test_ca, key_pool, tmp_path):
    key = key_pool.get()
    cert = ca.build_application_certificate(make_identity(URI), key.public_key(), test_ca, now=T0, days=5)
    assert check(cert, store, at=T0 + timedelta(days=6)).status == "BadCertificateTimeInvalid"
    assert check(cert, store, at=T0 - timedelta(hours=2)).status == "BadCertificateTimeInvalid"
    assert check(cert, store, at=T0, app_uri="urn:test:other").status == "BadCertificateUriInvalid"
    assert check(cert, store, at=T0, hostname="plc7.local").status == "BadCertificateHostNameInvalid"
    assert check(cert, store, at=T0, hostname="LOCALHOST").ok
    assert check(cert, store, at=T0, hostname="127.0.0.1").ok

    def custom(ku: x509.KeyUsage, eku):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "odd")]))
            .issuer_name(test_ca.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(T0 - timedelta(hours=1))
            .not_valid_after(T0 + timedelta(days=5))
            .add_extension(ku, critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(URI)]), critical=False)
            .add_extension(test_ca.authority_key_identifier(), critical=False)
        )
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        return builder.sign(test_ca.private_key, hashes.SHA256())

    signing_only = custom(x509.KeyUsage(True, True, False, False, False, False, False, False, False), None)
    assert check(signing_only, store, at=T0).status == "BadCertificateUseNotAllowed"
    full = x509.KeyUsage(True, True, True, True, False, False, False, False, False)
    server_only = custom(full, [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])
    assert check(server_only, store, at=T0, role="server").ok
    assert check(server_only, store, at=T0, role="client").status == "BadCertificateUseNotAllowed"

    legacy, _, _ = legacy_certificate(tmp_path)
    store.add_certificate(legacy, pki.TRUSTED)
    assert check(legacy, store, at=T0).status == "BadCertificatePolicyCheckFailed"


def test_tampered_certificate_is_refused(peer, store):
    der = bytearray(peer.public_bytes(serialization.Encoding.DER))
    der[der.index(b"localhost") + 2] ^= 0x01
    tampered = x509.load_der_x509_certificate(bytes(der))
    result = check(tampered, store)
    assert result.status == "BadCertificateInvalid" and "tampered" in result.message


def test_cache_sees_store_changes_without_reload(peer, store, test_ca):
    cache = pki.TrustCache()
    assert pki.validate(peer, cache.material(store), at=INSIDE).ok
    entry = ca.RevokedEntry(peer.serial_number, T0, "keyCompromise")
    store.publish_crl(der(crl(test_ca, 2, [entry])), test_ca.certificate, 2)
    assert pki.validate(peer, cache.material(store), at=INSIDE).status == "BadCertificateRevoked"
    for path in store.certs_dir(pki.TRUSTED).iterdir():
        path.unlink()
    assert pki.validate(peer, cache.material(store), at=INSIDE).status == "BadCertificateChainIncomplete"


def intermediate_ca(root, key) -> ca.Issuer:
    """A site CA under the root, as larger plants have (certmgr issues from a root, but stores meet these)."""
    from cryptography.x509.oid import NameOID

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Site CA"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Plant")]))
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(T0 - timedelta(days=30))
        .not_valid_after(T0 + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(root.authority_key_identifier(), critical=False)
        .sign(root.private_key, hashes.SHA256())
    )
    return ca.Issuer(cert, key)


def test_chain_through_an_intermediate_needs_every_crl_and_an_unrevoked_issuer(tmp_path, test_ca, key_pool):
    site = intermediate_ca(test_ca, key_pool.get())
    leaf = ca.build_application_certificate(make_identity(URI, "peer"), key_pool.get().public_key(), site, now=T0 - timedelta(days=2))
    store = pki.ApplicationStore(tmp_path / "pki")
    store.create()
    store.add_certificate(test_ca.certificate, pki.TRUSTED)
    store.add_certificate(site.certificate, pki.ISSUER)
    store.publish_crl(der(crl(site, 1)), site.certificate, 1, pki.ISSUER)
    # the root's CRL is missing: whether the site CA is revoked is unknown
    assert check(leaf, store).status == "BadCertificateIssuerRevocationUnknown"
    store.publish_crl(der(crl(test_ca, 1)), test_ca.certificate, 1)
    for path in store.crl_dir(pki.ISSUER).iterdir():
        path.unlink()
    # the site CA's CRL is missing: whether the leaf itself is revoked is unknown
    assert check(leaf, store).status == "BadCertificateRevocationUnknown"
    store.publish_crl(der(crl(site, 1)), site.certificate, 1, pki.ISSUER)
    result = check(leaf, store, app_uri=URI)
    assert result.ok, result.message
    assert result.chain == [leaf, site.certificate, test_ca.certificate]
    store.publish_crl(der(crl(test_ca, 2, [ca.RevokedEntry(site.certificate.serial_number, T0, "keyCompromise")])), test_ca.certificate, 2)
    assert check(leaf, store).status == "BadCertificateIssuerRevoked"
