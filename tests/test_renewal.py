"""Verified renewal: due selection, loopback proof on real sockets, atomic switch, rollback, dry run."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

import ca
import pki
from certmgr.opcua.channel import LoopbackServer
from certmgr.opcua.identities import identity_from_store
from tests.conftest import Certmgr
from tests.helpers import utc

ROOT = Path(__file__).resolve().parent.parent



@pytest.fixture
def fleet(initialised: Certmgr, tmp_path):
    """A server (ua-net), a client (node-opcua) and a both-roles app; all issued for 90 days."""
    initialised("issue", "--app-uri", "urn:plant:server", "--store", str(tmp_path / "server"), "--role", "server",
                "--dns", "localhost", "--ip", "127.0.0.1", "--days", "90")
    initialised("issue", "--app-uri", "urn:plant:client", "--store", str(tmp_path / "client"), "--role", "client",
                "--layout", "node-opcua", "--days", "90")
    initialised("issue", "--app-uri", "urn:plant:gateway", "--store", str(tmp_path / "gateway"), "--role", "both",
                "--days", "90", "--renew-before", "10d")
    return initialised


def travel(cm: Certmgr, days: float) -> datetime:
    moment = utc() + timedelta(days=days)
    cm.at(moment)
    return moment


def statuses(cm: Certmgr, uri: str) -> dict[str, str]:
    return {c["thumbprint"]: c["status"] for c in cm.json("show", uri)["certificates"]}


def test_due_certificates_are_renewed_and_proven_not_due_skipped(fleet: Certmgr, tmp_path, monkeypatch):
    old = {uri: fleet.json("show", uri)["active"]["thumbprint"] for uri in ("urn:plant:server", "urn:plant:client", "urn:plant:gateway")}
    old_server_key = pki.ApplicationStore(tmp_path / "server").read_own_key(pki.ApplicationStore(tmp_path / "server").own())
    travel(fleet, 65)  # 25 days left: inside a third of 90 days, outside the gateway's 10-day window
    results = {r["app_uri"]: r for r in fleet.json("renew", "--all-due")}
    assert results["urn:plant:server"]["outcome"] == "renewed"
    assert results["urn:plant:client"]["outcome"] == "renewed"
    assert "urn:plant:gateway" not in results  # not due: --all-due does not even list it
    explicit = fleet.json("renew", "--app-uri", "urn:plant:gateway")
    assert explicit[0]["outcome"] == "skipped" and "not due" in explicit[0]["reason"]

    for uri, store_dir, layout in (("urn:plant:server", "server", "ua-net"), ("urn:plant:client", "client", "node-opcua")):
        result = results[uri]
        assert result["new_thumbprint"] != old[uri]
        channels = result["channels"]
        assert len(channels) == 3 and all(c["ok"] for c in channels), channels
        assert {c["policy"] for c in channels} == {"Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"}
        store = pki.ApplicationStore(tmp_path / store_dir, layout)
        pairs = store.own_pairs()
        assert [p.thumbprint for p in pairs] == [result["new_thumbprint"]]
        assert sorted(p.name for p in store.own_private_dir.iterdir()) == [store.layout.own_key_name(pairs[0].certificate)]
        key = ca.load_private_key_pem(store.read_own_key(pairs[0]))
        assert ca.key_matches_certificate(key, pairs[0].certificate.public_key())
        assert store.history_pair(old[uri]) is not None
        assert not store.staged_dir.exists() or list(store.staged_dir.iterdir()) == []
        assert statuses(fleet, uri) == {old[uri]: "superseded", result["new_thumbprint"]: "active"}
    new_server_key = pki.ApplicationStore(tmp_path / "server").read_own_key(pki.ApplicationStore(tmp_path / "server").own())
    assert new_server_key != old_server_key
    assert fleet.json("renew", "--all-due") == []  # renewed ones are no longer due


def test_renewal_keeps_subject_and_takes_updated_hosts(fleet: Certmgr, tmp_path):
    fleet("app", "update", "--app-uri", "urn:plant:server", "--dns", "opc.plant.local", "--ip", "10.1.2.3")
    result = fleet.json("renew", "--app-uri", "urn:plant:server", "--force")[0]
    assert result["outcome"] == "renewed"
    cert = pki.ApplicationStore(tmp_path / "server").own().certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["opc.plant.local"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:plant:server"]
    assert cert.subject.rfc4514_string() == "CN=server,O=Plant"
    assert ca.check_application_certificate(cert, app_uri="urn:plant:server") == []


def listing(cm: Certmgr, tmp_path: Path) -> tuple:
    stores = {name: pki.ApplicationStore(tmp_path / name, layout).file_listing() for name, layout in
              (("server", "ua-net"), ("client", "node-opcua"), ("gateway", "ua-net"))}
    rows = cm.sql("SELECT id, status, thumbprint, renew_after FROM certificates ORDER BY id")
    crls = cm.sql("SELECT number FROM crls")
    return stores, rows, crls


def test_dry_run_changes_nothing(fleet: Certmgr, tmp_path, monkeypatch):
    before = listing(fleet, tmp_path)
    everything = [fleet.sql(f"SELECT * FROM {table}") for table in ("meta", "applications", "audit_events")]
    # a new default window: a real run would recompute renew_after; the dry run sees it and writes nothing
    toml = fleet.home / "certmgr.toml"
    toml.write_text(toml.read_text().replace('# renew_before = "30d"', 'renew_before = "89d"'))
    travel(fleet, 2)
    early = fleet.json("renew", "--all-due", "--dry-run")
    assert {r["app_uri"] for r in early if r["outcome"] == "would-renew"} == {"urn:plant:server", "urn:plant:client"}
    assert listing(fleet, tmp_path) == before
    assert [fleet.sql(f"SELECT * FROM {table}") for table in ("meta", "applications", "audit_events")] == everything
    toml.write_text(toml.read_text().replace('renew_before = "89d"', '# renew_before = "30d"'))
    travel(fleet, 70)
    plan = fleet.json("renew", "--all-due", "--dry-run")
    assert {r["app_uri"] for r in plan} == {"urn:plant:server", "urn:plant:client"}
    assert all(r["outcome"] == "would-renew" and "inside the renewal window" in r["reason"] for r in plan)
    rehearsal = fleet.json("renew", "--all-due", "--dry-run", "--at", (utc() + timedelta(days=85)).isoformat())
    assert {r["app_uri"] for r in rehearsal} == {"urn:plant:server", "urn:plant:client", "urn:plant:gateway"}
    assert listing(fleet, tmp_path) == before
    assert "--dry-run" in fleet("renew", "--all-due", "--at", "2027-01-01", code=2).stderr


def test_rollback_when_the_stores_ca_is_gone(fleet: Certmgr, tmp_path):
    store = pki.ApplicationStore(tmp_path / "server")
    old = store.own().thumbprint
    ca_files = {p: p.read_bytes() for p in store.certs_dir(pki.TRUSTED).iterdir()}
    for path in ca_files:
        path.unlink()
    before = {k: v for k, v in store.file_listing().items() if not k.startswith((".certmgr", "own/history"))}
    result = fleet("renew", "--app-uri", "urn:plant:server", "--force", "--json", code=1)
    outcome = result.json()[0]
    assert outcome["outcome"] == "failed" and outcome["failed_stage"] == "verify"
    assert "BadCertificateChainIncomplete" in outcome["reason"] and "server side" in outcome["reason"]
    assert "renewal(s) failed" in result.stderr
    after = {k: v for k, v in store.file_listing().items() if not k.startswith((".certmgr", "own/history"))}
    assert after == before and store.own().thumbprint == old
    assert statuses(fleet, "urn:plant:server") == {old: "active", outcome["new_thumbprint"]: "failed"}
    failed_serial = fleet.json("show", outcome["new_thumbprint"])["certificates"][-1]["serial"]
    # the failed certificate is revoked and the CRL that says so reached the stores
    crl = x509.load_der_x509_crl(next(pki.ApplicationStore(tmp_path / "gateway").crl_dir(pki.TRUSTED).iterdir()).read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(failed_serial, 16)) is not None
    app_row = fleet.sql("SELECT last_renewal_status, renewal_claimed_by FROM applications WHERE app_uri = 'urn:plant:server'")
    assert app_row == [("failed", None)]
    # the old certificate still works: with its CA back, a secure channel with it opens
    for path, data in ca_files.items():
        path.write_bytes(data)
    fleet("crl", "refresh")
    proof = fleet.json("verify", "--app-uri", "urn:plant:server", "--peer-app-uri", "urn:plant:client")
    assert proof["ok"] and all(c["ok"] for c in proof["channels"])


def test_rollback_when_the_verification_peer_refuses(fleet: Certmgr, tmp_path, monkeypatch):
    from certmgr.opcua import validator as validator_module

    client_store = pki.ApplicationStore(tmp_path / "client", "node-opcua")
    old = client_store.own().thumbprint
    real_check = validator_module.StoreValidator.check
    verifier_root = fleet.home / "verifier"

    def refusing(self, cert, app_uri):
        if self.store.root == verifier_root and pki.thumbprint(cert) != old:
            return pki.Validation("BadCertificateUntrusted", "forced refusal by the test")
        return real_check(self, cert, app_uri)

    monkeypatch.setattr(validator_module.StoreValidator, "check", refusing)
    outcome = fleet("renew", "--app-uri", "urn:plant:client", "--force", "--json", code=1).json()[0]
    assert outcome["failed_stage"] == "verify" and "BadCertificateUntrusted" in outcome["reason"]
    import json  # the failure's audit event keeps each channel's status code (the console's "last proof")
    (details,), = fleet.sql("SELECT details FROM audit_events WHERE action = 'renewal.fail'")
    channels = (json.loads(details) if isinstance(details, str) else details)["channels"]
    assert "BadCertificateUntrusted" in {c["status"] for c in channels} and all(c["policy"] for c in channels)
    monkeypatch.undo()
    assert client_store.own().thumbprint == old
    assert not client_store.staged_dir.exists() or list(client_store.staged_dir.iterdir()) == []
    proof = fleet.json("verify", "--app-uri", "urn:plant:client", "--peer-app-uri", "urn:plant:server")
    assert proof["ok"]


def test_failing_deploy_hook_rolls_back_and_hook_sees_variables(fleet: Certmgr, tmp_path):
    record = tmp_path / "hook.log"
    hook = f'env | grep ^CERTMGR_ | sort >> {record}; echo "$CERTMGR_ACTION" >> {record}; [ "$CERTMGR_ACTION" = rollback ] || exit 3'
    fleet("app", "update", "--app-uri", "urn:plant:gateway", "--deploy-hook", hook)
    store = pki.ApplicationStore(tmp_path / "gateway")
    old = store.own().thumbprint
    outcome = fleet("renew", "--app-uri", "urn:plant:gateway", "--force", "--json", code=1).json()[0]
    assert outcome["failed_stage"] == "hook" and "exited 3" in outcome["reason"]
    assert store.own().thumbprint == old
    assert statuses(fleet, "urn:plant:gateway")[old] == "active"
    text = record.read_text()
    assert f"CERTMGR_THUMBPRINT={outcome['new_thumbprint']}" in text and f"CERTMGR_OLD_THUMBPRINT={old}" in text
    assert "CERTMGR_APP_URI=urn:plant:gateway" in text and "CERTMGR_KEY_PATH=" in text
    assert text.strip().splitlines()[-1] == "rollback"
    assert "CERTMGR_CA_PASSPHRASE" not in text  # hooks never see the CA passphrase


def test_no_verify_is_audited(fleet: Certmgr):
    outcome = fleet.json("renew", "--app-uri", "urn:plant:gateway", "--force", "--no-verify")[0]
    assert outcome["outcome"] == "renewed" and outcome["channels"] == []
    actions = [row[0] for row in fleet.sql("SELECT action FROM audit_events ORDER BY id")]
    assert "renewal.verification_skipped" in actions and actions[-1] != "renewal.fail"


def test_forced_renewal_after_revocation(fleet: Certmgr, tmp_path):
    fleet("revoke", "--app-uri", "urn:plant:client", "--yes")
    skipped = fleet.json("renew", "--app-uri", "urn:plant:client")[0]
    assert skipped["outcome"] == "skipped" and "--force" in skipped["reason"]
    renewed = fleet.json("renew", "--app-uri", "urn:plant:client", "--force")[0]
    assert renewed["outcome"] == "renewed"
    assert fleet.json("show", "urn:plant:client")["active"]["thumbprint"] == renewed["new_thumbprint"]


def test_selection_errors(fleet: Certmgr):
    assert "--all-due" in fleet("renew", code=2).stderr
    assert "no application" in fleet("renew", "--app-uri", "urn:nope:x", code=2).stderr


def make_all_due(cm: Certmgr) -> None:
    """Time passing, without a clock: every active certificate's renewal window has opened."""
    from sqlalchemy import update

    import db

    engine = db.make_engine(cm.url)
    with engine.begin() as connection:
        connection.execute(
            update(db.Certificate).where(db.Certificate.status == db.CertStatus.ACTIVE).values(renew_after=utc() - timedelta(hours=1))
        )
    engine.dispose()


def run_cli(cm: Certmgr, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "certmgr", *args], env=cm.subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_two_renewals_at_once_renew_each_certificate_exactly_once(fleet: Certmgr, tmp_path):
    fleet("renew", "--all-due")  # computes renew_after for every row
    make_all_due(fleet)
    procs = [run_cli(fleet, "--json", "renew", "--all-due") for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    import json

    renewed = [r["app_uri"] for out, _ in outputs for r in json.loads(out) if r["outcome"] == "renewed"]
    verifier = next(r["app_uri"] for r in fleet.json("list") if r["internal"])
    assert sorted(renewed) == sorted(["urn:plant:server", "urn:plant:client", "urn:plant:gateway", verifier])
    per_app = fleet.sql(
        "SELECT a.app_uri, count(*) FROM certificates c JOIN applications a ON a.id = c.application_id "
        "WHERE c.status = 'active' GROUP BY a.app_uri"
    )
    assert all(count == 1 for _, count in per_app)
    superseded = fleet.sql("SELECT count(*) FROM certificates WHERE status = 'superseded'")[0][0]
    assert superseded == 4  # one renewal per application, not two


def test_live_proof_follows_the_server_and_fails_without_reload(fleet: Certmgr, tmp_path):
    port_file = tmp_path / "port"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.apps.reloading_server", str(tmp_path / "server"), "ua-net", "urn:plant:server", str(port_file)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for _ in range(300):
            if port_file.exists() and port_file.read_text():
                break
            assert server.poll() is None, server.stderr.read()
            asyncio.run(asyncio.sleep(0.05))
        endpoint = f"opc.tcp://127.0.0.1:{port_file.read_text()}/"
        fleet("app", "update", "--app-uri", "urn:plant:server", "--endpoint", endpoint, "--deploy-hook", f"kill -HUP {server.pid}")
        ok = fleet.json("renew", "--app-uri", "urn:plant:server", "--force", "--verify-timeout", "30")[0]
        assert ok["outcome"] == "renewed", ok
        live = [c for c in ok["channels"] if c.get("live")]
        assert live and all(c["ok"] for c in live)
        from certmgr.opcua.proofs import endpoint_certificate

        presented, _ = asyncio.run(endpoint_certificate(endpoint))
        assert pki.thumbprint(presented) == ok["new_thumbprint"]

        fleet("app", "update", "--app-uri", "urn:plant:server", "--deploy-hook", "true")  # a hook that reloads nothing
        failed = fleet("renew", "--app-uri", "urn:plant:server", "--force", "--verify-timeout", "3", "--json", code=1).json()[0]
        assert failed["failed_stage"] == "live" and "still presents" in failed["reason"]
        assert pki.ApplicationStore(tmp_path / "server").own().thumbprint == ok["new_thumbprint"]
        presented, _ = asyncio.run(endpoint_certificate(endpoint))
        assert pki.thumbprint(presented) == ok["new_thumbprint"]
        assert statuses(fleet, "urn:plant:server")[ok["new_thumbprint"]] == "active"
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_parallel_key_generation_gives_distinct_keys_of_each_size():
    from certmgr.services.keygen import generate_keys

    keys = generate_keys([2048, 2048, 3072], workers=2)
    assert [k.key_size for k in keys] == [2048, 2048, 3072]
    assert len({k.public_key().public_numbers().n for k in keys}) == 3


SERVICE_FAULT_CLIENT = """
import asyncio, sys
sys.path.insert(0, {root!r})
from asyncua import Client, ua
from certmgr.opcua.faults import install_service_fault_decoding
if sys.argv[1] == "decode":
    install_service_fault_decoding()
async def main():
    c = Client(sys.argv[2], timeout=5)
    c.application_uri = "urn:else:client"
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
    await c.set_security(SecurityPolicyBasic256Sha256, sys.argv[3], sys.argv[4], server_certificate=sys.argv[5])
    try:
        await c.connect()
        print("connected")
    except Exception as exc:
        print(type(exc).__name__, getattr(exc, "code", ""))
asyncio.run(main())
"""


def test_service_fault_at_open_secure_channel_is_decoded(fleet: Certmgr, tmp_path, foreign_ca, key_pool):
    """asyncua alone turns an OpenSecureChannel ServiceFault into a bare AssertionError; certmgr reports the code."""
    from asyncua import ua
    from cryptography.hazmat.primitives import serialization

    server = identity_from_store(pki.ApplicationStore(tmp_path / "server"), "urn:plant:server", peer_role="client", clock=utc)
    key = key_pool.get()
    stranger = ca.build_application_certificate(
        ca.ApplicationIdentity("urn:else:client", ca.SubjectFields("stranger", "x")), key.public_key(), foreign_ca, now=utc()
    )
    files = {"cert": stranger.public_bytes(serialization.Encoding.DER), "key": ca.private_key_pem(key),
             "server": server.certificate_der}
    for name, data in files.items():
        (tmp_path / f"{name}.bin").write_bytes(data)
    (tmp_path / "key.pem").write_bytes(files["key"])

    async def scenario():
        loopback = await LoopbackServer(["Basic256Sha256"]).start(server)
        try:
            outputs = []
            for mode in ("plain", "decode"):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", SERVICE_FAULT_CLIENT.format(root=str(ROOT)), mode, loopback.url,
                    str(tmp_path / "cert.bin"), str(tmp_path / "key.pem"), str(tmp_path / "server.bin"),
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                )
                out, _ = await asyncio.wait_for(proc.communicate(), 60)
                outputs.append(out.decode().strip().splitlines()[-1])
            return outputs
        finally:
            await loopback.stop()

    plain, decoded = asyncio.run(scenario())
    assert plain.startswith("AssertionError")
    assert decoded == f"BadCertificateChainIncomplete {ua.StatusCodes.BadCertificateChainIncomplete}"


def test_an_unexpected_error_mid_batch_leaves_nothing_half_done(fleet: Certmgr, tmp_path):
    """The verifier's key is unreadable: the proof phase raises. Nothing stays pending, staged or 'renewed'."""
    private = fleet.home / "verifier" / "own" / "private"
    aside = tmp_path / "private-aside"
    private.rename(aside)
    try:
        result = fleet("renew", "--app-uri", "urn:plant:server", "--force", "--json", code=1).json()[0]
    finally:
        aside.rename(private)
    assert result["outcome"] == "failed" and result["failed_stage"] == "internal"
    assert fleet.sql("SELECT count(*) FROM certificates WHERE status = 'pending'")[0][0] == 0
    failed = fleet.sql("SELECT revoked_at FROM certificates WHERE thumbprint = :t", t=result["new_thumbprint"])
    assert failed[0][0] is not None
    store = pki.ApplicationStore(tmp_path / "server")
    assert not store.staged_dir.exists() or list(store.staged_dir.iterdir()) == []
    assert fleet.sql("SELECT last_renewal_status, renewal_claimed_by FROM applications WHERE app_uri = 'urn:plant:server'") == [("failed", None)]


def test_one_failure_does_not_stop_the_batch(fleet: Certmgr, tmp_path, monkeypatch):
    """The server's store was moved away; the client in the same nightly batch is still renewed; exit 1."""
    old_client = fleet.json("show", "urn:plant:client")["active"]["thumbprint"]
    (tmp_path / "server").rename(tmp_path / "server.moved")
    travel(fleet, 70)
    result = fleet("renew", "--all-due", "--json", code=1)
    outcomes = {r["app_uri"]: r for r in result.json()}
    assert outcomes["urn:plant:server"]["outcome"] == "failed" and "missing" in outcomes["urn:plant:server"]["reason"]
    assert outcomes["urn:plant:client"]["outcome"] == "renewed"
    assert fleet.json("show", "urn:plant:client")["active"]["thumbprint"] != old_client
    assert pki.ApplicationStore(tmp_path / "client", "node-opcua").own().thumbprint == outcomes["urn:plant:client"]["new_thumbprint"]
    assert "urn:plant:gateway" not in outcomes or outcomes["urn:plant:gateway"]["outcome"] == "skipped"
