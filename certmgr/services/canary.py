"""Canary certificates: one per CRL, revoked before the CRL that first lists it is signed.

A server that refuses canary ``n`` with BadCertificateRevoked has loaded CRL ``n`` or a newer one (CRLs
only grow: a later number never omits an earlier entry while the canary is within its validity). The
canary never works anywhere as an identity: it is revoked in the database in the same transaction that
signs the first CRL listing it, before the certificate exists outside this process. Its key stays in
``<home>/canary/<THUMBPRINT>.pem`` (0600) of the node that signed that CRL.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from sqlalchemy import select

import ca
import db
import pki

from ..context import AppContext

CANARY_APP_URI = "urn:certmgr:canaries"
CANARY_REASON = "cessationOfOperation"
CANARY_KEY_SIZE = 2048


def canary_validity_days(crl_days: int) -> int:
    """Long enough to stay on every CRL signed while its own CRL is current (a probe of a server holding
    CRL n needs canary n still listed, and a canary past notAfter leaves the CRL), short otherwise."""
    return max(2, 2 * crl_days + 1)


def canary_dir(ctx: AppContext) -> Path:
    return ctx.home.root / "canary"


def _canary_application(session, authority: db.Authority, now: datetime) -> db.Application:
    app = session.scalars(select(db.Application).where(db.Application.app_uri == CANARY_APP_URI)).first()
    if app is None:
        # internal, no store, no endpoint: renewal, push, publishing and list never pick it up.
        app = db.Application(app_uri=CANARY_APP_URI, name="certmgr canaries", role=db.Role.CLIENT, store_path=None,
                             internal=True, authority_id=authority.id, created_at=now, updated_at=now,
                             validity_days=1, key_size=CANARY_KEY_SIZE)
        session.add(app)
        session.flush()
    return app


@dataclass
class PreparedCanary:
    certificate: x509.Certificate
    key_file: Path


def prepare_canary(ctx: AppContext, issuer: ca.Issuer, authority_thumbprint: str, now: datetime, crl_days: int) -> PreparedCanary:
    """Before the CRL signer's transaction (no file I/O inside it): the canary certificate and its key file. If
    the transaction then fails, ``discard`` removes the key; the certificate never existed outside this process."""
    key = ca.generate_rsa_key(CANARY_KEY_SIZE)
    token = secrets.token_hex(6)
    identity = ca.ApplicationIdentity(
        app_uri=f"urn:certmgr:canary:{authority_thumbprint[:16].lower()}:{token}",
        subject=ca.SubjectFields(common_name=f"certmgr canary {token}"),
    )
    certificate = ca.build_application_certificate(identity, key.public_key(), issuer, now=now, days=canary_validity_days(crl_days))
    directory = canary_dir(ctx)
    pki.ensure_dir(directory, 0o700)
    key_file = pki.atomic_write(directory / f"{pki.thumbprint(certificate)}.pem", ca.private_key_pem(key), mode=pki.KEY_MODE)
    return PreparedCanary(certificate, key_file)


def discard(prepared: PreparedCanary) -> None:
    from pki import destroy_secret

    destroy_secret(prepared.key_file)


def record_canary(session, prepared: PreparedCanary, authority: db.Authority, number: int, now: datetime) -> db.Certificate:
    """In the CRL signer's transaction, before the revoked list is read: the canary is revoked from birth, so the
    CRL being signed is the first to list it."""
    from . import lifecycle

    application = _canary_application(session, authority, now)
    row = lifecycle.record_revoked(session, prepared.certificate, application, authority.id, now=now, reason=CANARY_REASON,
                                   why=f"canary of CRL {number}")
    session.add(db.Canary(authority_id=authority.id, crl_number=number, certificate_id=row.id, key_file=str(prepared.key_file),
                          created_at=now))
    session.flush()
    return row


ORPHAN_AGE_SECONDS = 3600  # a key younger than this may belong to a CRL being signed right now on this node


def sweep_canary_keys(ctx: AppContext, now: datetime) -> int:
    """Destroy this node's canary keys that can no longer prove anything: the canary has expired (it left the
    CRLs), or the key has no canary row at all (a CRL signer killed between the key file and its transaction).
    Returns how many were removed. ``now`` is the caller's clock; file ages use the file system's."""
    directory = canary_dir(ctx)
    if not directory.is_dir():
        return 0
    with ctx.database().read() as session:
        rows = session.execute(
            select(db.Canary.key_file, db.Certificate.not_after).join(db.Certificate, db.Certificate.id == db.Canary.certificate_id)
        ).all()
    expiry = {Path(key_file).name: not_after for key_file, not_after in rows}
    removed = 0
    for path in directory.glob("*.pem"):
        not_after = expiry.get(path.name)
        if not_after is not None:
            gone = not_after <= now
        else:
            try:
                gone = time.time() - path.stat().st_mtime > ORPHAN_AGE_SECONDS
            except FileNotFoundError:
                continue
        if gone and pki.destroy_secret(path):
            removed += 1
    return removed


def usable_canaries(ctx: AppContext, now: datetime) -> list[tuple[int, object]]:
    """(CRL number, Identity) of every canary still within its validity whose key this node holds, newest
    first. Canaries signed by another node (shared database) have their key in that node's home."""
    from ..opcua.channel import Identity

    from db import queries

    found = []
    with ctx.database().read() as session:
        signing = queries.authority(session)  # during a CA rollover the other generation's canaries have their own numbers
        rows = session.execute(
            select(db.Canary.crl_number, db.Canary.key_file, db.Certificate.der)
            .join(db.Certificate, db.Certificate.id == db.Canary.certificate_id)
            .where(db.Certificate.not_after > now, db.Canary.authority_id == signing.id)
            .order_by(db.Canary.crl_number.desc())
        ).all()
    for number, key_file, der in rows:
        path = Path(key_file)
        if not path.is_file():
            continue
        certificate = pki.parse_certificate(der)
        key = ca.load_private_key_pem(path.read_bytes())
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        app_uri = san.get_values_for_type(x509.UniformResourceIdentifier)[0]
        found.append((number, Identity(app_uri, certificate, key, None)))
    return found
