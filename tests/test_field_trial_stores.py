"""Issue 12, store side: third-party CNs as file names, store trust checks, stack-aware findings, open62541."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import ca
import pki
from tests.apps.third_party import self_signed
from tests.conftest import T0, Certmgr, make_identity
from tests.helpers import der, npm_installed

NODE_OPCUA_CN = "newcomer urn:vendor:kepware01@vm"  # what node-opcua builds: "<name> <ApplicationUri>@<host>"


def managed_store(initialised: Certmgr, tmp_path: Path, name: str = "a", layout: str = "ua-net") -> pki.ApplicationStore:
    initialised("issue", "--app-uri", f"urn:plant:{name}", "--store", str(tmp_path / name), "--layout", layout)
    return pki.ApplicationStore(tmp_path / name, layout)


def test_layout_names_of_the_cli_are_pki_layouts():
    from certmgr.constants import LAYOUT_NAMES

    assert set(LAYOUT_NAMES) == set(pki.LAYOUTS)


# item 1 ------------------------------------------------------------------------------------------------
def test_import_trusted_of_a_node_opcua_style_cn(initialised: Certmgr, tmp_path, key_pool):
    store = managed_store(initialised, tmp_path)
    vendor = self_signed(key_pool.get(), cn=NODE_OPCUA_CN, uri="urn:vendor:kepware01")
    (tmp_path / "vendor.der").write_bytes(der(vendor))
    initialised("store", "import", str(store.root), str(tmp_path / "vendor.der"), "--trusted")
    thumb = pki.thumbprint(vendor)
    assert (store.certs_dir(pki.TRUSTED) / f"newcomer urn_vendor_kepware01@vm [{thumb}].der").is_file()
    report = initialised.json("store", "status", str(store.root))
    assert thumb in [entry["thumbprint"] for entry in report["trusted"]]
    assert report["ok"], report["problems"]


# item 3 ------------------------------------------------------------------------------------------------
def test_store_trust_refuses_a_certificate_certmgr_revoked(initialised: Certmgr, tmp_path):
    store = managed_store(initialised, tmp_path, "a")
    peer = managed_store(initialised, tmp_path, "b").own().certificate
    initialised("revoke", "--app-uri", "urn:plant:b", "--reason", "keyCompromise", "--yes")
    store.add_rejected(peer)
    before = store.file_listing()
    refused = initialised("store", "trust", str(store.root), pki.thumbprint(peer)[:12], "--yes", code=2)
    assert "revoked by certmgr's CA on 20" in refused.stderr and "keyCompromise" in refused.stderr
    assert "certmgr: error:" in refused.stderr
    assert store.file_listing() == before
    assert not store.holds_certificate(peer, pki.TRUSTED)


def test_store_trust_warns_when_the_store_lacks_the_issuer(initialised: Certmgr, tmp_path, test_ca, key_pool):
    store = pki.ApplicationStore(tmp_path / "plain")
    store.create()
    peer = ca.build_application_certificate(make_identity("urn:vendor:peer", "peer"), key_pool.get().public_key(), test_ca, now=T0)
    store.add_rejected(peer)
    result = initialised("store", "trust", str(store.root), pki.thumbprint(peer)[:12], "--yes")
    assert "Test CA" in result.stderr and "does not hold" in result.stderr
    assert f"certmgr store import {store.root} ISSUER-CA.der --issuer --crl ISSUER-CA.crl" in result.stderr
    assert store.holds_certificate(peer, pki.TRUSTED)  # a warning, not a refusal


def test_store_trust_warns_when_the_issuer_has_no_current_crl(initialised: Certmgr, tmp_path, test_ca, key_pool):
    store = pki.ApplicationStore(tmp_path / "plain")
    store.add_certificate(test_ca.certificate, pki.TRUSTED)
    peer = ca.build_application_certificate(make_identity("urn:vendor:peer", "peer"), key_pool.get().public_key(), test_ca, now=T0)
    store.add_rejected(peer)
    result = initialised("store", "trust", str(store.root), pki.thumbprint(peer)[:12], "--yes")
    assert "no current CRL" in result.stderr
    assert f"certmgr crl import ISSUER-CA.crl --store {store.root}" in result.stderr


def test_store_trust_of_a_certmgr_issued_peer_names_the_ca_files(initialised: Certmgr, tmp_path):
    peer = managed_store(initialised, tmp_path, "b").own().certificate
    store = pki.ApplicationStore(tmp_path / "plain")
    store.add_rejected(peer)
    result = initialised("store", "trust", str(store.root), pki.thumbprint(peer)[:12], "--yes")
    command = shlex.split(result.stderr.split(": certmgr ", 1)[1].splitlines()[0])
    assert command[:3] == ["store", "import", str(store.root)] and command[4:6] == ["--trusted", "--crl"]
    assert pki.parse_certificate(Path(command[3]).read_bytes()) == pki.parse_certificate((initialised.home / "ca" / "ca.der").read_bytes())
    assert pki.parse_crl(Path(command[6]).read_bytes()).issuer == peer.issuer
    # the command works as printed: the store then holds the CA and its current CRL
    initialised(*command)
    from datetime import datetime, timezone

    assert [s.status(datetime.now(timezone.utc)) for s in pki.audit_crls(store).cas] == [pki.OK]


def test_store_trust_of_a_managed_peer_whose_ca_and_crl_are_held_is_quiet(initialised: Certmgr, tmp_path):
    store = managed_store(initialised, tmp_path, "a")
    peer = managed_store(initialised, tmp_path, "b").own().certificate
    store.add_rejected(peer)
    result = initialised("store", "trust", str(store.root), pki.thumbprint(peer)[:12], "--yes")
    assert "warning" not in result.stderr


def test_import_refuses_a_ca_whose_self_signature_fails(initialised: Certmgr, tmp_path, test_ca):
    store = managed_store(initialised, tmp_path)
    broken = bytearray(der(test_ca.certificate))
    broken[-1] ^= 0x01  # the last byte of the signature: still well-formed DER
    (tmp_path / "ca.der").write_bytes(bytes(broken))
    assert x509.load_der_x509_certificate(bytes(broken)).subject == test_ca.certificate.subject
    before = store.file_listing()
    refused = initialised("store", "import", str(store.root), str(tmp_path / "ca.der"), "--trusted", code=2)
    assert "self-signature does not verify" in refused.stderr
    assert store.file_listing() == before
    (tmp_path / "good.der").write_bytes(der(test_ca.certificate))
    initialised("store", "import", str(store.root), str(tmp_path / "good.der"), "--trusted")  # the intact CA is taken


# item 6 ------------------------------------------------------------------------------------------------
def asyncua_loads(folder: Path) -> None:
    from asyncua.crypto.truststore import TrustStore

    asyncio.run(TrustStore([folder], []).load())


def test_unreadable_trusted_file_is_an_error_and_breaks_asyncua(initialised: Certmgr, tmp_path):
    store = managed_store(initialised, tmp_path)
    trusted = store.certs_dir(pki.TRUSTED)
    asyncua_loads(trusted)  # the managed store loads
    (trusted / "garbage.der").write_bytes(b"\x30\x82\x01\x00not a certificate")
    with pytest.raises(ValueError, match="error parsing asn1 value"):
        asyncua_loads(trusted)  # the claim the finding makes, proven with asyncua's own TrustStore
    report = initialised("store", "status", str(store.root), "--json", code=1).json()
    found = [p for p in report["problems"] if p["where"].endswith("garbage.der")]
    assert [p["severity"] for p in found] == ["error"]
    assert "asyncua" in found[0]["message"] and "store remove" in found[0]["message"]


def test_unreadable_file_in_a_node_opcua_store_says_what_node_opcua_does(initialised: Certmgr, tmp_path):
    store = managed_store(initialised, tmp_path, layout="node-opcua")
    (store.crl_dir(pki.TRUSTED) / "broken.crl").write_bytes(b"junk")
    report = initialised("store", "status", str(store.root), "--json", code=1).json()
    found = [p for p in report["problems"] if p["where"].endswith("broken.crl")]
    assert [p["severity"] for p in found] == ["error"]
    assert "node-opcua skips it silently" in found[0]["message"]
    assert "asyncua" not in found[0]["message"]  # asyncua's TrustStore reads only names matching .*(der|pem)


def test_store_remove_takes_a_file_name(initialised: Certmgr, tmp_path):
    store = managed_store(initialised, tmp_path)
    trusted = store.certs_dir(pki.TRUSTED)
    (trusted / "garbage.der").write_bytes(b"junk")
    (trusted / "junk2.der").write_bytes(b"junk")
    initialised("store", "remove", str(store.root), "garbage.der", "--yes")
    initialised("store", "remove", str(store.root), "trusted/certs/junk2.der", "--yes")
    assert not (trusted / "garbage.der").exists() and not (trusted / "junk2.der").exists()
    asyncua_loads(trusted)
    assert initialised.json("store", "status", str(store.root))["ok"]
    audited = initialised.sql("select details from audit_events where action = 'store.remove'")
    assert len(audited) == 2 and "garbage.der" in str(audited[0])


def test_store_remove_by_name_never_leaves_the_store_folders(initialised: Certmgr, tmp_path):
    store = managed_store(initialised, tmp_path)
    outside = tmp_path / "keep.der"
    outside.write_bytes(b"keep")
    own = store.own().cert_path
    for name in ("../../keep.der", str(outside), f"own/certs/{own.name}", "trusted/../../keep.der"):
        refused = initialised("store", "remove", str(store.root), name, "--yes", code=2)
        assert "not a thumbprint prefix" in refused.stderr
    assert outside.read_bytes() == b"keep" and own.is_file()


def test_store_remove_by_name_asks_first(initialised: Certmgr, tmp_path):
    store = managed_store(initialised, tmp_path)
    (store.certs_dir(pki.TRUSTED) / "garbage.der").write_bytes(b"junk")
    refused = initialised("store", "remove", str(store.root), "garbage.der", code=2)
    assert "pass --yes" in refused.stderr
    assert (store.certs_dir(pki.TRUSTED) / "garbage.der").exists()


def test_store_status_takes_weakness_wording_from_ca(tmp_path):
    from certmgr.services.store_inspect import _weakness
    from tests.helpers import legacy_certificate

    weak, _, _ = legacy_certificate(tmp_path)
    expected = {f"profile: {f.message}" for f in ca.check_application_certificate(weak) if f.code in ("signature-sha1", "key-size-small")}
    assert len(expected) == 2
    assert {p.message for p in _weakness(weak, "x")} == expected


# item 10 -----------------------------------------------------------------------------------------------
def test_issue_into_an_open62541_store(initialised: Certmgr, tmp_path):
    store = managed_store(initialised, tmp_path, layout="open62541")
    assert (store.root / "own/certs/certificate.der").is_file()
    assert (store.root / "own/private/private_key.pem").is_file()
    assert [p.suffix for p in (store.root / "crl").iterdir()] == [".crl"]
    assert not (store.root / "trusted/crl").exists()
    report = initialised.json("store", "status", str(store.root))
    assert report["layout"] == "open62541" and report["ok"], report["problems"]


def test_open62541_store_with_a_ca_and_no_crl_at_all_is_an_error(initialised: Certmgr, tmp_path):
    store = managed_store(initialised, tmp_path, layout="open62541")
    for crl in (store.root / "crl").iterdir():
        crl.unlink()
    report = initialised("store", "status", str(store.root), "--json", code=1).json()
    messages = " | ".join(p["message"] for p in report["problems"] if p["severity"] == "error")
    assert "skips the revocation check entirely" in messages
    ua_net = managed_store(initialised, tmp_path, "u")
    for crl in ua_net.crl_dir(pki.TRUSTED).iterdir():
        crl.unlink()
    other = initialised("store", "status", str(ua_net.root), "--json", code=1).json()
    assert "skips the revocation" not in str(other["problems"])  # that rule is open62541's only


# item 7: a real node-opcua 2.186 server on a certmgr-written store --------------------------------------
NODE_SERVER_DIR = Path(__file__).parent / "apps" / "node_server"
NODE_SERVER_URI = "urn:plant:node-server"


@pytest.fixture(scope="session")
def node_server_installed() -> Path:
    """npm ci once per test run (node-opcua 2.186.4 pinned by package-lock.json), as tests/test_push.py does."""
    return npm_installed(NODE_SERVER_DIR, "node-opcua")


def run_node_server(store: Path, log: Path):
    """Start the server; return (process, port) once it listens. Its whole output goes to ``log``."""
    import os
    import subprocess
    import time

    handle = open(log, "wb")
    process = subprocess.Popen(["node", str(NODE_SERVER_DIR / "server.js"), str(store), "0"], cwd=NODE_SERVER_DIR,
                               env={**os.environ, "APP_URI": NODE_SERVER_URI}, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return process, int(line.split()[1])
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"node-opcua server did not start:\n{log.read_text(errors='replace')}")


def stop(process) -> None:
    process.terminate()
    try:
        process.wait(20)
    except Exception:
        process.kill()
        process.wait(5)


def test_node_opcua_server_reads_the_chain_and_a_certmgr_client_connects(initialised: Certmgr, tmp_path, node_server_installed):
    from datetime import datetime, timezone

    from certmgr.opcua.identities import identity_from_store
    from certmgr.opcua.proofs import endpoint_certificate
    from certmgr.opcua.session import attempt_session

    server_store = tmp_path / "node-server"
    initialised("issue", "--app-uri", NODE_SERVER_URI, "--store", str(server_store), "--layout", "node-opcua",
                "--role", "server", "--dns", "localhost", "--ip", "127.0.0.1")
    client = managed_store(initialised, tmp_path, "client")
    own_file = server_store / "own" / "certs" / "certificate.pem"
    blocks = x509.load_pem_x509_certificates(own_file.read_bytes())
    assert len(blocks) == 2 and blocks[1] == pki.parse_certificate((initialised.home / "ca" / "ca.der").read_bytes())

    # the W60 warning exists in this node-opcua and is given for a leaf-only certificate.pem (what certmgr wrote before)
    full = own_file.read_bytes()
    own_file.write_bytes(blocks[0].public_bytes(serialization.Encoding.PEM))
    process, _ = run_node_server(server_store, tmp_path / "leaf-only.log")
    stop(process)
    assert "NODE-OPCUA-W60" in (tmp_path / "leaf-only.log").read_text(errors="replace")
    own_file.write_bytes(full)

    process, port = run_node_server(server_store, tmp_path / "chain.log")
    try:
        url = f"opc.tcp://127.0.0.1:{port}"
        identity = identity_from_store(client, "urn:plant:client", peer_role="server", clock=lambda: datetime.now(timezone.utc))

        async def connect():
            # node-opcua reads its trusted folders in the background after start: a loaded machine may answer
            # the first channel before the CA is in; a real client retries the same way
            for _ in range(5):
                server_certificate, _ = await endpoint_certificate(url)
                attempt = await attempt_session(url, identity, "Basic256Sha256", server_certificate)
                if attempt.ok:
                    break
                await asyncio.sleep(2)
            return server_certificate, attempt

        served, attempt = asyncio.run(connect())
    finally:
        stop(process)
    output = (tmp_path / "chain.log").read_text(errors="replace")
    assert "W60" not in output and "contains only the leaf" not in output, output
    assert served == blocks[0]  # node-opcua took the first block as its certificate
    assert attempt.ok, attempt.as_dict()


# item 10 with open62541 itself: o6 bundles open62541 1.5 ------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_open62541_server_runs_on_an_open62541_store(initialised: Certmgr, tmp_path):
    """o6 (open62541 1.5) takes its trust list as lists of files, open62541's "lists" mode, not its folder
    mode: the server is given exactly the files of the store's folders (trusted/certs, issuer/certs and the
    one crl/), which is what CertFolders reads from them."""
    from datetime import datetime, timezone

    import o6.server

    from certmgr.opcua.identities import identity_from_store
    from certmgr.opcua.proofs import endpoint_certificate
    from certmgr.opcua.session import attempt_session

    server_store = pki.ApplicationStore(tmp_path / "plc", "open62541")
    initialised("issue", "--app-uri", "urn:plant:plc", "--store", str(server_store.root), "--layout", "open62541",
                "--role", "server", "--dns", "localhost", "--ip", "127.0.0.1")
    good = managed_store(initialised, tmp_path, "good")
    revoked = managed_store(initialised, tmp_path, "revoked")
    initialised("revoke", "--app-uri", "urn:plant:revoked", "--reason", "cessationOfOperation", "--yes")
    crls = sorted((server_store.root / "crl").iterdir())
    revoked_serial = int(initialised.json("show", "urn:plant:revoked")["certificates"][-1]["serial"], 16)
    held = pki.parse_crl(crls[0].read_bytes())
    assert len(crls) == 1 and held.get_revoked_certificate_by_serial_number(revoked_serial) is not None  # in the one folder

    def files(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_file())

    port = free_port()
    server = o6.server.Server(
        port,
        certificate=server_store.root / "own/certs/certificate.der",
        privateKey=server_store.root / "own/private/private_key.pem",
        trustList=files(server_store.certs_dir(pki.TRUSTED)),
        issuerList=files(server_store.certs_dir(pki.ISSUER)),
        revocationList=files(server_store.crl_dir(pki.TRUSTED)),
        applicationUri="urn:plant:plc",
    )
    url = f"opc.tcp://127.0.0.1:{port}"
    clock = lambda: datetime.now(timezone.utc)  # noqa: E731

    async def connect(store, uri):
        served, _ = await endpoint_certificate(url)  # GetEndpoints also gives asyncua the anonymous token policy
        identity = identity_from_store(store, uri, peer_role="server", clock=clock)
        return served, await attempt_session(url, identity, "Basic256Sha256", served)

    with server:
        served, accepted = asyncio.run(connect(good, "urn:plant:good"))
        _, refused = asyncio.run(connect(revoked, "urn:plant:revoked"))
    assert served == server_store.own().certificate
    assert accepted.ok, accepted.as_dict()
    assert not refused.ok and refused.side == "server"
    assert refused.status == "BadSecurityChecksFailed", refused.as_dict()  # open62541 hides BadCertificateRevoked
