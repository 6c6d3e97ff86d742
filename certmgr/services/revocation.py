"""``certmgr revoke``: mark a certificate revoked, sign a new CRL at once, publish it to every store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

import ca
import db
import pki
from db import queries

from ..context import AppContext
from ..errors import InputError
from . import lifecycle
from .crls import sign_crl
from .recovery import recover
from .publishing import StorePublication, publish_everywhere


@dataclass
class RevokeOutcome:
    app_uri: str
    thumbprint: str
    serial: str
    reason: str
    revoked_at: datetime
    already: bool = False
    was_active: bool = False
    crl_number: int | None = None
    stores: list[StorePublication] = field(default_factory=list)
    destroyed_keys: list[str] = field(default_factory=list)  # keyCompromise: every copy of the key, removed

    def as_dict(self) -> dict:
        return {
            "app_uri": self.app_uri,
            "thumbprint": self.thumbprint,
            "serial": self.serial,
            "reason": self.reason,
            "revoked_at": self.revoked_at.isoformat(),
            "already_revoked": self.already,
            "application_without_certificate": self.was_active,
            "crl_number": self.crl_number,
            "stores": [s.as_dict() for s in self.stores],
            "destroyed_keys": self.destroyed_keys,
        }


def find_certificate(ctx: AppContext, *, thumbprint: str | None, serial: str | None, app_uri: str | None) -> db.Certificate:
    """Exactly one of the three selectors; refuses unknown or ambiguous ones with the fix."""
    given = [v for v in (thumbprint, serial, app_uri) if v]
    if len(given) != 1:
        raise InputError("name exactly one certificate", "give a THUMBPRINT, --serial HEX or --app-uri URI")
    with ctx.database().read() as session:
        if app_uri:
            app = queries.application_by_uri(session, app_uri)
            if app is None:
                raise InputError(f"no application {app_uri!r} is registered", "see `certmgr list`")
            cert = queries.active_certificate(session, app.id)
            if cert is None:
                raise InputError(f"{app_uri} has no active certificate", "give the certificate's THUMBPRINT instead")
        elif serial:
            authority = queries.authority(session)
            normalised = serial.lower().replace(":", "").removeprefix("0x").lstrip("0") or "0"
            cert = queries.certificate_by_serial(session, authority.id, normalised)
            if cert is None:
                raise InputError(f"no certificate with serial {serial}", "see `certmgr show APP_URI` for serials")
        else:
            prefix = thumbprint.replace(":", "").strip()
            if len(prefix) < 8 or any(c not in "0123456789abcdefABCDEF" for c in prefix):
                raise InputError(f"{thumbprint!r} is not a thumbprint", "give at least 8 hex digits")
            matches = queries.certificates_by_thumbprint_prefix(session, prefix)
            if not matches:
                raise InputError(f"no certificate with thumbprint {thumbprint}", "see `certmgr list`")
            if len(matches) > 1:
                raise InputError(f"thumbprint prefix {thumbprint} matches {len(matches)} certificates", "give more digits")
            cert = matches[0]
        cert.application  # load before the session closes
        return cert


def revoke(ctx: AppContext, certificate_id: int, reason: str, *, now: datetime | None = None) -> RevokeOutcome:
    """Revoke, then sign and publish a CRL holding it. Revoking twice changes nothing, unless the first
    revocation never reached a CRL (interrupted between its commit and its CRL): then its CRL is signed."""
    ca.reason_flag(reason)  # refuse unknown reasons before anything changes
    recover(ctx)  # what a killed command left is made whole first; the CRL signed below lists its revocations
    now = now or ctx.now()
    with ctx.database().read() as session:
        row = session.get(db.Certificate, certificate_id)
        already = row.revoked_at is not None
        missing = already and not _on_latest_crl(session, row)
    issuer = None if already and not missing else ctx.issuer()  # the passphrase first: never a revocation without its CRL
    with ctx.database().read() as session:
        cert = session.get(db.Certificate, certificate_id)
        app = cert.application
        outcome = RevokeOutcome(app.app_uri, cert.thumbprint, cert.serial_hex, reason, now)
        if cert.revoked_at is not None:
            outcome.already, outcome.reason, outcome.revoked_at = True, cert.revocation_reason or "unspecified", cert.revoked_at
    if outcome.already and not missing:
        if outcome.reason == "keyCompromise":  # repeatable: a kill may have cut the first run before it
            outcome.destroyed_keys = _destroy_compromised_key(ctx, certificate_id)
        return outcome
    with ctx.database().write() as session:
        cert = session.get(db.Certificate, certificate_id)
        if not outcome.already and cert.revoked_at is None:  # (an earlier revocation whose CRL is missing gets one below)
            outcome.was_active = lifecycle.revoke(session, cert, reason=reason, now=now, actor=ctx.actor)
    issuer = issuer or ctx.issuer()
    with ctx.database().read() as session:
        authority_id = session.get(db.Certificate, certificate_id).authority_id
        other_generation = authority_id != queries.authority(session).id
    if other_generation:  # a certificate of the other CA generation of a rollover goes on that CA's CRL
        from .rollover import republish_generation_crls

        outcome.crl_number = (republish_generation_crls(ctx, now, only={authority_id}, force=True) or [None])[0]
    else:
        crl_row = sign_crl(ctx, issuer, now)
        outcome.crl_number = crl_row.number
        outcome.stores = publish_everywhere(ctx, crl_row, issuer.certificate, now)
    if (outcome.reason if outcome.already else reason) == "keyCompromise":
        outcome.destroyed_keys = _destroy_compromised_key(ctx, certificate_id)
    return outcome


def _destroy_compromised_key(ctx: AppContext, certificate_id: int) -> list[str]:
    """A compromised key has no use left and must not stay on disk: every copy in the application's store goes
    (the current key too: the certificate is revoked, the application needs `certmgr renew --force` anyway)."""
    with ctx.database().read() as session:
        cert = session.get(db.Certificate, certificate_id)
        app = cert.application
        store_path, layout, thumb = app.store_path, app.layout, cert.thumbprint
    if not store_path or not pki.ApplicationStore(store_path, layout).root.is_dir():
        return []
    store = pki.ApplicationStore(store_path, layout)
    with store.locked():
        return [str(path) for path in store.destroy_key(thumb, include_current=True)]


def _on_latest_crl(session, cert: db.Certificate) -> bool:
    latest = queries.latest_crl(session, cert.authority_id)
    if latest is None:
        return False
    crl = x509.load_der_x509_crl(latest.der)
    return crl.get_revoked_certificate_by_serial_number(int(cert.serial_hex, 16)) is not None


def certificate_summary(cert: db.Certificate) -> dict:
    parsed = pki.parse_certificate(cert.der)
    return {
        "app_uri": cert.application.app_uri,
        "subject": cert.subject,
        "thumbprint": cert.thumbprint,
        "serial": cert.serial_hex,
        "status": cert.status.value,
        "not_after": cert.not_after.isoformat(),
        "issuer": parsed.issuer.rfc4514_string(),
    }
