"""`certmgr init --issuing-ca --root-dir DIR`: a home whose CA is signed by an offline root; stores carry the
root (trusted) and the issuing CA (issuer) with a CRL for each; certificates validate with openssl and on real
asyncua secure channels; a client the issuing CA revoked, and one whose issuing CA the root revoked, are refused."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import pki
from certmgr.opcua.channel import LoopbackServer, try_channel
from certmgr.opcua.identities import identity_from_store
from tests.conftest import Certmgr
from tests.helpers import utc
from tests.test_field_trial_stores import node_server_installed  # noqa: F401  (fixture: npm ci of node-opcua)
from tests.test_push import node_push_installed  # noqa: F401  (fixture: npm ci of the node-opcua push server)

ROOT_PASSPHRASE = "a passphrase of the root alone"


@pytest.fixture
def chained(tmp_path, database_url) -> tuple[Certmgr, Path]:
    cm = Certmgr(tmp_path / "home", database_url)
    cm.env["CERTMGR_ROOT_PASSPHRASE"] = ROOT_PASSPHRASE
    cm("ca", "root", "create", "--out", str(tmp_path / "root"), "--name", "Plant 1 Root CA", "--key-size", "2048")
    cm("init", "--issuing-ca", "--root-dir", str(tmp_path / "root"), "--ca-name", "Plant 1 CA", "--ca-key-size", "2048")
    return cm, tmp_path / "root"


def pem(path: Path, data: bytes) -> Path:
    obj = x509.load_der_x509_crl(data) if path.suffix == ".crl" else x509.load_der_x509_certificate(data)
    path.with_suffix(path.suffix + ".pem").write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    return path.with_suffix(path.suffix + ".pem")


def openssl_verify(tmp_path: Path, home: Path, root_dir: Path, store: pki.ApplicationStore) -> subprocess.CompletedProcess:
    crls = [p for kind in (pki.TRUSTED, pki.ISSUER) for p in store.crl_dir(kind).iterdir()]
    args = ["openssl", "verify", "-CAfile", pem(tmp_path / "root.der", (root_dir / "root.der").read_bytes()),
            "-untrusted", pem(tmp_path / "ca.der", (home / "ca" / "ca.der").read_bytes()), "-crl_check_all"]
    for i, path in enumerate(crls):
        args += ["-CRLfile", pem(tmp_path / f"{i}.crl", path.read_bytes())]
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(store.own().certificate.public_bytes(serialization.Encoding.PEM))
    return subprocess.run([str(a) for a in args] + [str(leaf)], capture_output=True, text=True)


@pytest.mark.uses_db
def test_init_under_offline_root_lays_out_the_chain_in_both_layouts(chained, tmp_path):
    cm, root_dir = chained
    home = cm.home
    root = pki.parse_certificate((root_dir / "root.der").read_bytes())
    issuing = pki.parse_certificate((home / "ca" / "ca.der").read_bytes())
    assert issuing.issuer == root.subject and issuing.subject != root.subject
    issuing.verify_directly_issued_by(root)
    assert (home / "ca" / "root.der").read_bytes() == (root_dir / "root.der").read_bytes()
    assert not (home / "init.incomplete").exists()
    for layout in ("ua-net", "node-opcua"):
        cm("issue", "--app-uri", f"urn:plant:{layout}", "--store", str(tmp_path / layout), "--layout", layout)
        store = pki.ApplicationStore(tmp_path / layout, layout)
        trusted = [c.value for c in store.certificates(pki.TRUSTED)]
        issuers = [c.value for c in store.certificates(pki.ISSUER)]
        trusted_crls = {c.value.issuer for c in store.crls(pki.TRUSTED)}
        issuer_crls = [c.value.issuer for c in store.crls(pki.ISSUER)]
        assert issuers == [issuing] and issuer_crls == [issuing.subject]  # where intermediates are looked for
        if layout == "ua-net":
            assert trusted == [root] and trusted_crls == {root.subject}
        else:  # node-opcua trusts a leaf only when its issuing CA is in trusted/certs too
            assert {pki.thumbprint(c) for c in trusted} == {pki.thumbprint(root), pki.thumbprint(issuing)}
            assert trusted_crls == {root.subject, issuing.subject}
        done = openssl_verify(tmp_path, home, root_dir, store)
        assert done.returncode == 0, done.stdout + done.stderr
    # the root passphrase is never the CA's
    other = Certmgr(tmp_path / "home2", None)
    other.env["CERTMGR_ROOT_PASSPHRASE"] = other.env["CERTMGR_CA_PASSPHRASE"]
    refused = other("init", "--issuing-ca", "--root-dir", str(root_dir), code=2)
    assert "root passphrase is the CA passphrase" in refused.stderr
    assert not (tmp_path / "home2" / "ca" / "ca.der").exists()


@pytest.mark.uses_db
def test_revoked_client_refused_on_a_real_channel_and_openssl(chained, tmp_path):
    cm, root_dir = chained
    for name, role in (("server", "server"), ("good", "client"), ("bad", "client")):
        cm("issue", "--app-uri", f"urn:plant:{name}", "--store", str(tmp_path / name), "--role", role,
           "--dns", "localhost", "--ip", "127.0.0.1")
    stores = {n: pki.ApplicationStore(tmp_path / n) for n in ("server", "good", "bad")}
    server = identity_from_store(stores["server"], "urn:plant:server", peer_role="client", clock=utc)
    good = identity_from_store(stores["good"], "urn:plant:good", peer_role="server", clock=utc)
    bad = identity_from_store(stores["bad"], "urn:plant:bad", peer_role="server", clock=utc)  # before revoke erases its key
    cm("revoke", "--app-uri", "urn:plant:bad", "--reason", "cessationOfOperation", "--yes")
    assert openssl_verify(tmp_path, cm.home, root_dir, stores["good"]).returncode == 0
    revoked = openssl_verify(tmp_path, cm.home, root_dir, stores["bad"])
    assert revoked.returncode != 0 and "revoked" in revoked.stdout + revoked.stderr

    async def scenario():
        loopback = await LoopbackServer(["Basic256Sha256"]).start(server)
        try:
            kwargs = dict(server_certificate=server.certificate_der, server_validator=server.validator)
            return (await try_channel(loopback.url, good, "Basic256Sha256", **kwargs),
                    await try_channel(loopback.url, bad, "Basic256Sha256", **kwargs))
        finally:
            await loopback.stop()

    accepted, refused = asyncio.run(scenario())
    assert accepted.ok, accepted.as_dict()
    assert (refused.ok, refused.status, refused.side) == (False, "BadCertificateRevoked", "server")

    # the root revokes the issuing CA; `crl import` publishes its CRL to every store: every client is refused
    issuing_serial = f"{pki.parse_certificate((cm.home / 'ca' / 'ca.der').read_bytes()).serial_number:x}"
    cm("ca", "root", "sign-crl", "--root-dir", str(root_dir), "--revoke", issuing_serial)
    imported = cm("crl", "import", str(root_dir / "root.crl"))
    assert (cm.home / "ca" / "root.crl").read_bytes() == (root_dir / "root.crl").read_bytes(), imported.stdout
    for store in stores.values():
        numbers = [pki.crl_number(c.value) for c in store.crls(pki.TRUSTED)]
        assert numbers == [2], numbers
    issuer_revoked = asyncio.run(scenario())[0]
    assert (issuer_revoked.ok, issuer_revoked.status) == (False, "BadCertificateIssuerRevoked"), issuer_revoked.as_dict()


@pytest.mark.uses_db
def test_crl_import_refuses_a_root_crl_not_signed_by_the_root(chained, tmp_path, key_pool):
    import ca

    cm, _ = chained
    root = pki.parse_certificate((cm.home / "ca" / "root.der").read_bytes())
    impostor = ca.Issuer(root, key_pool.get())  # the root's name and certificate, another key
    forged = ca.build_crl(impostor, number=9, this_update=utc(), next_update=utc().replace(year=utc().year + 1))
    (tmp_path / "forged.crl").write_bytes(forged.public_bytes(serialization.Encoding.DER))
    before = (cm.home / "ca" / "root.crl").read_bytes()
    result = cm("crl", "import", str(tmp_path / "forged.crl"), code=2)
    assert "signature does not verify with the root" in result.stderr
    assert (cm.home / "ca" / "root.crl").read_bytes() == before


@pytest.mark.uses_db
def test_csr_out_then_import_signed_completes_the_home(tmp_path, database_url, key_pool):
    import ca

    cm = Certmgr(tmp_path / "home", database_url)
    cm.env["CERTMGR_ROOT_PASSPHRASE"] = ROOT_PASSPHRASE
    root_dir = tmp_path / "root"
    cm("ca", "root", "create", "--out", str(root_dir), "--key-size", "2048")
    csr = tmp_path / "issuing.csr"
    waiting = cm.json("init", "--issuing-ca", "--csr-out", str(csr), "--ca-name", "Plant 1 CA", "--ca-key-size", "2048")
    assert waiting["pending"] and csr.exists() and (cm.home / "init.incomplete").exists()
    assert not (cm.home / "ca" / "ca.der").exists()
    assert "did not finish" in cm("issue", "--app-uri", "urn:plant:x", "--store", str(tmp_path / "x"), code=2).stderr
    cm("ca", "root", "sign-csr", str(csr), "--root-dir", str(root_dir), "--out", str(tmp_path / "ca.der"))

    # refusals: exit 2, one line, nothing written
    other_key = key_pool.get()
    root = pki.parse_certificate((root_dir / "root.der").read_bytes())
    other_root = ca.build_root_ca(other_key, ca.SubjectFields("Other Root"), now=utc(), days=100, path_length=1)
    other_root_file = tmp_path / "other-root.der"
    other_root_file.write_bytes(other_root.public_bytes(serialization.Encoding.DER))
    foreign_ca = ca.build_issuing_ca(other_key.public_key(), ca.SubjectFields("Plant 1 CA"),
                                     ca.Issuer(other_root, other_key), now=utc())
    wrong_key = tmp_path / "wrong-key.der"
    wrong_key.write_bytes(foreign_ca.public_bytes(serialization.Encoding.DER))
    forged_crl = tmp_path / "forged.crl"
    forged_crl.write_bytes(ca.build_crl(ca.Issuer(root, other_key), number=5, this_update=utc(),
                                        next_update=utc().replace(year=utc().year + 1)).public_bytes(serialization.Encoding.DER))
    cases = [
        ((str(wrong_key), "--root", str(root_dir / "root.der"), "--root-crl", str(root_dir / "root.crl")), "does not match the CA key"),
        ((str(tmp_path / "ca.der"), "--root", str(other_root_file), "--root-crl", str(root_dir / "root.crl")), "did not sign"),
        ((str(tmp_path / "ca.der"), "--root", str(root_dir / "root.der"), "--root-crl", str(forged_crl)), "not signed by the root"),
    ]
    for args, message in cases:
        result = cm("ca", "import-signed", *args, code=2)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not (cm.home / "ca" / "ca.der").exists() and not (cm.home / "ca" / "root.der").exists()

    done = cm.json("ca", "import-signed", str(tmp_path / "ca.der"), "--root", str(root_dir / "root.der"),
                   "--root-crl", str(root_dir / "root.crl"))
    assert done["ca_thumbprint"] == pki.thumbprint(pki.parse_certificate((tmp_path / "ca.der").read_bytes()))
    assert not (cm.home / "init.incomplete").exists()
    cm("issue", "--app-uri", "urn:plant:x", "--store", str(tmp_path / "x"))
    store = pki.ApplicationStore(tmp_path / "x")
    assert openssl_verify(tmp_path, cm.home, root_dir, store).returncode == 0


@pytest.mark.uses_db
def test_ca_passphrase_reencrypts_with_scrypt(chained, tmp_path):
    import os
    import stat

    cm, _ = chained
    key_file = cm.home / "ca" / "private" / "ca-key.pem"
    cm.env["CERTMGR_NEW_CA_PASSPHRASE"] = "a brand new CA passphrase"
    correct = dict(cm.env)
    cm.env["CERTMGR_CA_PASSPHRASE"] = "not the passphrase"
    before = key_file.read_bytes()
    refused = cm("ca", "passphrase", code=2)
    assert "wrong CA passphrase" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert key_file.read_bytes() == before
    cm.env = correct
    result = cm.json("ca", "passphrase")
    assert "scrypt" in result["key_encryption"]
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600 and key_file.read_bytes() != before
    old = cm("issue", "--app-uri", "urn:plant:x", "--store", str(tmp_path / "x"), code=2)  # the old one no longer opens it
    assert "passphrase" in old.stderr
    cm.env["CERTMGR_CA_PASSPHRASE"] = "a brand new CA passphrase"
    cm("issue", "--app-uri", "urn:plant:x", "--store", str(tmp_path / "x"))
    asn1 = subprocess.run(["openssl", "asn1parse", "-in", str(key_file)], capture_output=True, text=True).stdout
    assert ":scrypt" in asn1


@pytest.mark.uses_db
def test_check_and_store_status_see_the_root_crl(chained, tmp_path):
    from datetime import timedelta

    cm, _ = chained
    cm("issue", "--app-uri", "urn:plant:x", "--store", str(tmp_path / "x"))
    root_subject = pki.parse_certificate((cm.home / "ca" / "root.der").read_bytes()).subject.rfc4514_string()
    fine = cm.json("check")
    assert not [s for s in fine["subjects"] if s["issuer"] == root_subject]
    result = cm.at(utc() + timedelta(days=360))("check", "--json", code=None)
    subjects = [s for s in result.json()["subjects"] if s["issuer"] == root_subject and "root's CRL" in s["reason"]]
    assert len(subjects) == 1 and subjects[0]["level"] in ("warning", "critical"), result.stdout
    assert result.exit_code in (1, 2)
    status = cm.at(utc() + timedelta(days=366))("store", "status", str(tmp_path / "x"), "--json", code=None)
    assert "Plant 1 Root CA" in status.stdout, status.stdout


@pytest.mark.uses_db
def test_an_imported_root_crl_reaches_peer_stores_and_is_one_alert(chained, tmp_path):
    from datetime import timedelta

    cm, root_dir = chained
    for name in ("x", "y"):
        cm("issue", "--app-uri", f"urn:plant:{name}", "--store", str(tmp_path / name))
    # a vendor's store handed the root and its first CRL (store import registers it as a peer store)
    (tmp_path / "vendor").mkdir()
    cm("store", "import", str(tmp_path / "vendor"), str(root_dir / "root.der"), "--trusted", "--crl",
       str(cm.home / "ca" / "root.crl"), "--layout", "node-opcua")
    renewed = cm.json("ca", "root", "sign-crl", "--root-dir", str(root_dir))
    imported = cm.json("crl", "import", renewed["crl"])
    into = {Path(r["store"]).name for r in imported if r["status"] == "imported"}
    assert {"x", "y", "verifier", "vendor"} <= into  # every store and the peer store got it, each import recorded
    vendor = pki.ApplicationStore(tmp_path / "vendor", "node-opcua")
    assert renewed["crl_number"] in [pki.crl_number(pki.parse_crl(p.read_bytes())) for p in vendor.crl_dir(pki.TRUSTED).iterdir()]
    shown = cm.json("ca", "show")["root"]
    assert shown["subject"] == "CN=Plant 1 Root CA" and shown["crl_number"] == renewed["crl_number"]
    assert "Plant 1 Root CA" in cm("ca", "show").stdout
    root_subject = pki.parse_certificate((cm.home / "ca" / "root.der").read_bytes()).subject.rfc4514_string()
    result = cm.at(utc() + timedelta(days=360))("check", "--json", code=None)
    about_root = [s for s in result.json()["subjects"] if s["issuer"] == root_subject]
    assert len(about_root) == 1 and "root's CRL" in about_root[0]["reason"], about_root


@pytest.mark.uses_db
def test_crl_refresh_restores_a_lost_root_crl_from_the_home(chained, tmp_path):
    cm, _ = chained
    cm("issue", "--app-uri", "urn:plant:x", "--store", str(tmp_path / "x"), "--layout", "node-opcua")
    store = pki.ApplicationStore(tmp_path / "x", "node-opcua")
    root = pki.parse_certificate((cm.home / "ca" / "root.der").read_bytes())
    root_crls = [p for p in store.crl_dir(pki.TRUSTED).iterdir() if pki.crl_signed_by(pki.parse_crl(p.read_bytes()), root)]
    assert len(root_crls) == 1
    root_crls[0].unlink()  # an operator "cleaning up" trusted/crl
    report = cm.json("crl", "refresh")
    mine = next(c for c in report["stores"] if Path(c["store"]).name == "x")
    assert mine["ok"] and any("root's CRL" in r for r in mine["repaired"]), mine
    assert (cm.home / "ca" / "root.crl").read_bytes() in [p.read_bytes() for p in store.crl_dir(pki.TRUSTED).iterdir()]
    again = next(c for c in cm.json("crl", "refresh")["stores"] if Path(c["store"]).name == "x")
    assert again["repaired"] == []  # nothing to do the second time


@pytest.mark.uses_db
def test_node_opcua_server_under_the_chain_refuses_the_revoked_client(chained, tmp_path, node_server_installed):
    """A real node-opcua server (issuers/certs layout) validates the chain root -> issuing CA -> client."""
    from certmgr.opcua.proofs import endpoint_certificate
    from certmgr.opcua.session import attempt_session
    from tests.test_field_trial_stores import NODE_SERVER_URI, run_node_server, stop

    cm, _ = chained
    server_store = tmp_path / "node-server"
    cm("issue", "--app-uri", NODE_SERVER_URI, "--store", str(server_store), "--layout", "node-opcua", "--role", "server",
       "--dns", "localhost", "--ip", "127.0.0.1")
    identities = {}
    for name in ("good", "bad"):
        cm("issue", "--app-uri", f"urn:plant:{name}", "--store", str(tmp_path / name), "--role", "client")
        identities[name] = identity_from_store(pki.ApplicationStore(tmp_path / name), f"urn:plant:{name}",
                                               peer_role="server", clock=utc)
    cm("revoke", "--app-uri", "urn:plant:bad", "--reason", "cessationOfOperation", "--yes")
    process, port = run_node_server(server_store, tmp_path / "node.log")
    try:
        url = f"opc.tcp://127.0.0.1:{port}"

        async def connect(identity):
            for _ in range(5):  # node-opcua reads its folders in the background after start
                served, _ = await endpoint_certificate(url)
                attempt = await attempt_session(url, identity, "Basic256Sha256", served)
                if attempt.ok or identity is identities["bad"]:
                    return attempt
                await asyncio.sleep(2)
            return attempt

        good = asyncio.run(connect(identities["good"]))
        bad = asyncio.run(connect(identities["bad"]))
    finally:
        stop(process)
    assert good.ok, good.as_dict()
    assert not bad.ok and bad.side == "server", bad.as_dict()


@pytest.mark.uses_db
def test_interrupted_issuing_init_resumes_only_with_its_root(tmp_path, database_url):
    cm = Certmgr(tmp_path / "home", database_url)
    cm.env["CERTMGR_ROOT_PASSPHRASE"] = ROOT_PASSPHRASE
    root_dir = tmp_path / "root"
    cm("ca", "root", "create", "--out", str(root_dir), "--key-size", "2048")
    cm.env["CERTMGR_ROOT_PASSPHRASE"] = "wrong root passphrase"
    failed = cm("init", "--issuing-ca", "--root-dir", str(root_dir), "--ca-key-size", "2048", code=2)
    assert "wrong root passphrase" in failed.stderr
    assert (cm.home / "init.incomplete").exists() and not (cm.home / "ca" / "ca.der").exists()
    plain = cm("init", "--ca-key-size", "2048", code=2)  # never a self-signed CA in a home meant for the root
    assert "started with --issuing-ca --root-dir" in plain.stderr and not (cm.home / "ca" / "ca.der").exists()
    cm.env["CERTMGR_ROOT_PASSPHRASE"] = ROOT_PASSPHRASE
    resumed = cm.json("init", "--issuing-ca", "--root-dir", str(root_dir), "--ca-key-size", "2048")
    assert resumed["resumed"] and not (cm.home / "init.incomplete").exists()
    issuing = pki.parse_certificate((cm.home / "ca" / "ca.der").read_bytes())
    assert issuing.issuer == pki.parse_certificate((root_dir / "root.der").read_bytes()).subject


@pytest.mark.uses_db
def test_push_under_the_chain_puts_the_root_and_its_crl_in_the_trust_list(chained, tmp_path, node_push_installed):
    """node-opcua's Part 12 push server: certmgr's TrustList step covers the root and the root's CRL as well as the
    issuing CA and its CRL, and reads each back."""
    from tests.helpers import NODE_PUSH_URI, NodeServer

    cm, root_dir = chained
    pki_dir = tmp_path / "node-pki"
    pki_dir.mkdir()
    ca_cert = pki.parse_certificate((cm.home / "ca" / "ca.der").read_bytes())
    verifier = pki.ApplicationStore(cm.home / "verifier")
    ca_crl = next(p for kind in (pki.TRUSTED, pki.ISSUER) for p in verifier.crl_dir(kind).iterdir()
                  if pki.crl_signed_by(pki.parse_crl(p.read_bytes()), ca_cert))
    # the server's administrator places the chain once, as `trust-exchange --export` hands it over
    for cert, crl in ((root_dir / "root.der", cm.home / "ca" / "root.crl"), (cm.home / "ca" / "ca.der", ca_crl)):
        cm("store", "import", str(pki_dir), str(cert), "--trusted", "--crl", str(crl), "--layout", "node-opcua")
    server = NodeServer(pki_dir, {"admin": "admin-pw", "operator": "operator-pw"})
    try:
        password = tmp_path / "admin.pass"
        password.write_text("admin-pw\n")
        password.chmod(0o600)
        cm("app", "add", "--app-uri", NODE_PUSH_URI, "--endpoint", server.url, "--deploy", "push", "--admin-user", "admin",
           "--admin-password-file", str(password), "--dns", "localhost", "--ip", "127.0.0.1")
        from certmgr.opcua.proofs import endpoint_certificate

        self_signed = pki.thumbprint(asyncio.run(endpoint_certificate(server.url))[0])
        pushed = cm("push", "--app-uri", NODE_PUSH_URI, "--accept-server", self_signed[:16], "--json").json()
        assert pushed["ok"], pushed
        steps = {s["step"]: s for s in pushed["steps"]}
        assert steps["TrustList"]["status"] == "Good" and "root certificate" in steps["TrustList"]["detail"], steps["TrustList"]
        served = pki.parse_certificate(asyncio.run(endpoint_certificate(server.url))[0].public_bytes(serialization.Encoding.DER))
        assert served.issuer == ca_cert.subject and pki.cert_signed_by(served, ca_cert)

        # the root's next CRL: crl import reaches the server's folder (store import made it a peer store), and the
        # next push reads the TrustList back holding it
        renewed = cm.json("ca", "root", "sign-crl", "--root-dir", str(root_dir))
        cm("crl", "import", renewed["crl"])
        again = cm("push", "--app-uri", NODE_PUSH_URI, "--json").json()
        trust_list = next(s for s in again["steps"] if s["step"] == "TrustList")
        assert trust_list["status"] == "Good" and "root's current CRL" in trust_list["detail"], trust_list
    finally:
        server.stop()
