"""Revocation reaching every place certmgr's CA went, and `certmgr fleet status` (one health view)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

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


TRUSTLIST = "trustlist"  # store_crls.kind of a push server's TrustList (store_path = its endpoint), as read back


@dataclass
class PeerDelivery:
    publications: list[StorePublication] = field(default_factory=list)
    unreached: list[str] = field(default_factory=list)  # one line per place that holds an older CRL, with its command

    def summary(self) -> str | None:
        if not self.unreached:
            return None
        return f"{len(self.unreached)} places hold an older CRL than certmgr's current one:\n" + "\n".join(f"  {u}" for u in self.unreached)


def peer_store_targets(ctx: AppContext) -> list[StoreTarget]:
    from .peers import BUNDLE

    with ctx.database().read() as session:
        rows = session.execute(select(db.Peer.store_path, db.Peer.layout).where(
            db.Peer.store_path.is_not(None), db.Peer.layout != BUNDLE)).all()
    return [StoreTarget(path, layout, ()) for path, layout in rows]


def deliver_crl_to_peer_stores(ctx: AppContext, crl_row: db.Crl, ca_cert: x509.Certificate, now: datetime | None = None) -> PeerDelivery:
    """Publish ``crl_row`` into every peer store that holds certmgr's CA (the revocation and CRL refresh
    paths call this after publish_everywhere); what could not be written is listed (places_behind)."""
    delivery = PeerDelivery()
    for target in peer_store_targets(ctx):
        delivery.publications.append(publish_to_store(target, crl_row.der, ca_cert, crl_row.number))
    record_publications(ctx, crl_row, [p for p in delivery.publications if p.status in (PUBLISHED, UNCHANGED)], now or ctx.now())
    delivery.unreached = places_behind(ctx, crl_row.number, delivery.publications)
    return delivery


def note_trust_list(ctx: AppContext, endpoint: str, crl_number: int, now: datetime) -> None:
    """A push server's TrustList read back holding certmgr's CRL ``crl_number`` (only forward)."""
    from .publishing import note_held

    with ctx.database().write() as session:
        note_held(session, queries.authority(session).id, crl_number, [(endpoint, TRUSTLIST)], now)


def _bundle_crl(folder: Path, ca_cert: x509.Certificate) -> int | None:
    """The newest CRL number of certmgr's CA among the files of an exported bundle."""
    held = None
    for path in folder.iterdir() if folder.is_dir() else ():
        if path.suffix.lower() not in (".crl", ".der", ".pem"):  # the README and what else an administrator keeps there
            continue
        try:
            crl = pki.parse_crl(path.read_bytes())
        except (OSError, ValueError):
            continue
        number = pki.crl_number(crl) if crl.issuer == ca_cert.subject else None
        if number is not None:
            held = number if held is None else max(held, number)
    return held


def places_behind(ctx: AppContext, current: int, publications: list[StorePublication] = ()) -> list[str]:
    """Each place that holds certmgr's CA with a CRL older than ``current`` and that certmgr did not (or cannot)
    bring up to date, one line with the command that delivers it: a peer store that could not be written,
    an exported bundle (`trust-exchange --export` refreshes it; the server's administrator copies it), and a
    push server whose TrustList was last read back without the current CRL."""
    from .peers import BUNDLE, PUSH_SOURCE

    ca_cert = pki.parse_certificate(ctx.home.ca_cert_path.read_bytes())
    lines = [f"store {p.store}: {p.message} (fix it, then `certmgr crl refresh`)" for p in publications if p.status == ERROR]
    with ctx.database().read() as session:
        bundles = session.execute(select(db.Peer.store_path, db.Peer.name, db.Peer.app_uri).where(db.Peer.layout == BUNDLE)).all()
        authority = queries.authority(session)
        pushed = session.execute(select(db.Application.app_uri, db.Application.endpoint)  # those a push registered
                                 .join(db.Peer, (db.Peer.endpoint == db.Application.endpoint) & (db.Peer.source == PUSH_SOURCE))
                                 .where(db.Application.deploy == "push").order_by(db.Application.app_uri)).all()
        lists = {row.store_path: row.crl_number for row in session.scalars(select(db.StoreCrl).where(
            db.StoreCrl.authority_id == authority.id, db.StoreCrl.kind == TRUSTLIST))}
    for folder, server, app_uri in bundles:
        held = _bundle_crl(Path(folder), ca_cert)
        if held is None or held < current:
            what = f"CRL {held}" if held is not None else "no CRL of certmgr's CA"
            lines.append(f"exported bundle {folder} for {server} holds {what}: `certmgr trust-exchange --app-uri {app_uri} "
                         f"--endpoint {server} --export {folder}`, then the server's administrator copies the new CRL")
    for app_uri, endpoint in pushed:
        held = lists.get(endpoint)
        if held is None:
            lines.append(f"push server {endpoint} ({app_uri}): its TrustList was never read back holding certmgr's CRL (the "
                         "server ignores TrustList writes): place the CRL in its PKI folder with `certmgr store import ... --crl`")
        elif held < current:
            lines.append(f"push server {endpoint} ({app_uri}): its TrustList holds CRL {held}: `certmgr push --app-uri {app_uri}`")
    return lines


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


def fleet_status(ctx: AppContext) -> dict:
    """Every application and peer on one list, with the last probe of its endpoint; exit code like check."""
    from ..alerts.levels import LevelCutoffs
    from ..alerts.settings import alert_settings
    from .peers import BUNDLE

    ctx.require_initialised()
    settings, now = alert_settings(ctx.settings), ctx.now()
    level_of = LevelCutoffs(now, settings.warning, settings.critical)  # one comparison per row (10,000 rows)
    rows: list[dict] = []
    with ctx.database().read() as session:
        probes = {p.endpoint: p for p in session.scalars(select(db.ProbeResult))}
        authority = queries.authority(session)
        latest = queries.latest_crl(session, authority.id) if authority else None
        # The columns shown, not whole rows: 10,000 DER certificates are not loaded for a list. Executed on the
        # session's connection (Core): plain column tuples skip the ORM's per-row result processing, a fifth of
        # this function's time at 10,000 rows (scripts/bench.py web).
        apps = session.connection().execute(
            select(db.Application.deploy, db.Application.app_uri, db.Application.endpoint, db.Application.store_path,
                   db.Certificate.thumbprint, db.Certificate.not_after)
            .join(db.Certificate, (db.Certificate.application_id == db.Application.id) & (db.Certificate.status == db.CertStatus.ACTIVE))
            .where(db.Application.internal.is_(False)).order_by(db.Application.app_uri)
        ).all()
        from .gds import last_pulls

        pulls = last_pulls(session) if any(a[0] == "pull" for a in apps) else {}
        for deploy, app_uri, endpoint, store_path, thumbprint, not_after in apps:
            rows.append(_row(deploy if deploy in ("push", "pull") else "store", app_uri, endpoint, thumbprint, not_after,
                             [], store_path, probes.get(endpoint), level_of))
            if deploy == "pull":  # what the GDS saw of its agent: the last certificate and trust-list pulls
                seen = pulls.get(app_uri, {})
                rows[-1]["last_pull"] = _when(seen.get("gds.finish"))
                rows[-1]["last_trust_list_pull"] = _when(seen.get("gds.trust_list"))
        by_endpoint = {row["endpoint"]: row for row in rows if row["endpoint"]}
        for peer in session.scalars(select(db.Peer).order_by(db.Peer.name)):
            findings = list(peer.findings or []) + list(peer.flags or [])
            if peer.changed_at is not None:
                findings.append(f"certificate changed {peer.previous_thumbprint} -> {peer.thumbprint}")
            if peer.endpoint in by_endpoint:  # a push server registered by `push`: one row, the application's
                app_row = by_endpoint[peer.endpoint]
                app_row["findings"] += findings if peer.thumbprint != app_row["thumbprint"] else []
                continue
            if peer.layout == BUNDLE:
                rows.append(_row("bundle", peer.app_uri, None, None, None, [f"exported for {peer.name}"], peer.store_path,
                                 None, level_of))
                continue
            rows.append(_row("peer", peer.app_uri, peer.endpoint, peer.thumbprint, peer.not_after, findings, peer.store_path,
                             probes.get(peer.endpoint) if peer.endpoint else None, level_of))
    current = latest.number if latest else None
    behind = places_behind(ctx, current) if current is not None else []
    code = 0
    for row in rows:
        row["crl_current"] = current
        place = {"bundle": f"bundle {row['store']} ", "push": f"push server {row['endpoint']} "}.get(row["kind"])
        if place and row["fix"] is None:  # the command that brings its CRL up to date
            row["fix"] = next((line for line in behind if place in line), None)
        code = max(code, CHECK_CODES.get(row["level"] or "ok", 0))
        if row["trusts_ca"] is False or (row["crl_effective"] is not None and current is not None and row["crl_effective"] < current):
            code = max(code, 2)  # a revocation not in effect is as urgent as an expiring certificate
    return {"code": code, "crl_current": current, "rows": rows}


def _when(at) -> str | None:
    if at is None:
        return None
    from datetime import timezone

    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).isoformat()


def _row(kind, app_uri, endpoint, thumbprint, not_after, findings, store, probe, level_of) -> dict:
    return {
        "kind": kind, "app_uri": app_uri, "endpoint": endpoint, "store": store, "thumbprint": thumbprint,
        "not_after": not_after.isoformat() if not_after else None, "level": level_of(not_after) if not_after else None,
        "trusts_ca": probe.trusts_ca if probe else None, "crl_effective": probe.crl_effective if probe else None,
        "last_probe": probe.probed_at.isoformat() if probe else None, "findings": findings,
        "fix": probe.fix if probe else None,
    }
