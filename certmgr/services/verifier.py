"""This node's verification identity: the certificate certmgr itself uses on proof and diagnosis channels.

Each certmgr home has its own (in ``<home>/verifier``); with several nodes on one database, each node
renews only its own.
"""

from __future__ import annotations

from cryptography import x509
from sqlalchemy import select

import db
import pki

from ..context import AppContext
from ..errors import NotInitialised


def verifier_store(ctx: AppContext) -> pki.ApplicationStore:
    return pki.ApplicationStore(ctx.home.verifier_store, "ua-net")


def verifier_identity_uri(ctx: AppContext) -> str:
    own = verifier_store(ctx).own()
    if own is None:
        raise NotInitialised(f"{ctx.home.verifier_store} holds no verification identity", "run `certmgr init` (or `init --join`)")
    san = own.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)[0]


def verifier_application(ctx: AppContext, session) -> db.Application | None:
    return session.scalars(
        select(db.Application).where(db.Application.internal.is_(True), db.Application.store_path == str(ctx.home.verifier_store))
    ).first()
