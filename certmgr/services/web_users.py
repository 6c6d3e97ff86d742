"""Web console users: scrypt password hashes, sign-in with a failed-attempt limit, all of it audited.

The hash is services/user_accounts.py's scrypt. Failed sign-ins are audited and, past LIMIT per user and address in WINDOW, refused
without checking the password, so the limit cannot be used to guess faster.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select

import db
from db import queries

from ..context import AppContext
from .user_accounts import dummy_hash, list_user_rows, save_user, verify_password

ROLES = ("viewer", "operator", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
LIMIT, WINDOW = 5, 60.0


def add_user(ctx: AppContext, name: str, role: str, password: str, *, replace: bool = False) -> dict:
    return save_user(ctx, db.WebUser, "web", ROLES, name, role, password, replace=replace)


def list_users(ctx: AppContext) -> list[dict]:
    return list_user_rows(ctx, db.WebUser)


class LoginLimiter:
    """Failed sign-ins per (user, address) in the last WINDOW seconds, in the database (web_login_failures), so
    restarting the console does not reset the count; rows older than the window are deleted as new ones come."""

    def __init__(self, ctx: AppContext, limit: int = LIMIT, window: float = WINDOW, clock=None) -> None:
        self.ctx, self.limit, self.window = ctx, limit, timedelta(seconds=window)
        self.clock = clock or ctx.now

    def blocked(self, key: tuple[str, str]) -> bool:
        name, address = _key(key)
        with self.ctx.database().read() as session:
            count = session.scalar(select(func.count()).select_from(db.WebLoginFailure).where(
                db.WebLoginFailure.user_name == name, db.WebLoginFailure.address == address,
                db.WebLoginFailure.at > self.clock() - self.window))
        return count >= self.limit

    def failed(self, key: tuple[str, str]) -> None:
        name, address = _key(key)
        now = self.clock()
        with self.ctx.database().write() as session:
            session.execute(delete(db.WebLoginFailure).where(db.WebLoginFailure.at <= now - self.window))
            session.add(db.WebLoginFailure(user_name=name, address=address, at=now))

    def succeeded(self, key: tuple[str, str]) -> None:
        name, address = _key(key)
        with self.ctx.database().write() as session:
            session.execute(delete(db.WebLoginFailure).where(db.WebLoginFailure.user_name == name,
                                                              db.WebLoginFailure.address == address))


def _key(key: tuple[str, str]) -> tuple[str, str]:
    return key[0][:200], key[1][:64]


def authenticate(ctx: AppContext, limiter: LoginLimiter, name: str, password: str, address: str) -> tuple[str, str] | str:
    """(name, role) when the password is right; else the reason ("refused" or "limited"), audited."""
    key = (name, address)
    if limiter.blocked(key):
        _audit_login(ctx, "web.login_limited", name, address)
        return "limited"
    with ctx.database().read() as session:
        user = session.scalars(select(db.WebUser).where(db.WebUser.name == name)).first()
        found = (user.name, user.role, user.password_hash) if user else None
    ok = verify_password(password, found[2] if found else dummy_hash()) and found is not None
    if not ok:
        limiter.failed(key)
        _audit_login(ctx, "web.login_failed", name, address)
        return "refused"
    limiter.succeeded(key)
    _audit_login(ctx, "web.login", name, address, actor=f"{name} (web)")
    return found[0], found[1]


def _audit_login(ctx: AppContext, action: str, name: str, address: str, actor: str | None = None) -> None:
    with ctx.database().write() as session:
        queries.add_audit(session, at=ctx.now(), actor=actor or f"web from {address}", action=action, target=name[:200],
                          address=address)


def audit_events(ctx: AppContext, user: str = "", action: str = "", text: str = "", limit: int = 200) -> list[dict]:
    """The newest audit events, filtered by actor (user), action prefix and text in target/details."""
    with ctx.database().read() as session:
        query = select(db.AuditEvent).order_by(db.AuditEvent.id.desc())
        if user:
            query = query.where(db.AuditEvent.actor.contains(user))
        if action:
            query = query.where(db.AuditEvent.action.startswith(action))
        rows = []
        for event in session.scalars(query.limit(limit * 10 if text else limit)):
            item = {"at": event.at.isoformat(timespec="seconds"), "actor": event.actor, "action": event.action,
                    "target": event.target, "details": event.details}
            if text and text.lower() not in f"{event.target} {event.details}".lower():
                continue
            rows.append(item)
            if len(rows) >= limit:
                break
        return rows
