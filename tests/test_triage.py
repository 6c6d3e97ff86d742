"""Trust triage and diagnosis: the seed article's "fails twice" scenario on loopback, store inspection."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import ca
import pki
from tests.apps.third_party import ThirdPartyServer
from tests.conftest import Certmgr
from tests.helpers import der, legacy_certificate


@pytest.fixture
def client_app(initialised: Certmgr, tmp_path) -> Path:
    initialised("issue", "--app-uri", "urn:plant:connector", "--store", str(tmp_path / "connector"), "--role", "client")
    return tmp_path / "connector"


def run_with_server(server: ThirdPartyServer, steps):
    """Run blocking certmgr commands (each starts its own event loop) while the server serves."""

    async def scenario():
        await server.start()
        try:
            return await asyncio.to_thread(steps)
        finally:
            await server.stop()

    return asyncio.run(scenario())


def test_fails_twice_then_succeeds_and_diagnose_names_each_step(initialised: Certmgr, client_app, tmp_path, key_pool):
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("guess\n")
    password.chmod(0o600)
    wrong.chmod(0o600)
    server = ThirdPartyServer(tmp_path / "vendor", key_pool.get(), {"operator": "s3cret"})
    our_store = pki.ApplicationStore(client_app)
    our_thumb = our_store.own().thumbprint

    def steps():
        args = ["diagnose", server.url, "--app-uri", "urn:plant:connector", "--user", "operator", "--password-file"]
        first = initialised(*args, str(password), "--json", code=1).json()
        # the operator follows the fix: trust the server on our side
        rejected = initialised.json("store", "rejected", str(client_app))
        initialised("store", "trust", str(client_app), rejected[0]["thumbprint"][:10].lower(), "--yes")
        second = initialised(*args, str(password), "--json", code=1).json()
        # the server's administrator trusts our certificate (certmgr works on the vendor's store too)
        server_rejected = initialised.json("store", "rejected", str(tmp_path / "vendor"), "--layout", "ua-net")
        initialised("store", "trust", str(tmp_path / "vendor"), server_rejected[0]["thumbprint"], "--layout", "ua-net", "--yes")
        bad_user = initialised(*args, str(wrong), "--json", code=1).json()
        third = initialised(*args, str(password), "--json").json()
        text = initialised(*args, str(password)).stdout
        return first, rejected, second, server_rejected, bad_user, third, text

    first, rejected, second, server_rejected, bad_user, third, text = run_with_server(server, steps)
    server_thumb = pki.thumbprint(server.certificate)

    assert first["connection"]["refused_by"] == "client" and first["connection"]["status"] == "BadCertificateUntrusted"
    assert "we do not trust the server" in first["fix"] and f"certmgr store trust {client_app} {server_thumb[:16]}" in first["fix"]
    assert [r["thumbprint"] for r in rejected] == [server_thumb] and rejected[0]["app_uri"] == "urn:vendor:historian"
    assert any(e["policy"] == "Aes256_Sha256_RsaPss" for e in first["endpoints"])
    assert first["connection"]["policy"] == "Aes256_Sha256_RsaPss"  # the most secure endpoint is tried

    assert second["connection"]["refused_by"] == "server" and second["connection"]["failed_stage"] == "session"
    assert second["connection"]["status"] == "BadCertificateUntrusted"
    assert "the server refused our CA-signed certificate" in second["fix"] and our_thumb in second["fix"]
    assert "certmgr's CA and its current CRL" in second["fix"] and "--export DIR" in second["fix"]
    assert [r["thumbprint"] for r in server_rejected] == [our_thumb]

    assert bad_user["connection"]["failed_stage"] == "user" and bad_user["connection"]["status"] == "BadUserAccessDenied"
    assert "password" in bad_user["fix"]
    assert third["ok"] and third["connection"]["ok"] and third["connection"]["server_thumbprint"] == server_thumb
    assert "secure session OK" in text
    assert our_store.holds_certificate(server.certificate, pki.TRUSTED) and our_store.rejected() == []
    actions = [row[0] for row in initialised.sql("SELECT action FROM audit_events WHERE action LIKE 'store.%'")]
    assert actions == ["store.trust", "store.trust"]


def test_trust_exchange_makes_the_first_attempt_succeed(initialised: Certmgr, client_app, tmp_path, key_pool):
    password = tmp_path / "password"
    password.write_text("s3cret")
    password.chmod(0o600)
    server = ThirdPartyServer(tmp_path / "vendor", key_pool.get(), {"operator": "s3cret"})
    export = tmp_path / "for-vendor"

    def steps():
        exchanged = initialised.json("trust-exchange", "--app-uri", "urn:plant:connector", "--endpoint", server.url, "--export", str(export), "--yes")
        # the vendor's administrator copies our application certificate into the server's trusted store
        offered = export / exchanged["for_the_server"]["application_certificate"]
        (tmp_path / "vendor" / "trusted" / "certs" / offered.name).write_bytes(offered.read_bytes())
        first = initialised.json("diagnose", server.url, "--app-uri", "urn:plant:connector", "--user", "operator", "--password-file", str(password))
        return exchanged, first

    exchanged, first = run_with_server(server, steps)
    assert exchanged["server_certificate"]["thumbprint"] == pki.thumbprint(server.certificate)
    assert sorted(p.name for p in export.iterdir()) == sorted(exchanged["for_the_server"].values())
    crl = x509.load_der_x509_crl((export / exchanged["for_the_server"]["ca_crl"]).read_bytes())
    assert crl.next_update_utc > datetime.now(timezone.utc)
    assert first["ok"], first


DATA = Path(__file__).parent / "data"


def test_unknown_ambiguous_and_unconfirmed_trust_moves_nothing(initialised: Certmgr, client_app):
    """tests/data holds two certificates whose thumbprints share 8 hex digits (scripts/make_thumbprint_twins.py)."""
    store = pki.ApplicationStore(client_app)
    twins = [x509.load_der_x509_certificate((DATA / name).read_bytes()) for name in ("twin-a.der", "twin-b.der")]
    for cert in twins:
        store.add_rejected(cert)
    a, b = (pki.thumbprint(c) for c in twins)
    assert a != b and a[:8] == b[:8]
    before = store.file_listing()
    ambiguous = initialised("store", "trust", str(client_app), a[:8].lower(), "--yes", code=2)
    assert "ambiguous" in ambiguous.stderr and a in ambiguous.stderr and b in ambiguous.stderr
    unknown = "0" * 8 if not a.startswith("0" * 8) else "F" * 8
    assert "no rejected certificate" in initialised("store", "trust", str(client_app), unknown, "--yes", code=2).stderr
    assert "at least 8 hex digits" in initialised("store", "trust", str(client_app), a[:7], "--yes", code=2).stderr
    assert "needs confirmation" in initialised("store", "trust", str(client_app), a, code=2).stderr
    assert store.file_listing() == before
    decisive = a[: len(os.path.commonprefix([a, b])) + 1]  # one more digit decides
    done = initialised.json("store", "trust", str(client_app), decisive, "--yes")
    assert done["to"].endswith(f"[{a}].der") and [pki.thumbprint(l.value) for l in store.rejected()] == [b]


def test_a_file_that_changed_after_it_was_shown_is_refused(initialised: Certmgr, client_app, tmp_path, monkeypatch, key_pool, foreign_ca):
    from certmgr.cli import store_cmds

    store = pki.ApplicationStore(client_app)
    shown = ca.build_application_certificate(ca.ApplicationIdentity("urn:else:a", ca.SubjectFields("a", "x")), key_pool.get().public_key(), foreign_ca, now=datetime.now(timezone.utc))
    swapped = ca.build_application_certificate(ca.ApplicationIdentity("urn:else:b", ca.SubjectFields("b", "x")), key_pool.get().public_key(), foreign_ca, now=datetime.now(timezone.utc))
    path = store.add_rejected(shown)

    def operator_confirms_while_file_is_swapped(question, yes):
        path.write_bytes(der(swapped))

    monkeypatch.setattr(store_cmds, "confirm", operator_confirms_while_file_is_swapped)
    result = initialised("store", "trust", str(client_app), pki.thumbprint(shown), code=1)
    assert "changed since it was shown" in result.stderr
    assert [loaded.value for loaded in store.certificates(pki.TRUSTED) if loaded.value == swapped] == []
    assert path.exists()


def test_reject_remove_and_import(initialised: Certmgr, client_app, tmp_path, foreign_ca):
    store = pki.ApplicationStore(client_app)
    ca_file = tmp_path / "vendor-ca.pem"
    ca_file.write_bytes(foreign_ca.certificate.public_bytes(serialization.Encoding.PEM))
    warned = initialised("store", "import", str(client_app), str(ca_file), "--trusted")
    assert "BadCertificateRevocationUnknown" in warned.stderr
    thumb = pki.thumbprint(foreign_ca.certificate)
    initialised("store", "reject", str(client_app), thumb, "--yes")
    assert [pki.thumbprint(l.value) for l in store.rejected()] == [thumb]
    initialised("store", "remove", str(client_app), thumb, "--yes")
    assert store.rejected() == []
    now = datetime.now(timezone.utc)
    crl_file = tmp_path / "vendor.crl"
    crl_file.write_bytes(der(ca.build_crl(foreign_ca, number=3, this_update=now, next_update=now + timedelta(days=10))))
    imported = initialised.json("store", "import", str(client_app), str(ca_file), "--issuer", "--crl", str(crl_file))
    assert imported["crl"].endswith("crl3.crl") and "/issuer/crl/" in imported["crl"]
    assert "--trusted or --issuer" in initialised("store", "import", str(client_app), str(ca_file), code=2).stderr
    wrong_crl = tmp_path / "wrong.crl"
    wrong_crl.write_bytes((initialised.home / "verifier" / "trusted" / "crl").iterdir().__next__().read_bytes())
    assert "was not signed by" in initialised("store", "import", str(client_app), str(ca_file), "--trusted", "--crl", str(wrong_crl), code=2).stderr


def test_store_status_on_both_layouts_and_a_broken_store(initialised: Certmgr, tmp_path, key_pool):
    initialised("issue", "--app-uri", "urn:plant:a", "--store", str(tmp_path / "a"))
    initialised("issue", "--app-uri", "urn:plant:b", "--store", str(tmp_path / "b"), "--layout", "node-opcua")
    for name in ("a", "b"):
        report = initialised.json("store", "status", str(tmp_path / name))
        assert report["ok"] and report["problems"] == [], report["problems"]
        assert report["layout"] == ("ua-net" if name == "a" else "node-opcua")
        assert report["own"]["app_uri"] == f"urn:plant:{name}" and report["own"]["conformance"] == []
        assert report["crls"][0]["number"] == 1 and report["crls"][0]["signature_valid"]

    # break store b in every way an operator meets in the field
    broken = pki.ApplicationStore(tmp_path / "b", "node-opcua")
    (broken.certs_dir(pki.TRUSTED) / "garbage.der").write_bytes(os.urandom(64))
    (broken.crl_dir(pki.TRUSTED) / "notes.crl").write_bytes(b"not a crl")
    ca_cert = x509.load_der_x509_certificate((initialised.home / "ca" / "ca.der").read_bytes())
    for path in broken.crl_dir(pki.TRUSTED).iterdir():
        if path.name.startswith("Plant CA"):
            path.unlink()
    issuer = ca.Issuer(ca_cert, ca.load_private_key_pem((initialised.home / "ca/private/ca-key.pem").read_bytes(), b"test passphrase for the CA"))
    now = datetime.now(timezone.utc)
    broken.publish_crl(der(ca.build_crl(issuer, number=1, this_update=now - timedelta(days=40), next_update=now - timedelta(days=10))), ca_cert, 1)
    (broken.own_private_dir / "private_key.pem").write_bytes(ca.private_key_pem(key_pool.get()))
    legacy, _, _ = legacy_certificate(tmp_path, "old-plc")
    broken.add_certificate(legacy, pki.TRUSTED)
    broken.add_rejected(legacy)
    (broken.rejected_dir / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")

    result = initialised("store", "status", str(tmp_path / "b"), "--json", code=1)
    report = result.json()
    messages = " | ".join(p["message"] for p in report["problems"])
    assert "private key does not match" in messages
    assert "past its nextUpdate" in messages
    assert "SHA-1" in messages and "RSA 1024 bits" in messages  # ca.Finding wording (issue 13: one wording)
    assert "garbage.der" in " ".join(p["where"] for p in report["problems"])
    assert "notes.crl" in " ".join(p["where"] for p in report["problems"])
    assert "junk.pem" in " ".join(p["where"] for p in report["problems"])
    assert len(report["rejected"]) == 2
    text = initialised("store", "status", str(tmp_path / "b"), code=1).stdout
    assert "ERROR: private key does not match" in text
    assert "does not exist" in initialised("store", "status", str(tmp_path / "nope"), code=2).stderr


def test_diagnose_endpoint_audit_flags_weak_servers(initialised: Certmgr, tmp_path, key_pool):
    """A server with mode None, a certificate whose SAN lacks the host used and whose URI differs."""
    from asyncua import Server, ua

    from tests.apps.third_party import self_signed

    key = key_pool.get()
    cert = self_signed(key, uri="urn:vendor:other")

    async def scenario():
        server = Server()
        await server.init()
        server.set_endpoint("opc.tcp://127.0.0.1:0/")
        await server.set_application_uri("urn:vendor:announced")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        await server.load_certificate(cert.public_bytes(serialization.Encoding.DER))
        await server.load_private_key(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        await server.start()
        url = f"opc.tcp://localhost:{server.bserver.port}/"
        try:
            return await asyncio.to_thread(lambda: initialised("diagnose", url, "--json", code=1).json())
        finally:
            await server.stop()

    report = asyncio.run(scenario())
    messages = " | ".join(f["message"] for f in report["findings"])
    assert "mode None is offered" in messages
    assert "BadCertificateUriInvalid" in messages and "urn:vendor:announced" in messages
    assert report["connection"]["refused_by"] == "client"  # certmgr's verifier does not trust a self-signed vendor cert


def test_diagnose_unreachable_server(initialised: Certmgr):
    result = initialised("diagnose", "opc.tcp://127.0.0.1:9/", "--json", "--timeout", "3", code=1).json()
    assert result["connection"]["failed_stage"] == "tcp"
    assert "reachable" in result["fix"]
    assert "opc.tcp URL" in initialised("diagnose", "http://x", code=2).stderr


def test_endpoint_audit_flags_a_weak_server_certificate(tmp_path, test_ca, key_pool):
    """What old devices present: SHA-1, RSA 1024, no SAN, a month left; and an announced URI that differs."""
    from types import SimpleNamespace

    from certmgr.services.diagnose import Diagnosis, _audit_certificate

    weak, _, _ = legacy_certificate(tmp_path)
    now = datetime.now(timezone.utc)
    diagnosis = Diagnosis("opc.tcp://plc7.plant.local:4840")
    _audit_certificate(diagnosis, weak, None, "plc7.plant.local", now)
    found = " | ".join(f["message"] for f in diagnosis.findings)
    for expected in ("RSA 1024", "SHA-1", "expires on", "lacks plc7.plant.local"):
        assert expected in found, found

    good = ca.build_application_certificate(
        ca.ApplicationIdentity("urn:plant:plc7", ca.SubjectFields("plc7", "Plant"), ("plc7.plant.local",), ()),
        key_pool.get().public_key(), test_ca, now=now,
    )
    clean = Diagnosis("opc.tcp://plc7.plant.local:4840")
    _audit_certificate(clean, good, SimpleNamespace(Server=SimpleNamespace(ApplicationUri="urn:plant:plc7")), "plc7.plant.local", now)
    assert clean.findings == []
    by_ip = Diagnosis("opc.tcp://10.0.0.7:4840")
    _audit_certificate(by_ip, good, SimpleNamespace(Server=SimpleNamespace(ApplicationUri="urn:plant:other")), "10.0.0.7", now)
    messages = " | ".join(f["message"] for f in by_ip.findings)
    assert "lacks 10.0.0.7" in messages and "BadCertificateUriInvalid" in messages


def test_triage_in_a_node_opcua_store_across_all_stores_and_a_ca_without_crl(initialised: Certmgr, tmp_path, foreign_ca, key_pool):
    from tests.conftest import make_identity

    a, b = tmp_path / "a", tmp_path / "b"
    initialised("issue", "--app-uri", "urn:plant:a", "--store", str(a), "--layout", "node-opcua")
    initialised("issue", "--app-uri", "urn:plant:b", "--store", str(b))
    now = datetime.now(timezone.utc)
    vendor = ca.build_application_certificate(make_identity("urn:vendor:x", "vendor-x"), key_pool.get().public_key(), foreign_ca, now=now)
    other = ca.build_application_certificate(make_identity("urn:vendor:y", "vendor-y"), key_pool.get().public_key(), foreign_ca, now=now)
    store_a, store_b = pki.ApplicationStore(a, "node-opcua"), pki.ApplicationStore(b)
    assert store_a.add_rejected(vendor).name == f"vendor-x[{pki.thumbprint(vendor).lower()}].pem"  # as node-opcua writes it
    store_b.add_rejected(other)

    everywhere = initialised.json("store", "rejected", "--all")
    assert {(r["thumbprint"], r["store"]) for r in everywhere} == {(pki.thumbprint(vendor), str(a)), (pki.thumbprint(other), str(b))}
    initialised("store", "trust", str(a), pki.thumbprint(vendor)[:8].lower(), "--yes")
    assert (store_a.certs_dir(pki.TRUSTED) / f"vendor-x[{pki.thumbprint(vendor).lower()}].der").is_file()
    assert store_a.rejected() == []
    assert [r["store"] for r in initialised.json("store", "rejected", "--all")] == [str(b)]

    # a CA imported without its CRL: a warning at import, an error in the store's status
    ca_file = tmp_path / "vendor-ca.der"
    ca_file.write_bytes(der(foreign_ca.certificate))
    imported = initialised("store", "import", str(b), str(ca_file), "--trusted")
    assert "BadCertificateRevocationUnknown" in imported.stderr
    status = initialised("store", "status", str(b), "--json", code=1).json()
    assert any("has no CRL" in p["message"] for p in status["problems"])
