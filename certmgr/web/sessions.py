"""Server-side sessions in the database (table web_sessions): a random cookie names a session; idle ones
expire; each has a CSRF token. A restart of the console (or the daemon serving it) keeps everyone signed in,
and several console processes on one database share them.

Only the SHA-256 of the cookie's token is stored. The role is read from web_users at every request, so a
user whose role is changed or who is removed loses the old rights at once. ``seen_at`` is written at most
every TOUCH seconds per session: a page view is a read, not a write, in the common case.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update

import db

COOKIE = "certmgr_session"
TOUCH = timedelta(seconds=30)


@dataclass
class Session:
    user: str
    role: str
    csrf: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Sessions:
    def __init__(self, ctx, idle_seconds: float, clock=None) -> None:
        self.ctx, self.idle = ctx, timedelta(seconds=idle_seconds)
        self.clock = clock or ctx.now  # wall clock (UTC): it has to mean the same after a restart

    def create(self, user: str, role: str) -> str:
        token, now = secrets.token_urlsafe(32), self.clock()
        with self.ctx.database().write() as session:
            session.execute(delete(db.WebSession).where(db.WebSession.seen_at < now - self.idle))  # expired ones go
            session.add(db.WebSession(token_hash=_hash(token), user_name=user, csrf=secrets.token_urlsafe(32),
                                      created_at=now, seen_at=now))
        return token

    def get(self, token: str | None) -> Session | None:
        if not token or len(token) > 100:
            return None
        now = self.clock()
        with self.ctx.database().read() as session:
            row = session.execute(select(db.WebSession.id, db.WebSession.user_name, db.WebSession.csrf, db.WebSession.seen_at,
                                         db.WebUser.role).join(db.WebUser, db.WebUser.name == db.WebSession.user_name)
                                  .where(db.WebSession.token_hash == _hash(token))).first()
        if row is None:
            return None
        if now - row.seen_at > self.idle:
            self.drop(token)
            return None
        if now - row.seen_at > TOUCH:
            with self.ctx.database().write() as session:
                session.execute(update(db.WebSession).where(db.WebSession.id == row.id).values(seen_at=now))
        return Session(row.user_name, row.role, row.csrf)

    def drop(self, token: str | None) -> None:
        if not token:
            return
        with self.ctx.database().write() as session:
            session.execute(delete(db.WebSession).where(db.WebSession.token_hash == _hash(token)))
