"""Facts about certificates and CRLs that several parts of certmgr ask: each rule written once.

Never raise on odd input: a store can hold anything, and a fact that cannot be read is simply false (or None).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature


def is_ca(cert: x509.Certificate) -> bool:
    """basicConstraints CA:TRUE (a certificate without the extension is not a CA)."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        return False


def cert_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer`` is named as ``cert``'s issuer and its key made ``cert``'s signature."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):  # not its issuer, or a key type cryptography cannot check here
        return False
    return True


def crl_number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except (x509.ExtensionNotFound, ValueError):
        return None


def crl_signed_by(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> bool:
    """The CRL names ``cert`` as its issuer and ``cert``'s key made its signature."""
    try:
        return crl.issuer == cert.subject and crl.is_signature_valid(cert.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def subject_key_id(cert: x509.Certificate) -> bytes:
    """The SKI, or the one derived from the key (RFC 5280 method 1) when the certificate has none."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except (x509.ExtensionNotFound, ValueError):
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest  # type: ignore[arg-type]


def authority_key_id(obj: x509.Certificate | x509.CertificateRevocationList) -> bytes | None:
    try:
        return obj.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except (x509.ExtensionNotFound, ValueError):
        return None
