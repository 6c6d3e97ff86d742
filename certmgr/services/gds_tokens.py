"""One-time enrolment tokens (`certmgr gds enrol-token`): an application's first certificate without an
administrator's password on its host.

The application presents a user name token whose user name is its ApplicationUri and whose password is the
token. The token is bound to that one registration, may be used until it expires, and is spent when its
certificate is handed out (FinishRequest). Only its SHA-256 is stored: it is 32 random bytes, so a fast hash is
enough (a password needs scrypt; a token this long cannot be guessed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import select

import db
from db import queries

from ..context import AppContext
from ..durations import parse_duration
from ..errors import InputError

PREFIX = "gdsenrol-"
ENROL_TOKEN = "EnrolmentToken"  # the role a token session holds (not a Part 12 role: it is bound to one application)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def make_token(ctx: AppContext, app_uri: str, valid: str = "24h") -> dict:
    ctx.require_initialised()
    lifetime = parse_duration(valid)
    if lifetime.total_seconds() <= 0 or lifetime.days > 31:
        raise InputError(f"--valid {valid} is not between a second and 31 days", "give e.g. 24h or 7d")
    token = PREFIX + secrets.token_urlsafe(32)
    now = ctx.now()
    with ctx.database().write() as session:
        app = queries.application_by_uri(session, app_uri)
        if app is None or app.deploy != "pull" or app.unregistered_at is not None:
            raise InputError(f"{app_uri} is not registered to pull", f"register it with `certmgr app add --app-uri {app_uri} --deploy pull`")
        row = db.GdsEnrolToken(application_id=app.id, token_hash=_digest(token), expires_at=now + lifetime,
                               created_by=ctx.actor, created_at=now)
        session.add(row)
        session.flush()
        queries.add_audit(session, at=now, actor=ctx.actor, action="gds.token_add", target=app_uri, token_id=row.id,
                          expires_at=row.expires_at.isoformat())
        return {"app_uri": app_uri, "token": token, "token_id": row.id, "expires_at": row.expires_at.isoformat()}


def authenticate(ctx: AppContext, app_uri: str, token: str) -> tuple[int, int] | None:
    """(token id, application id) of a live token of ``app_uri``, else None (audited as gds.login_failed)."""
    now = ctx.now()
    digest = _digest(token)
    with ctx.database().read() as session:
        app = queries.application_by_uri(session, app_uri)
        rows = [] if app is None else session.scalars(select(db.GdsEnrolToken).where(
            db.GdsEnrolToken.application_id == app.id, db.GdsEnrolToken.used_at.is_(None),
            db.GdsEnrolToken.expires_at > now)).all()
        found = next(((r.id, r.application_id) for r in rows if hmac.compare_digest(r.token_hash, digest)), None)
        live = app is not None and app.deploy == "pull" and app.unregistered_at is None
    if found is None or not live:
        with ctx.database().write() as session:
            queries.add_audit(session, at=now, actor="gds", action="gds.login_failed", target=app_uri[:200], token=True)
        return None
    return found


def spend(session, token_id: int, now: datetime) -> None:
    row = session.get(db.GdsEnrolToken, token_id)
    if row is not None and row.used_at is None:
        row.used_at = now
