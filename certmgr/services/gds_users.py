"""Users of certmgr's GDS and their Part 12 roles (``certmgr gds user add``), and checking their passwords.

The password hash is web_users' scrypt (one implementation for both user kinds); a wrong name costs as long as
a wrong password, so names are not disclosed by timing. Every addition and every refused sign-in is audited.
"""

from __future__ import annotations

from sqlalchemy import select

import db
from db import queries

from ..context import AppContext
from .user_accounts import dummy_hash, list_user_rows, save_user, verify_password

# Part 12 well-known roles a user can hold (ApplicationSelfAdmin is never given: it comes from the channel).
DISCOVERY_ADMIN = "DiscoveryAdmin"
CA_ADMIN = "CertificateAuthorityAdmin"
RA_ADMIN = "RegistrationAuthorityAdmin"
SELF_ADMIN = "ApplicationSelfAdmin"
ROLES = (DISCOVERY_ADMIN, CA_ADMIN, RA_ADMIN)


def add_user(ctx: AppContext, name: str, role: str, password: str, *, replace: bool = False) -> dict:
    return save_user(ctx, db.GdsUser, "GDS", ROLES, name, role, password, replace=replace)


def list_users(ctx: AppContext) -> list[dict]:
    return list_user_rows(ctx, db.GdsUser)


def authenticate(ctx: AppContext, name: str, password: str, address: str = "") -> str | None:
    """The user's role when the password is right, else None (audited as gds.login_failed)."""
    with ctx.database().read() as session:
        user = session.scalars(select(db.GdsUser).where(db.GdsUser.name == name)).first()
        found = (user.role, user.password_hash) if user else None
    ok = verify_password(password, found[1] if found else dummy_hash()) and found is not None
    if not ok:
        with ctx.database().write() as session:
            queries.add_audit(session, at=ctx.now(), actor=f"gds from {address or 'unknown'}", action="gds.login_failed",
                              target=name[:200])
        return None
    return found[0]
