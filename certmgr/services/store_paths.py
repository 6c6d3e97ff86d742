"""Where an application's store may live: never inside or above another store, never in the home.

certmgr writes a store's folders (own/, trusted/, issuer/, rejected/) and modes into its root. A store
nested in another store's folders would mix two applications' keys and trust lists (a key written into
another store's ``trusted/certs``, a CRL folder shared by two); a store holding other stores would take
their folders as its own; a store inside the home would change the home's mode (0700 to 0755) and sit
next to the CA key. So the check runs before anything is written, and the path is kept absolute so that
commands run from another folder find the same store.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select

import db

from ..context import AppContext
from ..errors import InputError


def _real(path: Path) -> Path:
    """The path with symbolic links and '..' resolved, as far as it exists (the rest taken as written)."""
    return Path(os.path.realpath(path))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_store_location(ctx: AppContext, path: Path, app_uri: str) -> Path:
    """The store folder for ``app_uri`` as an absolute path, or InputError naming the clash and the fix."""
    absolute = Path(os.path.normpath(Path(path).expanduser().absolute()))
    real = _real(absolute)
    fix = "give the application a folder of its own outside the certmgr home and every other store, e.g. /opt/<app>/pki"
    home = _real(ctx.home.root)
    if _within(real, home):
        where = "is the certmgr home" if real == home else f"is inside the certmgr home {ctx.home.root}"
        raise InputError(f"store {absolute} {where}", fix)
    if _within(home, real):
        raise InputError(f"store {absolute} holds the certmgr home {ctx.home.root}", fix)
    for ca_file in (ctx.home.ca_cert_path, ctx.home.ca_key_path):
        ca_dir = _real(ca_file.parent)
        if _within(real, ca_dir) or _within(ca_dir, real):
            raise InputError(f"store {absolute} overlaps the CA folder {ca_file.parent}", fix)
    with ctx.database().read() as session:
        stores = session.execute(
            select(db.Application.app_uri, db.Application.store_path).where(
                db.Application.store_path.is_not(None), db.Application.app_uri != app_uri
            )
        ).all()
    for other_uri, other_path in stores:
        other = _real(Path(other_path))
        if real == other:
            raise InputError(f"store {absolute} belongs to {other_uri}", "give each application its own store folder")
        if _within(real, other):
            raise InputError(f"store {absolute} is inside the store of {other_uri} ({other_path})", fix)
        if _within(other, real):
            raise InputError(f"store {absolute} holds the store of {other_uri} ({other_path})", fix)
    return absolute
