"""Report every deviation of a certificate from the OPC UA profiles.

Used by tests, by ``certmgr store status`` and by ``certmgr diagnose`` on certificates that certmgr did not
issue, so it never raises on odd input: everything it cannot read becomes a finding.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from .keys import RSA_KEY_SIZES
from .profile import MAX_SERIAL_BITS

ERROR = "error"
WARNING = "warning"
T = TypeVar("T", bound=x509.ExtensionType)


@dataclass(frozen=True)
class Finding:
    code: str  # stable identifier, e.g. "key-usage-missing-bits"
    severity: str  # ERROR (stacks refuse it) or WARNING (works, but against the profile)
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.message} [{self.code}]"


def _extension(cert: x509.Certificate, cls: type[T], findings: list[Finding]) -> x509.Extension[T] | None:
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None
    except (ValueError, x509.DuplicateExtension) as exc:
        findings.append(Finding("extensions-unreadable", ERROR, f"extensions cannot be parsed: {exc}"))
        return None


def _common_checks(cert: x509.Certificate, at: datetime | None, findings: list[Finding]) -> None:
    add = findings.append
    if cert.version != x509.Version.v3:
        add(Finding("version", ERROR, f"certificate is {cert.version.name}, OPC UA needs X.509 v3"))
    try:
        hash_algorithm = cert.signature_hash_algorithm
    except Exception:  # unsupported algorithm OIDs raise from cryptography
        hash_algorithm = None
    if isinstance(hash_algorithm, hashes.SHA1):
        add(Finding("signature-sha1", ERROR, "signed with SHA-1, which current OPC UA security policies refuse"))
    elif not isinstance(hash_algorithm, hashes.SHA256):
        name = hash_algorithm.name if hash_algorithm else cert.signature_algorithm_oid.dotted_string
        add(Finding("signature-hash", WARNING, f"signed with {name}; the RSA profile expects SHA-256"))
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        add(Finding("key-type", WARNING, f"{type(public_key).__name__} key: only RSA profiles are checked"))
    elif public_key.key_size < min(RSA_KEY_SIZES):
        add(Finding("key-size-small", ERROR, f"RSA {public_key.key_size} bits is below the 2048-bit minimum"))
    elif public_key.key_size not in RSA_KEY_SIZES:
        add(Finding("key-size", WARNING, f"RSA {public_key.key_size} bits is not 2048, 3072 or 4096"))
    if cert.serial_number <= 0 or cert.serial_number.bit_length() > MAX_SERIAL_BITS + 1:
        add(Finding("serial", ERROR, "serial number must be positive and at most 20 octets"))
    if cert.not_valid_before_utc >= cert.not_valid_after_utc:
        add(Finding("validity-order", ERROR, "notBefore is not before notAfter"))
    if at is not None:
        if at < cert.not_valid_before_utc:
            add(Finding("not-yet-valid", ERROR, f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"))
        if at > cert.not_valid_after_utc:
            add(Finding("expired", ERROR, f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"))
    if _extension(cert, x509.SubjectKeyIdentifier, findings) is None:
        add(Finding("ski-missing", WARNING, "no SubjectKeyIdentifier: chains are built by AKI -> SKI"))


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def check_application_certificate(
    cert: x509.Certificate, *, app_uri: str | None = None, at: datetime | None = None,
    issuer: x509.Certificate | None = None,
) -> list[Finding]:
    """Every deviation from the RsaSha256ApplicationCertificateType profile; empty when conformant.
    With ``issuer``, also whether its signature holds (a tampered certificate is otherwise well-formed)."""
    findings: list[Finding] = []
    add = findings.append
    _common_checks(cert, at, findings)
    if issuer is not None:
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as exc:
            add(Finding("signature-invalid", ERROR, f"not validly signed by {issuer.subject.rfc4514_string()}: {exc or 'bad signature'}"))
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not names:
        add(Finding("subject-cn-missing", ERROR, "subject has no CN"))
    if not cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME):
        add(Finding("subject-o-missing", WARNING, "subject has no O (required since OPC UA 1.05)"))

    self_signed = _is_self_signed(cert)
    basic = _extension(cert, x509.BasicConstraints, findings)
    if basic is None:
        add(Finding("basic-constraints-missing", WARNING, "no basicConstraints extension (expected CA:FALSE)"))
    elif basic.value.ca:
        add(Finding("basic-constraints-ca", ERROR, "application certificate is marked CA:TRUE"))

    key_usage = _extension(cert, x509.KeyUsage, findings)
    if key_usage is None:
        add(Finding("key-usage-missing", ERROR, "no keyUsage extension"))
    else:
        ku = key_usage.value
        missing = [
            label
            for label, present in (
                ("digitalSignature", ku.digital_signature),
                ("nonRepudiation", ku.content_commitment),
                ("keyEncipherment", ku.key_encipherment),
                ("dataEncipherment", ku.data_encipherment),
            )
            if not present
        ]
        if missing:
            add(Finding("key-usage-missing-bits", ERROR, f"keyUsage lacks {', '.join(missing)}"))
        if ku.key_cert_sign and not self_signed:
            add(Finding("key-usage-cert-sign", ERROR, "CA-issued application certificate has keyCertSign"))
        if not key_usage.critical:
            add(Finding("key-usage-not-critical", WARNING, "keyUsage should be critical"))

    eku = _extension(cert, x509.ExtendedKeyUsage, findings)
    if eku is None:
        add(Finding("eku-missing", WARNING, "no extendedKeyUsage (expected serverAuth and clientAuth)"))
    else:
        for oid, label in ((ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth"), (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth")):
            if oid not in eku.value:
                add(Finding(f"eku-no-{label.lower()}", WARNING, f"extendedKeyUsage lacks {label}"))

    san = _extension(cert, x509.SubjectAlternativeName, findings)
    if san is None:
        add(Finding("san-missing", ERROR, "no subjectAltName: the application URI must be in it"))
    else:
        uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
        if len(uris) != 1:
            add(Finding("san-uri-count", ERROR, f"subjectAltName holds {len(uris)} URIs, the profile needs exactly 1"))
        if app_uri is not None and app_uri not in uris:
            shown = ", ".join(uris) or "none"
            add(Finding("san-uri-mismatch", ERROR, f"subjectAltName URI {shown} is not the application URI {app_uri}"))

    if not self_signed and _extension(cert, x509.AuthorityKeyIdentifier, findings) is None:
        add(Finding("aki-missing", WARNING, "no AuthorityKeyIdentifier: stacks cannot find the issuer by key"))
    return findings


def check_ca_certificate(cert: x509.Certificate, *, at: datetime | None = None) -> list[Finding]:
    """Deviations of a CA certificate: CA:TRUE and keyCertSign + cRLSign are what stacks check."""
    findings: list[Finding] = []
    add = findings.append
    _common_checks(cert, at, findings)
    basic = _extension(cert, x509.BasicConstraints, findings)
    if basic is None or not basic.value.ca:
        add(Finding("ca-not-ca", ERROR, "basicConstraints CA:TRUE missing"))
    elif not basic.critical:
        add(Finding("ca-basic-constraints-not-critical", WARNING, "basicConstraints should be critical"))
    key_usage = _extension(cert, x509.KeyUsage, findings)
    if key_usage is None or not (key_usage.value.key_cert_sign and key_usage.value.crl_sign):
        add(Finding("ca-key-usage", ERROR, "keyUsage must include keyCertSign and cRLSign"))
    return findings


def errors_only(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == ERROR]


