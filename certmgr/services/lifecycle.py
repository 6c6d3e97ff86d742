"""The life of a certificate: the only code that changes a certificate's status or writes its audit event.

    pending --activate--> active --(next one activated)--> superseded --restore--> active
       |                    |
       +--fail/abandon--> failed (revoked, reason superseded)      active --revoke--> revoked

A pending row is also the *intent* of a multi-step change (issue, renewal, push): it is committed before any
file is touched and names what is about to happen (``intent``), who does it (``intent_owner``, a process token)
and the pair it replaces (``intent_previous``); it stops being pending when the change is committed or undone.
Every function takes the caller's session and never opens, commits or rolls back one.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

import db
import pki
from db import queries

ISSUE, RENEW, PUSH = "issue", "renew", "push"
FAILED_REVOCATION_REASON = "superseded"  # a certificate that never went live is retired, not compromised


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def _row(cert: x509.Certificate, application: db.Application, authority_id: int, status: db.CertStatus, now: datetime,
         renew_after: datetime | None) -> db.Certificate:
    return db.Certificate(
        renew_after=renew_after, application=application, authority_id=authority_id, serial_hex=serial_hex(cert),
        thumbprint=pki.thumbprint(cert), subject=cert.subject.rfc4514_string(), not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc, status=status, key_size=cert.public_key().key_size,
        der=cert.public_bytes(serialization.Encoding.DER), created_at=now,
    )


def record_pending(
    session, cert: x509.Certificate, application: db.Application, authority_id: int, *, now: datetime,
    renew_after: datetime | None, intent: str, owner: str, previous: str | None, store: str | None = None,
    layout: str | None = None,
) -> db.Certificate:
    """A new certificate about to be delivered; committed before any file changes (the intent). ``store`` and
    ``layout`` say where it goes (the registration may name another store until the change is committed)."""
    row = _row(cert, application, authority_id, db.CertStatus.PENDING, now, renew_after)
    row.intent, row.intent_owner, row.intent_previous = intent, owner, previous
    row.intent_store, row.intent_layout = store, layout
    row.status_reason = f"{intent} in progress ({owner})"[:2000]
    session.add(row)
    session.flush()
    return row


def record_revoked(session, cert: x509.Certificate, application: db.Application, authority_id: int, *, now: datetime,
                   reason: str, why: str) -> db.Certificate:
    """A certificate revoked from birth (a canary: it exists only to be refused)."""
    row = _row(cert, application, authority_id, db.CertStatus.REVOKED, now, None)
    row.status_reason, row.revoked_at, row.revocation_reason = why, now, reason
    session.add(row)
    session.flush()
    return row


def _active_rows(session, application_id: int):
    return session.scalars(select(db.Certificate).where(
        db.Certificate.application_id == application_id, db.Certificate.status == db.CertStatus.ACTIVE))


def activate(session, row: db.Certificate, *, now: datetime, actor: str, action: str, reason: str | None = None,
             **details) -> str | None:
    """``row`` becomes the application's certificate; the one it replaces is superseded. Returns that one's
    thumbprint. ``action`` names the audit event (certificate.issue, certificate.renew, certificate.push)."""
    replaced = None
    for old in _active_rows(session, row.application_id):
        if old.id != row.id:
            old.status = db.CertStatus.SUPERSEDED
            old.status_reason = f"replaced by {row.thumbprint} ({action.split('.')[-1]})"
            replaced = old.thumbprint
    row.status = db.CertStatus.ACTIVE
    row.status_reason = reason
    _clear_intent(row)
    queries.add_audit(session, at=now, actor=actor, action=action, target=row.application.app_uri,
                      thumbprint=row.thumbprint, serial=row.serial_hex, replaced=replaced, **details)
    return replaced


def fail(session, row: db.Certificate, *, stage: str, reason: str, now: datetime, actor: str,
         action: str = queries.RENEWAL_FAILED, **details) -> None:
    """A certificate that never went (or stays) live: failed and revoked, so no peer can accept it. The
    caller signs the CRL that says so (once per run). A renewal's failure is one renewal.fail audit event
    (what the failure counter counts); a failed first issue says certificate.issue_failed."""
    row.status = db.CertStatus.FAILED
    row.status_reason = f"{stage}: {reason}"[:2000]
    row.revoked_at = now
    row.revocation_reason = FAILED_REVOCATION_REASON
    _clear_intent(row)
    queries.add_audit(session, at=now, actor=actor, action=action, target=row.application.app_uri,
                      thumbprint=row.thumbprint, stage=stage, reason=reason, **details)


def note_failure(session, app_uri: str, *, stage: str, reason: str, now: datetime, actor: str, **details) -> None:
    """A renewal that failed before any certificate existed (key generation, a missing store)."""
    queries.add_audit(session, at=now, actor=actor, action=queries.RENEWAL_FAILED, target=app_uri, stage=stage,
                      reason=reason, **details)


def restore(session, application_id: int, thumbprint: str | None, *, reason: str) -> None:
    """After a rolled-back switch: the previous certificate is the application's again."""
    if not thumbprint:
        return
    old = session.scalars(select(db.Certificate).where(
        db.Certificate.application_id == application_id, db.Certificate.thumbprint == thumbprint)).first()
    if old is not None and old.status == db.CertStatus.SUPERSEDED:
        old.status = db.CertStatus.ACTIVE
        old.status_reason = reason


def revoke(session, row: db.Certificate, *, reason: str, now: datetime, actor: str) -> bool:
    """Revoke; returns whether it was the application's active certificate. A failed certificate keeps its
    status (it is revoked already in effect) but gets the operator's reason and time."""
    was_active = row.status == db.CertStatus.ACTIVE
    row.revoked_at = now
    row.revocation_reason = reason
    if row.status != db.CertStatus.FAILED:
        row.status = db.CertStatus.REVOKED
    _clear_intent(row)
    queries.add_audit(session, at=now, actor=actor, action="certificate.revoke", target=row.application.app_uri,
                      thumbprint=row.thumbprint, serial=row.serial_hex, reason=reason)
    return was_active


def abandon(session, row: db.Certificate, *, completed: bool, now: datetime, by: str | None) -> None:
    """Finish the intent of a process that died: its switch was made (``completed``: the certificate becomes
    active) or not (failed and revoked)."""
    details = {"thumbprint": row.thumbprint, "abandoned_by": by, "completed": completed, "intent": row.intent}
    if completed:
        for old in _active_rows(session, row.application_id):
            if old.id != row.id:
                old.status = db.CertStatus.SUPERSEDED
                old.status_reason = f"replaced by {row.thumbprint} (completed after {by} died)"
        row.status = db.CertStatus.ACTIVE
        row.status_reason = f"{row.intent or 'switch'} completed after {by} died"[:2000]
        _clear_intent(row)
    else:
        row.status = db.CertStatus.FAILED
        row.status_reason = f"abandoned by {by} before it went live"[:2000]
        row.revoked_at = now
        row.revocation_reason = FAILED_REVOCATION_REASON
        _clear_intent(row)
    queries.add_audit(session, at=now, actor="certmgr", action="renewal.recover", target=row.application.app_uri, **details)


def set_renewal_outcome(session, application: db.Application, *, ok: bool, error: str | None, now: datetime) -> None:
    application.last_renewal_at = now
    application.last_renewal_status = "renewed" if ok else "failed"
    application.last_renewal_error = None if ok else (error or "")[:2000]


def _clear_intent(row: db.Certificate) -> None:
    row.intent = row.intent_owner = row.intent_previous = row.intent_store = row.intent_layout = None
