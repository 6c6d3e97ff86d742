"""Certificate revocation lists for a certmgr CA.

The revoked list is handed to the builder's constructor in one piece: calling
``add_revoked_certificate`` in a loop copies the list each time and is quadratic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .errors import ProfileError
from .profile import Issuer

REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
}
DEFAULT_CRL_DAYS = 30


class RevokedEntry(NamedTuple):
    """One revoked certificate. A named tuple, not a dataclass: CRLs hold 100,000 of them."""

    serial: int
    revoked_at: datetime  # aware, or naive meaning UTC
    reason: str | None = None  # a key of REASONS; unspecified entries carry no reason extension


def reason_flag(name: str) -> x509.ReasonFlags:
    try:
        return REASONS[name]
    except KeyError:
        raise ProfileError(f"unknown revocation reason {name!r}; use one of {', '.join(REASONS)}") from None


_REASON_EXTENSIONS: dict[str | None, list[x509.Extension]] = {
    name: ([] if flag is x509.ReasonFlags.unspecified else [x509.Extension(x509.CRLReason.oid, False, x509.CRLReason(flag))])
    for name, flag in REASONS.items()
}
_REASON_EXTENSIONS[None] = []


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def _revoked_certificate(entry: RevokedEntry) -> x509.RevokedCertificate:
    # The builder's constructor with one shared extension list per reason: the fluent setters copy the
    # builder three times per entry, which dominates the time for CRLs of 100,000 entries.
    try:
        extensions = _REASON_EXTENSIONS[entry.reason]
    except KeyError:
        reason_flag(entry.reason or "")
        raise
    if entry.serial <= 0:
        raise ProfileError(f"revoked serial {entry.serial} is not a positive integer")
    return x509.RevokedCertificateBuilder(entry.serial, _naive_utc(entry.revoked_at), extensions).build()


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
