"""Finish or undo what a killed certmgr process left: pending certificates (intents) and renewal claims.

Every command that changes a home or a store calls ``recover`` first (certbot's ensure_deployed idea), so the
next command after a crash, of any kind, repairs. A pending certificate whose owner still runs is left alone: a
process of this host is dead when its PID or start time no longer match (certmgr/owners.py); a process of another
host only when its claim is older than ``[renew] claim_timeout``.

Decision per pending certificate, from what the store holds (files first, outside any database transaction):
the store serves it -> the change is completed in the database; it does not -> its staged or half-installed
files are removed, the previous pair is put back if the switch was cut, and the certificate is failed and
revoked (the next CRL lists it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select

import db
import pki

from .. import owners
from ..context import AppContext
from ..durations import parse_duration
from . import lifecycle

log = logging.getLogger(__name__)


def claim_timeout(ctx: AppContext) -> timedelta:
    return parse_duration(ctx.settings.renew.claim_timeout)


@dataclass
class _Pending:
    cert_id: int
    app_id: int
    app_uri: str
    thumbprint: str
    intent: str | None
    owner: str | None
    created_at: datetime
    store_path: str | None
    layout: str
    deploy: str
    endpoint: str | None
    claimed_by: str | None
    claimed_at: datetime | None


def _abandoned(owner: str | None, since: datetime, now: datetime, timeout: timedelta) -> bool:
    """A process of this host is abandoned when it no longer runs (never by age: a long batch is alive); one of
    another host when its claim or intent is older than the timeout."""
    if owners.is_local(owner):
        return owners.is_dead(owner)
    return owners.is_dead(owner) or since < now - timeout


def key_matches(key_pem: bytes, certificate) -> bool:
    import ca

    try:
        return ca.key_matches_certificate(ca.load_private_key_pem(key_pem), certificate.public_key())
    except ca.CAError:
        return False


def _store_decision(item: _Pending) -> tuple[bool, list[str]]:
    """(completed, repairs) from the store's files, under the store lock."""
    store = pki.ApplicationStore(item.store_path, item.layout)
    if not store.root.is_dir():
        return False, []
    with store.locked():
        repairs = store.repair_own_pair(key_matches)
        own = store.own()
        completed = own is not None and own.thumbprint == item.thumbprint
        if completed:
            repairs += store.keep_only_own(item.thumbprint)
        else:
            repairs += store.discard_pair(item.thumbprint)
        store.unstage(item.thumbprint)
    return completed, repairs


def serves(endpoint: str | None, thumbprint: str) -> bool:
    """Whether the server at ``endpoint`` presents the certificate ``thumbprint`` now (GetEndpoints only)."""
    import asyncio

    from ..opcua.proofs import endpoint_certificate

    if not endpoint:
        return False
    try:
        certificate, _ = asyncio.run(endpoint_certificate(endpoint, timeout=5.0))
    except Exception:  # unreachable: it cannot be serving a certificate it never finished installing
        return False
    return pki.thumbprint(certificate) == thumbprint


def _push_decision(item: _Pending) -> bool:
    """A push the process died in: completed only if the server presents the new certificate now."""
    return serves(item.endpoint, item.thumbprint)


def recover(ctx: AppContext, *, now: datetime | None = None) -> int:
    """Finish or undo every abandoned intent and release abandoned claims; returns how many certificates were
    revoked (the caller's next CRL must list them)."""
    now = now or ctx.now()
    timeout = claim_timeout(ctx)
    database = ctx.database()
    with database.read() as session:
        rows = session.execute(
            select(db.Certificate.id, db.Certificate.application_id, db.Application.app_uri, db.Certificate.thumbprint,
                   db.Certificate.intent, db.Certificate.intent_owner, db.Certificate.created_at,
                   func.coalesce(db.Certificate.intent_store, db.Application.store_path),
                   func.coalesce(db.Certificate.intent_layout, db.Application.layout), db.Application.deploy, db.Application.endpoint, db.Application.renewal_claimed_by,
                   db.Application.renewal_claimed_at)
            .join(db.Application, db.Certificate.application_id == db.Application.id)
            .where(db.Certificate.status == db.CertStatus.PENDING)
        ).all()
        claims = session.execute(
            select(db.Application.id, db.Application.renewal_claimed_by, db.Application.renewal_claimed_at)
            .where(db.Application.renewal_claimed_by.is_not(None))
        ).all()
    decisions: list[tuple[_Pending, bool, list[str]]] = []
    for row in rows:
        item = _Pending(*row)
        since = max(item.created_at, item.claimed_at or item.created_at)
        if not _abandoned(item.owner or item.claimed_by, since, now, timeout):
            continue
        if item.deploy == "push" or not item.store_path:
            completed, repairs = _push_decision(item), []
        else:
            completed, repairs = _store_decision(item)
        decisions.append((item, completed, repairs))
    dead_claims = [app_id for app_id, by, at in claims if at is None or _abandoned(by, at, now, timeout)]
    if not decisions and not dead_claims:
        return 0
    revoked = 0
    with database.write() as session:
        for item, completed, repairs in decisions:
            row = session.get(db.Certificate, item.cert_id)
            if row is None or row.status != db.CertStatus.PENDING:
                continue  # another process recovered it meanwhile
            for repair in repairs:
                from db import queries

                queries.add_audit(session, at=now, actor="certmgr", action="renewal.recover", target=item.app_uri, repair=repair)
            lifecycle.abandon(session, row, completed=completed, now=now, by=owners.describe(item.owner))
            revoked += 0 if completed else 1
            log.warning("%s: %s %s left by %s", item.app_uri, "completed" if completed else "undid", item.intent or "change",
                        owners.describe(item.owner))
        if dead_claims:
            for app in session.scalars(select(db.Application).where(db.Application.id.in_(dead_claims))):
                claimed_at = app.renewal_claimed_at
                if app.renewal_claimed_by and (claimed_at is None or _abandoned(app.renewal_claimed_by, claimed_at, now, timeout)):
                    app.renewal_claimed_by = None
                    app.renewal_claimed_at = None
    return revoked


def pending_summary(session) -> list[tuple[str, str, str | None]]:
    """(application URI, thumbprint, owner) of every pending certificate: `db check` and `store status` report them."""
    return session.execute(
        select(db.Application.app_uri, db.Certificate.thumbprint, db.Certificate.intent_owner)
        .join(db.Application, db.Certificate.application_id == db.Application.id)
        .where(or_(db.Certificate.status == db.CertStatus.PENDING))
    ).all()
