"""What a store holds for each CA's revocation: the CRL files per CA, and whether they are usable.

OPC UA stacks refuse a peer whose CA has no current CRL (BadCertificateRevocationUnknown), so every CA in
``trusted/`` or ``issuer(s)/`` needs exactly one CRL that it signed and that is current at the given time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509

from .layout import thumbprint
from .readers import Loaded
from .store import ISSUER, TRUSTED, ApplicationStore
from .x509_facts import authority_key_id, crl_number, crl_signed_by, is_ca, subject_key_id

OK = "ok"
MISSING = "missing"
STALE = "stale"
NOT_YET_VALID = "not-yet-valid"
MULTIPLE = "multiple"


@dataclass
class CrlFile:
    path: Path
    crl: x509.CertificateRevocationList
    number: int | None

    def current_at(self, at: datetime) -> bool:
        next_update = self.crl.next_update_utc
        return self.crl.last_update_utc <= at and next_update is not None and at < next_update


@dataclass
class CaCrlState:
    """One CA certificate of the store and the CRL files that belong to it."""

    kind: str  # TRUSTED or ISSUER
    ca_cert: x509.Certificate
    ca_path: Path
    valid: list[CrlFile] = field(default_factory=list)  # signed by this CA
    forged: list[Path] = field(default_factory=list)  # name this CA as issuer but its key did not sign them

    @property
    def thumbprint(self) -> str:
        return thumbprint(self.ca_cert)

    def status(self, at: datetime) -> str:
        current = [c for c in self.valid if c.current_at(at)]
        if len(current) > 1 or (current and len(self.valid) > 1):
            return MULTIPLE
        if current:
            return OK
        if not self.valid:
            return MISSING
        if any(c.crl.last_update_utc > at for c in self.valid):
            return NOT_YET_VALID
        return STALE

    def newest(self) -> CrlFile | None:
        return max(self.valid, key=lambda c: (c.number or 0, c.crl.last_update_utc), default=None)


@dataclass
class CrlAudit:
    cas: list[CaCrlState] = field(default_factory=list)
    unreadable: list[Loaded] = field(default_factory=list)  # files in crl folders that are not CRLs
    orphans: list[Path] = field(default_factory=list)  # CRLs of CAs the store does not hold


def _same_key_id(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> bool:
    aki = authority_key_id(crl)
    return crl_signed_by(crl, cert) if aki is None else aki == subject_key_id(cert)


def audit_crls(store: ApplicationStore, vouched: tuple[bytes, ...] = ()) -> CrlAudit:
    """Match every CRL file of the store to the CA certificate in the same part (trusted / issuer).

    ``vouched`` holds DER CRLs whose signature the caller already knows to be good (certmgr's own CRL):
    a file with exactly those bytes skips the signature check, which costs a quarter of a second for a
    CRL of 100,000 entries.
    """
    audit = CrlAudit()
    sizes = {len(v) for v in vouched}
    # A layout with one CRL folder for every CA (open62541) is read once, against the CAs of both parts.
    groups = [(TRUSTED, ISSUER)] if store.layout.shared_crl_dir else [(TRUSTED,), (ISSUER,)]
    for kinds in groups:
        cas = [
            CaCrlState(kind, loaded.value, loaded.path)
            for kind in kinds
            for loaded in store.certificates(kind)
            if loaded.value is not None and is_ca(loaded.value)
        ]
        audit.cas += cas
        for loaded in store.crls(kinds[0]):
            crl = loaded.value
            if crl is None:
                audit.unreadable.append(loaded)
                continue
            known = vouched and loaded.path.stat().st_size in sizes and loaded.path.read_bytes() in vouched
            if known:
                owners = [ca for ca in cas if crl.issuer == ca.ca_cert.subject and _same_key_id(crl, ca.ca_cert)]
            else:
                owners = [ca for ca in cas if crl_signed_by(crl, ca.ca_cert)]
            for owner in owners:
                owner.valid.append(CrlFile(loaded.path, crl, crl_number(crl)))
            if owners:
                continue
            claimed = [ca for ca in cas if crl.issuer == ca.ca_cert.subject]
            for owner in claimed:
                owner.forged.append(loaded.path)
            if not claimed:
                audit.orphans.append(loaded.path)
    return audit
