"""OPC UA certificate profiles: the application instance certificate and the root CA.

Application certificates follow OPC UA Part 6 §6.2.2 and Part 12 RsaSha256ApplicationCertificateType;
the profile, never a requester, decides the extensions. The current time is always passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from .errors import ProfileError
from .keys import check_key_size
from .names import ApplicationIdentity, SubjectFields

# Peers whose clocks run a little behind still accept a certificate issued "now".
NOT_BEFORE_BACKDATE = timedelta(hours=1)
DEFAULT_APP_DAYS = 365
DEFAULT_CA_DAYS = 3650
DEFAULT_CA_KEY_SIZE = 4096
MAX_SERIAL_BITS = 159

APPLICATION_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=True,  # nonRepudiation: required by Part 6 and checked by asyncua
    key_encipherment=True,
    data_encipherment=True,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
APPLICATION_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])


@dataclass(frozen=True)
class Issuer:
    """A CA certificate with its private key, ready to sign."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey

    def authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        try:
            ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:
            return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key())
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _check_days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
        raise ProfileError(f"validity of {days!r} days is not allowed; give a whole number of days > 0")
    return days


def _check_serial(serial: int) -> int:
    if serial <= 0 or serial.bit_length() > MAX_SERIAL_BITS:
        raise ProfileError(f"serial number must be positive and at most {MAX_SERIAL_BITS} bits")
    return serial


def _check_public_key(public_key: object) -> rsa.RSAPublicKey:
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ProfileError("RsaSha256ApplicationCertificateType needs an RSA public key")
    check_key_size(public_key.key_size)
    return public_key


def validity_window(now: datetime, days: int, not_after_limit: datetime | None = None) -> tuple[datetime, datetime]:
    """notBefore a little in the past, notAfter ``days`` ahead, never later than the issuer's notAfter."""
    if now.tzinfo is None:
        raise ProfileError("the current time must be timezone-aware (UTC)")
    not_before = now - NOT_BEFORE_BACKDATE
    try:
        not_after = now + timedelta(days=_check_days(days))
    except OverflowError:
        raise ProfileError(f"validity of {days} days reaches past the year 9999; give fewer days") from None
    if not_after_limit is not None:
        if not_after_limit <= now:
            raise ProfileError("the CA certificate has expired; create a new CA before issuing")
        not_after = min(not_after, not_after_limit)
    return not_before, not_after


def certificate_builder(subject: x509.Name, issuer: x509.Name, public_key, serial: int | None, not_before: datetime,
                        not_after: datetime) -> x509.CertificateBuilder:
    """The part every certmgr certificate shares: names, key, a checked (or random) serial, validity."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(_check_serial(serial if serial is not None else x509.random_serial_number()))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def build_application_certificate(
    identity: ApplicationIdentity,
    public_key: object,
    issuer: Issuer,
    *,
    now: datetime,
    days: int = DEFAULT_APP_DAYS,
    serial: int | None = None,
) -> x509.Certificate:
    """Sign an application instance certificate for ``public_key`` with the profile's extensions."""
    key = _check_public_key(public_key)
    not_before, not_after = validity_window(now, days, issuer.certificate.not_valid_after_utc)
    builder = (
        certificate_builder(identity.subject.to_name(), issuer.certificate.subject, key, serial, not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(APPLICATION_KEY_USAGE, critical=True)
        .add_extension(APPLICATION_EKU, critical=False)
        .add_extension(identity.subject_alternative_name(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(issuer.authority_key_identifier(), critical=False)
    )
    return builder.sign(issuer.private_key, hashes.SHA256())


def build_root_ca(
    private_key: rsa.RSAPrivateKey,
    subject: SubjectFields,
    *,
    now: datetime,
    days: int = DEFAULT_CA_DAYS,
    serial: int | None = None,
    path_length: int | None = 0,
) -> x509.Certificate:
    """A self-signed root CA; with the default ``path_length=0`` it issues only end-entity certificates and CRLs.

    An offline root above issuing CAs takes ``path_length=1`` (see ca.hierarchy).
    """
    public_key = _check_public_key(private_key.public_key())
    not_before, not_after = validity_window(now, days)
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    builder = (
        certificate_builder(subject.to_name(), subject.to_name(), public_key, serial, not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    return builder.sign(private_key, hashes.SHA256())


def csr_application_uris(csr: x509.CertificateSigningRequest) -> list[str]:
    """The URIs a CSR asks for in its SAN (requested extensions), for checking against the registration."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def sign_csr(
    csr: x509.CertificateSigningRequest,
    identity: ApplicationIdentity,
    issuer: Issuer,
    *,
    now: datetime,
    days: int = DEFAULT_APP_DAYS,
) -> x509.Certificate:
    """An application certificate for the key in ``csr``, built from certmgr's profile and ``identity``.

    Only the public key is taken from the request: servers ask for keyCertSign and put only their URI in
    the SAN, but the profile, not the requester, decides subject, SAN, keyUsage and extendedKeyUsage.
    """
    if not csr.is_signature_valid:
        raise ProfileError("the CSR's signature does not verify: it was not made with the key it carries")
    requested = csr_application_uris(csr)
    if not requested:
        raise ProfileError(
            f"the CSR carries no application URI in its subjectAltName, so certmgr cannot tell it is {identity.app_uri}'s; "
            "check the server's certificate configuration (Part 12 servers put their ApplicationUri in the CSR)"
        )
    if identity.app_uri not in requested:
        raise ProfileError(
            f"the CSR asks for URI {', '.join(requested)} but the application is registered as {identity.app_uri}; "
            "fix the server's ApplicationUri or the registration"
        )
    return build_application_certificate(identity, csr.public_key(), issuer, now=now, days=days)
