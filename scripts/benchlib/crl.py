"""CRLs at scale: 100,000 revoked certificates, re-signed and published to 100 stores; peer validation."""

from __future__ import annotations

import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import section
from .common import new_home, timed


def seed_revoked(ctx, count: int, now: datetime) -> None:
    """Rows only (one reused DER blob): what a CA that revoked ``count`` certificates has in its database."""
    from sqlalchemy import insert, select

    import db

    with ctx.database().write() as session:
        app_id, authority_id = session.execute(select(db.Application.id, db.Application.authority_id)).first()
        rows = [
            {
                "application_id": app_id, "authority_id": authority_id, "serial_hex": format(10**20 + i, "x"),
                "thumbprint": f"{i:040X}", "subject": "CN=revoked", "not_before": now - timedelta(days=10),
                "not_after": now + timedelta(days=355), "status": db.CertStatus.REVOKED, "key_size": 2048, "der": b"0",
                "revoked_at": now - timedelta(minutes=i % 1000), "revocation_reason": ("superseded", "keyCompromise", None)[i % 3],
                "created_at": now,
            }
            for i in range(count)
        ]
        session.execute(insert(db.Certificate), rows)


def seed_stores(ctx, root: Path, count: int, now: datetime) -> list[Path]:
    """``count`` registered application stores that trust the CA (rows and folders, no keys)."""
    from sqlalchemy import insert, select

    import db
    import pki

    ca_cert = ctx.issuer().certificate
    paths = []
    for i in range(count):
        store = pki.ApplicationStore(root / f"store{i:03d}")
        store.create()
        store.add_certificate(ca_cert)
        paths.append(store.root)
    with ctx.database().write() as session:
        authority_id = session.execute(select(db.Authority.id)).scalar_one()
        session.execute(
            insert(db.Application),
            [
                {"app_uri": f"urn:bench:app{i}", "name": f"app{i}", "role": db.Role.SERVER, "store_path": str(p),
                 "layout": "ua-net", "key_size": 2048, "validity_days": 365, "authority_id": authority_id,
                 "created_at": now, "updated_at": now, "dns_names": [], "ip_addresses": [], "internal": False}
                for i, p in enumerate(paths)
            ],
        )
    return paths


def naive_build(issuer, entries, now: datetime):
    """The pattern seen in weaker code: add_revoked_certificate in a loop (each call copies the list)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    builder = x509.CertificateRevocationListBuilder().issuer_name(issuer.certificate.subject)
    builder = builder.last_update(now).next_update(now + timedelta(days=30))
    for entry in entries:
        revoked = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at).build()
        builder = builder.add_revoked_certificate(revoked)
    return builder.sign(issuer.private_key, hashes.SHA256())


@section("crl", "100,000 revoked: re-sign + publish to 100 stores; peer validation against that store")
def bench_crl(work: Path, quick: bool = False) -> None:
    import ca
    import pki
    from certmgr.services.crls import sign_crl
    from certmgr.services.issuing import IssueRequest, issue_application
    from certmgr.services.publishing import publish_everywhere

    revoked, stores = (10_000, 20) if quick else (100_000, 100)
    now = datetime.now(timezone.utc)
    ctx = new_home(work / "home")
    issuer = ctx.issuer()
    peer_outcome = issue_application(ctx, IssueRequest(app_uri="urn:bench:peer", store=work / "peer"))
    seed_revoked(ctx, revoked, now)
    seed_stores(ctx, work / "stores", stores, now)
    print(f"seeded {revoked:,} revoked certificates and {stores} stores")

    started = time.perf_counter()
    row = sign_crl(ctx, issuer, now)
    signed = time.perf_counter() - started
    publications = publish_everywhere(ctx, row, issuer.certificate, now)
    total = time.perf_counter() - started
    written = sum(1 for p in publications if p.status == "published")
    print(f"certmgr: sign CRL {row.number} ({row.revoked_count:,} entries, {len(row.der) / 1e6:.1f} MB) {signed:.2f} s, "
          f"publish to {written} stores {total - signed:.2f} s, total {total:.2f} s (target < 2 s)")

    entries = [ca.RevokedEntry(10**20 + i, now) for i in range(revoked)]
    naive = timed(lambda: naive_build(issuer, entries, now))
    one_pass = timed(lambda: ca.build_crl(issuer, number=99, this_update=now, next_update=now + timedelta(days=30), revoked=entries))
    print(f"naive add_revoked_certificate loop: {naive:.2f} s; certmgr's one-pass build of the same list: {one_pass:.2f} s "
          f"({naive / one_pass:.0f}x faster)")

    store = pki.ApplicationStore(work / "stores" / "store000")
    peer = pki.ApplicationStore(work / "peer").own().certificate
    cache = pki.TrustCache()
    load = timed(lambda: cache.material(store))
    at = now + timedelta(hours=1)
    samples = []
    for _ in range(200):
        started = time.perf_counter()
        result = pki.validate(peer, cache.material(store), at=at)
        samples.append(time.perf_counter() - started)
    assert result.ok, result.message
    print(f"validation against that store: first load {load * 1000:.0f} ms, then per peer median "
          f"{statistics.median(samples) * 1000:.2f} ms, p95 {sorted(samples)[int(len(samples) * 0.95)] * 1000:.2f} ms (target < 5 ms)")
    print("  (each validation re-stats the store's files; a changed file is re-read, others come from the cache)")
    assert peer_outcome.thumbprint
