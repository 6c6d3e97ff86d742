"""What ``certmgr renew`` will renew: selection by renewal window, and claims so no certificate is renewed
twice (two runs on one home, or several certmgr nodes on one database)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import select

import db
from db import queries

from .. import owners
from ..context import AppContext
from ..errors import InputError
from . import windows
from .recovery import claim_timeout


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
            if app.deploy == "pull":
                raise InputError(f"{uri} pulls its certificates from certmgr's GDS (its key is on its own host)",
                                 "the application renews itself with a CSR; see `certmgr gds pending`")
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
                continue  # another node's verification identity (or a GDS's own): that node renews it
            if row.deploy == "pull":
                continue  # the application renews itself through the GDS, with a key certmgr never holds
            if row.app_id not in seen:
                # the row carries the certificate's dates and the application's window under their own names
                selection.due.append(Candidate.of_row(row, _due_reason(row, row, default, now)[1]))
    return selection


@dataclass
class Claim:
    claimed: list[Candidate] = field(default_factory=list)
    skipped: list[tuple[Candidate, str]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # app URIs skipped for a claim whose holder seems gone


def claim(ctx: AppContext, candidates: list[Candidate], token: str, now: datetime) -> Claim:
    """Take each application for this run; skip those another run holds or already renewed meanwhile.

    Abandoned claims were released by services.recovery before this runs. PostgreSQL: row locks with SKIP
    LOCKED, so two nodes never wait on or take the same application. SQLite: the write transaction is BEGIN
    IMMEDIATE, which serialises the claims.
    """
    result = Claim()
    if not candidates:
        return result
    # a live run refreshes its claims between phases; one untouched for a third of the timeout is probably dead
    quiet = now - claim_timeout(ctx) / 3
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
                result.skipped.append((candidate, "another certmgr node is renewing it right now"))
                continue
            if app.renewal_claimed_by:
                since = app.renewal_claimed_at
                why = f"claimed by {owners.describe(app.renewal_claimed_by)} since {since:%Y-%m-%d %H:%M:%S} UTC"
                if since is not None and since < quiet:
                    why += (f"; that run has not moved for {(now - since).total_seconds() / 60:.0f} min: it is recovered "
                            f"once the claim is {ctx.settings.renew.claim_timeout} old ([renew] claim_timeout)")
                    result.stale.append(candidate.app_uri)
                result.skipped.append((candidate, why))
                continue
            active = queries.active_certificate(session, app.id)
            if (active.id if active else None) != candidate.cert_id:
                result.skipped.append((candidate, "renewed meanwhile by another run"))
                continue
            app.renewal_claimed_by = token
            app.renewal_claimed_at = now
            result.claimed.append(candidate)
    return result


def release(ctx: AppContext, app_ids: list[int], token: str) -> None:
    """Give up this run's claims (the applications are renewable by any node again)."""
    def clear(app: db.Application) -> None:
        app.renewal_claimed_by = app.renewal_claimed_at = None

    _own_claims(ctx, app_ids, token, clear)


def touch(ctx: AppContext, app_ids: list[int], token: str) -> None:
    """Keep this run's claims fresh through a long batch (hooks, live proofs)."""
    now = ctx.now()

    def refresh(app: db.Application) -> None:
        app.renewal_claimed_at = now

    _own_claims(ctx, app_ids, token, refresh)


def _own_claims(ctx: AppContext, app_ids: list[int], token: str, change) -> None:
    """Apply ``change`` to the applications still claimed by ``token`` (a claim another run took over is left)."""
    if not app_ids:
        return
    with ctx.database().write() as session:
        for app in session.scalars(select(db.Application).where(db.Application.id.in_(app_ids))):
            if app.renewal_claimed_by == token:
                change(app)
