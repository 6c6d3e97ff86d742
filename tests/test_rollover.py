"""Issue 16 items 3 and 4: `certmgr ca rollover start|status|advance|finish` and `--emergency --yes`.

One home per module scenario (the phases run in order on it): ua-net and node-opcua stores, a real node-opcua
server, asyncua loopback servers. Between phases an old-CA and a new-CA application open secure channels in both
directions; after finish no store holds the old CA; after an emergency an old-CA identity is refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

import ca
import pki
from certmgr.opcua.channel import Identity, LoopbackServer, try_channel
from certmgr.opcua.identities import identity_from_store
from certmgr.opcua.validator import StoreValidator
from certmgr.services import rollover
from tests.conftest import Certmgr, make_identity
from tests.helpers import utc
from tests.test_field_trial_stores import NODE_SERVER_URI, node_server_installed, run_node_server, stop  # noqa: F401

# the phases run in order on one module-scoped plant: every test of this file on the same xdist worker
pytestmark = [pytest.mark.uses_db, pytest.mark.xdist_group("rollover")]


def fresh_ca_key(bits: int):
    """A CA key no leaf shares (the pool's keys cycle through leaves; node-opcua takes a leaf with its CA's key
    for self-signed)."""
    return ca.keys.rsa.generate_private_key(public_exponent=65537, key_size=bits)


@pytest.fixture(autouse=True)
def ca_keys(monkeypatch):
    monkeypatch.setattr(rollover, "_fresh_ca_key", fresh_ca_key)


def make_home(root: Path) -> Certmgr:
    cm = Certmgr(root / "home")
    cm("init", "--ca-name", "Plant 1 CA", "--org", "Plant 1", "--ca-key-size", "2048")
    for uri, store, layout, role in (("urn:plant:ua-server", "ua-server", "ua-net", "server"),
                                     ("urn:plant:ua-client", "ua-client", "ua-net", "client"),
                                     (NODE_SERVER_URI, "node-server", "node-opcua", "server"),
                                     ("urn:plant:node-client", "node-client", "node-opcua", "client")):
        cm("issue", "--app-uri", uri, "--store", str(root / store), "--layout", layout, "--role", role,
           "--dns", "localhost", "--ip", "127.0.0.1")
    return cm


def store_of(root: Path, name: str) -> pki.ApplicationStore:
    return pki.ApplicationStore(root / name, "node-opcua" if name.startswith("node") or name == "late" else "ua-net")


def ident(root: Path, name: str, uri: str, peer_role: str) -> Identity:
    return identity_from_store(store_of(root, name), uri, peer_role=peer_role, clock=utc)


def frozen(identity: Identity, root: Path, name: str, copy: Path) -> Identity:
    """The identity with its store's trust folders as they are now (an application that has not been renewed
    keeps its own files): a copy of the store validates its peers."""
    shutil.copytree(root / name, copy)
    validator = identity.validator
    return dataclasses.replace(identity, validator=StoreValidator(pki.ApplicationStore(copy, store_of(root, name).layout),
                                                                  validator.peer_role, utc))


def new_ca_application(cm: Certmgr, root: Path) -> tuple[Identity, Identity]:
    """An application signed by the next generation during `started` (what advance will issue): its key, a
    certificate of G2, a store that is a copy of a managed one (trusting both generations). (client, server)"""
    g2 = rollover_issuer(cm, "next")
    key = fresh_ca_key(2048)
    cert = ca.build_application_certificate(make_identity("urn:plant:g2-app", "g2 app"), key.public_key(), g2, now=utc())
    copy = root / "g2-app"
    if not copy.exists():
        shutil.copytree(root / "ua-client", copy)
    store = pki.ApplicationStore(copy)
    return (Identity("urn:plant:g2-app", cert, key, StoreValidator(store, "server", utc)),
            Identity("urn:plant:g2-app", cert, key, StoreValidator(store, "client", utc)))


def rollover_issuer(cm: Certmgr, role: str) -> ca.Issuer:
    """The issuer of the generation in ``role`` ("next", "signing", "previous"), its key from its folder."""
    from certmgr.context import AppContext

    ctx = AppContext(cm.home)
    try:
        row = getattr(rollover.read_generations(ctx), role)
        return rollover.issuer_of(ctx, row, cm.env["CERTMGR_CA_PASSPHRASE"].encode())
    finally:
        ctx.close()


def connect(server: Identity, client: Identity):
    """One asyncua secure channel (Basic256Sha256 SignAndEncrypt): the server validates the client's certificate
    with its store, the client the server's with its own."""
    async def run():
        loopback = await LoopbackServer(["Basic256Sha256"]).start(server)
        try:
            return await try_channel(loopback.url, client, "Basic256Sha256", server_certificate=server.certificate_der,
                                     server_validator=server.validator)
        finally:
            await loopback.stop()

    return asyncio.run(run())


def node_session(url: str, client: Identity, attempts: int = 5):
    from certmgr.opcua.proofs import endpoint_certificate
    from certmgr.opcua.session import attempt_session

    async def run():
        result = None
        for _ in range(attempts):  # node-opcua reads its folders in the background after start
            served, _ = await endpoint_certificate(url)
            result = await attempt_session(url, client, "Basic256Sha256", served)
            if result.ok:
                return result
            await asyncio.sleep(1.5)
        return result

    return asyncio.run(run())


def ders_in(root: Path) -> set[bytes]:
    """Every certificate and CRL file's DER under ``root`` (stores hold DER and PEM)."""
    found = set()
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".der", ".crl", ".pem") and "private" not in path.parts:
            data = path.read_bytes()
            if b"PRIVATE KEY" in data:
                continue
            for block in (data.split(b"-----END CERTIFICATE-----") if b"BEGIN" in data else [data]):
                try:
                    obj = pki.parse_certificate(block + b"-----END CERTIFICATE-----\n" if b"BEGIN" in block else block)
                    found.add(obj.public_bytes(serialization.Encoding.DER))
                except ValueError:
                    pass
    return found


STORES = ("ua-server", "ua-client", "node-server", "node-client")


@pytest.fixture(scope="module")
def plant(tmp_path_factory, node_server_installed):  # noqa: F811  (the imported fixture)
    root = tmp_path_factory.mktemp("rollover")
    cm = make_home(root)
    state = {"cm": cm, "root": root, "saved": {}}
    yield state
    if "node" in state and state["node"][0].poll() is None:  # a failed test must not leave the server running
        stop(state["node"][0])


def test_start_is_refused_outside_a_home_and_status_says_none(plant):
    cm = plant["cm"]
    before = cm.json("ca", "rollover", "status")
    assert before["phase"] == "none" and before["new_ca"] is None and before["blocking"] == []
    assert before["applications"]["old_ca"] == 4
    refused = cm("ca", "rollover", "advance", code=2)
    assert "no rollover is in progress" in refused.stderr
    assert cm("ca", "rollover", "finish", code=2).exit_code == 2


def test_start_puts_the_next_generation_beside_the_current_ca_in_every_store(plant):
    cm, root = plant["cm"], plant["root"]
    g1 = pki.parse_certificate((cm.home / "ca" / "ca.der").read_bytes())
    started = cm.json("ca", "rollover", "start")
    assert started["phase"] == "started" and started["old_ca"] == pki.thumbprint(g1)
    g2_file = cm.home / "ca" / "generations" / "G2" / "ca.der"
    g2 = pki.parse_certificate(g2_file.read_bytes())
    assert started["new_ca"] == pki.thumbprint(g2) and pki.common_name(g2) == "Plant 1 CA G2"
    assert (cm.home / "ca" / "ca.der").read_bytes() == g1.public_bytes(serialization.Encoding.DER)  # G1 still signs
    # its own key, encrypted with the CA passphrase, 0600; the same profile; AKI with the key id only
    key_file = cm.home / "ca" / "generations" / "G2" / "private" / "ca-key.pem"
    assert b"ENCRYPTED PRIVATE KEY" in key_file.read_bytes() and key_file.stat().st_mode & 0o777 == 0o600
    assert ca.load_private_key_pem(key_file.read_bytes(), cm.env["CERTMGR_CA_PASSPHRASE"].encode()).key_size == 2048
    aki = g2.extensions.get_extension_for_class(ca.profile.x509.AuthorityKeyIdentifier).value
    assert aki.authority_cert_issuer is None and aki.authority_cert_serial_number is None
    assert g2.extensions.get_extension_for_class(ca.profile.x509.BasicConstraints).value.ca
    for name in STORES + ("verifier",):
        store = store_of(root, name) if name != "verifier" else pki.ApplicationStore(cm.home / "verifier")
        trusted = {pki.thumbprint(c.value) for c in store.certificates(pki.TRUSTED)}
        assert {pki.thumbprint(g1), pki.thumbprint(g2)} <= trusted, name
        issuers = {c.value.issuer for c in store.crls(pki.TRUSTED)}
        assert issuers == {g1.subject, g2.subject}, name  # a CRL per generation, each filed under its own name
    # repeatable: a second start changes nothing and makes no third CA
    again = cm.json("ca", "rollover", "start")
    assert again["new_ca"] == started["new_ca"] and not (cm.home / "ca" / "generations" / "G3").exists()
    assert [r[0] for r in cm.sql("SELECT role FROM authorities ORDER BY generation")] == ["signing", "next"]
    status = cm.json("ca", "rollover", "status")
    assert status["phase"] == "started" and status["blocking"] == [], status
    assert status["applications"] == {"old_ca": 4, "new_ca": 0}
    # an application issued during the overlap (by the old CA) trusts both generations from its first certificate
    cm("issue", "--app-uri", "urn:plant:late", "--store", str(root / "late"), "--layout", "node-opcua", "--role", "client")
    late = pki.ApplicationStore(root / "late", "node-opcua")
    assert late.holds_certificate(g1, pki.TRUSTED) and late.holds_certificate(g2, pki.TRUSTED)
    assert late.ca_crl_files(g2, pki.TRUSTED) and late.own().certificate.issuer == g1.subject


def test_during_overlap_old_and_new_ca_applications_connect_both_ways(plant):
    cm, root = plant["cm"], plant["root"]
    old_server = ident(root, "ua-server", "urn:plant:ua-server", "client")
    old_client = ident(root, "ua-client", "urn:plant:ua-client", "server")
    new_client, new_server = new_ca_application(cm, root)
    assert connect(old_server, new_client).ok
    assert connect(new_server, old_client).ok
    process, port = run_node_server(root / "node-server", root / "node-started.log")
    plant["node"] = (process, port)
    url = f"opc.tcp://127.0.0.1:{port}"
    assert node_session(url, new_client).ok  # node-opcua (old CA) <-> new-CA client
    assert node_session(url, ident(root, "node-client", "urn:plant:node-client", "server")).ok
    # keep old-CA identities with their stores as they are now: they play the applications left behind
    plant["saved"]["old_client"] = frozen(old_client, root, "ua-client", root / "saved-ua-client")
    plant["saved"]["old_server"] = frozen(old_server, root, "ua-server", root / "saved-ua-server")
    plant["saved"]["new_client"] = new_client


def test_advance_waits_for_every_live_endpoint_to_trust_the_new_ca(plant):
    """A peer server still without the new CA (its PKI folder was copied before start) blocks advance; the probe
    with a new-CA identity tells which. Once it is gone, nothing blocks."""
    cm, root = plant["cm"], plant["root"]
    g2 = pki.parse_certificate((cm.home / "ca" / "generations" / "G2" / "ca.der").read_bytes())
    behind = root / "behind-server"
    shutil.copytree(root / "node-server", behind)
    behind_store = pki.ApplicationStore(behind, "node-opcua")
    for kind in (pki.TRUSTED, pki.ISSUER):
        for loaded in behind_store.certificates(kind):
            if loaded.value is not None and pki.thumbprint(loaded.value) == pki.thumbprint(g2):
                loaded.path.unlink()
        for path in behind_store.ca_crl_files(g2, kind):
            path.unlink()
    process, port = run_node_server(behind, root / "node-behind.log")
    try:
        _, live_port = plant["node"]
        for p in (port, live_port):
            cm("peer", "add", "--endpoint", f"opc.tcp://127.0.0.1:{p}")
        status = cm.json("ca", "rollover", "status")
        probes = {p["endpoint"]: p["trusts_new_ca"] for p in status["probes"]}
        assert probes == {f"opc.tcp://127.0.0.1:{port}": False, f"opc.tcp://127.0.0.1:{live_port}": True}, status
        assert len(status["blocking"]) == 1 and f":{port}: refuses a certificate of the new CA" in status["blocking"][0]
        refused = cm("ca", "rollover", "advance", code=1)
        assert "advance is blocked" in refused.stderr
        assert cm.json("ca", "rollover", "status")["phase"] == "started"
    finally:
        stop(process)
    cm("peer", "remove", f"opc.tcp://127.0.0.1:{port}", "--yes")
    assert cm.json("ca", "rollover", "status")["blocking"] == []


def test_advance_reissues_every_application_under_the_new_ca(plant):
    cm, root = plant["cm"], plant["root"]
    g2_der = (cm.home / "ca" / "generations" / "G2" / "ca.der").read_bytes()
    old_keys = {n: store_of(root, n).own().certificate.public_key().public_numbers() for n in STORES}
    advanced = cm.json("ca", "rollover", "advance")
    assert advanced["phase"] == "advanced" and {r["outcome"] for r in advanced["renewals"]} == {"renewed"}
    assert len(advanced["renewals"]) == 6  # five applications and certmgr's verifier
    assert all(any(ch["ok"] for ch in r["channels"]) for r in advanced["renewals"])  # proven on real channels
    assert (cm.home / "ca" / "ca.der").read_bytes() == g2_der
    g2 = pki.parse_certificate(g2_der)
    for name in STORES:
        own = store_of(root, name).own().certificate
        assert own.issuer == g2.subject and pki.cert_signed_by(own, g2), name
        assert own.public_key().public_numbers() != old_keys[name]
    rows = cm.sql("SELECT c.status, a.generation FROM certificates c JOIN authorities a ON a.id = c.authority_id "
                  "JOIN applications p ON p.id = c.application_id WHERE p.app_uri = 'urn:plant:ua-client' ORDER BY c.id")
    assert [(s, g) for s, g in rows] == [("superseded", 1), ("active", 2)]
    status = cm.json("ca", "rollover", "status")
    assert status["applications"] == {"old_ca": 0, "new_ca": 5} and status["blocking"] == []
    # both CRLs stay signed and published; a revocation of an old-CA certificate goes on the old CA's CRL
    assert cm.json("ca", "rollover", "advance")["renewals"] == []  # repeatable: nothing left to re-issue


def test_after_advance_old_and_new_ca_applications_connect_both_ways(plant):
    root = plant["root"]
    old_client, old_server = plant["saved"]["old_client"], plant["saved"]["old_server"]
    new_server = ident(root, "ua-server", "urn:plant:ua-server", "client")
    new_client = ident(root, "ua-client", "urn:plant:ua-client", "server")
    assert connect(new_server, old_client).ok
    assert connect(old_server, new_client).ok
    stop(plant["node"][0])  # the node-opcua server loads its renewed certificate at start
    process, port = run_node_server(root / "node-server", root / "node-advanced.log")
    plant["node"] = (process, port)
    url = f"opc.tcp://127.0.0.1:{port}"
    assert node_session(url, old_client).ok
    assert node_session(url, ident(root, "node-client", "urn:plant:node-client", "server")).ok


def test_old_ca_crl_stays_current_and_takes_its_revocations(plant):
    cm, root = plant["cm"], plant["root"]
    g1 = pki.parse_certificate((cm.home / "ca" / "generations" / "G1" / "ca.der").read_bytes())
    store = store_of(root, "ua-server")
    before = pki.crl_number(pki.parse_crl(store.newest_ca_crl_file(g1).read_bytes()))
    old = plant["saved"]["old_client"]
    cm("revoke", pki.thumbprint(old.certificate), "--reason", "keyCompromise", "--yes")
    crl = pki.parse_crl(store.newest_ca_crl_file(g1).read_bytes())
    assert pki.crl_number(crl) > before and pki.crl_signed_by(crl, g1)
    assert crl.get_revoked_certificate_by_serial_number(old.certificate.serial_number) is not None
    refused = connect(ident(root, "ua-server", "urn:plant:ua-server", "client"), old)
    assert (refused.ok, refused.status) == (False, "BadCertificateRevoked"), refused.as_dict()
    refreshed = cm.json("crl", "refresh", "--force")
    assert refreshed["ok"], refreshed


def test_finish_removes_the_old_ca_from_every_store_and_everything_still_connects(plant):
    cm, root = plant["cm"], plant["root"]
    g1 = pki.parse_certificate((cm.home / "ca" / "generations" / "G1" / "ca.der").read_bytes())
    g1_der = g1.public_bytes(serialization.Encoding.DER)
    finished = cm.json("ca", "rollover", "finish")
    assert finished["phase"] == "finished" and all(r["error"] is None for r in finished["removed"])
    for name in STORES + ("verifier", "late"):
        folder = root / name if name != "verifier" else cm.home / "verifier"
        assert g1_der not in ders_in(folder), name
        store = pki.ApplicationStore(folder, store_of(root, name).layout if name != "verifier" else "ua-net")
        assert not store.ca_crl_files(g1, pki.TRUSTED), name
    files = cm.home / "ca" / "generations" / "G1"
    assert (files / "last.crl").exists() and not (files / "private" / "ca-key.pem").exists()
    assert [r[0] for r in cm.sql("SELECT role FROM authorities ORDER BY generation")] == ["retired", "signing"]
    assert cm("ca", "rollover", "finish", code=2).exit_code == 2
    server = ident(root, "ua-server", "urn:plant:ua-server", "client")
    client = ident(root, "ua-client", "urn:plant:ua-client", "server")
    assert connect(server, client).ok
    stop(plant["node"][0])
    process, port = run_node_server(root / "node-server", root / "node-finished.log")
    try:
        url = f"opc.tcp://127.0.0.1:{port}"
        assert node_session(url, ident(root, "node-client", "urn:plant:node-client", "server")).ok
        assert node_session(url, client).ok
    finally:
        stop(process)
    status = cm.json("ca", "rollover", "status")
    assert (status["phase"], status["applications"]["new_ca"]) == ("finished", 5)


@pytest.fixture(scope="module")
def compromised(tmp_path_factory, node_server_installed):  # noqa: F811
    root = tmp_path_factory.mktemp("emergency")
    return {"cm": make_home(root), "root": root}


def test_emergency_needs_yes_and_writes_nothing_without_it(compromised):
    cm, root = compromised["cm"], compromised["root"]
    before = {n: store_of(root, n).file_listing() for n in STORES}
    refused = cm("ca", "rollover", "--emergency", code=2)
    assert len(refused.stderr.strip().splitlines()) == 1 and "--emergency --yes" in refused.stderr
    assert {n: store_of(root, n).file_listing() for n in STORES} == before
    assert not (cm.home / "ca" / "generations").exists()


def test_emergency_rekeys_everything_and_old_ca_identities_are_refused(compromised):
    cm, root = compromised["cm"], compromised["root"]
    g1 = pki.parse_certificate((cm.home / "ca" / "ca.der").read_bytes())
    g1_der = g1.public_bytes(serialization.Encoding.DER)
    old_client = frozen(ident(root, "ua-client", "urn:plant:ua-client", "server"), root, "ua-client", root / "saved-client")
    old_node_client = frozen(ident(root, "node-client", "urn:plant:node-client", "server"), root, "node-client",
                             root / "saved-node-client")
    old_keys = {n: store_of(root, n).own().certificate.public_key().public_numbers() for n in STORES}
    process, port = run_node_server(root / "node-server", root / "node-before.log")
    try:  # a peer endpoint certmgr holds no store of: the emergency report names it with the fix
        cm("peer", "add", "--endpoint", f"opc.tcp://127.0.0.1:{port}", "--name", "vendor-hmi")
        report = cm.json("ca", "rollover", "--emergency", "--yes")
    finally:
        stop(process)
    assert report["phase"] == "finished" and {r["outcome"] for r in report["renewals"]} == {"renewed"}
    assert report["revoked"] >= 4  # every unexpired certificate of the compromised CA
    g2 = pki.parse_certificate((cm.home / "ca" / "ca.der").read_bytes())
    assert pki.common_name(g2) == "Plant 1 CA G2"
    for name in STORES + ("verifier",):
        folder = root / name if name != "verifier" else cm.home / "verifier"
        assert g1_der not in ders_in(folder), name
        if name != "verifier":
            own = store_of(root, name).own().certificate
            assert pki.cert_signed_by(own, g2) and own.public_key().public_numbers() != old_keys[name], name
    assert any("vendor-hmi" in line and pki.thumbprint(g1) in line for line in report["unreached"]), report["unreached"]
    assert not (cm.home / "ca" / "generations" / "G1" / "private" / "ca-key.pem").exists()
    revoked = cm.sql("SELECT count(*) FROM certificates c JOIN authorities a ON a.id = c.authority_id "
                     "WHERE a.generation = 1 AND c.revocation_reason = 'cACompromise'")[0][0]
    assert revoked == report["revoked"]
    # an application still holding its old-CA certificate is refused by every managed server
    server = ident(root, "ua-server", "urn:plant:ua-server", "client")
    refused = connect(server, old_client)
    assert not refused.ok and refused.side == "server", refused.as_dict()
    assert connect(server, ident(root, "ua-client", "urn:plant:ua-client", "server")).ok
    process, port = run_node_server(root / "node-server", root / "node-emergency.log")
    try:
        url = f"opc.tcp://127.0.0.1:{port}"
        assert node_session(url, ident(root, "node-client", "urn:plant:node-client", "server")).ok
        old = node_session(url, old_node_client, attempts=1)
        assert not old.ok, old.as_dict()
    finally:
        stop(process)
    again = cm.json("ca", "rollover", "--emergency", "--yes")  # a second emergency makes G3: each run is a new CA
    assert pki.common_name(pki.parse_certificate((cm.home / "ca" / "ca.der").read_bytes())) == "Plant 1 CA G3"
    assert again["phase"] == "finished"


# crash safety: real certmgr processes SIGKILLed before a chosen file or database mutation (tests/kill/shim.c) ----


@pytest.fixture(scope="module")
def killable(tmp_path_factory):
    from tests.kill import runner

    root = tmp_path_factory.mktemp("rollover-kill") / "ws"
    root.mkdir()
    cm = Certmgr(root / "home")
    cm.env["CERTMGR_CA_PASSPHRASE"] = runner.PASSPHRASE  # what the harness's child processes are given
    cm("init", "--ca-name", "Kill CA", "--ca-key-size", "2048")
    for uri, name, layout in (("urn:kill:ua", "ua", "ua-net"), ("urn:kill:node", "node", "node-opcua")):
        cm("issue", "--app-uri", uri, "--store", str(root / name), "--layout", layout, "--dns", "localhost", "--ip", "127.0.0.1")
    return {"cm": cm, "root": root, "shim": runner.build_shim(tmp_path_factory.mktemp("shim"))}


def killed_then_rerun(ws, args: list[str], pick) -> tuple[str, object]:
    """Run ``certmgr ARGS`` once logging its mutations (on a copy put back afterwards), SIGKILL a second run before
    the mutation ``pick`` chooses from that log, then run it again: returns (the point, the final run)."""
    from tests.kill.runner import run_certmgr

    root, home = ws["root"], ws["root"] / "home"
    pristine = root.parent / "pristine"
    shutil.rmtree(pristine, ignore_errors=True)
    shutil.copytree(root, pristine, symlinks=True)
    logged = run_certmgr(home, args, shim=ws["shim"], log=root.parent / "mutations.log")
    assert logged.returncode == 0, logged.stderr
    k, point = pick(logged.mutations)
    shutil.rmtree(root)
    shutil.copytree(pristine, root, symlinks=True)
    cut = run_certmgr(home, args, shim=ws["shim"], kill_at=k)
    assert cut.killed, (point, cut.stderr)
    return point, cut


def first(pattern: str, after: str | None = None):
    def pick(mutations: list[str]) -> tuple[int, str]:
        seen = after is None
        for line in mutations:
            seen = seen or after in line
            if seen and pattern in line:
                return int(line.split()[0]), line
        raise AssertionError(f"no mutation matching {pattern!r} in:\n" + "\n".join(mutations))

    return pick


def rerun(ws, args: list[str]):
    from tests.kill.runner import run_certmgr

    done = run_certmgr(ws["root"] / "home", args + ["--json"])
    assert done.returncode == 0, done.stderr
    import json

    return json.loads(done.stdout)


def test_killed_start_is_completed_by_running_start_again(killable):
    ws = killable
    point, _ = killed_then_rerun(ws, ["ca", "rollover", "start"], first("ws/ua/trusted/certs/Kill CA G2", after="G2/ca.der"))
    result = rerun(ws, ["ca", "rollover", "start"])
    assert result["phase"] == "started" and result["blocking"] == [], (point, result)
    assert [r[0] for r in ws["cm"].sql("SELECT role FROM authorities ORDER BY generation")] == ["signing", "next"]
    g2 = pki.parse_certificate((ws["root"] / "home" / "ca" / "generations" / "G2" / "ca.der").read_bytes())
    for name, layout in (("ua", "ua-net"), ("node", "node-opcua")):
        assert pki.ApplicationStore(ws["root"] / name, layout).holds_certificate(g2, pki.TRUSTED), (point, name)


def test_killed_advance_at_the_switch_is_refused_elsewhere_and_completed_by_advance(killable):
    ws = killable
    home = ws["root"] / "home"
    # killed after the new key replaced the signing key and before ca.der did: the marker holds every other command
    point, _ = killed_then_rerun(ws, ["ca", "rollover", "advance"], first(str(home / "ca" / "ca.der"), after="rollover.switching"))
    assert (home / "ca" / "rollover.switching").exists(), point
    held = ws["cm"]("list", code=2)
    assert "run `certmgr ca rollover advance` again" in held.stderr and len(held.stderr.strip().splitlines()) == 1
    result = rerun(ws, ["ca", "rollover", "advance"])
    assert result["phase"] == "advanced" and result["applications"] == {"old_ca": 0, "new_ca": 2}, (point, result)
    assert not (home / "ca" / "rollover.switching").exists()
    g2 = pki.parse_certificate((home / "ca" / "ca.der").read_bytes())
    assert ca.key_matches_certificate(ca.load_private_key_pem((home / "ca" / "private" / "ca-key.pem").read_bytes(),
                                                              ws["cm"].env["CERTMGR_CA_PASSPHRASE"].encode()), g2.public_key())
    assert ws["cm"].sql("SELECT count(*) FROM certificates WHERE status = 'pending'")[0][0] == 0


def test_killed_finish_is_completed_by_finish(killable):
    ws = killable
    home = ws["root"] / "home"
    g1 = pki.parse_certificate((home / "ca" / "generations" / "G1" / "ca.der").read_bytes())
    point, _ = killed_then_rerun(ws, ["ca", "rollover", "finish"], first("unlink", after="trusted/certs"))
    result = rerun(ws, ["ca", "rollover", "finish"])
    assert result["phase"] == "finished", (point, result)
    for name, layout in (("ua", "ua-net"), ("node", "node-opcua")):
        store = pki.ApplicationStore(ws["root"] / name, layout)
        assert not store.holds_certificate(g1, pki.TRUSTED) and not store.ca_crl_files(g1, pki.TRUSTED), (point, name)


def test_killed_emergency_is_completed_by_running_it_again(killable):
    """After the finished rollover above: an emergency (G3) killed while it destroys the compromised G2 key, after
    G2's final CRL and before its retirement is recorded."""
    ws = killable
    home = ws["root"] / "home"
    g2 = pki.parse_certificate((home / "ca" / "ca.der").read_bytes())
    args = ["ca", "rollover", "--emergency", "--yes"]
    point, _ = killed_then_rerun(ws, args, first("unlink", after="G2/private/.certmgr-destroy"))
    result = rerun(ws, args)
    assert result["phase"] == "finished" and result["applications"] == {"old_ca": 0, "new_ca": 2}, (point, result)
    assert pki.common_name(pki.parse_certificate((home / "ca" / "ca.der").read_bytes())) == "Kill CA G3"
    assert list((home / "ca" / "generations" / "G2" / "private").glob("*key*")) == []  # no key, whole or half-erased
    assert not list((home / "ca" / "generations" / "G2" / "private").glob(".certmgr-destroy*"))
    for name, layout in (("ua", "ua-net"), ("node", "node-opcua")):
        store = pki.ApplicationStore(ws["root"] / name, layout)
        assert not store.holds_certificate(g2, pki.TRUSTED), (point, name)
    roles = [r[0] for r in ws["cm"].sql("SELECT role FROM authorities ORDER BY generation")]
    assert roles == ["retired", "retired", "signing"], (point, roles)


def test_start_writes_the_new_ca_into_push_servers_trust_lists(initialised, tmp_path):
    """A push-deployed node-opcua server (tests/apps/node_push, node-opcua 2.157) gets the new CA through Part 12
    AddCertificate, beside the current CA. It ignores the TrustList Write that carries the new CA's CRL: start says
    so, and the probe of its endpoint blocks advance until the CRL is placed in its PKI folder."""
    from tests.helpers import NODE_PUSH_DIR, NODE_PUSH_URI, NodeServer, npm_installed

    npm_installed(NODE_PUSH_DIR, "node-opcua-server-configuration")
    cm = initialised
    pki_dir = tmp_path / "node-pki"
    pki_dir.mkdir()
    verifier_crl = next((cm.home / "verifier" / "trusted" / "crl").iterdir())
    cm("store", "import", str(pki_dir), str(cm.home / "ca" / "ca.der"), "--trusted", "--crl", str(verifier_crl), "--layout", "node-opcua")
    cm("peer", "remove", str(pki_dir), "--yes")  # certmgr must reach this server over the network only
    server = NodeServer(pki_dir, {"admin": "admin-pw", "operator": "operator-pw"})
    try:
        admin = tmp_path / "admin.pass"
        admin.write_text("admin-pw\n")
        admin.chmod(0o600)
        cm("app", "add", "--app-uri", NODE_PUSH_URI, "--endpoint", server.url, "--deploy", "push", "--admin-user", "admin",
           "--admin-password-file", str(admin), "--dns", "localhost", "--ip", "127.0.0.1", "--name", "node push test")
        from certmgr.opcua.proofs import endpoint_certificate

        served, _ = asyncio.run(endpoint_certificate(server.url))
        cm("push", "--app-uri", NODE_PUSH_URI, "--accept-server", pki.thumbprint(served)[:16])
        g1 = pki.parse_certificate((cm.home / "ca" / "ca.der").read_bytes())
        started = cm.json("ca", "rollover", "start")
        [report] = started["push_servers"]
        steps = {s["step"]: s for s in report["steps"]}
        assert not report["ok"] and steps["TrustList"]["status"] == "Warning", report
        assert "without certmgr's new CA's CRL" in steps["TrustList"]["detail"]  # the certificate did arrive
        g2 = pki.parse_certificate((cm.home / "ca" / "generations" / "G2" / "ca.der").read_bytes())
        store = pki.ApplicationStore(pki_dir, "node-opcua")  # where node-opcua keeps what its TrustList holds
        assert store.holds_certificate(g1, pki.TRUSTED) and store.holds_certificate(g2, pki.TRUSTED)
        status = cm.json("ca", "rollover", "status")
        assert [(p["endpoint"], p["trusts_new_ca"]) for p in status["probes"]] == [(server.url, False)], status
        assert len(status["blocking"]) == 1 and server.url in status["blocking"][0], status
        # the fix the report names: the CRL into the server's PKI folder, where node-opcua picks it up
        g2_crl = next(p for p in (cm.home / "verifier" / "trusted" / "crl").iterdir() if "G2" in p.name)
        cm("store", "import", str(pki_dir), str(cm.home / "ca" / "generations" / "G2" / "ca.der"), "--trusted",
           "--crl", str(g2_crl), "--layout", "node-opcua")
        for _ in range(5):
            status = cm.json("ca", "rollover", "status")
            if not status["blocking"]:
                break
            time.sleep(1.5)
        assert status["blocking"] == [] and status["probes"][0]["trusts_new_ca"] is True, status
    finally:
        server.stop()
