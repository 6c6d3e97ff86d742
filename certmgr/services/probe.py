"""`certmgr probe`: prove on each live endpoint that it trusts certmgr's CA and which CRL it has in effect."""

from __future__ import annotations

import asyncio
import dataclasses

from sqlalchemy import select

import db
from db import queries

from ..context import AppContext
from ..errors import InputError
from .canary import usable_canaries
from .peers import check_endpoint_url, peer_settings


def probe_targets(ctx: AppContext, *, all_: bool, app_uri: str | None, peer: str | None) -> list[str]:
    """Endpoints to probe: one application's, one peer's, or every application and peer endpoint."""
    with ctx.database().read() as session:
        if app_uri is not None:
            app = queries.application_by_uri(session, app_uri)
            if app is None or not app.endpoint:
                raise InputError(f"no application {app_uri!r} with an endpoint is registered", "set one with `certmgr issue --endpoint`")
            return [app.endpoint]
        if peer is not None:
            check_endpoint_url(peer)
            if session.scalars(select(db.Peer).where(db.Peer.endpoint == peer)).first() is None:
                raise InputError(f"no peer {peer!r} is registered", "add it with `certmgr peer add --endpoint URL`")
            return [peer]
        if not all_:
            raise InputError("nothing to probe was named", "pass --all, --app-uri URI or --peer URL")
        apps = session.scalars(select(db.Application.endpoint).where(
            db.Application.endpoint.is_not(None), db.Application.internal.is_(False)))
        peers = session.scalars(select(db.Peer.endpoint).where(db.Peer.endpoint.is_not(None)))
        return sorted(set(apps) | set(peers))


def good_identity(ctx: AppContext):
    """certmgr's verifier identity, without validating the server: a probe asks what the server accepts;
    the server's own certificate is tracked separately (peer tracking, live proofs)."""
    from ..opcua.identities import identity_from_store
    from .verifier import verifier_identity_uri, verifier_store

    identity = identity_from_store(verifier_store(ctx), verifier_identity_uri(ctx), peer_role="server", clock=ctx.now)
    return dataclasses.replace(identity, validator=None)


def current_number(ctx: AppContext) -> int | None:
    with ctx.database().read() as session:
        authority = queries.authority(session)
        latest = queries.latest_crl(session, authority.id) if authority else None
        return latest.number if latest else None


def probe(ctx: AppContext, targets: list[str]):
    """ProbeOutcome per endpoint (concurrent, bounded by [fleet] probe_concurrency); the last probe of
    each endpoint is stored."""
    from ..opcua.probe import probe_many

    settings = peer_settings(ctx)
    now = ctx.now()
    outcomes = asyncio.run(probe_many(targets, good_identity(ctx), usable_canaries(ctx, now), current_number(ctx),
                                      concurrency=settings.probe_concurrency, timeout=settings.timeout))
    record(ctx, outcomes)
    return outcomes


def record(ctx: AppContext, outcomes) -> None:
    now = ctx.now()
    with ctx.database().write() as session:
        existing = {r.endpoint: r for r in session.scalars(select(db.ProbeResult).where(
            db.ProbeResult.endpoint.in_([o.endpoint for o in outcomes])))}
        for o in outcomes:
            row = existing.get(o.endpoint) or db.ProbeResult(endpoint=o.endpoint, probed_at=now, statuses=[])
            row.trusts_ca, row.crl_effective, row.crl_current = o.trusts_ca, o.crl_effective, o.crl_current
            row.statuses, row.fix, row.probed_at = list(o.statuses), o.fix, now
            session.add(row)
        if outcomes:
            queries.add_audit(session, at=now, actor=ctx.actor, action="probe", target=None,
                              endpoints=len(outcomes), not_ok=[o.endpoint for o in outcomes if not o.ok])


def probe_subjects(ctx: AppContext, now):
    """Critical alert Subjects (kind "probe") for every endpoint whose last probe found the CA untrusted or
    the current CRL not in effect ("revocation not effective on X"); the lead chains them into the scan."""
    from ..alerts.levels import Subject

    with ctx.database().read() as session:
        rows = list(session.scalars(select(db.ProbeResult).where(db.ProbeResult.trusts_ca.is_not(None))))
    for row in rows:
        if row.trusts_ca and row.crl_current is not None and row.crl_effective == row.crl_current:
            continue
        if not row.trusts_ca:
            reason = f"{row.endpoint} does not trust certmgr's CA: {row.fix}"
        else:
            reason = f"revocation not effective on {row.endpoint} (CRL {row.crl_effective} of {row.crl_current}): {row.fix}"
        yield Subject(f"probe:{row.endpoint}", "probe", row.endpoint, None, row.probed_at, 0.0, "critical", reason)
