"""Revocation reaching every place certmgr's CA went, and `certmgr fleet status` (one health view)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from sqlalchemy import select

import db
import pki
from db import queries

from ..context import AppContext
from .publishing import ERROR, PUBLISHED, UNCHANGED, StorePublication, StoreTarget, publish_to_store, record_publications
from .store_inspect import ERROR as PROBLEM_ERROR
from .store_inspect import Problem

CHECK_CODES = {"ok": 0, "warning": 1, "critical": 2, "expired": 2}


@dataclass
class PeerDelivery:
    publications: list[StorePublication] = field(default_factory=list)
    unreached: list[str] = field(default_factory=list)  # one line per place that holds an older CRL

    def summary(self) -> str | None:
        if not self.unreached:
            return None
        return (f"{len(self.unreached)} places hold an older CRL: " + "; ".join(self.unreached)
                + " (deliver with `certmgr crl refresh`, or `certmgr trust-exchange --export DIR` for a bundle)")


def peer_store_targets(ctx: AppContext) -> list[StoreTarget]:
    with ctx.database().read() as session:
        rows = session.execute(select(db.Peer.store_path, db.Peer.layout, db.Peer.name).where(db.Peer.store_path.is_not(None))).all()
    return [StoreTarget(path, layout, ()) for path, layout, _ in rows]


def deliver_crl_to_peer_stores(ctx: AppContext, crl_row: db.Crl, ca_cert: x509.Certificate, now: datetime | None = None) -> PeerDelivery:
    """Publish ``crl_row`` into every peer store that holds certmgr's CA (the revocation and CRL refresh
    paths call this after publish_everywhere); what could not be written is listed."""
    delivery = PeerDelivery()
    for target in peer_store_targets(ctx):
        publication = publish_to_store(target, crl_row.der, ca_cert, crl_row.number)
        delivery.publications.append(publication)
        if publication.status == ERROR:
            delivery.unreached.append(f"{target.path} ({publication.message})")
    record_publications(ctx, crl_row, [p for p in delivery.publications if p.status in (PUBLISHED, UNCHANGED)], now or ctx.now())
    return delivery


def stale_crl_problem(ctx: AppContext, store: pki.ApplicationStore) -> Problem | None:
    """An ERROR when ``store`` holds certmgr's CA and its newest CRL of that CA is older than the current
    one in this home's database (also for a store certmgr never saw). `store status` appends it to the
    report of inspect_store when the home is initialised."""
    if not ctx.home.is_initialised():
        return None
    ca_cert = pki.parse_certificate(ctx.home.ca_cert_path.read_bytes())
    kinds = [k for k in (pki.TRUSTED, pki.ISSUER) if store.holds_certificate(ca_cert, k)]
    if not kinds:
        return None
    with ctx.database().read() as session:
        authority = queries.authority(session)
        latest = queries.latest_crl(session, authority.id) if authority else None
    if latest is None:
        return None
    held = None
    for kind in kinds:
        for path in store.ca_crl_files(ca_cert, kind):
            try:
                number = pki.crl_number(pki.parse_crl(path.read_bytes()))
            except (OSError, ValueError):
                continue
            if number is not None:
                held = number if held is None else max(held, number)
    if held is not None and held >= latest.number:
        return None
    what = f"CRL {held}" if held is not None else "no CRL"
    return Problem(PROBLEM_ERROR, str(store.root),
                   f"holds certmgr's CA with {what}; the current CRL is {latest.number}: peers revoked since are still accepted "
                   f"(run `certmgr peer add --store {store.root}` then `certmgr crl refresh`, or `certmgr store import` the CA with --crl)")


def _level_of(not_after: datetime | None, now: datetime, settings) -> str | None:
    from ..alerts.levels import certificate_level

    if not_after is None:
        return None
    return certificate_level(not_after, None, now, settings.warning, settings.critical, False)[0]


def fleet_status(ctx: AppContext) -> dict:
    """Every application and peer on one list, with the last probe of its endpoint; exit code like check."""
    from ..alerts.settings import alert_settings

    ctx.require_initialised()
    settings, now = alert_settings(ctx.settings), ctx.now()
    rows: list[dict] = []
    with ctx.database().read() as session:
        probes = {p.endpoint: p for p in session.scalars(select(db.ProbeResult))}
        authority = queries.authority(session)
        latest = queries.latest_crl(session, authority.id) if authority else None
        apps = session.execute(
            select(db.Application, db.Certificate)
            .join(db.Certificate, (db.Certificate.application_id == db.Application.id) & (db.Certificate.status == db.CertStatus.ACTIVE))
            .where(db.Application.internal.is_(False)).order_by(db.Application.app_uri)
        ).all()
        for app, cert in apps:
            rows.append(_row("push" if app.deploy == "push" else "store", app.app_uri, app.endpoint, cert.thumbprint, cert.not_after,
                             [], app.store_path, probes.get(app.endpoint), now, settings))
        for peer in session.scalars(select(db.Peer).order_by(db.Peer.name)):
            findings = list(peer.findings or []) + list(peer.flags or [])
            if peer.changed_at is not None:
                findings.append(f"certificate changed {peer.previous_thumbprint} -> {peer.thumbprint}")
            rows.append(_row("peer", peer.app_uri, peer.endpoint, peer.thumbprint, peer.not_after, findings, peer.store_path,
                             probes.get(peer.endpoint) if peer.endpoint else None, now, settings))
    current = latest.number if latest else None
    code = 0
    for row in rows:
        row["crl_current"] = current
        code = max(code, CHECK_CODES.get(row["level"] or "ok", 0))
        if row["trusts_ca"] is False or (row["crl_effective"] is not None and current is not None and row["crl_effective"] < current):
            code = max(code, 2)  # a revocation not in effect is as urgent as an expiring certificate
    return {"code": code, "crl_current": current, "rows": rows}


def _row(kind, app_uri, endpoint, thumbprint, not_after, findings, store, probe, now, settings) -> dict:
    return {
        "kind": kind, "app_uri": app_uri, "endpoint": endpoint, "store": store, "thumbprint": thumbprint,
        "not_after": not_after.isoformat() if not_after else None, "level": _level_of(not_after, now, settings),
        "trusts_ca": probe.trusts_ca if probe else None, "crl_effective": probe.crl_effective if probe else None,
        "last_probe": probe.probed_at.isoformat() if probe else None, "findings": findings,
        "fix": probe.fix if probe else None,
    }
