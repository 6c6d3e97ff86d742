"""Fleet trust (issue 15): peers, canary probes proving which CRL a live endpoint has in effect, CRLs
reaching peer stores, certificate tracking. Real asyncua servers and clients on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
import time
from datetime import datetime, timedelta, timezone

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

import ca
import pki
from certmgr.opcua.channel import Identity, LoopbackServer, try_channel
from certmgr.opcua.identities import identity_from_store
from tests.conftest import Certmgr
from tests.helpers import configure, der, smtp_channel, utc
from tests.test_push import node_push_installed  # noqa: F401  (fixture: npm ci of node-opcua once)


@pytest.fixture
def plant(initialised: Certmgr, tmp_path):
    initialised("issue", "--app-uri", "urn:plant:server", "--store", str(tmp_path / "server"), "--role", "server",
                "--dns", "localhost", "--ip", "127.0.0.1")
    initialised("issue", "--app-uri", "urn:plant:hmi", "--store", str(tmp_path / "hmi"), "--role", "client")
    return initialised


def server_identity(tmp_path, cache=None) -> Identity:
    identity = identity_from_store(pki.ApplicationStore(tmp_path / "server"), "urn:plant:server", peer_role="client", clock=utc)
    if cache is not None:
        identity.validator.cache = cache
    return identity


class LoadedOnce(pki.TrustCache):
    """A server that reads its trust list once, at start, and never again (open62541 "lists" mode)."""

    def __init__(self) -> None:
        super().__init__()
        self._frozen = None

    def material(self, store):
        if self._frozen is None:
            self._frozen = super().material(store)
        return self._frozen


def self_signed(key, days: float, cn: str = "Vendor Gateway", uri: str = "urn:vendor:gateway") -> x509.Certificate:
    now = utc()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )


def canary_serials(cm: Certmgr) -> dict[int, str]:
    rows = cm.sql("SELECT canaries.crl_number, certificates.serial_hex FROM canaries JOIN certificates "
                  "ON certificates.id = canaries.certificate_id")
    return {number: serial for number, serial in rows}


def test_every_crl_revokes_its_own_canary_which_never_works(plant: Certmgr, tmp_path):
    plant("revoke", "--app-uri", "urn:plant:hmi", "--reason", "cessationOfOperation", "--yes")
    serials = canary_serials(plant)
    assert sorted(serials) == [1, 2]
    # The canary of CRL 2 is on CRL 2 in every registered store (and canary 1 too), never on CRL 1.
    for store_dir in ("server", "hmi"):
        store = pki.ApplicationStore(tmp_path / store_dir)
        crls = [pki.parse_crl(loaded.path.read_bytes()) for loaded in store.crls(pki.TRUSTED)]
        newest = max(crls, key=pki.crl_number)
        assert pki.crl_number(newest) == 2
        listed = {format(r.serial_number, "X") for r in newest}
        assert {serials[1].upper(), serials[2].upper()} <= listed
    first = pki.parse_crl(plant.sql("SELECT der FROM crls WHERE number = 1")[0][0])
    assert serials[2].upper() not in {format(r.serial_number, "X") for r in first}
    # Keys only in the home, 0600; list and check do not show canaries.
    key_files = [Path(f) for (f,) in plant.sql("SELECT key_file FROM canaries ORDER BY crl_number")]
    assert len(key_files) == 2
    for key_file in key_files:
        assert key_file.parent == plant.home / "canary" and stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert all("canary" not in row["app_uri"] for row in plant.json("list"))
    # The canary can never work as an identity: a running server refuses it as revoked.
    from certmgr.context import AppContext
    from certmgr.services.canary import usable_canaries

    canaries = dict(usable_canaries(AppContext(plant.home), utc()))
    server = server_identity(tmp_path)

    async def scenario():
        loopback = await LoopbackServer(["Basic256Sha256"]).start(server)
        try:
            return [await try_channel(loopback.url, canaries[n], "Basic256Sha256", server_certificate=server.certificate_der)
                    for n in (1, 2)]
        finally:
            await loopback.stop()

    results = asyncio.run(scenario())
    assert [(r.ok, r.status) for r in results] == [(False, "BadCertificateRevoked")] * 2


def test_expired_canary_keys_and_orphans_are_destroyed_by_the_next_crl(plant: Certmgr):
    """A canary past its notAfter left the CRLs and can prove nothing: its key goes with the next CRL signed. A key
    with no canary row (a signer killed before its transaction) goes once it is an hour old, never sooner."""
    plant("crl", "refresh", "--force")
    first = [Path(f) for (f,) in plant.sql("SELECT key_file FROM canaries ORDER BY crl_number")]
    assert len(first) == 2 and all(f.exists() for f in first)
    old_orphan, young_orphan = plant.home / "canary" / "ORPHANOLD.pem", plant.home / "canary" / "ORPHANYOUNG.pem"
    for orphan in (old_orphan, young_orphan):
        orphan.write_bytes(b"not a real key")
        orphan.chmod(0o600)
    hours_ago = datetime.now().timestamp() - 2 * 3600
    os.utime(old_orphan, (hours_ago, hours_ago))
    ends = [datetime.fromisoformat(str(v)).replace(tzinfo=timezone.utc) for (v,) in plant.sql(
        "SELECT certificates.not_after FROM canaries JOIN certificates ON certificates.id = canaries.certificate_id")]
    not_after = max(ends)
    plant.at(min(ends) - timedelta(hours=1))("crl", "refresh", "--force")
    assert all(f.exists() for f in first)  # still within validity: kept
    assert not old_orphan.exists() and young_orphan.exists()
    plant.at(not_after + timedelta(minutes=1))("crl", "refresh", "--force")
    assert not any(f.exists() for f in first)
    newest = Path(plant.sql("SELECT key_file FROM canaries ORDER BY crl_number DESC")[0][0])
    assert newest.exists()  # the canary of the CRL just signed keeps its key


def test_probe_proves_the_crl_in_effect_and_catches_a_server_that_never_reloads(plant: Certmgr, tmp_path):
    async def scenario():
        live = await LoopbackServer(["Basic256Sha256"]).start(server_identity(tmp_path))
        frozen = await LoopbackServer(["Basic256Sha256"]).start(server_identity(tmp_path, LoadedOnce()))
        try:
            for url in (live.url, frozen.url):
                await asyncio.to_thread(plant, "peer", "add", "--endpoint", url)
            first = await asyncio.to_thread(plant.json, "probe", "--all")
            # Prime the frozen server's trust list with CRL 1, then revoke: CRL 2 reaches its store but not its memory.
            revoked = await asyncio.to_thread(plant, "revoke", "--app-uri", "urn:plant:hmi", "--reason", "cessationOfOperation", "--yes")
            after = await asyncio.to_thread(plant, "probe", "--all", "--json", code=1)
            alerts = list(probe_subjects(AppContext(plant.home), utc()))
            await frozen.use(server_identity(tmp_path, LoadedOnce()))  # "restart": the trust list is read again
            restarted = await asyncio.to_thread(plant.json, "probe", "--peer", frozen.url)
            return live.url, frozen.url, first, revoked, after.json(), alerts, restarted
        finally:
            await live.stop()
            await frozen.stop()

    from certmgr.context import AppContext
    from certmgr.services.probe import probe_subjects

    live_url, frozen_url, first, revoked, after, alerts, restarted = asyncio.run(scenario())
    assert {(o["endpoint"], o["trusts_ca"], o["crl_effective"], o["crl_current"]) for o in first} == {
        (live_url, True, 1, 1), (frozen_url, True, 1, 1)}
    # revoke probes every endpoint itself (unless --no-probe) and names the one that did not take the CRL
    assert f"revocation not effective on {frozen_url}" in revoked.stderr and live_url not in revoked.stderr
    by_url = {o["endpoint"]: o for o in after}
    assert (by_url[live_url]["crl_effective"], by_url[live_url]["ok"]) == (2, True)
    stale = by_url[frozen_url]
    assert (stale["trusts_ca"], stale["crl_effective"], stale["crl_current"], stale["ok"]) == (True, 1, 2, False)
    assert "restart" in stale["fix"] and "BadCertificateRevoked" in stale["statuses"]
    assert [(o["crl_effective"], o["ok"]) for o in restarted] == [(2, True)]
    assert [(a.name, a.level) for a in alerts] == [(frozen_url, "critical")]
    assert "revocation not effective on" in alerts[0].reason
    assert [s.level for s in probe_subjects(AppContext(plant.home), utc())] == []  # every endpoint is proven again
    shown = plant.json("peer", "show", frozen_url)
    assert shown["last_probe"]["crl_effective"] == 2
    rows = {r["endpoint"]: r for r in plant.json("fleet", "status") if r["kind"] == "peer"}
    assert rows[frozen_url]["crl_effective"] == 2 and rows[frozen_url]["trusts_ca"] is True


def test_probe_of_an_endpoint_that_does_not_trust_the_ca_and_of_one_that_is_down(plant: Certmgr, tmp_path, key_pool):
    key = key_pool.get(2048)
    stranger = Identity("urn:vendor:gateway", self_signed(key, 365), key, None)

    class RefuseAll:  # a server whose trust list does not hold certmgr's CA
        async def __call__(self, cert, app_description):
            from asyncua.ua.uaerrors import BadCertificateUntrusted

            raise BadCertificateUntrusted()

    async def scenario():
        server = await LoopbackServer(["Basic256Sha256"], validate_at_open=False).start(stranger)
        server._server.set_certificate_validator(RefuseAll())
        try:
            await asyncio.to_thread(plant, "peer", "add", "--endpoint", server.url)
            return server.url, await asyncio.to_thread(plant, "probe", "--peer", server.url, "--json", code=1)
        finally:
            await server.stop()

    url, refused = asyncio.run(scenario())
    outcome = refused.json()[0]
    assert (outcome["trusts_ca"], outcome["crl_effective"]) == (False, None)
    assert "trust-exchange" in outcome["fix"]
    down = plant("probe", "--peer", url, "--json", code=1).json()[0]
    assert down["trusts_ca"] is None and "did not answer" in down["fix"]
    bad = plant("probe", code=2)
    assert "pass --all" in bad.stderr


def test_crl_reaches_a_peer_store_and_store_status_flags_a_stale_one(plant: Certmgr, tmp_path):
    from certmgr.context import AppContext
    from certmgr.opcua.validator import StoreValidator

    ctx = AppContext(plant.home)
    ca_cert = pki.parse_certificate(ctx.home.ca_cert_path.read_bytes())
    (tmp_path / "ca.der").write_bytes(der(ca_cert))
    (tmp_path / "crl1.crl").write_bytes(plant.sql("SELECT der FROM crls WHERE number = 1")[0][0])
    vendor = pki.ApplicationStore(tmp_path / "vendor")
    vendor.create()
    imported = plant("store", "import", str(vendor.root), str(tmp_path / "ca.der"), "--trusted", "--crl", str(tmp_path / "crl1.crl"))
    assert "registered" in imported.stdout and "peer store" in imported.stdout
    peers = plant.json("peer", "list")
    assert [p["store"] for p in peers] == [str(vendor.root.resolve())]
    assert {"endpoint", "store", "thumbprint", "not_after"} <= set(peers[0])
    # An unregistered copy that stays at CRL 1.
    other = pki.ApplicationStore(tmp_path / "other")
    other.create()
    other.add_certificate(ca_cert, pki.TRUSTED)
    other.publish_crl((tmp_path / "crl1.crl").read_bytes(), ca_cert, 1)
    def crl_problems(store) -> list[str]:  # these stores have no own certificate: status exits 1 for that anyway
        report = plant("store", "status", str(store.root), "--json", code=1).json()
        return [p["message"] for p in report["problems"] if p["severity"] == "error" and "current CRL" in p["message"]]

    assert crl_problems(other) == []  # CRL 1 is current: nothing to say yet
    plant("revoke", "--app-uri", "urn:plant:hmi", "--reason", "cessationOfOperation", "--yes")
    held = [pki.crl_number(pki.parse_crl(p.read_bytes())) for p in vendor.ca_crl_files(ca_cert)]
    assert held == [2]
    assert crl_problems(vendor) == []
    assert ["current CRL is 2" in m and "CRL 1" in m for m in crl_problems(other)] == [True]
    # The revoked client is refused by a server on the peer store (real channel, the store's own validator).
    hmi = identity_from_store(pki.ApplicationStore(tmp_path / "hmi"), "urn:plant:hmi", peer_role="server", clock=utc)
    key = ca.generate_rsa_key(2048)
    gateway = Identity("urn:vendor:gateway", self_signed(key, 365), key,
                       StoreValidator(vendor, "client", utc))

    async def scenario():
        server = await LoopbackServer(["Basic256Sha256"]).start(gateway)
        try:
            return await try_channel(server.url, hmi, "Basic256Sha256", server_certificate=gateway.certificate_der)
        finally:
            await server.stop()

    result = asyncio.run(scenario())
    assert (result.ok, result.status) == (False, "BadCertificateRevoked")


def test_a_peer_expiring_soon_is_critical_and_a_regenerated_certificate_is_reported(plant: Certmgr, tmp_path, key_pool):
    from certmgr.alerts.settings import alert_settings
    from certmgr.context import AppContext
    from certmgr.services.peers import peer_expiry_metric, peer_subjects, track_peers

    old_key, new_key = key_pool.get(2048), ca.generate_rsa_key(2048)
    old = Identity("urn:vendor:gateway", self_signed(old_key, 5), old_key, None)
    new = Identity("urn:vendor:gateway", self_signed(new_key, 365), new_key, None)
    (tmp_path / "old.der").write_bytes(old.certificate_der)
    plant("store", "import", str(tmp_path / "hmi"), str(tmp_path / "old.der"), "--trusted")  # the HMI trusts the old one
    ctx = AppContext(plant.home)

    async def scenario():
        server = await LoopbackServer(["Basic256Sha256"]).start(old)
        try:
            await asyncio.to_thread(plant, "peer", "add", "--endpoint", server.url, "--name", "gateway")
            status = await asyncio.to_thread(plant, "fleet", "status", "--json", code=2)
            unchanged = await asyncio.to_thread(track_peers, ctx)
            await server.use(new)  # the vendor stack regenerated its certificate
            changed = await asyncio.to_thread(track_peers, ctx)
            return server.url, status.json(), unchanged, changed
        finally:
            await server.stop()

    url, status, unchanged, changed = asyncio.run(scenario())
    row = next(r for r in status if r["kind"] == "peer")
    assert (row["endpoint"], row["level"], row["thumbprint"]) == (url, "critical", pki.thumbprint(old.certificate))
    assert unchanged == []
    assert len(changed) == 1
    change = changed[0]
    assert (change.old_thumbprint, change.new_thumbprint) == (pki.thumbprint(old.certificate), pki.thumbprint(new.certificate))
    assert change.stores_trusting_old == [str(tmp_path / "hmi")]
    assert "->" in change.message() and str(tmp_path / "hmi") in change.message()
    subjects = list(peer_subjects(ctx, utc(), alert_settings(ctx.settings)))
    assert [(s.kind, s.level) for s in subjects] == [("peer", "warning")]  # renewed for a year, but changed: look at it
    assert peer_expiry_metric(ctx) == [({"endpoint": url}, pki.parse_certificate(new.certificate_der).not_valid_after_utc.timestamp())]


def test_peer_scan_flags_none_and_basic256(plant: Certmgr, tmp_path, key_pool):
    from asyncua import Server, ua

    key = key_pool.get(2048)
    identity = Identity("urn:vendor:old-plc", self_signed(key, 365, uri="urn:vendor:old-plc"), key, None)

    async def scenario():
        server = Server()
        await server.init()
        server.set_endpoint("opc.tcp://127.0.0.1:0/")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity, ua.SecurityPolicyType.Basic256_SignAndEncrypt,
                                    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        await server.set_application_uri(identity.app_uri)
        await server.load_certificate(identity.certificate_der)
        await server.load_private_key(identity.private_key_der)
        await server.start()
        url = f"opc.tcp://127.0.0.1:{server.bserver.port}/"
        for endpoint in server.iserver.endpoints:
            endpoint.EndpointUrl = url
        try:
            return url, await asyncio.to_thread(plant.json, "peer", "scan", url, "--add")
        finally:
            await server.stop()

    url, found = asyncio.run(scenario())
    entry = next(e for e in found if e.get("thumbprint"))
    assert "None/None" in entry["offered"] and "Basic256/SignAndEncrypt" in entry["offered"]
    assert any(f.startswith("None/None") for f in entry["flags"]) and any(f.startswith("Basic256/") for f in entry["flags"])
    assert not any(f.startswith("Basic256Sha256") for f in entry["flags"])
    assert entry["added"] is True
    assert plant.json("peer", "list")[0]["flags"] == entry["flags"]
    bad = plant("peer", "scan", "http://nope", code=2)
    assert "opc.tcp://" in bad.stderr


def test_peer_add_refuses_bad_input_and_remove_needs_confirmation(plant: Certmgr, tmp_path):
    assert "needs an endpoint or a store" in plant("peer", "add", code=2).stderr
    assert "does not exist" in plant("peer", "add", "--store", str(tmp_path / "missing"), code=2).stderr
    assert plant.json("peer", "list") == []
    store = pki.ApplicationStore(tmp_path / "vendor")
    store.create()
    plant("peer", "add", "--store", str(store.root), "--name", "vendor")
    assert "already registered" in plant("peer", "add", "--store", str(store.root), code=2).stderr
    assert "--yes" in plant("peer", "remove", "vendor", code=2).stderr
    assert len(plant.json("peer", "list")) == 1
    plant("peer", "remove", "vendor", "--yes")
    assert plant.json("peer", "list") == []


def node_pki_trusting_the_ca(plant: Certmgr, tmp_path):
    """A node-opcua PKI folder certmgr does not manage, given certmgr's CA and CRL 1 by `store import`."""
    pki_dir = tmp_path / "node-pki"
    pki_dir.mkdir()
    crl1 = tmp_path / "crl1.crl"
    crl1.write_bytes(plant.sql("SELECT der FROM crls WHERE number = 1")[0][0])
    return pki_dir, plant("store", "import", str(pki_dir), str(plant.home / "ca" / "ca.der"), "--trusted", "--crl", str(crl1),
                          "--layout", "node-opcua")


def test_node_opcua_server_on_an_unmanaged_store_refuses_a_revoked_client_and_probe_proves_it(
        plant: Certmgr, tmp_path, node_push_installed):
    from certmgr.opcua.proofs import endpoint_certificate
    from tests.test_push import NodeServer

    pki_dir, imported = node_pki_trusting_the_ca(plant, tmp_path)
    assert "peer store" in imported.stdout
    server = NodeServer(pki_dir, {"admin": "admin-pw", "operator": "operator-pw"})
    hmi = identity_from_store(pki.ApplicationStore(tmp_path / "hmi"), "urn:plant:hmi", peer_role="server", clock=utc)
    try:
        plant("peer", "add", "--endpoint", server.url, "--name", "node")
        certificate, _ = asyncio.run(endpoint_certificate(server.url))

        def connect_hmi():
            return asyncio.run(try_channel(server.url, dataclasses.replace(hmi, validator=None), "Basic256Sha256",
                                           server_certificate=der(certificate)))

        assert connect_hmi().ok
        assert [(o["trusts_ca"], o["crl_effective"]) for o in plant.json("probe", "--peer", server.url)] == [(True, 1)]
        plant("revoke", "--app-uri", "urn:plant:hmi", "--reason", "cessationOfOperation", "--yes")
        # node-opcua watches its crl folder; give it a moment to notice the new file
        deadline = time.monotonic() + 20
        while (result := connect_hmi()).ok and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not result.ok and result.status in ("BadCertificateRevoked", "BadSecurityChecksFailed", "BadSecureChannelClosed")
        outcome = plant.json("probe", "--peer", server.url)[0]
        assert (outcome["trusts_ca"], outcome["crl_effective"], outcome["crl_current"], outcome["ok"]) == (True, 2, 2, True)
    finally:
        server.stop()


def test_a_vendor_server_expiring_in_5_days_is_critical_everywhere_and_its_new_certificate_is_mailed(
        plant: Certmgr, tmp_path, key_pool, smtp):
    from tests.apps.third_party import ThirdPartyServer

    configure(plant, smtp_channel(smtp.port))
    vendor = ThirdPartyServer(tmp_path / "vendor", key_pool.get(2048), {"operator": "s3cret"}, days=5)
    old_thumb = pki.thumbprint(vendor.certificate)
    (tmp_path / "vendor.der").write_bytes(der(vendor.certificate))
    plant("store", "import", str(tmp_path / "hmi"), str(tmp_path / "vendor.der"), "--trusted")  # the HMI trusts it

    def run(*args, code=0):
        return asyncio.to_thread(plant, *args, code=code)

    async def scenario():
        await vendor.start()
        try:
            added = (await run("peer", "add", "--endpoint", vendor.url, "--name", "historian", "--json")).json()
            status = (await run("fleet", "status", "--json", code=2)).json()
            checked = await run("check", code=2)
            await run("daemon", "--once", "expiry-scan")
            scanned = [m.get_content() for m in smtp.messages]
            await vendor.regenerate(key_pool.get(2048))  # same port, a new self-signed certificate for a year
            await run("daemon", "--once", "track-peers")
            return added, status, checked, scanned, [m.get_content() for m in smtp.messages]
        finally:
            await vendor.stop()

    added, status, checked, scanned, mails = asyncio.run(scenario())
    new_thumb = pki.thumbprint(vendor.certificate)
    assert added["thumbprint"] == old_thumb != new_thumb
    row = next(r for r in status if r["kind"] == "peer")
    assert (row["endpoint"], row["level"], row["thumbprint"]) == (vendor.url, "critical", old_thumb)
    assert checked.stdout.startswith("CERTMGR CRITICAL") and f"{vendor.url} (critical, 5d)" in checked.stdout
    assert len(scanned) == 1 and f"CRITICAL (was ok): {vendor.url} [{old_thumb}]" in scanned[0]  # the real SMTP receiver got it
    assert len(mails) == 2
    changed = mails[1]
    assert f"certificate changed on {vendor.url}: {old_thumb} -> {new_thumb}" in changed
    assert f"still trusting the old one: {tmp_path / 'hmi'}" in changed
    peer = plant.json("peer", "show", vendor.url)
    assert (peer["thumbprint"], peer["previous_thumbprint"]) == (new_thumb, old_thumb)
    assert plant("check", code=1).stdout.startswith("CERTMGR WARNING")  # renewed for a year, but changed: look at it


def test_revoke_lists_an_exported_bundle_it_cannot_deliver_and_trust_exchange_refreshes_it(plant: Certmgr, tmp_path, key_pool):
    from tests.apps.third_party import ThirdPartyServer

    vendor = ThirdPartyServer(tmp_path / "vendor", key_pool.get(2048), {"operator": "s3cret"})
    bundle = tmp_path / "for-vendor"

    def run(*args, code=0):
        return asyncio.to_thread(plant, *args, code=code)

    async def scenario():
        await vendor.start()
        try:
            exchange = ("trust-exchange", "--app-uri", "urn:plant:hmi", "--endpoint", vendor.url, "--export", str(bundle), "--yes")
            exchanged = await run(*exchange)
            revoked = await run("revoke", "--app-uri", "urn:plant:server", "--reason", "superseded", "--yes", "--no-probe")
            status = (await run("fleet", "status", "--json")).json()
            untouched = sorted(p.name[-8:] for p in bundle.glob("*.crl"))  # certmgr does not rewrite a bundle by itself
            again = await run(*exchange)
            return exchanged, revoked, status, untouched, again, (await run("fleet", "status", "--json")).json()
        finally:
            await vendor.stop()

    exchanged, revoked, status, untouched, again, refreshed = asyncio.run(scenario())
    assert f"registered {vendor.url} as a peer" in exchanged.stdout
    assert f"registered {bundle} as an exported bundle" in exchanged.stdout
    peers = {p["layout"]: p for p in plant.json("peer", "list")}
    assert peers["bundle"]["store"] == str(bundle.resolve()) and peers["ua-net"]["endpoint"] == vendor.url
    command = f"`certmgr trust-exchange --app-uri urn:plant:hmi --endpoint {vendor.url} --export {bundle.resolve()}`"
    assert "1 places hold an older CRL" in revoked.stdout
    assert f"exported bundle {bundle.resolve()} for {vendor.url} holds CRL 1: {command}" in revoked.stdout
    assert untouched == ["crl1.crl"]
    row = next(r for r in status if r["kind"] == "bundle")
    assert command in row["fix"] and row["crl_current"] == 2
    assert "as an exported bundle" not in again.stdout  # known already
    assert list(bundle.glob("*crl2.crl"))  # trust-exchange --export again refreshed it
    assert next(r for r in refreshed if r["kind"] == "bundle")["fix"] is None


def test_push_registers_its_server_as_a_peer_and_revoke_lists_its_trust_list_until_the_next_push(
        plant: Certmgr, tmp_path, node_push_installed):
    from tests.test_push import SERVER_URI, NodeServer, secret, served_thumbprint

    pki_dir, _ = node_pki_trusting_the_ca(plant, tmp_path)
    server = NodeServer(pki_dir, {"admin": "admin-pw", "operator": "operator-pw"})
    try:
        admin = secret(tmp_path / "admin.pass", "admin-pw")
        plant("app", "add", "--app-uri", SERVER_URI, "--endpoint", server.url, "--deploy", "push", "--admin-user", "admin",
              "--admin-password-file", str(admin), "--dns", "localhost", "--ip", "127.0.0.1", "--name", "node push test")
        pushed = plant("push", "--app-uri", SERVER_URI, "--accept-server", served_thumbprint(server.url)[:16])
        assert f"{server.url} is now a tracked peer" in pushed.stdout
        peer = plant.json("peer", "show", server.url)
        assert (peer["source"], peer["thumbprint"]) == ("push", served_thumbprint(server.url))
        assert [r["kind"] for r in plant.json("fleet", "status") if r["endpoint"] == server.url] == ["push"]  # one row
        revoked = plant("revoke", "--app-uri", "urn:plant:hmi", "--reason", "superseded", "--yes", "--no-probe")
        assert f"push server {server.url} ({SERVER_URI}): its TrustList holds CRL 1: `certmgr push --app-uri {SERVER_URI}`" in revoked.stdout
        assert "node-pki" not in revoked.stdout.split("older CRL")[1]  # the peer store got CRL 2 itself
        again = plant.json("push", "--app-uri", SERVER_URI)
        assert again["ok"] and "peer" not in [s["step"] for s in again["steps"]]  # registered once
        plant("daemon", "--once", "track-peers")  # what certmgr pushed is no "certificate changed"
        assert plant.json("peer", "show", server.url)["previous_thumbprint"] is None
        assert "older CRL" not in plant("crl", "refresh").stdout
        assert server.url not in plant("check", code=None).stdout
    finally:
        server.stop()
