"""Register an application and issue its certificate into its store (``certmgr issue``).

Intent before effect: the new certificate is committed as ``pending`` (intent "issue") before the store is
touched, then the store is written, then the certificate is activated. A crash in between leaves a pending row
that the next command finishes (the store holds it) or undoes (it does not): see services/recovery.py.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

import ca
import db
import pki
from db import queries

from ..context import AppContext
from ..errors import InputError, OperationFailed
from ..owners import current_owner
from . import lifecycle, windows
from .app_spec import AppSpec, build_spec
from .ca_chain import load_chain
from .crls import install_ca_and_crl
from .publishing import note_held
from .store_paths import check_store_location

# cryptography releases the GIL while it generates an RSA key, so the key is made in this thread while the
# issuing thread reads the database and prepares the store: the bookkeeping hides behind the ~70 ms keygen.
_KEYGEN = ThreadPoolExecutor(max_workers=1, thread_name_prefix="certmgr-keygen")


@dataclass
class IssueRequest:
    app_uri: str
    store: Path | None
    layout: str | None = None
    name: str | None = None
    organization: str | None = None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    role: str = "both"
    key_size: int | None = None
    days: int | None = None
    renew_before: str | None = None
    force: bool = False
    internal: bool = False


@dataclass
class IssueOutcome:
    app_uri: str
    thumbprint: str
    serial: str
    not_before: datetime
    not_after: datetime
    store: str
    layout: str
    files: list[str] = field(default_factory=list)
    replaced: str | None = None

    def as_dict(self) -> dict:
        return {
            "app_uri": self.app_uri, "thumbprint": self.thumbprint, "serial": self.serial,
            "not_before": self.not_before.isoformat(), "not_after": self.not_after.isoformat(), "store": self.store,
            "layout": self.layout, "files": self.files, "replaced": self.replaced,
        }


@dataclass
class Plan:
    spec: AppSpec
    store: pki.ApplicationStore


def plan(ctx: AppContext, req: IssueRequest) -> Plan:
    """Check every input before anything is written; each problem is an InputError (exit 2)."""
    spec = build_spec(ctx, app_uri=req.app_uri, name=req.name, organization=req.organization, dns_names=req.dns_names,
                      ip_addresses=req.ip_addresses, role=req.role, key_size=req.key_size, days=req.days,
                      renew_before=req.renew_before)
    if req.store is None:
        raise InputError("no store folder given", "pass --store DIR (the application's certificate store)")
    root = req.store if req.internal else check_store_location(ctx, req.store, req.app_uri)
    try:
        # stored absolute: a command run from another folder must find the same store
        store = pki.ApplicationStore(Path(root).expanduser().absolute(), req.layout or ctx.settings.defaults.layout)
        store.check_usable()
    except pki.StoreError as exc:
        raise InputError(str(exc)) from None
    return Plan(spec, store)


def issue_application(ctx: AppContext, req: IssueRequest, *, key=None) -> IssueOutcome:
    planned = plan(ctx, req)
    pending: Future | None = _KEYGEN.submit(ca.generate_rsa_key, planned.spec.key_size) if key is None else None
    try:
        return _issue(ctx, req, planned, key if pending is None else pending)
    finally:
        if pending is not None:
            pending.cancel()  # refused before the key was needed: do not start it if it has not started


def _never_issued(session, application: db.Application) -> bool:
    """A registration whose first issue never completed (it crashed, or failed): issuing again needs no --force."""
    live = (db.CertStatus.ACTIVE, db.CertStatus.SUPERSEDED, db.CertStatus.REVOKED)
    return session.scalar(select(db.Certificate.id).where(
        db.Certificate.application_id == application.id, db.Certificate.status.in_(live)).limit(1)) is None


def _issue(ctx: AppContext, req: IssueRequest, planned: Plan, key) -> IssueOutcome:
    store = planned.store
    with ctx.database().read() as session:
        existing = queries.application_by_uri(session, req.app_uri)
        previous = queries.active_certificate(session, existing.id) if existing else None
        fresh_registration = existing is not None and _never_issued(session, existing)
        owner = session.scalars(
            select(db.Application.app_uri).where(db.Application.store_path == str(store.root), db.Application.app_uri != req.app_uri)
        ).first()
        old_layout = existing.layout if existing is not None and existing.store_path == str(store.root) else None
        authority = queries.authority(session)
        crl_row = queries.latest_crl(session, authority.id)
        rollover_in_progress = session.scalar(select(db.Authority.id).where(db.Authority.role.in_(("next", "previous"))).limit(1)) is not None
    if owner is not None:
        raise InputError(f"store {store.root} belongs to {owner}", "give each application its own store folder")
    if existing is not None and not req.force and not fresh_registration:
        raise InputError(
            f"application {req.app_uri} is already registered" + (f" (certificate {previous.thumbprint})" if previous else ""),
            f"renew it with `certmgr renew --app-uri {req.app_uri}`, or reissue with --force",
        )
    issuer = ctx.issuer()
    now = ctx.now()
    private_key = key.result() if isinstance(key, Future) else key
    try:
        cert = ca.build_application_certificate(planned.spec.identity, private_key.public_key(), issuer, now=now,
                                                days=planned.spec.days)
    except ca.ProfileError as exc:
        raise InputError(str(exc)) from None
    # the pair the store serves now, under the layout it was registered with (issue --force may change it)
    old_store = pki.ApplicationStore(store.root, old_layout) if old_layout and old_layout != store.layout.name else store
    before = old_store.own() if store.root.is_dir() else None
    fresh = not store.root.exists()  # a store this issue creates goes away whole if the issue fails
    cert_id = _record_intent(ctx, req, planned, cert, now, authority.id, before)
    installed = None
    try:
        try:
            # trusting the CA and carrying its CRL is a complete state of its own, so it may come first
            crl_kinds = install_ca_and_crl(store, issuer.certificate, crl_row, load_chain(ctx.home))
            if rollover_in_progress:  # the other CA generation of a rollover is trusted beside the signing one
                from .rollover_stores import install_generations

                install_generations(ctx, store, issuer.certificate)
            with store.locked():  # a renewal switching this store's pair (issue --force) waits, and vice versa
                if old_store is not store:
                    old_store.retire_own()  # the old layout's pair goes to history
                installed = store.install_own(cert, ca.private_key_pem(private_key), chain=(issuer.certificate,),
                                              keep_history=ctx.settings.renew.keep_history)
        except (OSError, pki.StoreError) as exc:
            raise OperationFailed(f"cannot write store {store.root}: {exc}", "check the folder's owner and free space") from None
        replaced = _commit(ctx, req, planned, cert_id, now, authority.id, (crl_row.number, crl_kinds))
    except BaseException as exc:
        _undo(ctx, store, old_store, fresh, before, cert, cert_id, exc)
        raise
    _catch_up_crl(ctx, store, issuer, crl_row.number)
    return IssueOutcome(
        app_uri=req.app_uri, thumbprint=pki.thumbprint(cert), serial=lifecycle.serial_hex(cert),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc, store=str(store.root),
        layout=store.layout.name, files=[str(installed.cert_path), str(installed.key_path)], replaced=replaced,
    )


def _catch_up_crl(ctx: AppContext, store: pki.ApplicationStore, issuer: ca.Issuer, installed_number: int) -> None:
    """A revocation that committed while this issue ran published its CRL to the stores registered then, which
    did not include this one yet: publish the newest CRL here too (publishing never rolls a store back)."""
    from .crls import current_crl

    latest = current_crl(ctx)
    if latest.number <= installed_number:
        return
    kinds = [kind for kind, result in store.publish_crl_where_held(latest.der, issuer.certificate, latest.number).items()
             if not result.newer_present]
    with ctx.database().write() as session:
        note_held(session, latest.authority_id, latest.number, [(str(store.root), kind) for kind in kinds], ctx.now())


def _apply_spec(application: db.Application, req: IssueRequest, planned: Plan, now: datetime) -> None:
    spec, identity = planned.spec, planned.spec.identity
    application.name = identity.subject.common_name
    application.organization = identity.subject.organization
    application.dns_names = list(identity.dns_names)
    application.ip_addresses = list(identity.ip_addresses)
    application.role = db.Role(spec.role)
    application.store_path = str(planned.store.root)
    application.layout = planned.store.layout.name
    application.key_size = spec.key_size
    application.validity_days = spec.days
    application.renew_before_seconds = spec.renew_before_seconds
    application.updated_at = now


def _record_intent(ctx: AppContext, req: IssueRequest, planned: Plan, cert, now: datetime, authority_id: int, before) -> int:
    """The pending certificate (and, for a new application, its registration) before any file is written."""
    with ctx.database().write() as session:
        application = queries.application_by_uri(session, req.app_uri)
        if application is None:
            application = db.Application(app_uri=req.app_uri, authority_id=authority_id, created_at=now, internal=req.internal)
            _apply_spec(application, req, planned, now)
            session.add(application)
        due = windows.renew_after(cert.not_valid_before_utc, cert.not_valid_after_utc, planned.spec.renew_before_seconds,
                                  windows.default_window(ctx))
        row = lifecycle.record_pending(session, cert, application, authority_id, now=now, renew_after=due,
                                       intent=lifecycle.ISSUE, owner=current_owner(),
                                       previous=before.thumbprint if before else None, store=str(planned.store.root),
                                       layout=planned.store.layout.name)
        return row.id


def _commit(ctx: AppContext, req: IssueRequest, planned: Plan, cert_id: int, now: datetime, authority_id: int,
            crl_held: tuple[int, list[str]]) -> str | None:
    with ctx.database().write() as session:
        number, kinds = crl_held
        note_held(session, authority_id, number, [(str(planned.store.root), kind) for kind in kinds], now)
        row = session.get(db.Certificate, cert_id)
        _apply_spec(row.application, req, planned, now)
        return lifecycle.activate(session, row, now=now, actor=ctx.actor, action="certificate.issue",
                                  store=str(planned.store.root), forced=req.force)


def _undo(ctx: AppContext, store: pki.ApplicationStore, old_store: pki.ApplicationStore, fresh: bool, before, cert,
          cert_id: int, exc: BaseException) -> None:
    """The issue failed after its intent was recorded: put the store back (decided by what it serves, not by how
    far the code got), fail and revoke the certificate. If even that fails (the database is gone), the pending row
    stays for the next command to undo."""
    new = pki.thumbprint(cert)
    if fresh:
        store.discard_created()
    else:
        with store.locked():
            own = store.own()
            if own is not None and own.thumbprint == new:
                store.discard_pair(new) if old_store is not store else None
                old_store.revert_own(before.thumbprint if before else None, new)
            elif before is not None and old_store.own() is None:  # cut between retiring the old layout and the install
                old_store.revert_own(before.thumbprint, new)
    try:
        with ctx.database().write() as session:
            row = session.get(db.Certificate, cert_id)
            if row is not None and row.status == db.CertStatus.PENDING:
                lifecycle.fail(session, row, stage="issue", reason=f"{type(exc).__name__}: {exc}", now=ctx.now(), actor=ctx.actor,
                               action="certificate.issue_failed")
    except Exception:  # the original error is what the operator needs to see
        pass
