"""What the web console shows, composed from the services the CLI uses (`show`, `peer show`, `store status`,
`store rejected`, `fleet status`, the CRL records): one function per page, plain dicts out, no HTTP here."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select

import db
import pki
from db import queries

from ..context import AppContext
from ..errors import InputError
from .store_inspect import RejectedCache, inspect_store, rejected_entries

HISTORY_ACTIONS = ("certificate.", "renewal.", "push", "probe", "store.")  # audit events shown on a detail page
EVENTS = 20


def inbox_stores(ctx: AppContext) -> list[tuple[pki.ApplicationStore, list[str]]]:
    """The stores of registered applications, then registered peer stores (`peer add --store`), each once, with
    who uses each one ("refused by": the application URIs, or the peer's name). Folders that do not exist here
    are left out. Plain strings and os.path until a folder exists: 10,000 registered applications make
    10,000 pathlib objects the larger part of the inbox's time otherwise."""
    from .peers import BUNDLE

    with ctx.database().read() as session:
        apps = session.execute(select(db.Application.store_path, db.Application.layout, db.Application.app_uri)
                               .where(db.Application.store_path.is_not(None)).order_by(db.Application.store_path)).all()
        peers = session.execute(select(db.Peer.store_path, db.Peer.layout, db.Peer.name).where(
            db.Peer.store_path.is_not(None), db.Peer.layout != BUNDLE)).all()
    grouped: dict[str, tuple[str, list[str]]] = {}
    for path, layout, uri in apps:
        grouped.setdefault(path, (layout, []))[1].append(uri)
    for path, layout, name in peers:
        grouped.setdefault(path, (layout, [f"peer {name}"]))
    return [(pki.ApplicationStore(path, layout), users) for path, (layout, users) in grouped.items() if os.path.isdir(path)]


def registered_store(ctx: AppContext, path: str) -> pki.ApplicationStore | None:
    """The registered store at exactly ``path`` (the console never opens a folder a form names), else None."""
    return next((store for store, _ in inbox_stores(ctx) if str(store.root) == path), None)


def inbox(ctx: AppContext, cache: RejectedCache | None = None) -> list[dict]:
    """Every readable certificate in a registered rejected/ folder, one row per (store, certificate), with who
    refused it, in how many folders the same certificate was refused ("times seen"), and when it was first seen
    (the oldest of those files: stacks write a refused certificate once, so a file's time is its first refusal)."""
    rows = [{**entry, "store": str(store.root), "refused_by": users}
            for store, users in inbox_stores(ctx) for entry in rejected_entries(store, cache) if "thumbprint" in entry]
    by_thumbprint: dict[str, list[dict]] = {}
    for row in rows:
        by_thumbprint.setdefault(row["thumbprint"], []).append(row)
    for same in by_thumbprint.values():
        first = min(r["first_seen"] for r in same)
        for row in same:
            row["times_seen"], row["first_seen_anywhere"] = len(same), first
    return rows


def _events(ctx: AppContext, targets: list[str]) -> list[dict]:
    targets = [t for t in targets if t]
    if not targets:
        return []
    with ctx.database().read() as session:
        events = session.scalars(select(db.AuditEvent).where(db.AuditEvent.target.in_(targets))
                                 .order_by(db.AuditEvent.id.desc()).limit(EVENTS))
        return [{"at": e.at.isoformat(timespec="seconds"), "actor": e.actor, "action": e.action, "target": e.target,
                 "details": e.details} for e in events]


def _last(events: list[dict], prefixes: tuple[str, ...]) -> dict | None:
    return next((e for e in events if e["action"].startswith(prefixes)), None)


def proof_rows(event: dict | None) -> list[dict]:
    """The last proof's channels (renewals: each loopback and live channel's policy and status code) or push steps
    (each Part 12 step's status code), as the pipeline's commit step wrote them into the audit event."""
    details = (event or {}).get("details") or {}
    rows = [{"what": f"{'live' if c.get('live') else 'loopback'} {c.get('policy') or ''}".strip(), "status": c.get("status"),
             "refused_by": c.get("side"), "message": c.get("message") or ""} for c in details.get("channels") or []]
    return rows + [{"what": s.get("step"), "status": s.get("status"), "refused_by": None, "message": s.get("detail") or ""}
                   for s in details.get("steps") or []]


def _probe(ctx: AppContext, endpoint: str | None) -> dict | None:
    from .peers import probe_dict

    if not endpoint:
        return None
    with ctx.database().read() as session:
        return probe_dict(session.scalars(select(db.ProbeResult).where(db.ProbeResult.endpoint == endpoint)).first())


def _findings(ctx: AppContext, path: str | None, layout: str | None) -> dict | None:
    """`certmgr store status` of the folder (with the stale-CRL check of fleet status), or None without one."""
    from .fleet import stale_crl_problem

    if not path or not Path(path).is_dir():
        return None
    store = pki.ApplicationStore(path, layout or pki.DEFAULT_LAYOUT)
    report = inspect_store(store, ctx.now())
    stale = stale_crl_problem(ctx, store)
    if stale is not None:
        report.problems.append(stale)
    return report.as_dict()


def _fix(probe: dict | None, findings: dict | None) -> list[str]:
    fixes = [probe["fix"]] if probe and probe.get("fix") else []
    return fixes + [f"{p['where']}: {p['message']}" for p in (findings or {}).get("problems", []) if p["severity"] == "error"]


def application_detail(ctx: AppContext, app_uri: str) -> dict:
    """`certmgr show` + the store's findings + the last probe and proof of its endpoint + what to do."""
    from .inventory import show

    data = show(ctx, app_uri, ctx.now())
    if data["app_uri"] != app_uri:
        raise InputError(f"no application {app_uri!r} is registered", "see `certmgr list`")
    with ctx.database().read() as session:
        app = queries.application_by_uri(session, app_uri)
        deploy = app.deploy
    data["deploy"] = deploy
    data["findings"] = _findings(ctx, data["store"], data["layout"]) if deploy != "push" else None
    data["last_probe"] = _probe(ctx, data["endpoint"])
    data["events"] = _events(ctx, [app_uri, data["endpoint"]])
    data["last_proof"] = _last(data["events"], ("certificate.renew", "certificate.push", "certificate.issue", "renewal."))
    data["proof_channels"] = proof_rows(data["last_proof"])
    data["fix"] = _fix(data["last_probe"], data["findings"])
    return data


def peer_detail(ctx: AppContext, key: str) -> dict:
    """`certmgr peer show` + its store's findings (a store peer) + recent events + what to do."""
    from .peers import show_peer

    data = show_peer(ctx, key)
    data.setdefault("last_probe", None)
    data["findings"] = _findings(ctx, data["store"], data["layout"]) if data["layout"] != "bundle" else None
    data["events"] = _events(ctx, [data["endpoint"], data["store"], data["name"]])
    data["fix"] = _fix(data["last_probe"], data["findings"])
    if data["last_error"]:
        data["fix"].insert(0, f"last GetEndpoints failed: {data['last_error']}")
    return data


def crl_overview(ctx: AppContext) -> dict:
    """Per CA its current CRL; per store the number it holds (as published and recorded); per endpoint the
    number a probe proved it has loaded, and per push server the one its TrustList was read back with."""
    from .fleet import TRUSTLIST

    now = ctx.now()
    with ctx.database().read() as session:
        authorities = []
        current: dict[int, int] = {}
        for authority in session.scalars(select(db.Authority).order_by(db.Authority.id)):
            latest = queries.latest_crl(session, authority.id)
            current[authority.id] = latest.number if latest else None
            authorities.append({
                "name": authority.name, "thumbprint": authority.thumbprint,
                "number": latest.number if latest else None, "this_update": latest.this_update.isoformat() if latest else None,
                "next_update": latest.next_update.isoformat() if latest else None,
                "stale": bool(latest and latest.next_update <= now), "revoked": latest.revoked_count if latest else None})
        names = {a.id: a.name for a in session.scalars(select(db.Authority))}
        stores, lists = [], []
        for row in session.scalars(select(db.StoreCrl).order_by(db.StoreCrl.store_path, db.StoreCrl.kind)):
            item = {"ca": names.get(row.authority_id), "place": row.store_path, "kind": row.kind, "number": row.crl_number,
                    "current": current.get(row.authority_id), "at": row.published_at.isoformat(timespec="seconds")}
            (lists if row.kind == TRUSTLIST else stores).append(item)
        endpoints = [{"endpoint": p.endpoint, "number": p.crl_effective, "current": p.crl_current, "trusts_ca": p.trusts_ca,
                      "statuses": list(p.statuses or []), "fix": p.fix, "at": p.probed_at.isoformat(timespec="seconds")}
                     for p in session.scalars(select(db.ProbeResult).order_by(db.ProbeResult.endpoint))]
        external = [{"ca": e.issuer_subject, "place": e.store_path, "number": e.crl_number,
                     "next_update": e.next_update.isoformat(), "stale": e.next_update <= now}
                    for e in session.scalars(select(db.ExternalCrl).order_by(db.ExternalCrl.issuer_subject, db.ExternalCrl.store_path))]
    return {"authorities": authorities, "stores": stores, "trust_lists": lists, "endpoints": endpoints, "external": external}
