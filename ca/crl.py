"""Certificate revocation lists for a certmgr CA.

The revoked list is handed to the builder's constructor in one piece: calling
``add_revoked_certificate`` in a loop copies the list each time and is quadratic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .errors import ProfileError
from .profile import Issuer

REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
}
DEFAULT_CRL_DAYS = 30


@dataclass(frozen=True)
class RevokedEntry:
    serial: int
    revoked_at: datetime
    reason: str | None = None  # a key of REASONS; unspecified entries carry no reason extension


def reason_flag(name: str) -> x509.ReasonFlags:
    try:
        return REASONS[name]
    except KeyError:
        raise ProfileError(f"unknown revocation reason {name!r}; use one of {', '.join(REASONS)}") from None


def _revoked_certificate(entry: RevokedEntry) -> x509.RevokedCertificate:
    builder = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at)
    if entry.reason and entry.reason != "unspecified":
        builder = builder.add_extension(x509.CRLReason(reason_flag(entry.reason)), critical=False)
    return builder.build()


def crl_validity(now: datetime, days: int) -> tuple[datetime, datetime]:
    if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
        raise ProfileError(f"CRL validity of {days!r} days is not allowed; give a whole number of days > 0")
    return now, now + timedelta(days=days)


def build_crl(
    issuer: Issuer,
    *,
    number: int,
    this_update: datetime,
    next_update: datetime,
    revoked: Iterable[RevokedEntry] = (),
) -> x509.CertificateRevocationList:
    """Sign a CRL with CRLNumber and AKI (both required by OPC UA stacks to match a CRL to its CA)."""
    if number < 1:
        raise ProfileError("CRL numbers start at 1")
    if next_update <= this_update:
        raise ProfileError("a CRL's nextUpdate must be after its thisUpdate")
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer.certificate.subject,
        last_update=this_update,
        next_update=next_update,
        extensions=[
            x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(number)),
            x509.Extension(x509.AuthorityKeyIdentifier.oid, False, issuer.authority_key_identifier()),
        ],
        revoked_certificates=[_revoked_certificate(entry) for entry in revoked],
    )
    return builder.sign(issuer.private_key, hashes.SHA256())


def crl_number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None
