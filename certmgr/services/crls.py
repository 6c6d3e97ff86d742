"""Signing certmgr's CRL and placing it in stores."""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

import ca
import db
import pki
from db import queries

from ..context import AppContext
from ..constants import MAX_CRL_DAYS
from ..errors import InputError, OperationFailed
from .canary import discard as discard_canary
from .canary import prepare_canary, record_canary, sweep_canary_keys


def sign_crl(ctx: AppContext, issuer: ca.Issuer, now: datetime, *, authority_id: int | None = None) -> db.Crl:
    """Sign the next CRL of the signing CA (or of the CA generation ``authority_id``, during a rollover). The number
    comes from a row lock on the authority, so it never repeats, and the revoked list is read under that lock, so a
    later number never omits an earlier entry."""
    database = ctx.database()
    with database.read() as session:
        authority = queries.authority(session) if authority_id is None else session.get(db.Authority, authority_id)
        if authority is None:
            raise RuntimeError("database has no authority row")
        thumb, days, authority_id = authority.thumbprint, crl_days(ctx, authority), authority.id
    if pki.thumbprint(issuer.certificate) != thumb:
        # the CA files and the database name different signing CAs: a `ca rollover advance` was cut between them
        raise OperationFailed(f"the CA certificate in the home is not the database's signing CA {thumb}",
                              "run `certmgr ca rollover advance` again to finish the switch")
    canary = prepare_canary(ctx, issuer, thumb, now, days)  # files before the write transaction, never inside it
    try:
        row = _sign(ctx, database, issuer, canary, now, days, authority_id)
    except BaseException:
        discard_canary(canary)
        raise
    sweep_canary_keys(ctx, now)  # each CRL makes a canary key; those past their canary's notAfter go
    return row


def _sign(ctx: AppContext, database, issuer: ca.Issuer, canary, now: datetime, days: int, authority_id: int) -> db.Crl:
    with database.write() as session:
        authority = session.scalars(select(db.Authority).where(db.Authority.id == authority_id).with_for_update()).one()
        number = authority.next_crl_number
        authority.next_crl_number = number + 1
        previous = queries.latest_crl(session, authority.id)
        if previous is not None and previous.this_update > now:
            now = previous.this_update  # a later number never carries an earlier thisUpdate (clock skew between nodes)
        record_canary(session, canary, authority, number, now)  # revoked before this CRL exists: listed in it
        entries = [
            ca.RevokedEntry(int(serial, 16), revoked_at, reason)
            for serial, revoked_at, reason in queries.revoked_entries(session, authority.id, now)
        ]
        this_update, next_update = ca.crl_validity(now, days)
        crl = ca.build_crl(issuer, number=number, this_update=this_update, next_update=next_update, revoked=entries)
        row = db.Crl(
            authority_id=authority.id,
            number=number,
            this_update=this_update,
            next_update=next_update,
            revoked_count=len(entries),
            der=crl.public_bytes(serialization.Encoding.DER),
            created_at=now,
        )
        session.add(row)
        queries.add_audit(
            session, at=now, actor=ctx.actor, action="crl.sign", target=authority.name, number=number, revoked=len(entries)
        )
    return row


def crl_days(ctx: AppContext, authority: db.Authority) -> int:
    """[ca] crl_days of this node's certmgr.toml when it sets one (an operator may shorten or lengthen the
    CRL's validity after init), else the value chosen at init and kept with the authority."""
    configured = ctx.settings.ca.crl_days
    if configured is None:
        return authority.crl_days
    if not 0 < configured <= MAX_CRL_DAYS:
        raise InputError(f"[ca] crl_days = {configured!r} in certmgr.toml is not allowed", f"give whole days between 1 and {MAX_CRL_DAYS}")
    return configured


def current_crl(ctx: AppContext) -> db.Crl:
    with ctx.database().read() as session:
        authority = queries.authority(session)
        row = queries.latest_crl(session, authority.id) if authority else None
    if row is None:
        raise RuntimeError("the CA has no CRL yet; `certmgr init` signs the first one")
    return row


def install_ca_and_crl(store: pki.ApplicationStore, ca_cert: x509.Certificate, crl_row: db.Crl, chain=None) -> list[str]:
    """Make ``store`` trust certmgr's CA: CA certificate in trusted/certs, its current CRL in trusted/crl
    (and in issuer(s)/crl if the CA sits there too). With a ``chain`` (an issuing CA under a root,
    services/ca_chain.py) the root and its CRL go to trusted/ and the issuing CA to issuer(s)/ instead.
    Returns the kinds that now hold this CRL number."""
    if chain is not None:
        from .ca_chain import install_chain

        install_chain(store, ca_cert, chain)
    else:
        store.add_certificate(ca_cert, pki.TRUSTED)
    results = store.publish_crl_where_held(crl_row.der, ca_cert, crl_row.number)
    return [kind for kind, result in results.items() if not result.newer_present]
