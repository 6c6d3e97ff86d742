"""Queries shared by certmgr's services; each is one indexed statement."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, select, type_coerce, union
from sqlalchemy.orm import Session, defer, joinedload

from .models import Application, AuditEvent, Authority, CertStatus, Certificate, Crl


SIGNING = "signing"


def authority(session: Session, *, for_update: bool = False) -> Authority | None:
    """The signing CA generation (after a CA rollover the database holds one row per generation)."""
    statement = select(Authority).where(Authority.role == SIGNING).order_by(Authority.id).limit(1)
    if for_update:
        statement = statement.with_for_update()
    return session.scalars(statement).first()


def application_by_uri(session: Session, app_uri: str) -> Application | None:
    return session.scalars(select(Application).where(Application.app_uri == app_uri)).first()


def active_certificate(session: Session, application_id: int) -> Certificate | None:
    return session.scalars(
        select(Certificate)
        .where(Certificate.application_id == application_id, Certificate.status == CertStatus.ACTIVE)
        .order_by(Certificate.not_after.desc())
        .limit(1)
    ).first()


def certificates_by_thumbprint_prefix(session: Session, prefix: str, limit: int = 10) -> list[Certificate]:
    return list(
        session.scalars(
            select(Certificate)
            .options(joinedload(Certificate.application))
            .where(Certificate.thumbprint.startswith(prefix.upper()))
            .order_by(Certificate.id)
            .limit(limit)
        )
    )


def certificate_by_serial(session: Session, authority_id: int, serial_hex: str) -> Certificate | None:
    return session.scalars(
        select(Certificate)
        .options(joinedload(Certificate.application))
        .where(Certificate.authority_id == authority_id, Certificate.serial_hex == serial_hex.lower())
    ).first()


def latest_crl(session: Session, authority_id: int) -> Crl | None:
    return session.scalars(
        select(Crl).where(Crl.authority_id == authority_id).order_by(Crl.number.desc()).limit(1)
    ).first()


def active_statement(expiring_before: datetime | None = None):
    """Active certificates with their applications, soonest expiry first (index status, not_after)."""
    statement = (
        select(Certificate, Application)
        .join(Application, Certificate.application_id == Application.id)
        .where(Certificate.status == CertStatus.ACTIVE)
        .order_by(Certificate.not_after, Certificate.id)
        .options(defer(Certificate.der))
    )
    if expiring_before is not None:
        statement = statement.where(Certificate.not_after < expiring_before)
    return statement


# What a renewal needs of a due certificate and its application: columns, not entities (ORM objects for
# 1,500 due rows of a 100,000 fleet cost more than the query itself).
DUE_COLUMNS = (
    Application.id.label("app_id"), Application.app_uri, Application.role, Application.store_path, Application.layout,
    Application.key_size, Application.validity_days, Application.name, Application.organization,
    Application.dns_names, Application.ip_addresses, Application.endpoint, Application.deploy_hook,
    Application.renew_before_seconds, Application.internal, Application.deploy, Certificate.id.label("cert_id"),
    Certificate.thumbprint, Certificate.not_before, Certificate.not_after, Certificate.renew_after,
)


def due_statement(now: datetime):
    """Active certificates whose renewal window has opened (index status, renew_after)."""
    return (
        select(*DUE_COLUMNS)
        .join(Application, Certificate.application_id == Application.id)
        .where(Certificate.status == CertStatus.ACTIVE, Certificate.renew_after <= now)
        .order_by(Certificate.renew_after)
    )


# What the expiry scan reads: columns, not entities (1,500 rows of a 100,000 fleet in a few milliseconds).
ATTENTION_COLUMNS = (
    Certificate.id, Certificate.thumbprint, Certificate.not_after, Certificate.renew_after, Application.app_uri,
    Application.store_path, Application.warn_before_seconds, Application.crit_before_seconds,
    Application.last_renewal_status, Application.last_renewal_error,
)


def attention_statement(now: datetime, widest: timedelta):
    """Active certificates close to notAfter or inside their renewal window. Written as a union of two
    index range scans: SQLite cannot use two indexes for an OR and would walk every active certificate."""
    near = select(Certificate.id).where(Certificate.status == CertStatus.ACTIVE, Certificate.not_after < now + widest)
    due = select(Certificate.id).where(Certificate.status == CertStatus.ACTIVE, Certificate.renew_after <= now)
    return (
        select(*ATTENTION_COLUMNS)
        .join(Application, Certificate.application_id == Application.id)
        .where(Certificate.id.in_(union(near, due)))
        .order_by(Certificate.not_after)
    )


def failed_renewal_statement():
    """Active certificates of applications whose last renewal failed: the few failed applications first
    (index on last_renewal_status), then their certificates (index on application_id, status)."""
    failed = select(Application.id).where(Application.last_renewal_status == "failed")
    return (
        select(*ATTENTION_COLUMNS)
        .join(Application, Certificate.application_id == Application.id)
        .where(Certificate.application_id.in_(failed), Certificate.status == CertStatus.ACTIVE)
    )


LISTING_COLUMNS = (
    Application.app_uri, Application.name, Application.role, Certificate.thumbprint, Certificate.serial_hex,
    Certificate.status, Certificate.not_before, Certificate.not_after, Application.store_path, Application.layout,
    Application.internal,
)


def listing(session: Session, expiring_before: datetime | None = None) -> Iterator:
    """The columns `certmgr list` prints, streamed; no DER blobs, no ORM objects (100,000 rows in ~1 s)."""
    statement = (
        select(*LISTING_COLUMNS)
        .join(Application, Certificate.application_id == Application.id)
        .where(Certificate.status == CertStatus.ACTIVE)
        .order_by(Certificate.not_after, Certificate.id)
    )
    if expiring_before is not None:
        statement = statement.where(Certificate.not_after < expiring_before)
    yield from session.execute(statement.execution_options(yield_per=2000))


def active_certificates(
    session: Session, *, expiring_before: datetime | None = None
) -> Iterator[tuple[Certificate, Application]]:
    """Active certificates with their applications, streamed in batches (memory stays flat)."""
    for row in session.execute(active_statement(expiring_before).execution_options(yield_per=1000)):
        yield row[0], row[1]


def revoked_entries(session: Session, authority_id: int, now: datetime) -> list[tuple[str, datetime, str | None]]:
    """(serial hex, revoked at, reason) of revoked certificates still within their validity.

    A revoked certificate leaves the CRL only after its notAfter has passed: before that a peer could
    still accept it.
    """
    # The raw DateTime type skips the UTC decorator's per-row work: on SQLite the value is naive UTC, on
    # PostgreSQL aware; both are what the CRL builder takes.
    rows = session.execute(
        select(Certificate.serial_hex, type_coerce(Certificate.revoked_at, DateTime()), Certificate.revocation_reason).where(
            Certificate.authority_id == authority_id,
            Certificate.revoked_at.is_not(None),
            Certificate.not_after >= now,
        )
    )
    return rows.all()


def revoked_since(session: Session, authority_id: int, moment: datetime) -> bool:
    """Whether a certificate was revoked after ``moment`` (the latest CRL's thisUpdate): a CRL is owed."""
    return session.scalar(
        select(Certificate.id).where(Certificate.authority_id == authority_id, Certificate.revoked_at > moment).limit(1)
    ) is not None


RENEWAL_FAILED = "renewal.fail"  # one audit event per failed renewal, whatever the stage or deployment


def add_audit(session: Session, *, at: datetime, actor: str, action: str, target: str | None, **details: Any) -> None:
    session.add(AuditEvent(at=at, actor=actor, action=action, target=target, details=details))
