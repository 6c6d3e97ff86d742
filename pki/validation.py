"""Validate a peer certificate against a store, the way OPC UA stacks do, at a given time.

Replaces asyncua's TrustStore, which matches revocations by serial alone across all CRLs, never checks a
CRL's issuer, signature or nextUpdate, and skips ``*.crl`` files. Each refusal carries the OPC UA status
code name a stack would return, so callers can map it to the protocol and to a fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from .layout import thumbprint
from .readers import CERT_SUFFIXES, CRL_SUFFIXES, list_files, read_certificate_file, read_crl_file
from .store import ISSUER, TRUSTED, ApplicationStore
from .x509_facts import crl_signed_by, is_ca, subject_key_id

MIN_KEY_BITS = 2048
MAX_CHAIN = 8
GOOD = "Good"


class Refused(Exception):
    """The certificate is refused; ``status`` is the OPC UA status code name."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class CrlEntry:
    """A CRL with the data validation needs precomputed once per file load."""

    path: Path
    crl: x509.CertificateRevocationList
    revoked_serials: frozenset[int]
    _signature_cache: dict[str, bool] = field(default_factory=dict, compare=False, hash=False)

    def signed_by(self, issuer: x509.Certificate) -> bool:
        key = thumbprint(issuer)
        if key not in self._signature_cache:
            ok = crl_signed_by(self.crl, issuer)
            if ok:
                ok = _aki_matches(self.crl.extensions, issuer)
            self._signature_cache[key] = ok
        return self._signature_cache[key]

    def current_at(self, at: datetime) -> bool:
        next_update = self.crl.next_update_utc
        return self.crl.last_update_utc <= at and next_update is not None and at < next_update


@dataclass
class TrustMaterial:
    """What a store holds for validation: trusted and issuer certificates, CRLs, unreadable files."""

    trusted: list[x509.Certificate] = field(default_factory=list)
    issuers: list[x509.Certificate] = field(default_factory=list)
    crls: list[CrlEntry] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._trusted_der = {c.fingerprint(hashes.SHA256()) for c in self.trusted}

    def is_trusted(self, cert: x509.Certificate) -> bool:
        return cert.fingerprint(hashes.SHA256()) in self._trusted_der

    def candidates(self, subject: x509.Name) -> list[x509.Certificate]:
        return [c for c in self.trusted + self.issuers if c.subject == subject]


@dataclass
class Validation:
    status: str
    message: str
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == GOOD


def _aki_matches(extensions: x509.Extensions, issuer: x509.Certificate) -> bool:
    try:
        aki = extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return True
    if aki.key_identifier is None:
        return True
    return aki.key_identifier == subject_key_id(issuer)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if not _aki_matches(cert.extensions, issuer):
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and _issued_by(cert, cert)


def _check_policy(cert: x509.Certificate, issuer_side: bool) -> None:
    what = "issuer " if issuer_side else ""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_KEY_BITS:
        raise Refused("BadCertificatePolicyCheckFailed", f"{what}key of {key.key_size} bits is below {MIN_KEY_BITS}")
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:
        algorithm = None
    if isinstance(algorithm, hashes.SHA1) or algorithm is None:
        name = algorithm.name if algorithm else cert.signature_algorithm_oid.dotted_string
        raise Refused("BadCertificatePolicyCheckFailed", f"{what}certificate is signed with {name}")


def build_chain(cert: x509.Certificate, material: TrustMaterial) -> list[x509.Certificate]:
    """Leaf first, issuers by name + AKI/SKI + signature, up to a self-signed root or a dead end."""
    chain = [cert]
    current = cert
    while not _is_self_signed(current) and len(chain) <= MAX_CHAIN:
        issuer = next((c for c in material.candidates(current.issuer) if _issued_by(current, c)), None)
        if issuer is None or issuer in chain:
            break
        chain.append(issuer)
        current = issuer
    return chain


def _check_revocation(chain: list[x509.Certificate], material: TrustMaterial, at: datetime) -> None:
    for position, cert in enumerate(chain[:-1] if len(chain) > 1 else []):
        issuer = chain[position + 1]
        leaf = position == 0
        current = [e for e in material.crls if e.signed_by(issuer) and e.current_at(at)]
        if not current:
            stale = [e for e in material.crls if e.signed_by(issuer)]
            detail = "only an expired or not yet valid CRL" if stale else "no CRL"
            code = "BadCertificateRevocationUnknown" if leaf else "BadCertificateIssuerRevocationUnknown"
            raise Refused(code, f"CA {issuer.subject.rfc4514_string()} has {detail} valid at {at:%Y-%m-%d %H:%M} UTC")
        if any(cert.serial_number in e.revoked_serials for e in current):
            code = "BadCertificateRevoked" if leaf else "BadCertificateIssuerRevoked"
            raise Refused(code, f"serial {cert.serial_number:x} is on the CRL of {issuer.subject.rfc4514_string()}")


def _check_usage(cert: x509.Certificate, role: str | None) -> None:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise Refused("BadCertificateUseNotAllowed", "no keyUsage extension") from None
    missing = [
        name
        for name, present in (
            ("digitalSignature", ku.digital_signature),
            ("keyEncipherment", ku.key_encipherment),
            ("dataEncipherment", ku.data_encipherment),
        )
        if not present
    ]
    if missing:
        raise Refused("BadCertificateUseNotAllowed", f"keyUsage lacks {', '.join(missing)}")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    needed = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}.get(role or "")
    if needed is not None and needed not in eku:
        raise Refused("BadCertificateUseNotAllowed", f"extendedKeyUsage lacks {role}Auth")


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def validate(
    cert: x509.Certificate,
    material: TrustMaterial,
    *,
    at: datetime,
    app_uri: str | None = None,
    role: str | None = None,
    hostname: str | None = None,
) -> Validation:
    """Validate ``cert`` as a peer whose role is ``role`` ("client" or "server") at time ``at``."""
    try:
        chain = _validate(cert, material, at=at, app_uri=app_uri, role=role, hostname=hostname)
    except Refused as refused:
        return Validation(refused.status, refused.message)
    return Validation(GOOD, "trusted", chain)


def _validate(cert, material, *, at, app_uri, role, hostname) -> list[x509.Certificate]:
    _check_policy(cert, issuer_side=False)
    chain = build_chain(cert, material)
    if not any(material.is_trusted(c) for c in chain):
        if not _is_self_signed(chain[-1]) and material.candidates(chain[-1].issuer):
            raise Refused(
                "BadCertificateInvalid",
                f"signature of {chain[-1].subject.rfc4514_string()} does not verify with its issuer's key (tampered?)",
            )
        if not _is_self_signed(chain[-1]):
            raise Refused(
                "BadCertificateChainIncomplete",
                f"issuer {chain[-1].issuer.rfc4514_string()} is in neither trusted nor issuer certificates",
            )
        raise Refused("BadCertificateUntrusted", f"neither {cert.subject.rfc4514_string()} nor its CA is trusted")
    for ca in chain[1:]:
        _check_policy(ca, issuer_side=True)
        if not is_ca(ca):
            raise Refused("BadCertificateIssuerUseNotAllowed", f"{ca.subject.rfc4514_string()} is not a CA")
        if not (ca.not_valid_before_utc <= at <= ca.not_valid_after_utc):
            raise Refused("BadCertificateIssuerTimeInvalid", f"CA {ca.subject.rfc4514_string()} is not valid now")
    if not (cert.not_valid_before_utc <= at <= cert.not_valid_after_utc):
        raise Refused(
            "BadCertificateTimeInvalid",
            f"valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}, not at {at:%Y-%m-%d %H:%M} UTC",
        )
    _check_revocation(chain, material, at)
    san = _san(cert)
    if app_uri is not None:
        uris = san.get_values_for_type(x509.UniformResourceIdentifier) if san else []
        if app_uri not in uris:
            raise Refused("BadCertificateUriInvalid", f"certificate URI {', '.join(uris) or 'none'} is not {app_uri}")
    _check_usage(cert, role)
    if hostname is not None:
        hosts = [h.lower() for h in (san.get_values_for_type(x509.DNSName) if san else [])]
        hosts += [str(ip) for ip in (san.get_values_for_type(x509.IPAddress) if san else [])]
        if hostname.lower() not in hosts:
            raise Refused("BadCertificateHostNameInvalid", f"{hostname} is not among the certificate's hosts")
    return chain


# Loading with a cache -------------------------------------------------------------------------------


def _crl_entry(path: Path) -> CrlEntry | str:
    loaded = read_crl_file(path)
    if loaded.value is None:
        return loaded.error or "unreadable"
    crl = loaded.value
    return CrlEntry(path, crl, frozenset(r.serial_number for r in crl))


class TrustCache:
    """Loads a store's trust material and reloads only files whose (inode, size, mtime) changed.

    Each validation stats the store's four folders and their files (cheap), so a running server
    sees a new CRL or trusted certificate on its next connection, without a restart.
    """

    def __init__(self) -> None:
        self._files: dict[Path, tuple[tuple[int, int, int], object]] = {}

    def _load(self, path: Path, loader, seen: set[Path]) -> object:
        seen.add(path)
        try:
            st = os.stat(path)
        except OSError as exc:
            return f"cannot read: {exc.strerror}"
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._files.get(path)
        if cached is None or cached[0] != stamp:
            cached = (stamp, loader(path))
            self._files[path] = cached
        return cached[1]

    def material(self, store: ApplicationStore) -> TrustMaterial:
        material = TrustMaterial()
        seen: set[Path] = set()
        trusted: list[x509.Certificate] = []
        issuers: list[x509.Certificate] = []
        for kind, target in ((TRUSTED, trusted), (ISSUER, issuers)):
            for path in list_files(store.certs_dir(kind), CERT_SUFFIXES):
                loaded = self._load(path, read_certificate_file, seen)
                value = getattr(loaded, "value", None)
                if value is None:
                    material.unreadable.append(f"{path}: {getattr(loaded, 'error', loaded)}")
                else:
                    target.append(value)
            for path in list_files(store.crl_dir(kind), CRL_SUFFIXES):
                entry = self._load(path, _crl_entry, seen)
                if isinstance(entry, CrlEntry):
                    material.crls.append(entry)
                else:
                    material.unreadable.append(f"{path}: {entry}")
        result = TrustMaterial(trusted, issuers, material.crls, material.unreadable)
        self._files = {p: v for p, v in self._files.items() if p in seen}
        return result


def load_trust_material(store: ApplicationStore) -> TrustMaterial:
    return TrustCache().material(store)
