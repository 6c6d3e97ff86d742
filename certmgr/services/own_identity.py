"""What is wrong with the identity certmgr connects with, judged before any server is asked.

``diagnose`` checks its own side first: a revoked or expired certificate is refused by every correct
server, and the advice must then be "renew ours", whatever status code the server chose to send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

import ca
import pki
from db import queries

from ..context import AppContext


@dataclass
class OwnIdentity:
    ca_signed: bool
    issuer: str
    by_certmgr_ca: bool  # issued by the CA in certmgr's home (so certmgr's CA and CRL are what a server needs)
    revoked: str | None = None  # why we know it is revoked, e.g. "revoked by certmgr on 2026-01-02 (keyCompromise)"
    not_valid: str | None = None  # "expired on ..." / "not valid before ..."
    findings: list[ca.Finding] = field(default_factory=list)


def check_own_identity(ctx: AppContext, cert: x509.Certificate, now: datetime) -> OwnIdentity:
    ca_cert = _certmgr_ca(ctx)
    by_certmgr_ca = ca_cert is not None and cert.issuer == ca_cert.subject and pki.cert_signed_by(cert, ca_cert)
    own = OwnIdentity(ca_signed=cert.issuer != cert.subject, issuer=cert.issuer.rfc4514_string(), by_certmgr_ca=by_certmgr_ca)
    own.findings = ca.check_application_certificate(cert, at=now)
    if cert.not_valid_after_utc < now:
        own.not_valid = f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    elif cert.not_valid_before_utc > now:
        own.not_valid = f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    if ctx.home.is_initialised():
        own.revoked = _revocation(ctx, cert, by_certmgr_ca)
    return own


def _certmgr_ca(ctx: AppContext) -> x509.Certificate | None:
    if not ctx.home.is_initialised():
        return None
    try:
        return pki.parse_certificate(ctx.home.ca_cert_path.read_bytes())
    except (OSError, ValueError):
        return None




def _revocation(ctx: AppContext, cert: x509.Certificate, by_certmgr_ca: bool) -> str | None:
    """Revoked in certmgr's database, or listed on certmgr's current CRL (a CRL signed elsewhere counts too)."""
    thumb = pki.thumbprint(cert)
    with ctx.database().read() as session:
        rows = [r for r in queries.certificates_by_thumbprint_prefix(session, thumb) if r.thumbprint == thumb]
        if rows and rows[0].revoked_at is not None:
            reason = f" ({rows[0].revocation_reason})" if rows[0].revocation_reason else ""
            return f"revoked by certmgr on {rows[0].revoked_at:%Y-%m-%d %H:%M} UTC{reason}"
        if not by_certmgr_ca:
            return None
        authority = queries.authority(session)
        latest = queries.latest_crl(session, authority.id) if authority else None
    if latest is not None:
        crl = x509.load_der_x509_crl(latest.der)
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            return f"listed on certmgr's CRL number {latest.number}"
    return None
