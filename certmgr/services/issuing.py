"""Register an application and issue its certificate into its store (``certmgr issue``)."""

from __future__ import annotations

import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

import ca
import db
import pki
from db import queries

from ..context import AppContext
from ..durations import parse_duration
from ..errors import InputError, OperationFailed
from . import windows
from .crls import install_ca_and_crl
from .publishing import note_held
from .store_paths import check_store_location

ROLES = ("server", "client", "both")
MAX_DAYS = 36500

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
            "app_uri": self.app_uri,
            "thumbprint": self.thumbprint,
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "store": self.store,
            "layout": self.layout,
            "files": self.files,
            "replaced": self.replaced,
        }


def default_common_name(app_uri: str) -> str:
    """The last meaningful part of the URI: urn:plant1:historian -> historian."""
    parts = [p for p in re.split(r"[:/?#]+", app_uri) if p and p.lower() not in ("urn", "http", "https", "opc.tcp")]
    candidate = (parts[-1] if parts else app_uri)[:64]
    return candidate if candidate and not candidate.startswith(".") else "application"


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def certificate_record(
    cert: x509.Certificate,
    application: db.Application,
    authority_id: int,
    status: db.CertStatus,
    now: datetime,
    renew_after: datetime | None = None,
) -> db.Certificate:
    return db.Certificate(
        renew_after=renew_after,
        application=application,
        authority_id=authority_id,
        serial_hex=serial_hex(cert),
        thumbprint=pki.thumbprint(cert),
        subject=cert.subject.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        status=status,
        key_size=cert.public_key().key_size,
        der=cert.public_bytes(serialization.Encoding.DER),
        created_at=now,
    )


@dataclass
class _Plan:
    identity: ca.ApplicationIdentity
    store: pki.ApplicationStore
    key_size: int
    days: int
    renew_before_seconds: int | None


def _plan(ctx: AppContext, req: IssueRequest) -> _Plan:
    """Check every input before anything is written; each problem is an InputError (exit 2)."""
    defaults = ctx.settings.defaults
    if req.role not in ROLES:
        raise InputError(f"unknown role {req.role!r}", f"use one of {', '.join(ROLES)}")
    try:
        identity = ca.ApplicationIdentity(
            app_uri=req.app_uri,
            subject=ca.SubjectFields(
                common_name=req.name or default_common_name(req.app_uri),
                organization=req.organization or defaults.organization or ctx.settings.ca.organization,
            ),
            dns_names=tuple(req.dns_names),
            ip_addresses=tuple(req.ip_addresses),
        )
        pki.safe_stem(identity.subject.common_name)
        key_size = ca.check_key_size(req.key_size or defaults.key_size)
    except (ca.ProfileError, pki.UnsafeNameError) as exc:
        raise InputError(str(exc)) from None
    days = req.days if req.days is not None else defaults.days
    if days <= 0:
        raise InputError(f"--days {days} is not allowed", "give a whole number of days greater than 0")
    if req.store is None:
        raise InputError("no store folder given", "pass --store DIR (the application's certificate store)")
    root = req.store if req.internal else check_store_location(ctx, req.store, req.app_uri)
    try:
        store = pki.ApplicationStore(root, req.layout or defaults.layout)
    except pki.StoreError as exc:
        raise InputError(str(exc)) from None
    try:
        store.check_usable()
    except pki.StoreError as exc:
        raise InputError(str(exc)) from None
    if days > MAX_DAYS:
        raise InputError(f"--days {days} is more than {MAX_DAYS} (100 years)", "give a realistic validity, e.g. 365")
    renew_before = req.renew_before or defaults.renew_before or None
    seconds = int(parse_duration(renew_before).total_seconds()) if renew_before else None
    if seconds is not None and seconds >= days * 86400:
        raise InputError(
            f"--renew-before {renew_before} is not shorter than the {days}-day lifetime",
            "choose a window shorter than the validity, e.g. a third of it",
        )
    explicit = int(parse_duration(req.renew_before).total_seconds()) if req.renew_before else None
    return _Plan(identity, store, key_size, days, explicit)


def issue_application(ctx: AppContext, req: IssueRequest, *, key=None) -> IssueOutcome:
    plan = _plan(ctx, req)
    pending: Future | None = _KEYGEN.submit(ca.generate_rsa_key, plan.key_size) if key is None else None
    try:
        return _issue(ctx, req, plan, key if pending is None else pending)
    finally:
        if pending is not None:
            pending.cancel()  # refused before the key was needed: do not start it if it has not started


def _issue(ctx: AppContext, req: IssueRequest, plan: _Plan, key) -> IssueOutcome:
    database = ctx.database()
    with database.read() as session:
        existing = queries.application_by_uri(session, req.app_uri)
        previous = queries.active_certificate(session, existing.id) if existing else None
        owner = session.scalars(
            select(db.Application.app_uri).where(db.Application.store_path == str(plan.store.root), db.Application.app_uri != req.app_uri)
        ).first()
        authority = queries.authority(session)
        crl_row = queries.latest_crl(session, authority.id)
    if owner is not None:
        raise InputError(f"store {plan.store.root} belongs to {owner}", "give each application its own store folder")
    if existing is not None and not req.force:
        raise InputError(
            f"application {req.app_uri} is already registered"
            + (f" (certificate {previous.thumbprint})" if previous else ""),
            f"renew it with `certmgr renew --app-uri {req.app_uri}`, or reissue with --force",
        )
    issuer = ctx.issuer()
    now = ctx.now()
    store = plan.store
    before = store.own()
    fresh = not store.root.exists()  # a store this issue creates goes away whole if the issue fails
    installed = None
    try:
        try:
            # trusting the CA and carrying its CRL is a complete state of its own, so it may come first
            crl_kinds = install_ca_and_crl(store, issuer.certificate, crl_row)
            private_key = key.result() if isinstance(key, Future) else key
            try:
                cert = ca.build_application_certificate(plan.identity, private_key.public_key(), issuer, now=now, days=plan.days)
            except ca.ProfileError as exc:
                raise InputError(str(exc)) from None
            with store.locked():  # a renewal switching this store's pair (issue --force) waits, and vice versa
                installed = store.install_own(cert, ca.private_key_pem(private_key))
        except (OSError, pki.StoreError) as exc:
            raise OperationFailed(f"cannot write store {store.root}: {exc}", "check the folder's owner and free space") from None
        outcome = _record(ctx, req, plan, cert, now, authority.id, existing is not None, (crl_row.number, crl_kinds))
    except BaseException:
        if fresh:
            store.discard_created()
        elif installed is not None:
            with store.locked():
                store.revert_own(before.thumbprint if before else None, pki.thumbprint(cert))
        raise
    outcome.files = [str(installed.cert_path), str(installed.key_path)]
    return outcome


def _record(
    ctx: AppContext, req: IssueRequest, plan: _Plan, cert: x509.Certificate, now: datetime, authority_id: int, registered: bool,
    crl_held: tuple[int, list[str]],
) -> IssueOutcome:
    identity = plan.identity
    with ctx.database().write() as session:
        number, kinds = crl_held
        note_held(session, authority_id, number, [(str(plan.store.root), kind) for kind in kinds], now)
        # a new application needs no lookup: the unique app_uri refuses a registration that raced this one
        application = queries.application_by_uri(session, req.app_uri) if registered else None
        replaced = None
        if application is None:
            application = db.Application(app_uri=req.app_uri, authority_id=authority_id, created_at=now, internal=req.internal)
            session.add(application)
        else:
            old = queries.active_certificate(session, application.id)
            if old is not None:
                old.status = db.CertStatus.SUPERSEDED
                old.status_reason = "reissued with --force"
                replaced = old.thumbprint
        application.name = identity.subject.common_name
        application.organization = identity.subject.organization
        application.dns_names = list(identity.dns_names)
        application.ip_addresses = list(identity.ip_addresses)
        application.role = db.Role(req.role)
        application.store_path = str(plan.store.root)
        application.layout = plan.store.layout.name
        application.key_size = plan.key_size
        application.validity_days = plan.days
        application.renew_before_seconds = plan.renew_before_seconds
        application.updated_at = now
        due = windows.renew_after(
            cert.not_valid_before_utc, cert.not_valid_after_utc, plan.renew_before_seconds, windows.default_window(ctx)
        )
        session.add(certificate_record(cert, application, authority_id, db.CertStatus.ACTIVE, now, due))
        queries.add_audit(
            session,
            at=now,
            actor=ctx.actor,
            action="certificate.issue",
            target=req.app_uri,
            thumbprint=pki.thumbprint(cert),
            serial=serial_hex(cert),
            replaced=replaced,
            store=str(plan.store.root),
        )
    return IssueOutcome(
        app_uri=req.app_uri,
        thumbprint=pki.thumbprint(cert),
        serial=serial_hex(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        store=str(plan.store.root),
        layout=plan.store.layout.name,
        replaced=replaced,
    )
