"""User accounts with scrypt password hashes: the one implementation behind the console's users
(services/web_users.py) and the GDS's (services/gds_users.py), which differ only in their table and roles.

The hash is hashlib.scrypt (stdlib, memory-hard: n=2**15, r=8, p=1 takes 32 MiB and ~50 ms per try), stored as
``scrypt$n$r$p$salt$hash``. A wrong name costs as long as a wrong password, so names are not disclosed by timing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from sqlalchemy import select

from db import queries

from ..context import AppContext
from ..errors import InputError

N, R, P = 2**15, 8, 1
MAX_MEM = 64 * 1024 * 1024
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
MIN_PASSWORD = 10


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=N, r=R, p=P, maxmem=MAX_MEM, dklen=32)
    return f"scrypt${N}${R}${P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=MAX_MEM, dklen=len(digest) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


_DUMMY = None


def dummy_hash() -> str:
    """What an unknown name's password is checked against, so that it takes as long as a known one's."""
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = hash_password(os.urandom(8).hex())
    return _DUMMY


def save_user(ctx: AppContext, model, kind: str, roles: tuple[str, ...], name: str, role: str, password: str,
              *, replace: bool = False) -> dict:
    """Add (or with ``replace`` update) a user of ``model`` (db.WebUser, db.GdsUser); ``kind`` ("web", "GDS")
    names it in messages and its audit action (web.user_add, gds.user_replace, ...)."""
    ctx.require_initialised()
    if not NAME.match(name):
        raise InputError(f"{name!r} is not a user name", "use letters, digits and . _ @ - (up to 100)")
    if role not in roles:
        raise InputError(f"{role!r} is not a {kind} role", f"give one of {', '.join(roles)}")
    if len(password) < MIN_PASSWORD:
        raise InputError(f"the password is shorter than {MIN_PASSWORD} characters", "choose a longer one")
    hashed = hash_password(password)
    with ctx.database().write() as session:
        user = session.scalars(select(model).where(model.name == name)).first()
        if user is not None and not replace:
            raise InputError(f"{kind} user {name} exists", "pass --replace to set a new password and role")
        if user is None:
            session.add(model(name=name, role=role, password_hash=hashed, created_at=ctx.now()))
        else:
            user.role, user.password_hash = role, hashed
        queries.add_audit(session, at=ctx.now(), actor=ctx.actor,
                          action=f"{kind.lower()}.user_add" if user is None else f"{kind.lower()}.user_replace", target=name, role=role)
    return {"name": name, "role": role}


def list_user_rows(ctx: AppContext, model) -> list[dict]:
    ctx.require_initialised()
    with ctx.database().read() as session:
        return [{"name": u.name, "role": u.role, "created_at": u.created_at.isoformat()}
                for u in session.scalars(select(model).order_by(model.name))]
