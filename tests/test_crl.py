"""Revocation and CRLs that never go stale: revoke, publish, refresh, repair, import."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import select

import ca
import db
import pki
from certmgr.opcua.channel import LoopbackServer, try_channel
from certmgr.opcua.identities import identity_from_store
from tests.conftest import PASSPHRASE, Certmgr
from tests.helpers import der, utc

ROOT = Path(__file__).resolve().parent.parent



@pytest.fixture
def plant(initialised: Certmgr, tmp_path):
    """Three managed applications in both layouts."""
    initialised("issue", "--app-uri", "urn:plant:server", "--store", str(tmp_path / "server"), "--role", "server",
                "--dns", "localhost", "--ip", "127.0.0.1")
    initialised("issue", "--app-uri", "urn:plant:hmi", "--store", str(tmp_path / "hmi"), "--role", "client")
    initialised("issue", "--app-uri", "urn:plant:mes", "--store", str(tmp_path / "mes"), "--role", "client",
                "--layout", "node-opcua")
    return initialised


def crl_files(store_dir: Path, part: str = "trusted/crl") -> list[Path]:
    return sorted((store_dir / part).iterdir())


def test_revoked_client_refused_by_running_server_other_client_accepted(plant: Certmgr, tmp_path):
    server = identity_from_store(pki.ApplicationStore(tmp_path / "server"), "urn:plant:server", peer_role="client", clock=utc)
    hmi = identity_from_store(pki.ApplicationStore(tmp_path / "hmi"), "urn:plant:hmi", peer_role="server", clock=utc)
    mes = identity_from_store(pki.ApplicationStore(tmp_path / "mes", "node-opcua"), "urn:plant:mes", peer_role="server", clock=utc)

    async def scenario():
        loopback = await LoopbackServer(["Basic256Sha256"]).start(server)
        try:
            kw = dict(server_certificate=server.certificate_der, server_validator=server.validator)
            before = await try_channel(loopback.url, hmi, "Basic256Sha256", **kw)
            out = await asyncio.to_thread(plant.json, "revoke", "--app-uri", "urn:plant:hmi", "--reason", "keyCompromise", "--yes")
            refused = await try_channel(loopback.url, hmi, "Basic256Sha256", **kw)
            other = await try_channel(loopback.url, mes, "Basic256Sha256", **kw)
            return before, out, refused, other
        finally:
            await loopback.stop()

    before, out, refused, other = asyncio.run(scenario())
    assert before.ok
    assert out["crl_number"] == 2 and out["application_without_certificate"] is True
    assert {s["status"] for s in out["stores"]} == {"published"}
    assert (refused.ok, refused.status, refused.side) == (False, "BadCertificateRevoked", "server")
    assert other.ok
    shown = plant.json("show", "urn:plant:hmi")["certificates"][0]
    assert shown["status"] == "revoked" and shown["revocation_reason"] == "keyCompromise"
    engine = db.make_engine(plant.url)
    with engine.connect() as connection:
        held = dict(connection.execute(select(db.StoreCrl.store_path, db.StoreCrl.crl_number)).all())
    assert held[str(tmp_path / "server")] == 2 and held[str(tmp_path / "mes")] == 2 and len(held) == 4


def test_revoke_prints_warning_and_needs_confirmation_without_terminal(plant: Certmgr, tmp_path):
    refused = plant("revoke", "--app-uri", "urn:plant:mes", code=2)
    assert "needs confirmation" in refused.stderr and "--yes" in refused.stderr
    assert plant.json("ca", "show")["crl_number"] == 1
    thumb = plant.json("show", "urn:plant:mes")["active"]["thumbprint"]
    done = plant("revoke", thumb[:12], "--yes")
    assert "now without a valid certificate" in done.stderr and "certmgr renew --force --app-uri urn:plant:mes" in done.stderr
    again = plant("revoke", thumb, "--yes")
    assert "already revoked" in again.stdout
    assert plant.json("ca", "show")["crl_number"] == 2
    assert "exactly one" in plant("revoke", "--yes", code=2).stderr
    assert "no certificate" in plant("revoke", "--serial", "abcdef", "--yes", code=2).stderr


def test_crl_lists_revoked_with_reason_and_is_accepted_by_openssl(plant: Certmgr, tmp_path):
    serial = plant.json("show", "urn:plant:hmi")["active"]["serial"]
    plant("revoke", "--serial", serial.upper(), "--reason", "affiliationChanged", "--yes")
    crl_path = crl_files(tmp_path / "server")[0]
    crl = x509.load_der_x509_crl(crl_path.read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.affiliation_changed
    assert pki.crl_number(crl) == 2 and crl.next_update_utc - crl.last_update_utc == timedelta(days=30)
    ca_pem = plant.home / "ca" / "ca.pem"
    crl_pem = tmp_path / "crl.pem"
    crl_pem.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    hmi_pem = tmp_path / "hmi.pem"
    hmi_pem.write_bytes(pki.ApplicationStore(tmp_path / "hmi").own().certificate.public_bytes(serialization.Encoding.PEM))
    server_pem = tmp_path / "server.pem"
    server_pem.write_bytes(pki.ApplicationStore(tmp_path / "server").own().certificate.public_bytes(serialization.Encoding.PEM))
    base = ["openssl", "verify", "-CAfile", str(ca_pem), "-crl_check", "-CRLfile", str(crl_pem)]
    revoked = subprocess.run(base + [str(hmi_pem)], capture_output=True, text=True)
    assert revoked.returncode != 0 and "revoked" in revoked.stdout + revoked.stderr
    assert subprocess.run(base + [str(server_pem)], capture_output=True).returncode == 0


def test_publishing_writes_new_files_and_touches_nothing_else(plant: Certmgr, tmp_path):
    store_dir = tmp_path / "server"
    foreign = store_dir / "trusted" / "crl" / "Vendor CA [0123].crl"
    foreign.write_bytes(b"a vendor's CRL, not ours")
    notes = store_dir / "trusted" / "crl" / "README.txt"
    notes.write_text("keep me")
    untouched = {p: (p.read_bytes(), os.stat(p).st_ino) for p in (foreign, notes)}
    first = [p for p in crl_files(store_dir) if p.name.startswith("Plant CA")]
    first_inode = os.stat(first[0]).st_ino
    plant("crl", "refresh", "--force")
    second = [p for p in crl_files(store_dir) if p.name.startswith("Plant CA")]
    assert len(second) == 1 and second[0].name != first[0].name and "crl2" in second[0].name
    assert not first[0].exists() and os.stat(second[0]).st_ino != first_inode
    assert {p: (p.read_bytes(), os.stat(p).st_ino) for p in (foreign, notes)} == untouched
    # node-opcua layout: same rules in its own folders
    mes = [p.name for p in crl_files(tmp_path / "mes")]
    assert mes == [second[0].name]


def test_no_reader_sees_a_partial_crl(plant: Certmgr, tmp_path):
    """A reader polling the folder (as node-opcua's watcher does) only ever reads complete CRLs."""
    from certmgr.context import AppContext
    from certmgr.services.crls import sign_crl
    from certmgr.services.publishing import publish_everywhere

    ctx = AppContext(plant.home)
    issuer = ctx.issuer(passphrase=PASSPHRASE.encode())
    # a larger CRL makes a torn write likely to be seen if writes were not atomic
    with ctx.database().write() as session:
        app = session.scalars(select(db.Application).where(db.Application.app_uri == "urn:plant:hmi")).one()
        for i in range(3000):
            session.add(db.Certificate(
                application=app, authority_id=app.authority_id, serial_hex=format(10**12 + i, "x"), thumbprint=f"{i:040X}",
                subject="CN=x", not_before=utc(), not_after=utc() + timedelta(days=300), status=db.CertStatus.REVOKED,
                key_size=2048, der=b"", revoked_at=utc(), revocation_reason="superseded", created_at=utc(),
            ))
    folder = tmp_path / "server" / "trusted" / "crl"
    stop = threading.Event()
    seen, torn = [], []

    def reader():
        while not stop.is_set():
            for path in list(folder.glob("*.crl")):
                try:
                    data = path.read_bytes()
                except FileNotFoundError:
                    continue  # removed between listing and reading: fine, a newer one exists
                try:
                    seen.append(pki.crl_number(x509.load_der_x509_crl(data)))
                except ValueError:
                    torn.append(path.name)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(8):
            row = sign_crl(ctx, issuer, utc())
            publish_everywhere(ctx, row, issuer.certificate, utc())
    finally:
        stop.set()
        thread.join()
    assert torn == []
    assert len(seen) > 8 and max(seen) == 9
    assert len(list(folder.glob("*.crl"))) == 1


@pytest.mark.parametrize("case", ["expired", "other-key", "wrong-issuer", "missing", "garbage", "old-number"])
def test_refresh_finds_and_repairs_bad_crls_of_our_ca(plant: Certmgr, tmp_path, foreign_ca, case):
    store = pki.ApplicationStore(tmp_path / "server")
    folder = store.crl_dir(pki.TRUSTED)
    ours = crl_files(tmp_path / "server")[0]
    home_ca = x509.load_der_x509_certificate((plant.home / "ca" / "ca.der").read_bytes())
    plant("crl", "refresh", "--force")  # CRL 2 everywhere; the cases below put something worse in one store
    for path in folder.iterdir():
        path.unlink()
    now = utc()
    if case == "expired":
        issuer = ca.Issuer(home_ca, ca.load_private_key_pem((plant.home / "ca/private/ca-key.pem").read_bytes(), PASSPHRASE.encode()))
        old = ca.build_crl(issuer, number=2, this_update=now - timedelta(days=40), next_update=now - timedelta(days=10))
        store.publish_crl(der(old), home_ca, 2)
    elif case == "other-key":
        forged = (
            x509.CertificateRevocationListBuilder().issuer_name(home_ca.subject).last_update(now)
            .next_update(now + timedelta(days=30)).add_extension(x509.CRLNumber(99), False)
            .sign(foreign_ca.private_key, hashes.SHA256())
        )
        (folder / "x.crl").write_bytes(forged.public_bytes(serialization.Encoding.DER))
    elif case == "wrong-issuer":
        other = ca.build_crl(foreign_ca, number=1, this_update=now, next_update=now + timedelta(days=30))
        (folder / ours.name).write_bytes(other.public_bytes(serialization.Encoding.DER))
    elif case == "garbage":
        (folder / ours.name).write_bytes(os.urandom(500))
    elif case == "old-number":
        (folder / ours.name).write_bytes(ours.read_bytes() if ours.exists() else b"")
        first = plant.json("ca", "show")  # CRL 1 is still in the database
        assert first["crl_number"] == 2
        with db.make_engine(plant.url).connect() as connection:
            old_der = connection.execute(select(db.Crl.der).where(db.Crl.number == 1)).scalar_one()
        (folder / ours.name).write_bytes(old_der)

    peer = pki.ApplicationStore(tmp_path / "hmi").own().certificate
    before = pki.validate(peer, pki.load_trust_material(store), at=utc())
    if case != "old-number":
        assert before.status == "BadCertificateRevocationUnknown", before.message
    report = plant.json("crl", "refresh")
    server_check = next(c for c in report["stores"] if c["store"] == str(tmp_path / "server"))
    if case == "old-number":  # an older but still current CRL is a routine update, not a repair
        publication = next(p for p in report["publications"] if p["store"] == str(tmp_path / "server"))
        assert server_check["ok"] and publication["status"] == "published", report
    else:
        assert server_check["ok"] and server_check["repaired"], server_check
    # one CRL file of our CA; where other bytes held the usual name, the CRL arrives under the next one
    names = [p.name for p in folder.iterdir() if p.suffix == ".crl"]
    taken = case == "expired"  # that case put its old CRL 2 under the name of the new CRL 2
    assert names == [store.layout.crl_name(home_ca, 2, 2 if taken else 1)]
    assert pki.validate(peer, pki.load_trust_material(store), at=utc()).ok


def test_refresh_at_fixed_dates(plant: Certmgr, tmp_path, monkeypatch):
    start = utc()
    plant.at(start + timedelta(days=5))
    inside = plant.json("crl", "refresh")
    assert inside["resigned"] is False and inside["crl_number"] == 1 and inside["ok"]
    plant.at(start + timedelta(days=21))  # under a third left
    late = plant.json("crl", "refresh")
    assert late["resigned"] is True and late["crl_number"] == 2
    plant.at(start + timedelta(days=90))  # long after nextUpdate
    after = plant.json("crl", "refresh")
    assert after["resigned"] is True and after["crl_number"] == 3 and after["ok"]
    crl = x509.load_der_x509_crl(crl_files(tmp_path / "server")[0].read_bytes())
    assert crl.last_update_utc.date() == (start + timedelta(days=90)).date()


def test_refresh_reports_third_party_ca_without_crl_and_exits_1(plant: Certmgr, tmp_path, foreign_ca):
    store = pki.ApplicationStore(tmp_path / "server")
    store.add_certificate(foreign_ca.certificate, pki.TRUSTED)
    result = plant("crl", "refresh", "--json", code=1)
    check = next(c for c in result.json()["stores"] if c["store"] == str(tmp_path / "server"))
    assert any("Foreign CA" in p and "no CRL" in p for p in check["problems"])
    assert "still have CRL problems" in result.stderr


def test_crl_import_for_third_party_ca(plant: Certmgr, tmp_path, foreign_ca, test_ca):
    store = pki.ApplicationStore(tmp_path / "server")
    store.add_certificate(foreign_ca.certificate, pki.TRUSTED)
    now = utc()
    good = tmp_path / "vendor.crl"
    good.write_bytes(ca.build_crl(foreign_ca, number=4, this_update=now, next_update=now + timedelta(days=7)).public_bytes(serialization.Encoding.PEM))
    imported = plant.json("crl", "import", str(good), "--store", str(tmp_path / "server"))
    assert imported[0]["status"] == "imported"
    assert plant.json("crl", "refresh")["ok"]
    engine = db.make_engine(plant.url)
    with engine.connect() as connection:
        row = connection.execute(select(db.ExternalCrl.crl_number, db.ExternalCrl.next_update)).one()
    assert row[0] == 4
    # a CRL signed by another key in the vendor's name is refused, and so is a stale one
    forged = tmp_path / "forged.crl"
    forged.write_bytes(
        x509.CertificateRevocationListBuilder().issuer_name(foreign_ca.certificate.subject).last_update(now)
        .next_update(now + timedelta(days=7)).sign(test_ca.private_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    )
    refused = plant("crl", "import", str(forged), "--store", str(tmp_path / "server"), code=2)
    assert "does not verify" in refused.stderr
    stale = tmp_path / "stale.crl"
    stale.write_bytes(ca.build_crl(foreign_ca, number=5, this_update=now - timedelta(days=20), next_update=now - timedelta(days=1)).public_bytes(serialization.Encoding.DER))
    assert "not current" in plant("crl", "import", str(stale), "--all-stores", code=2).stderr
    older = tmp_path / "older.crl"
    older.write_bytes(ca.build_crl(foreign_ca, number=3, this_update=now, next_update=now + timedelta(days=7)).public_bytes(serialization.Encoding.DER))
    assert "newer CRL" in plant("crl", "import", str(older), "--store", str(tmp_path / "server"), code=2).stderr
    junk = tmp_path / "junk.crl"
    junk.write_bytes(b"garbage")
    assert "is not a CRL" in plant("crl", "import", str(junk), "--all-stores", code=2).stderr
    assert "--store DIR or --all-stores" in plant("crl", "import", str(good), code=2).stderr


REVOKER = """
import os, sys
from certmgr.context import AppContext
from certmgr.services.revocation import find_certificate, revoke
ctx = AppContext(sys.argv[1])
for uri in sys.argv[2:]:
    revoke(ctx, find_certificate(ctx, thumbprint=None, serial=None, app_uri=uri).id, "superseded")
"""


def test_crl_numbers_strictly_increasing_across_two_processes(initialised: Certmgr, tmp_path):
    uris = [f"urn:plant:dev{i}" for i in range(10)]
    for uri in uris:
        initialised("issue", "--app-uri", uri, "--store", str(tmp_path / uri.rsplit(":", 1)[1]))
    env = initialised.subprocess_env()
    procs = [
        subprocess.Popen([sys.executable, "-c", REVOKER, str(initialised.home), *uris[i::2]], env=env, stderr=subprocess.PIPE)
        for i in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    engine = db.make_engine(initialised.url)
    with engine.connect() as connection:
        rows = connection.execute(select(db.Crl.number, db.Crl.der, db.Crl.revoked_count).order_by(db.Crl.id)).all()
    numbers = [r[0] for r in rows]
    assert numbers == list(range(1, 12))  # strictly increasing in issue order, no gap, no duplicate
    counts = [r[2] for r in rows]
    # a later CRL never omits an earlier revocation; each of the 11 CRLs also revokes its own canary
    assert counts == sorted(counts) and counts[-1] == 10 + 11
    assert all(pki.crl_number(x509.load_der_x509_crl(r[1])) == r[0] for r in rows)


def test_an_interrupted_revocation_still_reaches_the_crl(plant: Certmgr, tmp_path, monkeypatch):
    """A revoke interrupted after its commit and before its CRL: revoking again, or crl refresh, signs it."""
    from certmgr.services import revocation

    serial = plant.json("show", "urn:plant:hmi")["active"]["serial"]

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(revocation, "sign_crl", crash)
    assert plant("revoke", "--serial", serial, "--yes", code=130).exit_code == 130
    monkeypatch.undo()
    assert plant.json("ca", "show")["crl_number"] == 1  # committed, but on no CRL yet
    again = plant.json("revoke", "--serial", serial, "--yes")
    assert again["already_revoked"] and again["crl_number"] == 2
    crl = x509.load_der_x509_crl(crl_files(tmp_path / "server")[0].read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    # the same gap is closed by a refresh
    serial2 = plant.json("show", "urn:plant:mes")["active"]["serial"]
    monkeypatch.setattr(revocation, "sign_crl", crash)
    plant("revoke", "--serial", serial2, "--yes", code=130)
    monkeypatch.undo()
    assert plant.json("crl", "refresh")["resigned"] is True
    crl = x509.load_der_x509_crl(crl_files(tmp_path / "server")[0].read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(serial2, 16)) is not None


def test_publishing_never_rolls_a_store_back_to_an_older_crl(plant: Certmgr, tmp_path):
    from certmgr.context import AppContext
    from certmgr.services.crls import sign_crl
    from certmgr.services.publishing import publish_everywhere

    ctx = AppContext(plant.home, db_url=plant.db_url)
    issuer = ctx.issuer(passphrase=PASSPHRASE.encode())
    older = sign_crl(ctx, issuer, utc())  # signed, but its publisher is slow
    serial = plant.json("show", "urn:plant:hmi")["active"]["serial"]
    plant("revoke", "--serial", serial, "--reason", "keyCompromise", "--yes")  # CRL 3 reaches every store
    publications = publish_everywhere(ctx, older, issuer.certificate, utc())
    assert all("newer CRL" in p.message for p in publications if p.store == str(tmp_path / "server"))
    names = [p.name for p in crl_files(tmp_path / "server")]
    assert names == [n for n in names if "crl3" in n] and len(names) == 1
    held = dict(plant.sql("SELECT store_path, crl_number FROM store_crls"))
    assert held[str(tmp_path / "server")] == 3


def test_a_ca_with_the_same_name_keeps_its_crl(plant: Certmgr, tmp_path, key_pool):
    """Two CAs named alike (the defaults, or a re-keyed CA): publishing one never deletes the other's CRL."""
    store = pki.ApplicationStore(tmp_path / "server")
    ours = x509.load_der_x509_certificate((plant.home / "ca" / "ca.der").read_bytes())
    twin_key = key_pool.get()
    twin = ca.Issuer(ca.build_root_ca(twin_key, ca.SubjectFields("Plant CA", "Plant"), now=utc()), twin_key)
    assert twin.certificate.subject == ours.subject
    store.add_certificate(twin.certificate, pki.TRUSTED)
    twin_crl = tmp_path / "twin-crl.der"
    twin_crl.write_bytes(der(ca.build_crl(twin, number=7, this_update=utc(), next_update=utc() + timedelta(days=10))))
    (store.crl_dir(pki.TRUSTED) / "twin.crl").write_bytes(twin_crl.read_bytes())
    report = plant.json("crl", "refresh", "--force")
    assert (store.crl_dir(pki.TRUSTED) / "twin.crl").exists()
    assert next(c for c in report["stores"] if c["store"] == str(tmp_path / "server"))["ok"]
    statuses = {s.thumbprint: s.status(utc()) for s in pki.audit_crls(store).cas}
    assert set(statuses.values()) == {pki.OK}


def test_crl_days_edited_after_init_is_in_force(plant: Certmgr, tmp_path):
    toml = plant.home / "certmgr.toml"
    assert "crl_days = 30" in toml.read_text()
    toml.write_text(toml.read_text().replace("crl_days = 30", "crl_days = 3"))
    plant("crl", "refresh", "--force")
    crl = x509.load_der_x509_crl(crl_files(tmp_path / "server")[0].read_bytes())
    assert crl.next_update_utc - crl.last_update_utc == timedelta(days=3)
    toml.write_text(toml.read_text().replace("crl_days = 3", "crl_days = 0"))
    refused = plant("crl", "refresh", "--force", code=2)
    assert "crl_days" in refused.stderr and "between 1 and 3650" in refused.stderr


def test_revocation_reaches_the_issuer_crl_folder_where_the_ca_sits_there_too(plant: Certmgr, tmp_path):
    store = pki.ApplicationStore(tmp_path / "mes", "node-opcua")
    home_ca = x509.load_der_x509_certificate((plant.home / "ca" / "ca.der").read_bytes())
    store.add_certificate(home_ca, pki.ISSUER)  # as some operators lay out their chains
    serial = plant.json("show", "urn:plant:hmi")["active"]["serial"]
    plant("revoke", "--serial", serial, "--yes")
    number = plant.json("ca", "show")["crl_number"]
    for kind in (pki.TRUSTED, pki.ISSUER):
        files = list(store.crl_dir(kind).iterdir())
        assert len(files) == 1 and f"crl{number}" in files[0].name, (kind, files)
        assert x509.load_der_x509_crl(files[0].read_bytes()).get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    held = {(kind, n) for path, kind, n in plant.sql("SELECT store_path, kind, crl_number FROM store_crls") if path == str(store.root)}
    assert held == {(pki.TRUSTED, number), (pki.ISSUER, number)}
