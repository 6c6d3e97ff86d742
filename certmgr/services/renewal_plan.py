"""What ``certmgr renew`` will renew: selection by renewal window, and claims so no certificate is renewed
twice (two runs on one home, or several certmgr nodes on one database)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import select

import db
from db import queries

from ..context import AppContext
from ..errors import InputError
from . import windows

CLAIM_TIMEOUT = timedelta(minutes=30)  # a claim older than this belongs to a node that died mid-batch


def claim_timeout(ctx: AppContext) -> timedelta:
    """[renew] claim_timeout in certmgr.toml; longer than any renewal batch can take."""
    from ..durations import parse_duration

    value = (ctx.settings.raw.get("renew", {}) or {}).get("claim_timeout")
    return parse_duration(str(value)) if value else CLAIM_TIMEOUT


@dataclass
class Candidate:
    """An application to renew, detached from any database session."""

    app_id: int
    app_uri: str
    role: str
    store_path: str | None
    layout: str
    key_size: int
    validity_days: int
    name: str
    organization: str | None
    dns_names: list[str]
    ip_addresses: list[str]
    endpoint: str | None
    deploy_hook: str | None
    renew_before_seconds: int | None
    internal: bool
    deploy: str
    cert_id: int | None
    thumbprint: str | None
    not_after: datetime | None
    reason: str = ""

    @classmethod
    def of(cls, app: db.Application, cert: db.Certificate | None, reason: str = "") -> Candidate:
        own = {"app_id": app.id, "cert_id": cert.id if cert else None, "thumbprint": cert.thumbprint if cert else None,
               "not_after": cert.not_after if cert else None}
        fields = {name: own[name] if name in own else getattr(app, name) for name in cls.__dataclass_fields__ if name != "reason"}
        return cls.of_row(SimpleNamespace(**fields), reason)

    @classmethod
    def of_row(cls, row, reason: str = "") -> Candidate:
        """From a row of ``queries.due_statement`` (columns named as the fields), or anything shaped alike."""
        values = {name: getattr(row, name) for name in cls.__dataclass_fields__ if name != "reason"}
        values.update(role=row.role.value, dns_names=list(row.dns_names or []), ip_addresses=list(row.ip_addresses or []))
        return cls(**values, reason=reason)


@dataclass
class Selection:
    due: list[Candidate] = field(default_factory=list)
    not_due: list[Candidate] = field(default_factory=list)


def _due_reason(cert: db.Certificate, app: db.Application, default, now: datetime) -> tuple[bool, str]:
    left = cert.not_after - now
    window = windows.window(cert.not_before, cert.not_after, app.renew_before_seconds, default)
    days = left.total_seconds() / 86400
    label = windows.describe_window(app.renew_before_seconds, default)
    if cert.renew_after is not None and cert.renew_after <= now:
        if days < 0:
            return True, f"expired {-days:.1f} days ago (window {label})"
        return True, f"{days:.1f} days left, inside the renewal window ({label}, {window.total_seconds() / 86400:.1f} days)"
    return False, f"{days:.1f} days left; due in {(left - window).total_seconds() / 86400:.1f} days (window {label})"


def select_candidates(
    ctx: AppContext, *, app_uris: tuple[str, ...], all_due: bool, force: bool, now: datetime, dry_run: bool = False
) -> Selection:
    if not app_uris and not all_due:
        raise InputError("nothing selected", "give --app-uri URI (repeatable) or --all-due")
    if not dry_run:
        windows.sync_renew_after(ctx)
        with ctx.database().read() as session:
            return _select(ctx, session, app_uris, all_due, force, now)
    # a dry run sees the renewal dates as a real run would, and then rolls them back: it changes nothing
    with ctx.database().write() as session:
        windows.sync_renew_after(ctx, session)
        session.flush()
        selection = _select(ctx, session, app_uris, all_due, force, now)
        session.rollback()
    return selection


def _select(ctx: AppContext, session, app_uris: tuple[str, ...], all_due: bool, force: bool, now: datetime) -> Selection:
    default = windows.default_window(ctx)
    selection = Selection()
    if app_uris:
        for uri in dict.fromkeys(app_uris):
            app = queries.application_by_uri(session, uri)
            if app is None:
                raise InputError(f"no application {uri!r} is registered", "see `certmgr list`")
            cert = queries.active_certificate(session, app.id)
            if cert is None:
                target = selection.due if force else selection.not_due
                reason = "no active certificate (forced)" if force else "no active certificate; renew it with --force"
                target.append(Candidate.of(app, None, reason))
                continue
            due, reason = _due_reason(cert, app, default, now)
            if force:
                selection.due.append(Candidate.of(app, cert, "forced" + ("" if due else f" ({reason})")))
            else:
                (selection.due if due else selection.not_due).append(Candidate.of(app, cert, reason))
    if all_due:
        seen = {c.app_id for c in selection.due + selection.not_due}
        rows = session.execute(queries.due_statement(now)).all()
        own_verifier = str(ctx.home.verifier_store)
        for row in rows:
            if row.internal and row.store_path != own_verifier:
                continue  # another node's verification identity: that node renews it
            if row.app_id not in seen:
                # the row carries the certificate's dates and the application's window under their own names
                selection.due.append(Candidate.of_row(row, _due_reason(row, row, default, now)[1]))
    return selection


def claim_token(ctx: AppContext) -> str:
    return f"{ctx.actor}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class Claim:
    claimed: list[Candidate] = field(default_factory=list)
    skipped: list[tuple[Candidate, str]] = field(default_factory=list)
    abandoned_revoked: int = 0  # staged certificates of dead runs, revoked now: the CRL must follow


def claim(ctx: AppContext, candidates: list[Candidate], token: str, now: datetime) -> Claim:
    """Take each application for this run; skip those another run holds or already renewed meanwhile.

    PostgreSQL: row locks with SKIP LOCKED, so two nodes never wait on or take the same application.
    SQLite: the write transaction is BEGIN IMMEDIATE, which serialises the claims.
    """
    result = Claim()
    if not candidates:
        return result
    timeout = claim_timeout(ctx)
    claimed, skipped = result.claimed, result.skipped
    by_id = {c.app_id: c for c in candidates}
    database = ctx.database()
    with database.write() as session:
        statement = select(db.Application).where(db.Application.id.in_(list(by_id)))
        if not database.is_sqlite:
            statement = statement.with_for_update(skip_locked=True)
        locked = {app.id: app for app in session.scalars(statement)}
        for app_id, candidate in by_id.items():
            app = locked.get(app_id)
            if app is None:
                skipped.append((candidate, "another certmgr node is renewing it right now"))
                continue
            if app.renewal_claimed_by and app.renewal_claimed_at and app.renewal_claimed_at > now - timeout:
                skipped.append((candidate, f"claimed by {app.renewal_claimed_by} since {app.renewal_claimed_at:%H:%M:%S}"))
                continue
            if app.renewal_claimed_by:
                result.abandoned_revoked += _recover(session, app, now)
            active = queries.active_certificate(session, app.id)
            if (active.id if active else None) != candidate.cert_id:
                skipped.append((candidate, "renewed meanwhile by another run"))
                continue
            app.renewal_claimed_by = token
            app.renewal_claimed_at = now
            claimed.append(candidate)
    return result


def sweep_stale_claims(ctx: AppContext, now: datetime) -> int:
    """Release claims of runs that died (older than the claim timeout), finishing or failing what they left.
    Returns how many staged certificates were revoked."""
    cutoff = now - claim_timeout(ctx)
    revoked = 0
    database = ctx.database()
    with database.write() as session:
        statement = select(db.Application).where(db.Application.renewal_claimed_by.is_not(None), db.Application.renewal_claimed_at < cutoff)
        if not database.is_sqlite:
            statement = statement.with_for_update(skip_locked=True)
        for app in session.scalars(statement):
            revoked += _recover(session, app, now)
            app.renewal_claimed_by = None
            app.renewal_claimed_at = None
    return revoked


def _recover(session, app: db.Application, now: datetime) -> int:
    """A node died holding this application. If it had switched the store to its new certificate, finish
    that switch in the database; otherwise its staged certificate never went live: fail and revoke it.
    Returns how many certificates were revoked."""
    import pki

    revoked = 0
    pending_rows = session.scalars(
        select(db.Certificate).where(db.Certificate.application_id == app.id, db.Certificate.status == db.CertStatus.PENDING)
    ).all()
    store = pki.ApplicationStore(app.store_path, app.layout) if app.store_path else None
    if store is not None and store.root.is_dir():
        for repair in store.repair_own_pair(_key_matches):
            queries.add_audit(session, at=now, actor="certmgr", action="renewal.recover", target=app.app_uri, repair=repair)
    own = store.own() if store is not None and store.root.is_dir() else None
    for pending in pending_rows:
        if own is not None and own.thumbprint == pending.thumbprint:
            for active in session.scalars(
                select(db.Certificate).where(db.Certificate.application_id == app.id, db.Certificate.status == db.CertStatus.ACTIVE)
            ):
                active.status = db.CertStatus.SUPERSEDED
                active.status_reason = f"renewed by {pending.thumbprint} (switch completed after {app.renewal_claimed_by} died)"
            pending.status = db.CertStatus.ACTIVE
            queries.add_audit(session, at=now, actor="certmgr", action="renewal.recover", target=app.app_uri,
                              thumbprint=pending.thumbprint, abandoned_by=app.renewal_claimed_by, completed=True)
            continue
        pending.status = db.CertStatus.FAILED
        pending.status_reason = f"abandoned by {app.renewal_claimed_by} (claim timed out)"
        pending.revoked_at = now
        pending.revocation_reason = "superseded"
        revoked += 1
        if store is not None:
            store.unstage(pending.thumbprint)
        queries.add_audit(session, at=now, actor="certmgr", action="renewal.recover", target=app.app_uri,
                          thumbprint=pending.thumbprint, abandoned_by=app.renewal_claimed_by, completed=False)
    return revoked


def _key_matches(key_pem: bytes, certificate) -> bool:
    import ca

    try:
        return ca.key_matches_certificate(ca.load_private_key_pem(key_pem), certificate.public_key())
    except ca.CAError:
        return False


def release(ctx: AppContext, app_ids: list[int], token: str) -> None:
    if not app_ids:
        return
    with ctx.database().write() as session:
        for app in session.scalars(select(db.Application).where(db.Application.id.in_(app_ids))):
            if app.renewal_claimed_by == token:
                app.renewal_claimed_by = None
                app.renewal_claimed_at = None
