"""Placing certmgr's CRL in every registered store, and checking each store's CRLs (``crl refresh``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from sqlalchemy import select

import db
import pki

from ..context import AppContext

PUBLISHED = "published"
UNCHANGED = "unchanged"
SKIPPED = "skipped"
ERROR = "error"
PUBLISH_THREADS = 8


@dataclass(frozen=True)
class StoreTarget:
    path: str
    layout: str
    app_uris: tuple[str, ...]

    def store(self) -> pki.ApplicationStore:
        return pki.ApplicationStore(self.path, self.layout)


@dataclass
class StorePublication:
    store: str
    status: str  # PUBLISHED, UNCHANGED, SKIPPED or ERROR
    kinds: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    message: str = ""

    def as_dict(self) -> dict:
        return {"store": self.store, "status": self.status, "kinds": self.kinds, "removed": self.removed, "message": self.message}


def registered_stores(ctx: AppContext) -> list[StoreTarget]:
    """Every distinct store folder of a registered application (certmgr's verifier included)."""
    with ctx.database().read() as session:
        rows = session.execute(
            select(db.Application.store_path, db.Application.layout, db.Application.app_uri)
            .where(db.Application.store_path.is_not(None))
            .order_by(db.Application.store_path)
        ).all()
    grouped: dict[tuple[str, str], list[str]] = {}
    for path, layout, uri in rows:
        grouped.setdefault((path, layout), []).append(uri)
    return [StoreTarget(path, layout, tuple(uris)) for (path, layout), uris in grouped.items()]


def publish_to_store(target: StoreTarget, crl_der: bytes, ca_cert: x509.Certificate, number: int) -> StorePublication:
    """Write the CRL wherever the store holds the CA: trusted/crl, and issuer(s)/crl if the CA sits there."""
    store = target.store()
    if not store.root.is_dir():
        return StorePublication(target.path, ERROR, message="store folder is missing")
    try:
        results = store.publish_crl_where_held(crl_der, ca_cert, number)
    except (OSError, pki.StoreError) as exc:
        return StorePublication(target.path, ERROR, message=str(exc))
    if not results:
        return StorePublication(target.path, SKIPPED, message="the store does not hold certmgr's CA")
    status = PUBLISHED if any(r.written or r.removed for r in results.values()) else UNCHANGED
    newer = [r for r in results.values() if r.newer_present]
    message = f"holds a newer CRL ({newer[0].path.name}); left as it is" if newer else ""
    return StorePublication(target.path, status, [k for k, r in results.items() if not r.newer_present],
                            [str(p) for r in results.values() for p in r.removed], message)


def publish_everywhere(ctx: AppContext, crl_row: db.Crl, ca_cert: x509.Certificate, now: datetime) -> list[StorePublication]:
    """Every registered store, then every peer store that holds certmgr's CA (Part 12 §7.9.6: every trust list
    holding the issuer gets the new CRL). The one place a new CRL is published from (revoke, renew, push)."""
    from .fleet import deliver_crl_to_peer_stores

    targets = registered_stores(ctx)
    # Writes and fsyncs release the GIL: a few threads publish to many stores in a fraction of the time.
    with ThreadPoolExecutor(max_workers=max(1, min(PUBLISH_THREADS, len(targets)))) as pool:
        publications = list(pool.map(lambda t: publish_to_store(t, crl_row.der, ca_cert, crl_row.number), targets))
    record_publications(ctx, crl_row, publications, now)
    return publications + deliver_crl_to_peer_stores(ctx, crl_row, ca_cert, now).publications


def record_publications(ctx: AppContext, crl_row: db.Crl, publications: list[StorePublication], now: datetime) -> None:
    """Remember which CRL number each store's folders hold (one statement per changed row)."""
    held = [(p.store, kind) for p in publications if p.status in (PUBLISHED, UNCHANGED) for kind in p.kinds]
    if not held:
        return
    with ctx.database().write() as session:
        note_held(session, crl_row.authority_id, crl_row.number, held, now)


def note_held(session, authority_id: int, number: int, held: list[tuple[str, str]], now: datetime) -> None:
    """In ``session``: these (store, kind) folders now hold CRL ``number`` of the authority."""
    paths = {store_path for store_path, _ in held}
    existing = {
        (row.store_path, row.kind): row
        for row in session.scalars(
            select(db.StoreCrl).where(db.StoreCrl.authority_id == authority_id, db.StoreCrl.store_path.in_(paths))
        )
    }
    for store_path, kind in held:
        row = existing.get((store_path, kind))
        if row is None:
            session.add(db.StoreCrl(authority_id=authority_id, store_path=store_path, kind=kind, crl_number=number, published_at=now))
        elif row.crl_number < number:  # only forward: a slower publisher never records an older CRL
            row.crl_number = number
            row.published_at = now
