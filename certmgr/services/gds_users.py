"""Users of certmgr's GDS and their Part 12 roles (``certmgr gds user add``), and checking their passwords.

The password hash is web_users' scrypt (one implementation for both user kinds); a wrong name costs as long as
a wrong password, so names are not disclosed by timing. Every addition and every refused sign-in is audited.
"""

from __future__ import annotations

from sqlalchemy import select

import db
from db import queries

from ..context import AppContext
from ..errors import InputError
from .web_users import MIN_PASSWORD, NAME, _dummy_hash, hash_password, verify_password

# Part 12 well-known roles a user can hold (ApplicationSelfAdmin is never given: it comes from the channel).
DISCOVERY_ADMIN = "DiscoveryAdmin"
CA_ADMIN = "CertificateAuthorityAdmin"
RA_ADMIN = "RegistrationAuthorityAdmin"
SELF_ADMIN = "ApplicationSelfAdmin"
ROLES = (DISCOVERY_ADMIN, CA_ADMIN, RA_ADMIN)


def add_user(ctx: AppContext, name: str, role: str, password: str, *, replace: bool = False) -> dict:
    ctx.require_initialised()
    if not NAME.match(name):
        raise InputError(f"{name!r} is not a user name", "use letters, digits and . _ @ - (up to 100)")
    if role not in ROLES:
        raise InputError(f"{role!r} is not a GDS role", f"give one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise InputError(f"the password is shorter than {MIN_PASSWORD} characters", "choose a longer one")
    hashed = hash_password(password)
    with ctx.database().write() as session:
        user = session.scalars(select(db.GdsUser).where(db.GdsUser.name == name)).first()
        if user is not None and not replace:
            raise InputError(f"GDS user {name} exists", "pass --replace to set a new password and role")
        if user is None:
            session.add(db.GdsUser(name=name, role=role, password_hash=hashed, created_at=ctx.now()))
        else:
            user.role, user.password_hash = role, hashed
        queries.add_audit(session, at=ctx.now(), actor=ctx.actor, action="gds.user_add" if user is None else "gds.user_replace",
                          target=name, role=role)
    return {"name": name, "role": role}


def list_users(ctx: AppContext) -> list[dict]:
    ctx.require_initialised()
    with ctx.database().read() as session:
        return [{"name": u.name, "role": u.role, "created_at": u.created_at.isoformat()}
                for u in session.scalars(select(db.GdsUser).order_by(db.GdsUser.name))]


def authenticate(ctx: AppContext, name: str, password: str, address: str = "") -> str | None:
    """The user's role when the password is right, else None (audited as gds.login_failed)."""
    with ctx.database().read() as session:
        user = session.scalars(select(db.GdsUser).where(db.GdsUser.name == name)).first()
        found = (user.role, user.password_hash) if user else None
    ok = verify_password(password, found[1] if found else _dummy_hash()) and found is not None
    if not ok:
        with ctx.database().write() as session:
            queries.add_audit(session, at=ctx.now(), actor=f"gds from {address or 'unknown'}", action="gds.login_failed",
                              target=name[:200])
        return None
    return found[0]
