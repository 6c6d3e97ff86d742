"""Renewal windows: when a certificate becomes due.

An application's certificate is due when less than its window is left. The window is the application's
``--renew-before``, else ``[defaults] renew_before`` from certmgr.toml, else a third of the certificate's
lifetime (certbot's rule: renew at two thirds). Each certificate row stores ``renew_after`` (notAfter minus
the window) so selecting what is due is one indexed query; the rows are recomputed when the rule changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update

import db

from ..context import AppContext
from ..durations import format_duration, parse_duration

RULE_KEY = "renew_window_rule"


def default_window(ctx: AppContext) -> timedelta | None:
    value = ctx.settings.defaults.renew_before
    return parse_duration(value) if value else None


def window(not_before: datetime, not_after: datetime, app_seconds: int | None, default: timedelta | None) -> timedelta:
    if app_seconds:
        return timedelta(seconds=app_seconds)
    if default is not None:
        return default
    return (not_after - not_before) / 3


def renew_after(not_before: datetime, not_after: datetime, app_seconds: int | None, default: timedelta | None) -> datetime:
    return not_after - window(not_before, not_after, app_seconds, default)


def describe_window(app_seconds: int | None, default: timedelta | None) -> str:
    if app_seconds:
        return format_duration(timedelta(seconds=app_seconds))
    if default is not None:
        return f"{format_duration(default)} (certmgr.toml)"
    return "a third of the lifetime"


def _rule(default: timedelta | None) -> str:
    return f"fixed:{int(default.total_seconds())}" if default is not None else "third"


def sync_renew_after(ctx: AppContext, session=None) -> int:
    """Recompute ``renew_after`` of active certificates if the default rule changed; returns rows changed.
    With ``session``, the work happens in that (write) session and the caller decides to commit or not."""
    if session is not None:
        return 0 if _in_step(ctx, session) else _recompute(ctx, session)
    database = ctx.database()
    with database.read() as reading:
        if _in_step(ctx, reading):
            return 0
    with database.write() as writing:
        return _recompute(ctx, writing)


def _in_step(ctx: AppContext, session) -> bool:
    """The stored rule is the configured one and every active or pending certificate has its date."""
    stored = session.get(db.Meta, RULE_KEY)
    missing = session.scalar(
        select(db.Certificate.id).where(
            db.Certificate.status.in_([db.CertStatus.ACTIVE, db.CertStatus.PENDING]), db.Certificate.renew_after.is_(None)
        ).limit(1)
    )
    return stored is not None and stored.value == _rule(default_window(ctx)) and missing is None


def _recompute(ctx: AppContext, session) -> int:
    from sqlalchemy import bindparam

    default = default_window(ctx)
    rows = session.execute(
        select(db.Certificate.id, db.Certificate.not_before, db.Certificate.not_after, db.Application.renew_before_seconds)
        .join(db.Application, db.Certificate.application_id == db.Application.id)
        .where(db.Certificate.status.in_([db.CertStatus.ACTIVE, db.CertStatus.PENDING]))
    ).all()
    values = [{"row_id": cid, "value": renew_after(nb, na, seconds, default)} for cid, nb, na, seconds in rows]
    if values:
        session.execute(
            update(db.Certificate.__table__).where(db.Certificate.__table__.c.id == bindparam("row_id")).values(renew_after=bindparam("value")),
            values,
        )
    row = session.get(db.Meta, RULE_KEY)
    if row is None:
        session.add(db.Meta(key=RULE_KEY, value=_rule(default)))
    else:
        row.value = _rule(default)
    return len(values)


def set_for_application(session, ctx: AppContext, application: db.Application) -> None:
    """After an application's window changed: recompute its active and pending certificates."""
    default = default_window(ctx)
    for cert in application.certificates:
        if cert.status in (db.CertStatus.ACTIVE, db.CertStatus.PENDING):
            cert.renew_after = renew_after(cert.not_before, cert.not_after, application.renew_before_seconds, default)
